"""The pre-training vs self-training study: the paper's control tables at embedded scale.

`./run.sh study` trains every cell of Tables 2, 3, 4, 7 and 10 and Appendix B (Figure 2)
on the embedded data and writes `report.md` (our number, its gain or loss against the Rand
Init supervised cell of the same column, and the paper's) with Figure-1 style plots.

What a cell is:
  group         one teacher: an initialization (gin/init) x an augmentation (gin/augment) x
                a labeled fraction (nested subsets of `train`), optionally joint-trained
                with `iconic` classification (Table 7). Every group follows one budget
                rule (`--size`; at `main`, to convergence within a budget scaled by its
                augmentation) and one seed policy: nothing is tuned per cell.
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

A cell whose teacher did not converge or whose pseudo labels collapsed is invalid and kept
out of every finding (`findings.py`). A teacher its budget stopped at its best held-out AP
converged when the same teacher trained 1.5x longer (`longer/` in its group) gains at most
`findings.LONGER_TOLERANCE` held-out AP, the paper's test; when it gains more, the longer
teacher serves the group's cells instead (tested in turn if it too ended at its best, up to
`findings.LONGER_ROUNDS` tests). A re-run judges finished cells again by these rules, and
runs that test where it is missing. Each cell runs at as many
seeds as its findings need (2; 3 for Table 2's headline rows), each seed in its own
`seed<k>/` directory, or at the seeds of `--seeds`; `--jobs N` runs N seeds side by side.
The report gives means, spreads and, per finding of the paper, holds / does not hold /
within noise. `--size` trades fidelity for time (steps per stage; `main`, the default, is
the main job's regime, its teachers with 1.5x the registered budget, and the only size
whose cells can be valid), `--cells` selects cells by id glob ('table2.*') or `all`.

The code: `grid.py` (the cells, their groups and the sizes), `runner.py` (training the
cells, resumably), `findings.py` (validity, seeds, the paper's findings), `report.py`
(`report.md` and `figure1.png`); this module is the command line.
"""

import os
import sys
import time
from typing import Optional

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
flags.DEFINE_enum('size', grid.DEFAULT_SIZE, list(grid.SIZES),
                  'Steps per stage (fidelity against time); `main`, the main job\'s regime, is '
                  'the only one whose cells can be valid.')
flags.DEFINE_list('cells', ['default'], 'Cell ids or globs (table2.*, table3.rand_st.f20), '
                  '"default" (the default grid) or "all".')
flags.DEFINE_list('seeds', [], 'Seeds: each runs every selected cell, teachers included, in '
                  'STUDY_DIR/seed<k>/. Default: each cell its own count (2; 3 for Table 2\'s '
                  'Rand Init rows), enough for its findings to be judged.')
flags.DEFINE_integer('jobs', 2, 'Seeds run side by side, each in its own process with its '
                     'share of the cores: on 2 cores two 1-thread teachers train 1.3-1.5x the '
                     'images per second of one 2-thread teacher (`./run.sh bench_parallel`), '
                     'whole students about as many (docs/benchmarks.md). 1: one seed after '
                     'another.')
flags.DEFINE_bool('list', False, 'List the cells, each with where it stands in --study_dir '
                  '(done and its `val` AP, its teacher\'s step and its own stage\'s, or not '
                  'started), and exit.')
flags.DEFINE_bool('report_only', False, 'Rewrite the report from finished cells and exit.')
flags.DEFINE_bool('report', True, 'Write the report after the run (off: the runs of `--jobs`).')
flags.DEFINE_integer('side_by_side', 1, 'Internal: how many seeds `--jobs` runs at once.')


def _study(seed: int, data_dir: str) -> runner.Study:
  return runner.Study(os.path.join(FLAGS.study_dir, f'seed{seed}'), data_dir,
                      grid.SIZES[FLAGS.size], FLAGS.size, seed,
                      progress=lambda line: print(line, flush=True),
                      pretrain_dir=os.path.dirname(os.path.abspath(FLAGS.study_dir)),
                      side_by_side=FLAGS.side_by_side)


