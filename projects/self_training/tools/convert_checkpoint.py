r"""Public backbone checkpoints -> Model Garden backbone checkpoints, for `gin/init`.

  ./run.sh convert_checkpoint --model_id=b7 \
      --input=/ckpts/efficientnet-b7-autoaugment/model.ckpt --output=/ckpts/b7-aa-mg/ckpt
  ./run.sh train ... --gin_file=gin/init/imagenet.gin \
      --gin_params="IMAGENET_CHECKPOINT='/ckpts/b7-aa-mg/ckpt'"
  ./run.sh convert_checkpoint --source=simclr_resnet --model_id=50 \
      --input=/ckpts/ResNet50_1x/model.ckpt-225206 --output=/ckpts/simclr-r50-mg/ckpt

SimCLR (v1, the TF1 code of google-research/simclr) names its ResNet's layers by creation
order, `base_model/conv2d_17/kernel`, `base_model/batch_normalization_17/gamma`; Model
Garden's ResNet creates the same layers in the same order (per block: projection shortcut,
then the three convolutions, each with its batch norm), so the k-th convolution and the
k-th batch norm of each are paired, shapes checked.

The paper's ImageNet and ImageNet++ Init are the TF1 checkpoints of tensorflow/tpu's
EfficientNet (B7 AutoAugment, 84.5% top-1; Noisy Student, 86.9%), whose variables are named
like `efficientnet-b7/blocks_12/conv2d_1/kernel`. Model Garden's EfficientNet has the same
layers in the same order under Keras object paths. The converter builds Model Garden's
backbone, names the TF1 source of every one of its variables, copies the values (the
exponential-moving-average copies when the checkpoint has them: the released models were
evaluated with them), and writes `tf.train.Checkpoint(backbone=...)`, which
`init_checkpoint_modules=backbone` loads strictly. A backbone variable without a source or
with another shape is a one-line error naming it; nothing is written then. TF1 variables
not used (the classifier `head/dense`, optimizer slots, `global_step`) are counted.
"""

import os
import re
from typing import Dict, Tuple

from absl import app
from absl import flags
import tensorflow as tf
import tf_keras

from official.vision.modeling.backbones import efficientnet
from official.vision.modeling.backbones import resnet

from projects.self_training.common import cli
from projects.self_training.common import initialization
from projects.self_training.configs import retinanet
from projects.self_training.modeling import efficientnet_l2  # pylint: disable=unused-import

EMA_SUFFIX = '/ExponentialMovingAverage'
_BN = 'tpu_batch_normalization'
_SUFFIX = initialization.VARIABLE_SUFFIX
_LAYER = re.compile(r'^backbone/layer_with_weights-(\d+)/(.*)/\.ATTRIBUTES/VARIABLE_VALUE$')


def build_backbone(model_id: str, image_size: int = 224) -> tf_keras.Model:
  """Model Garden's EfficientNet as the project's full-scale recipes build it (SE 0.25)."""
  return efficientnet.EfficientNet(
      model_id=model_id, se_ratio=retinanet.EFFICIENTNET_SE_RATIO,
      input_specs=tf_keras.layers.InputSpec(shape=[None, image_size, image_size, 3]))


def _block_name(path: str, expands: bool) -> str:
  """TF1 name (within `blocks_k/`) of one variable path inside a Model Garden block."""
  batch_norms = ([f'{_BN}', f'{_BN}_1', f'{_BN}_2'] if expands else [None, _BN, f'{_BN}_1'])
  convs = {'_conv0': 'conv2d', '_conv1': 'depthwise_conv2d',
           '_conv2': 'conv2d_1' if expands else 'conv2d',
           '_squeeze_excitation/_se_reduce': 'se/conv2d',
           '_squeeze_excitation/_se_expand': 'se/conv2d_1'}
  layer, variable = path.rsplit('/', 1)
  if layer in convs:
    return f'{convs[layer]}/{variable}'
  norm = re.fullmatch(r'_norm([012])', layer)
  if norm and batch_norms[int(norm.group(1))]:
    return f'{batch_norms[int(norm.group(1))]}/{variable}'
  raise ValueError(f'no TF1 EfficientNet name for block variable {path}')


