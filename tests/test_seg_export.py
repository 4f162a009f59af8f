"""The multi-scale segmentation export against the Keras model it was exported from.

Two exports of one randomly initialized embedded segmenter at 64x64 (each export costs
seconds): scale 1.0 alone, and scales 0.5, 0.75, 1.0 with flip, whose pass sizes 32, 64, 64
also exercise two scales sharing one pass.
"""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.vision.modeling import factory

from projects.self_training.common import trainer
from projects.self_training.data import categories
from projects.self_training.serving import export_segmentation
from projects.self_training.serving import segmentation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64
MULTI = (0.5, 0.75, 1.0)


@pytest.fixture(scope='module')
def seg(tmp_path_factory):
  base = tmp_path_factory.mktemp('seg_export')
  params = trainer.build_params('emoji_segmentation',
                                params_override=f'task.model.input_size=[{SIZE},{SIZE},3]')
  model = task_factory.get_task(params.task).build_model()  # fixed 64x64 input, as trained
  # A random head's probabilities are 1/21 to within 1e-6 (its features are tiny), which
  # would hide any error; a large classifier kernel makes the logits vary by whole units.
  kernel = model.head._classifier.kernel  # pylint: disable=protected-access
  kernel.assign(tf.random.stateless_normal(kernel.shape, seed=[1, 2], stddev=1e4))
  checkpoint = tf.train.Checkpoint(model=model).save(str(base / 'ckpt' / 'ckpt'))
  one = export_segmentation.export_segmenter(params, checkpoint, str(base / 'one'), [1.0])
  multi = export_segmentation.export_segmenter(params, checkpoint, str(base / 'multi'), MULTI,
                                               flip=True)
  return types.SimpleNamespace(params=params, model=model, checkpoint=checkpoint,
                               base=base, one=one, multi=multi,
                               one_fns=tf.saved_model.load(one).signatures,
                               multi_fns=tf.saved_model.load(multi).signatures)


def _images(n, h, w, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (n, h, w, 3)).astype(np.uint8)


def _run(fn, images):
  name = next(iter(fn.structured_input_signature[1]))
  return {k: v.numpy() for k, v in fn(**{name: tf.constant(images)}).items()}


def _normalize(params, images):
  feature = params.task.train_data.image_feature
  return (images.astype(np.float32) - np.float32(feature.mean)) / np.float32(feature.stddev)


def _probs(model, canvas):
  return tf.nn.softmax(model(canvas, training=False)['logits'], axis=-1)


def test_pass_sizes_round_to_the_stride():
  assert [segmentation.pass_size([96, 96], s, 32)[0] for s in segmentation.DEFAULT_SCALES] == [
      64, 64, 96, 128, 160, 160]
  assert [segmentation.pass_size([512, 512], s, 128)[0]
          for s in segmentation.DEFAULT_SCALES] == [256, 384, 512, 640, 768, 896]
  assert segmentation.pass_size([64, 96], 0.1, 32) == (32, 32)
  for bad in ([], [1.0, 0.0], [-0.5]):
    with pytest.raises(ValueError):
      segmentation.check_scales(bad)


@pytest.mark.slow
def test_single_scale_equals_the_keras_model(seg):
  images = _images(2, 96, 96)  # square: resized to 64x64 without padding
  got = _run(seg.one_fns['serving_default'], images)
  canvas = tf.image.resize(_normalize(seg.params, images), [SIZE, SIZE])
  want = tf.image.resize(_probs(seg.model, canvas), [96, 96]).numpy()
  assert got['probabilities'].shape == (2, 96, 96, 21)
  assert want.std() > 0.05 and want.max() > 0.5  # not a flat random model
  np.testing.assert_allclose(got['probabilities'], want, atol=1e-5)
  np.testing.assert_allclose(got['image_info'][0], [[96, 96], [64, 64], [2 / 3, 2 / 3], [0, 0]],
                             rtol=1e-6)