def run_side_by_side(plan, data_dir: str) -> Optional[trainer.ConfigError]:
  """Each seed of `plan` in a process of its own, `--jobs` at a time; their output
  interleaved, each line prefixed by its seed. A failed seed is named, the others go on;
  returns what names the failed seeds, or None."""
  pending, running, failed = list(plan), [], []
  while pending or running:
    while pending and len(running) < FLAGS.jobs:
      seed, cells = pending.pop(0)
      at_once = min(FLAGS.jobs, len(pending) + 1 + len(running))  # the cores shared out
      env = cli.shared_cores_env(at_once)
      threads = env['TF_NUM_INTRAOP_THREADS']
      cmd = [sys.executable, '-m', 'projects.self_training.study.study', '--noreport',
             f'--side_by_side={at_once}',
             f'--seeds={seed}', f'--cells={",".join(c.id for c in cells)}',
             f'--size={FLAGS.size}', f'--study_dir={FLAGS.study_dir}', f'--data_dir={data_dir}']
      proc, forward = cli.start_prefixed(cmd, f'[seed {seed}] ', env)
      running.append((seed, proc, forward))
      print(f'study: seed {seed} started ({len(cells)} cells, {threads} thread(s))', flush=True)
    while all(proc.poll() is None for _, proc, _ in running):
      time.sleep(2)
    for item in [r for r in running if r[1].poll() is not None]:
      seed, proc, forward = item
      forward.join()
      running.remove(item)
      if proc.returncode:
        failed.append(seed)
  if failed:
    return trainer.ConfigError(f'seed(s) {", ".join(map(str, failed))} failed (their lines '
                               'above); finished cells are kept, a re-run resumes')
  return None


def main(argv):
  cli.no_arguments(argv[1:])
  trainer.quiet_logs()
  with cli.errors_in_one_line(trainer.ConfigError, ValueError):
    cells = grid.select(grid.grid(), FLAGS.cells)
    plan = grid.seed_plan(cells, [int(seed) for seed in FLAGS.seeds])
    if FLAGS.list:  # and where each stands in --study_dir
      done = 0
      for seed, seed_cells in plan:
        study = _study(seed, FLAGS.data_dir or '')
        print(f'seed {seed}: {len(seed_cells)} cells')
        for c in seed_cells:
          status = study.status(c)
          done += status.startswith('done')
          print(f'  {c.id:28s} {c.group.name:22s} {c.kind:14s} {status}')
      print(f'{done} of {sum(len(c) for _, c in plan)} cell runs done in {FLAGS.study_dir}')
      return
    if not FLAGS.report_only:
      if FLAGS.jobs < 1:
        raise trainer.ConfigError(f'--jobs must be at least 1, got {FLAGS.jobs}')
      data_dir = emoji_scenes.resolve_data_dir(FLAGS.data_dir)
      # The joint experiment reads `iconic` from the embedded data's directory.
      os.environ['EMOJI_SCENES_DIR'] = data_dir
      start = time.time()
      failed = run_seeds(plan, data_dir)
      print(f'study: {sum(len(c) for _, c in plan)} cell runs over {len(plan)} seed(s) in '
            f'{time.time() - start:.0f} s', flush=True)
    else:
      failed = None
    if FLAGS.report:
      try:
        path = report.write_report(FLAGS.study_dir)
        with open(path) as f:
          print(f.read())
        print(f'Report: {path}')
      except trainer.ConfigError:
        if not failed:  # no finished cell to report: what stopped them is the one line
          raise
    if failed:
      raise failed


def run_seeds(plan, data_dir: str) -> Optional[trainer.ConfigError]:
  """Runs each seed's cells, side by side under `--jobs`; what stopped a cell or a seed
  (the others ran on, so the report covers them), or None."""
  if FLAGS.jobs > 1 and len(plan) > 1:
    for seed, seed_cells in plan:  # once, before the seeds share it
      for init in dict.fromkeys(c.group.init for c in seed_cells):
        _study(seed, data_dir).pretrained(init)
    return run_side_by_side(plan, data_dir)
  failed = []
  for seed, seed_cells in plan:
    print(f'study: seed {seed}', flush=True)
    try:
      _study(seed, data_dir).run(seed_cells)
    except trainer.ConfigError as e:
      failed.append((seed, e))
  if len(failed) == 1 and len(plan) == 1:
    return failed[0][1]
  if failed:
    return trainer.ConfigError(f'seed(s) {", ".join(str(seed) for seed, _ in failed)} stopped '
                               f'(their lines above); the first: {failed[0][1]}')
  return None

if __name__ == '__main__':
  app.run(main)
