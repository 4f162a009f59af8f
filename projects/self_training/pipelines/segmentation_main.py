"""`./run.sh segmentation`: the embedded PASCAL-style self-training run and its mIoU table.

Prints mIoU on `voc_val` for the teacher (trained on `voc_train`), the same-steps
supervised control, training with `voc_aug`'s noisy human masks, and the student trained
with pseudo masks on the `voc_aug` images (the paper's Table 8 comparison), and writes
everything to `--runs_dir/results.json`. Stages are skipped when complete
(`--force=STAGE` or `--force=all` redoes one and everything after it).
"""

import os
import time

from absl import app
from absl import flags

from projects.self_training.common import cli
from projects.self_training.common import trainer
from projects.self_training.configs import student
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import segmentation as seg

FLAGS = flags.FLAGS
_DEFAULTS = seg.Settings(data_dir='', runs_dir='')

flags.DEFINE_string('data_dir', None, 'An existing emoji-scenes set (default: generate or reuse '
                    'the cached default set).')
flags.DEFINE_string('runs_dir', os.path.join(student.EMBEDDED_RUNS_DIR, 'segmentation'),
                    'Where every stage writes.')
flags.DEFINE_list('stages', list(seg.STAGES), 'Stages to run, in order, with '
                  'the stages they read.')
flags.DEFINE_list('force', [], 'Stages to redo from scratch (or "all").')
flags.DEFINE_multi_string('gin_file', [], 'Gin files for every stage, e.g. gin/augment/s2.gin.')
flags.DEFINE_multi_string('gin_params', [], 'Gin bindings.')
flags.DEFINE_string('params_override', '', 'Teacher params override (YAML or a=b,...).')
flags.DEFINE_string('student_override', '', 'Params override for control, train+aug, student.')
flags.DEFINE_integer('holdout_size', _DEFAULTS.holdout_size,
                     'voc_train images held out for every choice (plateaus, best checkpoints).')
flags.DEFINE_integer('plateau_patience', _DEFAULTS.plateau_patience,
                     'Held-out evals without improvement before the teacher stops.')
flags.DEFINE_integer('student_steps', _DEFAULTS.student_steps,
                     'Training steps of the student, the control and train+aug.')
flags.DEFINE_float('alpha', None, 'Pseudo-loss weight alpha (default: the experiment\'s).')
flags.DEFINE_float('threshold', _DEFAULTS.threshold,
                   'Pixels whose top class probability is below this get the ignore label.')
flags.DEFINE_list('scales', [str(x) for x in _DEFAULTS.scales],
                  'Inference scales of the exported teacher.')
flags.DEFINE_bool('flip', _DEFAULTS.flip, 'Also average over horizontal flips.')
flags.DEFINE_integer('seed', 0, 'Seed for data order and augmentation of the fine-tuning runs.')


def settings(data_dir: str) -> seg.Settings:
  student_override = FLAGS.student_override
  if FLAGS.alpha is not None:
    student_override = ','.join(x for x in (f'task.loss_normalization.alpha={FLAGS.alpha}',
                                            student_override) if x)
  try:
    scales = tuple(float(x) for x in FLAGS.scales)
  except ValueError:
    raise trainer.ConfigError(f'--scales must be numbers, got {",".join(FLAGS.scales)}') from None
  if not scales or min(scales) <= 0:
    raise trainer.ConfigError(f'--scales must be positive, got {",".join(FLAGS.scales)}')
  return seg.Settings(
      data_dir=data_dir, runs_dir=FLAGS.runs_dir, gin_files=FLAGS.gin_file,
      gin_params=FLAGS.gin_params, teacher_override=FLAGS.params_override,
      student_override=student_override, plateau_patience=FLAGS.plateau_patience,
      holdout_size=FLAGS.holdout_size, student_steps=FLAGS.student_steps,
      threshold=FLAGS.threshold, scales=scales,
      flip=FLAGS.flip, seed=FLAGS.seed, force=FLAGS.force)


def main(argv):
  cli.no_arguments(argv[1:])
  trainer.quiet_logs()
  start = time.time()
  with cli.errors_in_one_line(trainer.ConfigError, ValueError):
    data_dir = emoji_scenes.resolve_data_dir(FLAGS.data_dir)
    results = seg.run(settings(data_dir), FLAGS.stages,
                      progress=lambda line: print(line, flush=True))
  t = results['teacher']
  hist = ', '.join(f'{h["step"]}:{100 * h["mean_iou"]:.1f}' for h in t['history'])
  print()
  print(f'Teacher held-out mIoU by step: {hist}')
  print(f'Teacher stopped: {t["stopped"]}; best held-out mIoU {100 * t["holdout"]["mean_iou"]:.1f}'
        f' at step {t["best_step"]}; training {t["train_seconds"]:.0f} s.')
  for key, name in seg.ROWS[1:]:
    if key in results:
      curve = ', '.join(f'{h["step"]}:{100 * h["mean_iou"]:.1f}'
                        for h in results[key]['history'])
      print(f'{key} held-out mIoU by step: {curve}')
  print()
  print('\n'.join(seg.table(results)))
  if 'student' in results:
    for key in ('control', 'train_aug', 'teacher'):
      if key in results:
        margin = results['student']['val']['mean_iou'] - results[key]['val']['mean_iou']
        print(f'Student - {key}: {100 * margin:+.1f} mIoU on voc_val.')
  results['wall_seconds'] = time.time() - start
  trainer.write_json(os.path.join(FLAGS.runs_dir, 'results.json'), results)
  print(f'\nMetrics: {os.path.join(FLAGS.runs_dir, "results.json")}; '
        f'wall time {results["wall_seconds"]:.0f} s.')


if __name__ == '__main__':
  app.run(main)
