"""Backbone pre-training on `iconic` for the init variants (`./run.sh pretrain KIND`).

  ./run.sh pretrain imagenet        # supervised            -> gin/init/imagenet.gin
  ./run.sh pretrain imagenet_plus   # supervised, stronger  -> gin/init/imagenet_plus.gin
  ./run.sh pretrain simclr          # NT-Xent, no labels    -> gin/init/simclr.gin

Each trains its registered experiment (configs/pretrain.py) with a held-out eval every
`validation_interval` steps, keeps the best checkpoint in `RUNS/pretrain/KIND/best_ckpt`
(where the gin files look), and reports top-1 on the held-out iconic shard: the
classifier's own for the supervised kinds, and for every kind a linear probe (a softmax
classifier on the frozen backbone's pooled features, fit on the training shards), the
number SimCLR checkpoints are judged by. A re-run resumes, or skips a finished kind.
"""

import os
import time
from typing import Any, Dict, Optional, Tuple

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.vision.dataloaders import classification_input
from official.vision.ops import preprocess_ops

from projects.self_training.common import cli
from projects.self_training.common import initialization
from projects.self_training.common import paths
from projects.self_training.common import trainer
from projects.self_training.configs import pretrain as pretrain_cfg
from projects.self_training.configs import retinanet
from projects.self_training.modeling import features

KINDS = {
    'imagenet': 'emoji_iconic_classification',
    'imagenet_plus': 'emoji_iconic_classification_plus',
    'simclr': 'emoji_iconic_simclr',
}
RESULT_FILE = 'result.json'


def kind_dir(runs_dir: str, kind: str) -> str:
  return os.path.join(runs_dir, 'pretrain', kind)


def build_params(experiment: str, data_dir: str, params_override: str = ''):
  """The experiment's config reading `data_dir`'s iconic shards.

  The shard lists are set on the config, not in `--params_override`, whose a=b,c=d syntax
  cannot carry a comma-separated file list.
  """
  params = trainer.build_params(experiment, params_override=params_override, lock=False)
  params.task.train_data.input_path = pretrain_cfg.iconic_pattern(data_dir, False)
  params.task.validation_data.input_path = pretrain_cfg.iconic_pattern(data_dir, True)
  params.validate()
  params.lock()
  return params


def _iconic_arrays(pattern: str, size: int) -> Tuple[np.ndarray, np.ndarray]:
  """Every image of `pattern`, resized and normalized as the classifier's eval sees it."""
  decoder = classification_input.Decoder()

  def parse(record):
    decoded = decoder.decode(record)
    image = tf.io.decode_image(decoded[classification_input.DEFAULT_IMAGE_FIELD_KEY],
                               channels=3, expand_animations=False)
    image = tf.image.resize(image, [size, size])
    image = preprocess_ops.normalize_image(image, offset=preprocess_ops.MEAN_RGB,
                                           scale=preprocess_ops.STDDEV_RGB)
    return image, decoded[classification_input.DEFAULT_LABEL_FIELD_KEY]

  files = [f for p in pattern.split(',') for f in sorted(tf.io.gfile.glob(p))]
  images, labels = [], []
  for x, y in tf.data.TFRecordDataset(files).map(parse).batch(256):
    images.append(x.numpy())
    labels.append(y.numpy())
  return np.concatenate(images), np.concatenate(labels)


def recalibrate_batch_norm(backbone, images: np.ndarray, epochs: int = 2,
                           batch_size: int = 128) -> None:
  """Precise batch norm: re-estimates the moving statistics of the frozen weights.

  Training-mode passes (no gradients) over the probe's training images, so each moving
  average converges to the statistics of these weights on these images: a checkpoint's
  stored statistics can lag its weights far enough to spoil eval mode (the measurements:
  docs/study.md, 'Pre-training on `iconic`'). Applied to every kind alike before its probe.
  """
  for _ in range(epochs):
    for i in range(0, len(images), batch_size):
      backbone(images[i:i + batch_size], training=True)


