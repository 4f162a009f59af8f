"""Segmentation self-training: pseudo masks with the ignore label, the loss, the pipeline."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from official.core import task_factory
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pseudo_label import fusion
from projects.self_training.pseudo_label import schema
from tests.conftest import TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The student's pseudo half is parsed as its human half (64 px here too).
SIZE = 'task.train_data.output_size=[64,64],task.validation_data.output_size=[64,64]'


@pytest.fixture(scope='module')
def tiny_voc(tmp_path_factory):
  """12 voc_train, 8 voc_aug and 6 voc_val scenes at 64 px."""
  out = str(tmp_path_factory.mktemp('voc') / 'scenes')
  emoji_scenes.generate(out, image_size=64, num_voc_train=12, num_voc_aug=8, num_voc_val=6,
                        splits=('voc_train', 'voc_aug', 'voc_val'), num_workers=1)
  return out


def test_threshold_gives_the_ignore_label():
  probs = np.array([[[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]],
                    [[0.1, 0.5, 0.4], [0.05, 0.45, 0.5]]], np.float32)
  mask = fusion.segmentation_mask(probs, threshold=0.5, ignore_label=255)
  np.testing.assert_array_equal(mask, [[0, 255], [1, 2]])
  assert mask.dtype == np.uint8
  # Threshold 0 labels every pixel with its top class.
  np.testing.assert_array_equal(fusion.segmentation_mask(probs, 0.0), [[0, 0], [1, 2]])


def _first_batches(task, data, n=2):
  return [tf.nest.map_structure(lambda t: t.numpy(), b)
          for b in task.build_inputs(data).take(n)]


def test_inputs_are_model_gardens_without_a_policy(tiny_voc):
  """The task's copy of Model Garden's `build_inputs` (to swap the parser) has not drifted:
  without a policy its batches are Model Garden's, and with one they are not."""
  from official.vision.tasks import semantic_segmentation  # pylint: disable=g-import-not-at-top
  params = trainer.build_params('emoji_segmentation')
  ours = task_factory.get_task(params.task)
  official = semantic_segmentation.SemanticSegmentationTask(params.task)
  train = params.task.train_data.replace(
      input_path=emoji_scenes.split_pattern(tiny_voc, 'voc_train'), global_batch_size=4,
      output_size=[64, 64], aug_rand_hflip=False, aug_scale_min=1.0, aug_scale_max=1.0,
      shuffle_buffer_size=1, seed=1)
  val = params.task.validation_data.replace(
      input_path=emoji_scenes.split_pattern(tiny_voc, 'voc_val'), global_batch_size=3,
      output_size=[64, 64])
  for data in (train, val):
    a, b = _first_batches(ours, data), _first_batches(official, data)
    tf.nest.map_structure(np.testing.assert_array_equal, a, b)
  augmented = train.replace(aug_type={'type': 'randaug', 'randaug': {
      'num_layers': 2, 'magnitude': 10}})
  a, b = _first_batches(ours, augmented), _first_batches(official, augmented)
  assert not np.array_equal(a[0][0], b[0][0])


def test_student_parses_its_pseudo_half_as_its_human_half(tiny_voc):
  """An override of `train_data` (size, augmentation) moves the pseudo half too; the pseudo
  half keeps its own records and batch size."""
  params = trainer.build_params('emoji_segmentation_student', params_override=(
      f'task.train_data.input_path={emoji_scenes.split_pattern(tiny_voc, "voc_train")},'
      f'task.pseudo_data.input_path={emoji_scenes.split_pattern(tiny_voc, "voc_aug")},'
      'task.train_data.output_size=[64,64],task.train_data.global_batch_size=4,'
      'task.pseudo_data.global_batch_size=2'))
  assert params.task.pseudo_data.output_size != [64, 64]
  task = task_factory.get_task(params.task)
  (human, _), (pseudo, pseudo_labels) = next(iter(task.build_inputs(params.task.train_data)))
  assert human.shape == (4, 64, 64, 3) and pseudo.shape == (2, 64, 64, 3)
  assert pseudo_labels['masks'].shape[1:3] == (64, 64)


