"""Benchmark: the segmentation student's margin over the control and train+aug, over seeds.

One `./run.sh segmentation` run is one seed; its noise on the embedded set is about 0.5-1
mIoU. This reuses that run's teacher, export and pseudo masks (running them first if
missing) and trains control, train+aug and student once per seed (data order and
augmentation): seed 0 is the main run's own fine-tuning (`RUNS_DIR/control`, ...), every
other seed goes to `RUNS_DIR/seeds/seedN/`. Reports mIoU on `voc_val` and the margins'
mean and spread.

  ./run.sh bench_seg_margin [--seeds 0,1,2] [./run.sh segmentation flags...]
"""

import os
import statistics
import sys

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from projects.self_training.common import cli
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import segmentation as seg
from projects.self_training.pipelines import segmentation_main  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds for control, train+aug and student.')


def main(argv):
  # Stray arguments are e.g. `--seeds 0 1 2` (give `--seeds 0,1,2`) or an unquoted glob.
  cli.no_arguments(argv[1:])
  trainer.quiet_logs()
  data_dir = emoji_scenes.resolve_data_dir(FLAGS.data_dir)
  rows = []
  for seed in (int(x) for x in FLAGS.seeds):
    s = segmentation_main.settings(data_dir)
    s.seed = seed
    s.finetune_subdir = f'seeds/seed{seed}' if seed else ''
    out = seg.run(s, seg.STAGES, progress=lambda line: print(line, flush=True))
    rows.append({'seed': seed, **{k: 100 * out[k]['val']['mean_iou']
                                  for k in ('teacher', 'control', 'train_aug', 'student')}})
  print()
  print('| seed | control | train+aug | student | student - control | student - train+aug |')
  print('|---|---|---|---|---|---|')
  for r in rows:
    print(f'| {r["seed"]} | {r["control"]:.1f} | {r["train_aug"]:.1f} | {r["student"]:.1f} | '
          f'{r["student"] - r["control"]:+.1f} | {r["student"] - r["train_aug"]:+.1f} |')
  summary = {'rows': rows}
  for other in ('control', 'train_aug', 'teacher'):
    margins = [r['student'] - r[other] for r in rows]
    mean = statistics.mean(margins)
    spread = statistics.stdev(margins) if len(margins) > 1 else 0.0
    summary[f'margin_over_{other}'] = {'mean': mean, 'std': spread, 'min': min(margins),
                                       'max': max(margins)}
    print(f'student - {other} over {len(margins)} seeds: mean {mean:+.2f} mIoU, '
          f'std {spread:.2f}, min {min(margins):+.1f}, max {max(margins):+.1f}')
  path = os.path.join(FLAGS.runs_dir, 'seeds', 'margin.json')
  trainer.write_json(path, summary)
  print(f'\nwritten: {path}')


if __name__ == '__main__':
  app.run(main)