def efficientnet_tf1_names(backbone: tf_keras.Model, scope: str) -> Dict[str, str]:
  """Checkpoint key of every backbone variable -> its TF1 name under `scope`.

  Model Garden's layers with weights are, in order: stem conv, stem norm, one inverted
  bottleneck block per TF1 `blocks_k`, head conv, head norm.
  """
  keys = initialization.variable_paths(tf.train.Checkpoint(backbone=backbone))
  parsed = {}
  for key in keys:
    match = _LAYER.match(key)
    if not match:
      raise ValueError(f'unexpected variable {key} in Model Garden\'s EfficientNet')
    parsed[key] = (int(match.group(1)), match.group(2))
  last = max(index for index, _ in parsed.values())
  expands = {index for index, path in parsed.values() if path.startswith('_conv0/')}
  names = {}
  for key, (index, path) in parsed.items():
    variable = path.rsplit('/', 1)[-1]
    if index in (0, 1):
      name = f'stem/{"conv2d" if index == 0 else _BN}/{variable}'
    elif index in (last - 1, last):
      name = f'head/{"conv2d" if index == last - 1 else _BN}/{variable}'
    else:
      name = f'blocks_{index - 2}/{_block_name(path, index in expands)}'
    names[key] = f'{scope}/{name}'
  return names


def detect_scope(checkpoint: str) -> str:
  """The TF1 model scope (`efficientnet-b7`, ...): the prefix of its stem convolution."""
  for name, _ in tf.train.list_variables(checkpoint):
    if name.endswith('/stem/conv2d/kernel'):
      return name[:-len('/stem/conv2d/kernel')]
  raise initialization.CheckpointMismatch(
      f'{checkpoint} is not a TF1 EfficientNet checkpoint: no */stem/conv2d/kernel')


def convert(source: str, output: str, model_id: str, use_ema: bool = True,
            family: str = 'efficientnet_tf1') -> Dict[str, int]:
  """Converts one public checkpoint; returns counts (the output is written only if every
  backbone variable was found with its shape)."""
  source = initialization.resolve(source)
  reader = tf.train.load_checkpoint(source)
  shapes = reader.get_variable_to_shape_map()
  build, name_map = SOURCES[family]
  backbone = build(model_id)
  variables = initialization.variable_paths(tf.train.Checkpoint(backbone=backbone))
  names = name_map(backbone, source, list(shapes))
  values, ema = {}, 0
  for key, variable in variables.items():
    name = names[key]
    if name not in shapes:
      raise initialization.CheckpointMismatch(
          f'{source} does not fit {family} {model_id}: it has no {name} '
          f'(for {key.split("/.ATTRIBUTES")[0]}, shape {variable.shape.as_list()})')
    if shapes[name] != variable.shape.as_list():
      raise initialization.CheckpointMismatch(
          f'{source} does not fit {family} {model_id}: {name} has shape {shapes[name]} '
          f'there and {variable.shape.as_list()} here')
    if use_ema and name + EMA_SUFFIX in shapes:
      name += EMA_SUFFIX
      ema += 1
    values[key] = reader.get_tensor(name)
  for key, value in values.items():
    variables[key].assign(value)
  tf.io.gfile.makedirs(os.path.dirname(output) or '.')
  written = tf.train.Checkpoint(backbone=backbone).write(output)
  used = set(names.values())
  unused = [n for n in shapes if n not in used and not n.endswith(EMA_SUFFIX)]
  return {'variables': len(values), 'from_ema': ema, 'unused_source_variables': len(unused),
          'output': written}


# Model Garden's ResNet block sublayers in creation order (bottleneck and basic blocks).
_RESNET_SUBLAYERS = ('_shortcut', '_norm0', '_conv1', '_norm1', '_conv2', '_norm2', '_conv3',
                     '_norm3')
