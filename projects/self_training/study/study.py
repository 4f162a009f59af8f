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
                the pseudo labels the teacher's on `unlabeled_scenes`, the main job's
                labels (the paper self-trains on ImageNet; `iconic`, its counterpart here,
                gets almost no box from a scene-trained detector: docs/study.md)
  random_student  Table 10: the student from random weights, trained teacher + student steps
Cells that need the same runs share them (a teacher and its pseudo labels serve every cell
of its group). Each cell writes `cells/<id>.json` last; a re-run skips finished cells, and a
killed run resumes inside a cell from the pipeline's own checkpoints and completion files.

A cell whose teacher did not plateau or whose pseudo labels collapsed is invalid and kept
out of every finding (`findings.py`). `--seeds` runs the cells once per seed, each seed in
its own `seed<k>/` directory; the report gives means, spreads and, per finding of the paper,
holds / does not hold / within noise. `--size` trades fidelity for time (steps per stage;
`main` is the main job's regime), `--cells` selects cells by id glob ('table2.*') or `all`.

The code: `grid.py` (the cells, their groups and the sizes), `runner.py` (training the
cells, resumably), `findings.py` (validity, seeds, the paper's findings), `report.py`
(`report.md` and `figure1.png`); this module is the command line.
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
flags.DEFINE_list('seeds', ['0'], 'Seeds: each runs every selected cell, teachers included, '
                  'in STUDY_DIR/seed<k>/; the report gives each cell\'s mean and spread.')
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
      seeds = [int(seed) for seed in FLAGS.seeds]
      start = time.time()
      for seed in seeds:
        print(f'study: seed {seed}', flush=True)
        study = runner.Study(os.path.join(FLAGS.study_dir, f'seed{seed}'), data_dir,
                             grid.SIZES[FLAGS.size], FLAGS.size, seed,
                             progress=lambda line: print(line, flush=True),
                             pretrain_dir=os.path.dirname(os.path.abspath(FLAGS.study_dir)))
        study.run(cells)
      print(f'study: {len(cells)} cells x {len(seeds)} seed(s) in {time.time() - start:.0f} s')
    path = report.write_report(FLAGS.study_dir)
  with open(path) as f:
    print(f.read())
  print(f'Report: {path}')


if __name__ == '__main__':
  app.run(main)
