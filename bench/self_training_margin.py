"""Benchmark: the student's margin over the same-steps supervised control, over seeds.

One run's noise on the embedded set is about 1 AP, so a single main-job run cannot show a
gain of that size. This reuses the main job's teacher, export and pseudo labels (running
them first if missing) and trains control and student once per seed (data order and
augmentation), then reports val AP for each and the margin's mean and spread.

  ./run.sh bench_margin [--seeds 0,1,2] [--runs_dir runs] [main-job flags...]
"""

import os
import statistics
import sys

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from projects.self_training import main as main_job  # pylint: disable=g-import-not-at-top
from projects.self_training import pipeline
from projects.self_training import trainer
from projects.self_training.data import emoji_scenes

FLAGS = flags.FLAGS
flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds for control and student.')


def main(argv):
  if len(argv) > 1:  # e.g. a glob the shell expanded: quote it
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  trainer.quiet_logs()
  data_dir = FLAGS.data_dir or emoji_scenes.ensure_dataset()
  rows = []
  for k, seed in enumerate(int(x) for x in FLAGS.seeds):
    s = main_job.settings(data_dir)
    if k:  # shared stages are redone once, with the first seed; each seed's own always
      s.force = [x for x in pipeline.forced_stages(s) if x in ('control', 'student')]
    s.seed = seed
    s.finetune_subdir = f'seeds/seed{seed}'
    out = pipeline.run(s, pipeline.STAGES, progress=lambda line: print(line, flush=True))
    rows.append({'seed': seed, 'control': out['control']['val'], 'student': out['student']['val'],
                 'margin_AP': out['student']['val']['AP'] - out['control']['val']['AP']})
  margins = [100 * r['margin_AP'] for r in rows]
  print()
  print('| seed | control AP | student AP | student - control |')
  print('|---|---|---|---|')
  for r, m in zip(rows, margins):
    print(f'| {r["seed"]} | {100 * r["control"]["AP"]:.1f} | {100 * r["student"]["AP"]:.1f} | '
          f'{m:+.1f} |')
  mean = statistics.mean(margins)
  spread = statistics.stdev(margins) if len(margins) > 1 else 0.0
  print(f'\nmargin over {len(margins)} seeds: mean {mean:+.2f} AP, std {spread:.2f}, '
        f'min {min(margins):+.1f}, max {max(margins):+.1f}')
  trainer.write_json(os.path.join(FLAGS.runs_dir, 'seeds', 'margin.json'),
                     {'rows': rows, 'mean_margin_AP': mean / 100, 'std_margin_AP': spread / 100})


if __name__ == '__main__':
  app.run(main)
