r"""Exports a trained detector as a SavedModel with Model Garden's export library.

The SavedModel has three signatures, all returning Model Garden's detection outputs
(`detection_boxes` normalized to [0, 1] of the original image as [ymin, xmin, ymax, xmax],
`detection_scores`, `detection_classes`, `num_detections`, `image_info`):

  serving_default     uint8 images [batch, height, width, 3]
  serving_bytes       encoded images (JPEG/PNG/...) [batch]

The label map travels inside the SavedModel directory as `assets.extra/label_map.json`
(`{"categories": [{"id": 1, "name": "person"}, ...]}`), with the experiment's
`params.yaml` beside it. The pseudo-labeler needs nothing else.

  python -m projects.self_training.serving.export --model_dir=runs/teacher \
      --export_dir=runs/teacher_export
"""

import json
import os
from typing import Any, Dict, List, Optional

from absl import app
from absl import flags
import tensorflow as tf

from official.core import config_definitions as cfg
from official.vision.serving import export_saved_model_lib
# Keras's own SavedModel option (the one `Model.save(save_traces=False)` sets); tf_keras
# exports it from no public module.
from tf_keras.src.saving.legacy.saved_model import utils as keras_saved_model

from projects.self_training.common import cli
from projects.self_training.common import file_io
from projects.self_training.common import trainer
from projects.self_training.data import categories
from projects.self_training.pseudo_label.schema import LABEL_MAP

SIGNATURES = {
    'image_tensor': 'serving_default',
    'image_bytes': 'serving_bytes',
}


def label_map_of(params: cfg.ExperimentConfig) -> List[Dict[str, object]]:
  """The categories the detector predicts: from its annotation file, else COCO's names."""
  path = params.task.annotation_file
  if path and tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      cats = json.load(f).get('categories') or []
    if cats:
      return [{'id': int(c['id']), 'name': str(c['name'])} for c in cats]
  return [{'id': c.id, 'name': c.name} for c in categories.COCO_CATEGORIES
          if c.id < params.task.model.num_classes]


def check_checkpoint(checkpoint: Optional[str]) -> None:
  if not checkpoint or not tf.io.gfile.exists(checkpoint + '.index'):
    raise trainer.ConfigError(f'checkpoint not found: {checkpoint}')


def write_saved_model(params: cfg.ExperimentConfig, checkpoint: str, export_dir: str,
                      label_map: Dict[str, Any], batch_size: Optional[int] = None,
                      export_module=None, name: str = 'saved_model') -> str:
  """Model Garden's export of `checkpoint` to `export_dir/saved_model`, plus the label map.

  Written under a temporary name and renamed when complete, so a killed export never
  leaves a directory that looks like a SavedModel. `export_module` None: Model Garden's
  module for the task.

  The SavedModel holds the signatures and the variables, without Keras's traces of every
  layer's call (`save_traces=False`, as `Model.save` offers): nothing here or in a serving
  stack calls those, and tracing them was about half of an export's time (the tiny test
  teacher, one thread, alternating in one process: 13.1-13.5 s with the traces, 7.1 s
  without; loading 3.8-4.2 s against 1.7-2.1 s; the same detections to the bit).
  """
  final = os.path.join(export_dir, name)
  if tf.io.gfile.exists(final):
    tf.io.gfile.rmtree(final)
  with file_io.atomic_write(final) as tmp, keras_saved_model.keras_option_scope(
      save_traces=False):
    export_saved_model_lib.export_inference_graph(
        input_type='image_tensor',
        batch_size=batch_size,
        input_image_size=list(params.task.model.input_size[:2]),
        params=params,
        checkpoint_path=checkpoint,
        export_dir=tmp,
        export_module=export_module,
        function_keys=SIGNATURES)
    tf.io.gfile.makedirs(os.path.join(tmp, 'assets.extra'))
    with tf.io.gfile.GFile(os.path.join(tmp, LABEL_MAP), 'w') as f:
      json.dump(dict(label_map, checkpoint=checkpoint), f, indent=1)
  return final