@pytest.mark.slow
def test_single_scale_keeps_the_aspect_ratio_like_model_garden(seg):
  images = _images(1, 80, 100, seed=1)  # -> 51x64, padded to 64x64 at the bottom
  got = _run(seg.one_fns['serving_default'], images)['probabilities']
  scaled = tf.image.resize(_normalize(seg.params, images), [51, 64])
  canvas = tf.image.pad_to_bounding_box(scaled, 0, 0, SIZE, SIZE)
  full = tf.image.resize(_probs(seg.model, canvas), [101, 100])  # ceil(64 / (51 / 80)) = 101
  np.testing.assert_allclose(got, full.numpy()[:, :80, :100], atol=1e-5)


@pytest.mark.slow
def test_multi_scale_flip_is_the_mean_over_passes(seg):
  dynamic = factory.build_segmentation_model(
      tf_keras.layers.InputSpec(shape=[None, None, None, 3]), seg.params.task.model)
  tf.train.Checkpoint(model=dynamic).read(seg.checkpoint).expect_partial()
  images = _images(2, 48, 48, seed=2)
  x = _normalize(seg.params, images)
  passes = []
  for flipped in (False, True):
    xi = x[:, :, ::-1] if flipped else x
    for size in (32, 64, 64):  # scales 0.5, 0.75, 1.0 of 64, to multiples of 32
      p = tf.image.resize(_probs(dynamic, tf.image.resize(xi, [size, size])), [48, 48]).numpy()
      passes.append(p[:, :, ::-1] if flipped else p)
  got = _run(seg.multi_fns['serving_default'], images)['probabilities']
  np.testing.assert_allclose(got, np.mean(passes, axis=0), atol=1e-5)


@pytest.mark.parametrize('which', ['one', 'multi'])
@pytest.mark.slow
def test_probabilities_sum_to_one_at_the_image_size(seg, which):
  fns = seg.one_fns if which == 'one' else seg.multi_fns
  out = _run(fns['serving_default'], _images(3, 80, 100, seed=3))
  assert out['probabilities'].shape == (3, 80, 100, 21)
  assert out['probabilities'].dtype == np.float32
  np.testing.assert_allclose(out['probabilities'].sum(-1), 1.0, atol=1e-5)
  assert out['image_info'].shape == (3, 4, 2)


@pytest.mark.slow
def test_encoded_bytes_give_the_same_as_uint8(seg):
  images = _images(2, 80, 100, seed=4)
  pngs = np.array([tf.io.encode_png(im).numpy() for im in images])
  from_bytes = _run(seg.multi_fns['serving_bytes'], pngs)
  from_tensor = _run(seg.multi_fns['serving_default'], images)
  np.testing.assert_allclose(from_bytes['probabilities'], from_tensor['probabilities'],
                             atol=1e-6)


@pytest.mark.slow
def test_label_map(seg):
  with open(os.path.join(seg.multi, 'assets.extra', 'label_map.json')) as f:
    label_map = json.load(f)
  assert label_map['task'] == 'segmentation'
  assert label_map['categories'] == [{'id': i, 'name': n}
                                     for i, n in enumerate(categories.VOC_NAMES)]
  assert label_map['categories'][:2] == [{'id': 0, 'name': 'background'},
                                         {'id': 1, 'name': 'aeroplane'}]
  assert label_map['ignore_label'] == 255
  assert label_map['scales'] == list(MULTI)
  assert label_map['input_sizes'] == [[32, 32], [64, 64], [64, 64]]
  assert label_map['flip'] is True
  assert label_map['checkpoint'] == seg.checkpoint
  assert os.listdir(seg.base / 'multi') == ['saved_model']  # no temporary left behind
  assert os.path.exists(os.path.join(seg.multi, 'params.yaml'))
  with open(os.path.join(seg.one, 'assets.extra', 'label_map.json')) as f:
    assert json.load(f)['scales'] == [1.0]


@pytest.mark.slow
def test_missing_checkpoint_is_a_config_error(seg, tmp_path):
  with pytest.raises(trainer.ConfigError, match='checkpoint not found'):
    export_segmentation.export_segmenter(seg.params, str(tmp_path / 'nope'), str(tmp_path))
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_cli_reports_a_missing_checkpoint_in_one_line(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.serving.export_segmentation',
       f'--checkpoint_path={tmp_path / "nope"}', f'--export_dir={tmp_path / "e"}', '--flip'],
      capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == f'error: checkpoint not found: {tmp_path / "nope"}'
  assert 'Traceback' not in proc.stderr