_SIMCLR_LAYER = re.compile(r'^base_model/(conv2d|batch_normalization)(?:_(\d+))?/(\w+)$')


def _creation_order(key: str) -> Tuple[int, int]:
  index, path = _LAYER.match(key).groups()
  layer = path.rsplit('/', 1)[0] if '/' in path else ''
  return int(index), (_RESNET_SUBLAYERS.index(layer) if layer else -1)


def simclr_resnet_names(backbone: tf_keras.Model, source_names) -> Dict[str, str]:
  """Checkpoint key of every Model Garden ResNet variable -> its SimCLR (TF1) name."""
  keys = initialization.variable_paths(tf.train.Checkpoint(backbone=backbone))
  layers = {}  # Model Garden layer path -> its variables' keys, in creation order
  for key in sorted(keys, key=_creation_order):
    layers.setdefault(key.rsplit('/', 3)[0], []).append(key)
  ours = {'conv2d': [l for l, ks in layers.items() if ks[0].endswith('/kernel' + _SUFFIX)],
          'batch_normalization': [l for l, ks in layers.items()
                                  if not ks[0].endswith('/kernel' + _SUFFIX)]}
  theirs = {'conv2d': set(), 'batch_normalization': set()}
  for name in source_names:
    match = _SIMCLR_LAYER.match(name)
    if match:
      theirs[match.group(1)].add(int(match.group(2) or 0))
  names = {}
  for kind, our_layers in ours.items():
    if sorted(theirs[kind]) != list(range(len(our_layers))):
      raise initialization.CheckpointMismatch(
          f'the checkpoint has {len(theirs[kind])} base_model/{kind} layers, the ResNet '
          f'{len(our_layers)}: another depth?')
    for k, layer in enumerate(our_layers):
      prefix = f'base_model/{kind}' + (f'_{k}' if k else '')
      for key in layers[layer]:
        names[key] = f'{prefix}/{key[:-len(_SUFFIX)].rsplit("/", 1)[1]}'
  return names


SOURCES = {
    'efficientnet_tf1': (build_backbone,
                         lambda backbone, checkpoint, names: efficientnet_tf1_names(
                             backbone, detect_scope(checkpoint))),
    'simclr_resnet': (lambda model_id: resnet.ResNet(
        model_id=int(model_id), input_specs=tf_keras.layers.InputSpec(shape=[None, 224, 224, 3])),
                      lambda backbone, checkpoint, names: simclr_resnet_names(backbone, names)),
}


FLAGS = flags.FLAGS
flags.DEFINE_enum('source', 'efficientnet_tf1', list(SOURCES),
                  'Checkpoint family: tensorflow/tpu EfficientNet, or SimCLR (v1) ResNet.')
flags.DEFINE_string('input', None, 'TF1 EfficientNet checkpoint (prefix or directory).')
flags.DEFINE_string('output', None, 'Output checkpoint prefix (Model Garden backbone).')
flags.DEFINE_string('model_id', 'b7', 'EfficientNet model id (b0..b7, l2), or ResNet depth.')
flags.DEFINE_bool('use_ema', True, 'Use the ExponentialMovingAverage copies when present.')


def main(argv):
  cli.no_arguments(argv[1:])
  if not FLAGS.input or not FLAGS.output:
    cli.fail('convert_checkpoint needs --input and --output')
  with cli.errors_in_one_line(initialization.CheckpointMismatch, ValueError, KeyError):
    counts = convert(FLAGS.input, FLAGS.output, FLAGS.model_id, FLAGS.use_ema, FLAGS.source)
  print(f'convert_checkpoint: {counts["variables"]} backbone variables '
        f'({counts["from_ema"]} from moving averages) -> {counts["output"]}; '
        f'{counts["unused_source_variables"]} source variables unused (classifier, '
        'optimizer, step)')


if __name__ == '__main__':
  app.run(main)