def sized_name(input_size: Optional[int]) -> str:
  """`saved_model`, or `saved_model_<size>` for an export at another input size."""
  return 'saved_model' if not input_size else f'saved_model_{input_size}'


def export_detector(params: cfg.ExperimentConfig, checkpoint: str, export_dir: str,
                    batch_size: Optional[int] = None, input_size: Optional[int] = None) -> str:
  """Writes `export_dir/saved_model` (+ label map) from one checkpoint; returns its path.

  With `input_size`, the detector runs at that square input size instead of its
  training one and goes to `export_dir/saved_model_<size>` (the pseudo-labeler's
  multi-scale test-time augmentation reads several).
  """
  check_checkpoint(checkpoint)
  params = params.replace(task={'export_config': {'output_normalized_coordinates': True}})
  if input_size:
    params = params.replace(task={'model': {'input_size': [
        input_size, input_size, params.task.model.input_size[2]]}})
  return write_saved_model(params, checkpoint, export_dir,
                           {'categories': label_map_of(params)}, batch_size,
                           name=sized_name(input_size))


def teacher_checkpoint(model_dir: str) -> str:
  """The best checkpoint of a plateau run, else the latest one in `model_dir`."""
  best = tf.train.latest_checkpoint(os.path.join(model_dir, trainer.BEST_SUBDIR))
  return best or tf.train.latest_checkpoint(model_dir)


def checkpoint_and_params(model_dir: Optional[str], checkpoint: Optional[str], experiment: str,
                          config_files=(), params_override: str = ''):
  """The checkpoint to export and its experiment config, from flags.

  With `model_dir`: its `params.yaml` (under `config_files`) and its best checkpoint
  unless `checkpoint` is given. Every problem is one `trainer.ConfigError`.
  """
  config_files = list(config_files)
  if model_dir:
    params_yaml = os.path.join(model_dir, 'params.yaml')
    if not tf.io.gfile.exists(params_yaml):
      raise trainer.ConfigError(f'--model_dir={model_dir} has no params.yaml')
    config_files.insert(0, params_yaml)
    checkpoint = checkpoint or teacher_checkpoint(model_dir)
    if not checkpoint:
      raise trainer.ConfigError(f'--model_dir={model_dir} has no checkpoint')
  if not checkpoint:
    raise trainer.ConfigError('give --model_dir or --checkpoint_path')
  return checkpoint, trainer.build_params(experiment, config_files, params_override)


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('model_dir', None, 'A training directory (params.yaml + checkpoints); '
                      'its best checkpoint is exported unless --checkpoint_path is given.')
  flags.DEFINE_string('checkpoint_path', None, 'A checkpoint prefix to export.')
  flags.DEFINE_string('experiment', None, 'Registered experiment (default: from --model_dir).')
  flags.DEFINE_multi_string('config_file', [], 'YAML config files, as in train.py.')
  flags.DEFINE_string('params_override', '', 'Model Garden params override.')
  flags.DEFINE_string('export_dir', None, 'Output directory (gets saved_model/).')
  flags.DEFINE_integer('batch_size', None, 'Fixed batch size (default: any).')
  flags.DEFINE_integer('input_size', None, 'Export at this square input size instead of the '
                       'training one, as saved_model_<size>/ (for the labeler\'s multi-scale '
                       'test-time augmentation).')


def main(argv):
  cli.no_arguments(argv[1:])
  with cli.errors_in_one_line(trainer.ConfigError):
    if not FLAGS.export_dir:
      raise trainer.ConfigError('--export_dir is required')
    checkpoint, params = checkpoint_and_params(
        FLAGS.model_dir, FLAGS.checkpoint_path, FLAGS.experiment or 'emoji_retinanet',
        FLAGS.config_file, FLAGS.params_override)
    path = export_detector(params, checkpoint, FLAGS.export_dir, FLAGS.batch_size,
                           FLAGS.input_size)
  print(f'exported {checkpoint} -> {path}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