def test_ignored_pixels_carry_no_loss():
  params = trainer.build_params('emoji_segmentation')
  task = task_factory.get_task(params.task)
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 16, 16, 21)).astype(np.float32)
  masks = rng.integers(0, 21, size=(2, 16, 16, 1)).astype(np.float32)
  masks[:, :8] = 255  # the top half is ignored

  def loss(x):
    return float(task.build_losses(labels={'masks': tf.constant(masks)},
                                   model_outputs={'logits': tf.constant(x)}))
  base = loss(logits)
  changed_ignored = logits.copy()
  changed_ignored[:, :8] = rng.normal(size=(2, 8, 16, 21)) * 10
  assert loss(changed_ignored) == pytest.approx(base, rel=1e-6)
  changed_valid = logits.copy()
  changed_valid[:, 8:] += rng.normal(size=(2, 8, 16, 21)) * 10
  assert abs(loss(changed_valid) - base) > 1e-3
  # An all-ignored pseudo batch adds nothing (and stays finite).
  assert loss(logits) >= 0 and float(task.build_losses(
      labels={'masks': tf.fill([2, 16, 16, 1], 255.0)},
      model_outputs={'logits': tf.constant(logits)})) == 0.0


@pytest.mark.slow
def test_segmentation_pipeline_end_to_end_at_tiny_size(tiny_voc, tmp_path):
  runs = tmp_path / 'runs'
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  override = f'{TINY},{SIZE}'
  cmd = [sys.executable, '-m', 'projects.self_training.pipelines.segmentation_main',
         f'--data_dir={tiny_voc}', f'--runs_dir={runs}', f'--params_override={override}',
         f'--student_override={override}', '--student_steps=6', '--holdout_size=4',
         '--scales=0.5,1.0', '--threshold=0.3']
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for row in ('| teacher (voc_train) |', '| supervised control (voc_train, same steps) |',
              '| voc_train + voc_aug noisy human labels |',
              '| self-training: voc_train + voc_aug pseudo labels |'):
    assert row in proc.stdout
  assert 'Student - control:' in proc.stdout
  results = json.loads((runs / 'results.json').read_text())
  assert results['split'] == {'holdout_size': 4, 'voc_fit': 8, 'voc_holdout': 4}
  pseudo = results['pseudo']
  assert pseudo['task'] == 'segmentation' and pseudo['num_images'] == 8
  assert 0.0 <= pseudo['ignored_pixel_fraction'] <= 1.0
  assert pseudo['num_pixels'] == 8 * 64 * 64
  # The histogram is over the labeled (not ignored) pixels: empty only if all are ignored.
  assert bool(pseudo['class_histogram']) == (pseudo['ignored_pixel_fraction'] < 1.0)
  if pseudo['class_histogram']:
    assert sum(pseudo['class_histogram'].values()) == pytest.approx(1.0, abs=1e-4)
  label_map = json.loads((runs / 'export' / 'saved_model' / 'assets.extra' /
                          'label_map.json').read_text())
  assert label_map['task'] == 'segmentation' and label_map['scales'] == [0.5, 1.0]
  for key in ('control', 'train_aug', 'student'):
    assert results[key]['steps'] == 6
    assert 0.0 <= results[key]['val']['mean_iou'] <= 1.0

  # The pseudo masks are records of the human schema: Model Garden's decoder reads them,
  # and each pixel is a class id or the ignore label.
  record = next(iter(tf.data.TFRecordDataset(schema.record_pattern(str(runs / 'pseudo'))
                                             .replace('*-of-*', '00000-of-00002'))))
  feats = tf.io.parse_single_example(record, {
      'image/segmentation/class/encoded': tf.io.FixedLenFeature((), tf.string)})
  mask = tf.io.decode_png(feats['image/segmentation/class/encoded']).numpy()
  assert mask.shape == (64, 64, 1)
  assert set(np.unique(mask)) <= set(range(21)) | {255}

  # A re-run skips every complete stage.
  again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count(', skipped') == 7, again.stdout
