"""The pre-training vs self-training study: the paper's control tables at embedded scale.

`./run.sh study` trains every cell of Tables 2, 3, 4, 7 and 10 and Appendix B (Figure 2)
on the embedded data and writes `report.md` (our number, its gain or loss against the Rand
Init supervised cell of the same column, and the paper's) with Figure-1 style plots.

What a cell is:
  group         one teacher: an initialization (gin/init) x an augmentation (gin/augment) x
                a labeled fraction (nested subsets of `train`), optionally joint-trained
                with `iconic` classification (Table 7). Every group trains the same number
                of steps from the same seed: one budget and seed policy for every cell.
  supervised    the group's teacher trained further on human labels alone, as many steps
                as a student (the same-compute control of the main job)
  self_training the student: from the teacher, half human and half pseudo-labeled batches,
                the pseudo labels the teacher's on `iconic` (ImageNet's role: the paper's
                tables self-train on the pre-training data, "ImageNet Self-training")
  random_student  Table 10: the student from random weights, trained teacher + student steps
Cells that need the same runs share them (a teacher and its pseudo labels serve every cell
of its group). Each cell writes `cells/<id>.json` last; a re-run skips finished cells, and a
killed run resumes inside a cell from the pipeline's own checkpoints and completion files.

`--size` trades fidelity for time (steps per stage; the default grid is sized for 2 hours
on 2 CPU cores), `--cells` selects cells by id glob ('table2.*', 'appendix_b.*') or `all`.

The code: `grid.py` (the cells, their groups and the sizes), `runner.py` (training the
cells, resumably), `report.py` (`report.md` and `figure1.png`); this module is the command
line.
"""

import os
import time

from absl import app
from absl import flags

from projects.self_training.common import cli
from projects.self_training.common import paths
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.study import grid
from projects.self_training.study import report
from projects.self_training.study import runner

FLAGS = flags.FLAGS
flags.DEFINE_string('study_dir', os.path.join(paths.RUNS_DIR, 'study'), 'Where the study writes.')
flags.DEFINE_string('data_dir', None, 'An emoji-scenes set (default: the embedded one).')
flags.DEFINE_enum('size', 'small', list(grid.SIZES), 'Steps per stage (fidelity against time).')
flags.DEFINE_list('cells', ['default'], 'Cell ids or globs (table2.*, table3.rand_st.f20), '
                  '"default" (the default grid) or "all".')
flags.DEFINE_integer('seed', 0, 'Seed of every cell.')
flags.DEFINE_bool('list', False, 'List the cells and exit.')
flags.DEFINE_bool('report_only', False, 'Rewrite the report from finished cells and exit.')


def main(argv):
  cli.no_arguments(argv[1:])
  trainer.quiet_logs()
  with cli.errors_in_one_line(trainer.ConfigError, ValueError):
    cells = grid.select(grid.grid(), FLAGS.cells)
    if FLAGS.list:
      for c in cells:
        print(f'{c.id:40s} {c.group.name:22s} {c.kind}')
      return
    if not FLAGS.report_only:
      data_dir = emoji_scenes.resolve_data_dir(FLAGS.data_dir)
      # The joint experiment reads `iconic` from the embedded data's directory.
      os.environ['EMOJI_SCENES_DIR'] = data_dir
      study = runner.Study(FLAGS.study_dir, data_dir, grid.SIZES[FLAGS.size], FLAGS.size,
                           FLAGS.seed, progress=lambda line: print(line, flush=True))
      start = time.time()
      study.run(cells)
      print(f'study: {len(cells)} cells in {time.time() - start:.0f} s')
    path = report.write_report(FLAGS.study_dir)
  with open(path) as f:
    print(f.read())
  print(f'Report: {path}')


if __name__ == '__main__':
  app.run(main)