def linear_probe(params, checkpoint: str, steps: int = 300, seed: int = 0) -> Dict[str, float]:
  """Top-1 on the held-out shard of a softmax classifier on frozen pooled features
  (batch-norm statistics re-estimated on the training images first)."""
  task = task_factory.get_task(params.task)
  model = task.build_model()
  backbone = model.backbone
  initialization.load(checkpoint, {'backbone': backbone})
  size = params.task.model.input_size[0]
  num_classes = params.task.model.num_classes

  train_images, _ = _iconic_arrays(params.task.train_data.input_path, size)
  recalibrate_batch_norm(backbone, train_images)

  def pooled(pattern):
    images, labels = _iconic_arrays(pattern, size)
    feats = np.concatenate([features.pooled_features(backbone, images[i:i + 256]).numpy()
                            for i in range(0, len(images), 256)])
    return feats, labels

  x_train, y_train = pooled(params.task.train_data.input_path)
  x_test, y_test = pooled(params.task.validation_data.input_path)
  mean, std = x_train.mean(0), x_train.std(0) + 1e-6
  x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
  tf.random.set_seed(seed)
  probe = tf_keras.Sequential([tf_keras.layers.Dense(
      num_classes, kernel_regularizer=tf_keras.regularizers.l2(1e-4))])
  probe.compile(optimizer=tf_keras.optimizers.Adam(0.01),
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=['accuracy'])
  probe.fit(x_train, y_train, batch_size=len(x_train), epochs=steps, verbose=0)
  _, accuracy = probe.evaluate(x_test, y_test, verbose=0)
  return {'linear_probe_top1': float(accuracy), 'probe_train_images': int(len(x_train)),
          'probe_holdout_images': int(len(x_test))}


def run(kind: str, runs_dir: str, data_dir: Optional[str] = None, params_override: str = '',
        force: bool = False, progress=print) -> Dict[str, Any]:
  """Pre-trains one kind (resumable); returns and writes its result JSON."""
  if kind not in KINDS:
    raise trainer.ConfigError(f'unknown pre-training kind {kind!r}; one of {", ".join(KINDS)}')
  out = kind_dir(runs_dir, kind)
  result_path = os.path.join(out, RESULT_FILE)
  if force and tf.io.gfile.exists(out):
    tf.io.gfile.rmtree(out)
  done = trainer.read_json(result_path)
  if done:
    progress(f'pretrain {kind}: complete, skipped ({result_path})')
    return done
  data_dir = data_dir or retinanet.embedded_data_dir()
  missing = [p for p in pretrain_cfg.iconic_pattern(data_dir, False).split(',') +
             [pretrain_cfg.iconic_pattern(data_dir, True)] if not tf.io.gfile.exists(p)]
  if missing:
    raise trainer.ConfigError(f'iconic shard not found: {missing[0]} (run ./run.sh data)')
  params = build_params(KINDS[kind], data_dir, params_override)
  progress(f'pretrain {kind}: {KINDS[kind]}, {params.trainer.train_steps} steps -> {out}')
  start = time.time()
  trained = trainer.train_to_plateau(
      params, out, trainer.Plateau(metric='accuracy', patience=None), progress=progress)
  checkpoint = trained['best_checkpoint']
  result = {'kind': kind, 'experiment': KINDS[kind], 'best_checkpoint': checkpoint,
            'best_step': trained['best']['step'],
            'train_seconds': round(trained['train_seconds'], 1)}
  if kind == 'simclr':
    result['contrastive_top1'] = trained['best']['accuracy']
    probe_params = build_params(KINDS['imagenet'], data_dir)
  else:
    result['top1'] = trained['best']['accuracy']
    probe_params = params
  result.update(linear_probe(probe_params, checkpoint))
  result['wall_seconds'] = round(time.time() - start, 1)
  trainer.write_json(result_path, result)
  summary = (f'top-1 {100 * result["top1"]:.1f}%, ' if 'top1' in result else
             f'contrastive top-1 {100 * result["contrastive_top1"]:.1f}%, ')
  progress(f'pretrain {kind}: {summary}linear probe {100 * result["linear_probe_top1"]:.1f}% '
           f'on {result["probe_holdout_images"]} held-out iconic images; checkpoint {checkpoint}')
  return result


FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags (defined when run as a program, so that importing this
  module from another program, e.g. the study, does not clash with its flags)."""
  flags.DEFINE_string('runs_dir', paths.RUNS_DIR, 'Where runs are written.')
  flags.DEFINE_string('data_dir', None, 'An emoji-scenes data set (default: the embedded one).')
  flags.DEFINE_string('params_override', '', 'Model Garden params override for the experiment.')
  flags.DEFINE_bool('force', False, 'Redo a finished kind from scratch.')


def main(argv):
  kinds = argv[1:] or ['imagenet']
  for kind in kinds:
    if kind not in KINDS:
      cli.fail(f'unknown pre-training kind {kind!r}; one of {", ".join(KINDS)}')
  trainer.quiet_logs()
  with cli.errors_in_one_line(trainer.ConfigError, initialization.CheckpointMismatch):
    for kind in kinds:
      run(kind, FLAGS.runs_dir, FLAGS.data_dir, FLAGS.params_override, FLAGS.force)


if __name__ == '__main__':
  define_flags()
  app.run(main)
