"""`./run.sh segmentation`: the embedded PASCAL-style self-training run and its mIoU table.

Prints mIoU on `voc_val` for the teacher (trained on `voc_train`), the same-steps
supervised control, training with `voc_aug`'s noisy human masks, and the student trained
with pseudo masks on the `voc_aug` images (the paper's Table 8 comparison), and writes
everything to `--runs_dir/results.json`. Stages are skipped when complete
(`--force=STAGE` or `--force=all` redoes one and everything after it).
"""

import os

from absl import app
from absl import flags

from projects.self_training.common import cli
from projects.self_training.common import trainer
from projects.self_training.configs import student
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import job_cli
from projects.self_training.pipelines import segmentation as seg

FLAGS = flags.FLAGS
_DEFAULTS = seg.Settings(data_dir='', runs_dir='')

job_cli.define_flags(_DEFAULTS, seg.STAGES,
                     os.path.join(student.EMBEDDED_RUNS_DIR, 'segmentation'))
flags.adopt_module_key_flags(job_cli)
flags.DEFINE_integer('holdout_size', _DEFAULTS.holdout_size,
                     'voc_train images held out for every choice (plateaus, best checkpoints).')
flags.DEFINE_list('scales', [str(x) for x in _DEFAULTS.scales],
                  'Inference scales of the exported teacher.')
flags.DEFINE_bool('flip', _DEFAULTS.flip, 'Also average over horizontal flips.')


def settings(data_dir: str) -> seg.Settings:
  # --alpha joins --student_override here (control, train+aug, student): train+aug is the
  # student's recipe with other labels.
  student_override = ','.join(x for x in (job_cli.alpha_override(), FLAGS.student_override) if x)
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
      plateau_start=FLAGS.plateau_start, plateau_window=FLAGS.plateau_window,
      finetune_patience=FLAGS.finetune_patience,
      holdout_size=FLAGS.holdout_size, student_steps=FLAGS.student_steps,
      threshold=FLAGS.threshold, scales=scales,
      flip=FLAGS.flip, seed=FLAGS.seed, force=FLAGS.force)


def main(argv):
  start = job_cli.start(argv)
  with cli.errors_in_one_line(trainer.ConfigError, ValueError):
    data_dir = emoji_scenes.resolve_data_dir(FLAGS.data_dir)
    results = seg.run(settings(data_dir), FLAGS.stages,
                      progress=lambda line: print(line, flush=True))
  job_cli.print_training(results, [key for key, _ in seg.ROWS[1:]], 'mean_iou', 'mIoU')
  print()
  print('\n'.join(seg.table(results)))
  if 'student' in results:
    for key in ('control', 'train_aug', 'teacher'):
      if key in results:
        margin = results['student']['val']['mean_iou'] - results[key]['val']['mean_iou']
        print(f'Student - {key}: {100 * margin:+.1f} mIoU on voc_val.')
  job_cli.write_results(results, start)


if __name__ == '__main__':
  app.run(main)
