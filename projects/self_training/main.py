"""The main job: embedded data -> teacher trained to its plateau -> COCO AP on val.

`./run.sh` runs this. Each stage is cached or resumable: the data set is generated once,
and a re-run continues training from the last checkpoint in `--model_dir` (or only
re-evaluates when the teacher already stopped).
"""

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

from projects.self_training import trainer
from projects.self_training.data import emoji_scenes

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_string('data_dir', None, 'An existing emoji-scenes set (default: generate or reuse '
                    'the cached default set).')
flags.DEFINE_string('model_dir', os.path.join(ROOT, 'runs', 'teacher'), 'Teacher directory.')
flags.DEFINE_string('experiment', 'emoji_retinanet', 'Registered teacher experiment.')
flags.DEFINE_multi_string('gin_file', [], 'Gin files, e.g. gin/augment/s1.gin.')
flags.DEFINE_multi_string('gin_params', [], 'Gin bindings.')
flags.DEFINE_string('params_override', '', 'Model Garden params override (YAML or a=b,...).')
flags.DEFINE_integer('plateau_patience', 3, 'Held-out evals without improvement before stopping.')
flags.DEFINE_bool('fresh', False, 'Delete --model_dir first instead of resuming it.')


def quiet_logs():
  """Keeps Model Garden's per-step INFO logs and Keras warnings out of the job's output."""
  import warnings  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)
  tf.get_logger().setLevel('ERROR')
  warnings.filterwarnings('ignore', category=UserWarning)


def _pct(v):
  return f'{100 * v:5.1f}'


def teacher(data_dir: str, model_dir: str) -> dict:
  """Trains the teacher until held-out AP stops improving, then evaluates it on val."""
  holdout = emoji_scenes.split_pattern(data_dir, 'holdout')
  override = (f'task.validation_data.input_path={holdout},'
              f'task.annotation_file={emoji_scenes.annotation_file(data_dir, "holdout")},'
              f'task.train_data.input_path={emoji_scenes.split_pattern(data_dir, "train")}')
  if FLAGS.params_override:
    override += ',' + FLAGS.params_override
  params = trainer.build_params(FLAGS.experiment, params_override=override,
                                gin_files=FLAGS.gin_file, gin_params=FLAGS.gin_params)
  print(f'teacher: {FLAGS.experiment}, up to {params.trainer.train_steps} steps, held-out AP '
        f'every {params.trainer.validation_interval}; model_dir {model_dir}', flush=True)
  result = trainer.train_to_plateau(
      params, model_dir, trainer.Plateau(patience=FLAGS.plateau_patience),
      progress=lambda line: print('  ' + line, flush=True))
  start = time.time()
  val = trainer.evaluate_checkpoint(
      params, result['best_checkpoint'], emoji_scenes.split_pattern(data_dir, 'val'),
      emoji_scenes.annotation_file(data_dir, 'val'))
  summary = {
      'experiment': FLAGS.experiment,
      'gin_files': list(FLAGS.gin_file),
      'stopped': result['stopped'],
      'best_step': result['best']['step'],
      'holdout': {k: v for k, v in result['best'].items() if k in trainer.COCO_KEYS},
      'val': {k: val[k] for k in trainer.COCO_KEYS if k in val},
      'history': result['history'],
      'train_seconds': result['train_seconds'],
      'val_eval_seconds': time.time() - start,
      'checkpoint': result['best_checkpoint'],
  }
  trainer.write_json(os.path.join(model_dir, 'teacher_metrics.json'), summary)
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  quiet_logs()
  start = time.time()
  try:
    if FLAGS.data_dir:
      data_dir = FLAGS.data_dir
      if emoji_scenes.read_metadata(data_dir) is None:
        raise trainer.ConfigError(f'--data_dir={data_dir} is not a complete emoji-scenes set '
                                  '(no metadata.json); make one with ./run.sh data --out_dir')
    else:
      data_dir = emoji_scenes.ensure_dataset()
    if FLAGS.fresh:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      if tf.io.gfile.exists(FLAGS.model_dir):
        tf.io.gfile.rmtree(FLAGS.model_dir)
    s = teacher(data_dir, FLAGS.model_dir)
  except trainer.ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  hist = ', '.join(f'{h["step"]}:{_pct(h["AP"]).strip()}' for h in s['history'])
  print()
  print(f'Teacher held-out AP by step: {hist}')
  print(f'Stopped: {s["stopped"]}; best held-out AP {_pct(s["holdout"]["AP"]).strip()} '
        f'at step {s["best_step"]}; training {s["train_seconds"]:.0f} s.')
  print()
  print('| model   | split | COCO AP | AP50  | AP75  |')
  print('|---------|-------|---------|-------|-------|')
  v = s['val']
  print(f'| teacher | val   |  {_pct(v["AP"])}  | {_pct(v["AP50"])} | {_pct(v["AP75"])} |')
  print()
  print(f'Metrics: {os.path.join(FLAGS.model_dir, "teacher_metrics.json")}; '
        f'wall time {time.time() - start:.0f} s.')


if __name__ == '__main__':
  app.run(main)
