r"""Exports a trained segmenter as a multi-scale SavedModel for the segmentation pseudo-labeler.

The paper's segmentation pseudo labels come from multi-scale inference at the scales
0.5-1.75; here they are the class probabilities averaged over those scales (and optionally
horizontal flips, which the paper does not name) at the original resolution, an averaging
that lives in the SavedModel (`serving.segmentation.MultiScaleSegmentationModule`) so the labeler needs
nothing but the export. Two signatures, both returning `probabilities` [batch, h, w,
num_classes] (float32, summing to 1 per pixel) and `image_info` [batch, 4, 2]:

  serving_default     uint8 images [batch, height, width, 3] (one size per call)
  serving_bytes       encoded images (JPEG/PNG/...) [batch]

`assets.extra/label_map.json` inside the SavedModel directory says what it computes:
`{"task": "segmentation", "categories": [{"id": 0, "name": "background"}, ...],
"ignore_label": 255, "scales": [...], "input_sizes": [[h, w] per scale], "flip": false,
"checkpoint": ...}`, with the experiment's `params.yaml` beside it.

  python -m projects.self_training.serving.export_segmentation --model_dir=runs/seg_teacher \
      --export_dir=runs/seg_teacher_export [--scales=0.5,0.75,1,1.25,1.5,1.75] [--flip]
"""

import contextlib
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags

from official.core import config_definitions as cfg
from official.vision.configs import semantic_segmentation as seg_cfg

from projects.self_training.common import cli
from projects.self_training.common import trainer
from projects.self_training.data import categories
from projects.self_training.serving import export
from projects.self_training.serving import segmentation

DEFAULT_SCALES = segmentation.DEFAULT_SCALES
DEFAULT_EXPERIMENT = 'emoji_segmentation'


def label_map_of(params: cfg.ExperimentConfig) -> List[Dict[str, object]]:
  """Class ids 0..num_classes-1 with PASCAL VOC's names (id 0 is the background)."""
  names = categories.VOC_NAMES
  return [{'id': i, 'name': names[i] if i < len(names) else f'class_{i}'}
          for i in range(params.task.model.num_classes)]


def without_keras_traces():
  """A scope in which SavedModels leave out the Keras layers' own traced call functions.

  The signatures do not use them; they would only make the model reloadable as Keras
  layers, and tracing every layer again roughly doubles the export and load time.
  """
  try:
    from tf_keras.src.saving.legacy.saved_model import utils  # pylint: disable=g-import-not-at-top
  except ImportError:  # another tf_keras layout: export with the traces
    return contextlib.nullcontext()
  return utils.keras_option_scope(save_traces=False,
                                  in_tf_saved_model_scope=utils.in_tf_saved_model_scope())


def export_segmenter(params: cfg.ExperimentConfig, checkpoint: str, export_dir: str,
                     scales: Sequence[float] = DEFAULT_SCALES, flip: bool = False,
                     batch_size: Optional[int] = None) -> str:
  """Writes `export_dir/saved_model` (+ label map) from one checkpoint; returns its path.

  Written under a temporary name and renamed when complete, so a killed export never
  leaves a directory that looks like a SavedModel.
  """
  export.check_checkpoint(checkpoint)
  if not isinstance(params.task, seg_cfg.SemanticSegmentationTask):
    raise trainer.ConfigError(f'not a segmentation experiment: {type(params.task).__name__}')
  try:
    scales = segmentation.check_scales(scales)
  except ValueError as e:
    raise trainer.ConfigError(str(e)) from None
  module = segmentation.MultiScaleSegmentationModule(
      params, batch_size=batch_size, scales=scales, flip=flip)
  label_map = {'task': 'segmentation',
               'categories': label_map_of(params),
               'ignore_label': int(params.task.losses.ignore_label),
               'scales': list(scales),
               'input_sizes': [list(s) for s in module.pass_sizes],
               'flip': bool(flip)}
  with without_keras_traces():
    return export.write_saved_model(params, checkpoint, export_dir, label_map, batch_size,
                                    export_module=module)


def parse_scales(text: Sequence[str]) -> List[float]:
  """`--scales` values as floats; a ConfigError names the first one that is not a number."""
  out = []
  for value in text:
    try:
      out.append(float(value))
    except ValueError:
      raise trainer.ConfigError(f'--scales: not a number: {value!r}') from None
  return out


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('model_dir', None, 'A training directory (params.yaml + checkpoints); '
                      'its best checkpoint is exported unless --checkpoint_path is given.')
  flags.DEFINE_string('checkpoint_path', None, 'A checkpoint prefix to export.')
  flags.DEFINE_string('experiment', None,
                      f'Registered experiment (default: {DEFAULT_EXPERIMENT}, refined by '
                      '--model_dir\'s params.yaml).')
  flags.DEFINE_multi_string('config_file', [], 'YAML config files, as in train.py.')
  flags.DEFINE_string('params_override', '', 'Model Garden params override.')
  flags.DEFINE_string('export_dir', None, 'Output directory (gets saved_model/).')
  flags.DEFINE_integer('batch_size', None, 'Fixed batch size (default: any).')
  flags.DEFINE_list('scales', [str(s) for s in DEFAULT_SCALES],
                    'Scales of the model input size, one inference pass each.')
  flags.DEFINE_bool('flip', False, 'Also run every scale on the horizontally flipped image.')


def main(argv):
  cli.no_arguments(argv[1:])
  with cli.errors_in_one_line(trainer.ConfigError):
    if not FLAGS.export_dir:
      raise trainer.ConfigError('--export_dir is required')
    scales = parse_scales(FLAGS.scales)
    checkpoint, params = export.checkpoint_and_params(
        FLAGS.model_dir, FLAGS.checkpoint_path, FLAGS.experiment or DEFAULT_EXPERIMENT,
        FLAGS.config_file, FLAGS.params_override)
    path = export_segmenter(params, checkpoint, FLAGS.export_dir, scales, FLAGS.flip,
                            FLAGS.batch_size)
  print(f'exported {checkpoint} -> {path} (scales {",".join(f"{s:g}" for s in scales)}'
        f'{", flip" if FLAGS.flip else ""})')


if __name__ == '__main__':
  define_flags()
  app.run(main)
