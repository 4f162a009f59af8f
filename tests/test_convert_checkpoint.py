"""The EfficientNet converter on a generated TF1-style checkpoint (tensorflow/tpu's names)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from projects.self_training.common import initialization
from projects.self_training.tools import convert_checkpoint

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCOPE = 'efficientnet-b0'
# EfficientNet-B0 (Tan & Le, 2019, Table 1): (repeats, expand ratio) per stage.
B0_STAGES = [(1, 1), (2, 6), (2, 6), (3, 6), (3, 6), (4, 6), (1, 6)]
BN_VARS = ('gamma', 'beta', 'moving_mean', 'moving_variance')


def tpu_names():
  """Every weight of tensorflow/tpu's EfficientNet-B0 without its classifier, by the TPU
  code's naming: Keras auto-names within each block's scope in creation order."""
  names = [f'stem/conv2d/kernel'] + [f'stem/tpu_batch_normalization/{v}' for v in BN_VARS]
  block = 0
  for repeats, expand in B0_STAGES:
    for _ in range(repeats):
      p = f'blocks_{block}'
      bns = ['tpu_batch_normalization', 'tpu_batch_normalization_1']
      if expand != 1:
        names.append(f'{p}/conv2d/kernel')
        bns.append('tpu_batch_normalization_2')
      names.append(f'{p}/depthwise_conv2d/depthwise_kernel')
      names += [f'{p}/se/conv2d/kernel', f'{p}/se/conv2d/bias',
                f'{p}/se/conv2d_1/kernel', f'{p}/se/conv2d_1/bias']
      names.append(f'{p}/conv2d_1/kernel' if expand != 1 else f'{p}/conv2d/kernel')
      names += [f'{p}/{bn}/{v}' for bn in bns for v in BN_VARS]
      block += 1
  names += ['head/conv2d/kernel'] + [f'head/tpu_batch_normalization/{v}' for v in BN_VARS]
  return [f'{SCOPE}/{n}' for n in names]


def _write_tf1(path, tensors):
  names = sorted(tensors)
  tf.raw_ops.SaveV2(prefix=path, tensor_names=names, shape_and_slices=[''] * len(names),
                    tensors=[tf.constant(tensors[n]) for n in names])
  return path


@pytest.fixture(scope='module')
def tf1_checkpoint(tmp_path_factory):
  """Random values under the TPU names (shapes from Model Garden's B0: the converter's map
  is checked by the spot shapes below), EMA copies for every other variable, and the
  classifier and step the converter must leave alone."""
  backbone = convert_checkpoint.build_backbone('b0')
  names = convert_checkpoint.efficientnet_tf1_names(
      backbone, SCOPE)
  variables = initialization.variable_paths(tf.train.Checkpoint(backbone=backbone))
  shapes = {names[k]: v.shape.as_list() for k, v in variables.items()}
  rng = np.random.default_rng(0)
  tensors = {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
  for i, name in enumerate(sorted(shapes)):
    if i % 2:
      tensors[name + convert_checkpoint.EMA_SUFFIX] = rng.normal(
          size=shapes[name]).astype(np.float32)
  tensors[f'{SCOPE}/head/dense/kernel'] = np.zeros([1280, 1000], np.float32)
  tensors['global_step'] = np.array(7, np.int64)
  path = str(tmp_path_factory.mktemp('tf1') / 'model.ckpt')
  return _write_tf1(path, tensors), tensors, shapes


def test_names_follow_the_tpu_code():
  backbone = convert_checkpoint.build_backbone('b0')
  names = convert_checkpoint.efficientnet_tf1_names(backbone, SCOPE)
  assert sorted(names.values()) == sorted(tpu_names())
  variables = initialization.variable_paths(tf.train.Checkpoint(backbone=backbone))
  shape = {names[k]: v.shape.as_list() for k, v in variables.items()}
  assert shape[f'{SCOPE}/stem/conv2d/kernel'] == [3, 3, 3, 32]
  assert shape[f'{SCOPE}/blocks_0/depthwise_conv2d/depthwise_kernel'] == [3, 3, 32, 1]
  assert shape[f'{SCOPE}/blocks_0/se/conv2d/kernel'] == [1, 1, 32, 8]
  assert shape[f'{SCOPE}/blocks_0/conv2d/kernel'] == [1, 1, 32, 16]         # project
  assert shape[f'{SCOPE}/blocks_1/conv2d/kernel'] == [1, 1, 16, 96]         # expand
  assert shape[f'{SCOPE}/blocks_1/conv2d_1/kernel'] == [1, 1, 96, 24]       # project
  assert shape[f'{SCOPE}/blocks_1/tpu_batch_normalization_2/gamma'] == [24]
  assert shape[f'{SCOPE}/head/conv2d/kernel'] == [1, 1, 320, 1280]


def test_converted_checkpoint_loads_every_value(tf1_checkpoint, tmp_path):
  path, tensors, shapes = tf1_checkpoint
  counts = convert_checkpoint.convert(path, str(tmp_path / 'mg' / 'ckpt'), 'b0')
  assert counts['variables'] == len(shapes)
  assert counts['from_ema'] == len(shapes) // 2
  assert counts['unused_source_variables'] == 2  # head/dense/kernel, global_step
  backbone = convert_checkpoint.build_backbone('b0')
  assert initialization.load(counts['output'], {'backbone': backbone}) == len(shapes)
  names = convert_checkpoint.efficientnet_tf1_names(backbone, SCOPE)
  for key, variable in initialization.variable_paths(
      tf.train.Checkpoint(backbone=backbone)).items():
    name = names[key]
    expected = tensors.get(name + convert_checkpoint.EMA_SUFFIX, tensors[name])
    np.testing.assert_array_equal(variable.numpy(), expected, err_msg=name)


def test_missing_or_misshapen_source_is_one_line_and_writes_nothing(tf1_checkpoint, tmp_path):
  _, tensors, _ = tf1_checkpoint
  missing = dict(tensors)
  del missing[f'{SCOPE}/blocks_3/se/conv2d_1/bias']
  path = _write_tf1(str(tmp_path / 'missing' / 'model.ckpt'), missing)
  out = str(tmp_path / 'out' / 'ckpt')
  with pytest.raises(initialization.CheckpointMismatch, match='blocks_3/se/conv2d_1/bias'):
    convert_checkpoint.convert(path, out, 'b0')
  assert not tf.io.gfile.exists(os.path.dirname(out))
  # A B0 checkpoint converted as B1 (wider, deeper): named, not half-converted.
  with pytest.raises(initialization.CheckpointMismatch, match='does not fit efficientnet_tf1 b1'):
    convert_checkpoint.convert(tf1_checkpoint[0], out, 'b1')


@pytest.mark.slow
def test_cli_reports_in_one_line(tf1_checkpoint, tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  run = lambda *args: subprocess.run(
      [sys.executable, '-m', 'projects.self_training.tools.convert_checkpoint', *args],
      capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
  ok = run(f'--input={tf1_checkpoint[0]}', f'--output={tmp_path}/mg/ckpt', '--model_id=b0')
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert 'backbone variables' in ok.stdout
  bad = run(f'--input={tmp_path}/nothing', f'--output={tmp_path}/x', '--model_id=b0')
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines()[-1].startswith('error: init checkpoint not found')


def simclr_resnet10_tensors(rng):
  """A SimCLR-style (v1, TF1) ResNet-10 checkpoint: layers numbered in creation order; per
  block the projection shortcut first, then the two 3x3 convolutions, each with its BN."""
  convs = [(7, 7, 3, 64)]
  channels = 64
  for filters in (64, 128, 256, 512):
    convs += [(1, 1, channels, filters), (3, 3, channels, filters), (3, 3, filters, filters)]
    channels = filters
  tensors = {}
  for k, shape in enumerate(convs):
    suffix = f'_{k}' if k else ''
    tensors[f'base_model/conv2d{suffix}/kernel'] = rng.normal(size=shape).astype(np.float32)
    for v in BN_VARS:
      tensors[f'base_model/batch_normalization{suffix}/{v}'] = rng.normal(
          size=shape[-1]).astype(np.float32)
  tensors['head_supervised/linear_layer/dense/kernel'] = np.zeros([512, 1000], np.float32)
  tensors['head_contrastive/nl_0/dense/kernel'] = np.zeros([512, 512], np.float32)
  tensors['global_step'] = np.array(3, np.int64)
  return tensors


def test_simclr_resnet_converts_by_creation_order(tmp_path):
  tensors = simclr_resnet10_tensors(np.random.default_rng(1))
  path = _write_tf1(str(tmp_path / 'simclr' / 'model.ckpt'), tensors)
  counts = convert_checkpoint.convert(path, str(tmp_path / 'mg' / 'ckpt'), '10',
                                      family='simclr_resnet')
  assert counts['variables'] == 13 * 5 and counts['unused_source_variables'] == 3
  backbone = convert_checkpoint.SOURCES['simclr_resnet'][0]('10')
  initialization.load(counts['output'], {'backbone': backbone})
  variables = initialization.variable_paths(tf.train.Checkpoint(backbone=backbone))
  value = lambda path: variables[f'backbone/{path}/.ATTRIBUTES/VARIABLE_VALUE'].numpy()
  np.testing.assert_array_equal(value('layer_with_weights-0/kernel'),
                                tensors['base_model/conv2d/kernel'])        # stem
  np.testing.assert_array_equal(value('layer_with_weights-1/gamma'),
                                tensors['base_model/batch_normalization/gamma'])
  np.testing.assert_array_equal(value('layer_with_weights-2/_shortcut/kernel'),
                                tensors['base_model/conv2d_1/kernel'])      # first block
  np.testing.assert_array_equal(value('layer_with_weights-2/_conv1/kernel'),
                                tensors['base_model/conv2d_2/kernel'])
  np.testing.assert_array_equal(value('layer_with_weights-2/_norm2/moving_variance'),
                                tensors['base_model/batch_normalization_3/moving_variance'])
  np.testing.assert_array_equal(value('layer_with_weights-5/_conv2/kernel'),
                                tensors['base_model/conv2d_12/kernel'])     # last block
  # A ResNet-10 checkpoint is not a ResNet-18: named in one line.
  with pytest.raises(initialization.CheckpointMismatch, match='another depth'):
    convert_checkpoint.convert(path, str(tmp_path / 'x' / 'ckpt'), '18', family='simclr_resnet')
