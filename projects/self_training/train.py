"""Model Garden-style training driver for the self-training project.

Same flags as `official/vision/train.py` (`--experiment`, `--mode`, `--model_dir`,
`--config_file`, `--params_override`, `--tpu`, `--gin_file`, `--gin_params`), with the
project's experiments registered and `gin/augment/s*.gin` selecting Augment-S1..S4:

  python -m projects.self_training.train --experiment=emoji_retinanet \
      --mode=train_and_eval --model_dir=/tmp/teacher --gin_file=gin/augment/s4.gin \
      --gin_file=gin/init/imagenet.gin

`gin/init/*.gin` choose the backbone's initialization (Rand / ImageNet / ImageNet++ /
SimCLR Init); a checkpoint that does not fit the backbone stops the run with one line.

`--stop_at_plateau` trains until the eval metric stops improving (Model Garden's modes run
a fixed number of steps). `--tf_data_service=grpc://HOST:PORT` runs every training input
pipeline (human, pseudo-labeled, classification) on that tf.data service.
"""

from absl import app
from absl import flags
from absl import logging

from official.common import flags as tfm_flags

from projects.self_training.common import cli
from projects.self_training.common import initialization
from projects.self_training.common import trainer

FLAGS = flags.FLAGS
MODES = ('train', 'eval', 'train_and_eval', 'continuous_eval')

flags.DEFINE_bool('stop_at_plateau', False,
                  'With train_and_eval: stop when the eval AP has not improved for '
                  '--plateau_patience evals (the best checkpoint is kept in best_ckpt/).')
flags.DEFINE_integer('plateau_patience', 3, 'Evals without improvement before stopping.')
flags.DEFINE_float('plateau_min_delta', 0.005, 'Smallest AP gain (0-1 scale) that counts.')
flags.DEFINE_float('plateau_start', 0.5, 'Share of --train_steps before which evals do not count '
                   'towards a plateau (the high-learning-rate part of the schedule).',
                   lower_bound=0, upper_bound=1)
flags.DEFINE_float('plateau_window', trainer.PLATEAU_WINDOW,
                   'Share of --train_steps a plateau must last at least: more evals than '
                   '--plateau_patience on a long schedule (default 1/4).',
                   lower_bound=0, upper_bound=1)


def main(_):
  if FLAGS.mode not in MODES:
    raise app.UsageError(f'--mode={FLAGS.mode!r} is not one of {", ".join(MODES)}')
  with cli.errors_in_one_line(trainer.ConfigError):
    params = trainer.build_params(
        FLAGS.experiment, FLAGS.config_file, FLAGS.params_override, FLAGS.gin_file,
        FLAGS.gin_params, tpu=FLAGS.tpu, tf_data_service=FLAGS.tf_data_service)
  if FLAGS.stop_at_plateau and FLAGS.mode != 'train_and_eval':
    raise app.UsageError('--stop_at_plateau needs --mode=train_and_eval')
  with cli.errors_in_one_line(initialization.CheckpointMismatch):
    _run(params)


def _run(params):
  if FLAGS.stop_at_plateau:
    result = trainer.train_to_plateau(
        params, FLAGS.model_dir, trainer.Plateau.for_schedule(
            params.trainer.train_steps, params.trainer.validation_interval,
            FLAGS.plateau_patience, FLAGS.plateau_window, FLAGS.plateau_start,
            min_delta=FLAGS.plateau_min_delta))
    logging.info('stopped at %s; best: %s', result['stopped'], result['best'])
    print(f'stopped ({result["stopped"]}); best eval: {result["best"]}')
    return
  metrics = trainer.run_experiment(params, FLAGS.model_dir, FLAGS.mode)
  if metrics:
    print(' '.join(f'{k}={metrics[k]:.4f}' for k in trainer.COCO_KEYS if k in metrics))


if __name__ == '__main__':
  tfm_flags.define_flags()
  flags.mark_flags_as_required(['experiment', 'mode', 'model_dir'])
  app.run(main)
