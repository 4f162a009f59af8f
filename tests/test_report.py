"""The pseudo-label report: planted collapses raise their warnings, precision and recall on
hand-made boxes, the reference scoring and figures, segmentation sets, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from projects.self_training.data import emoji_scenes
from projects.self_training.pseudo_label import report
from projects.self_training.pseudo_label import shards

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class OneClassTeacher:
  """Every image: one confident 'person' box in its centre, one weak 'dog' box."""
  path = 'fake'
  task = 'detection'
  ignore_label = 255
  categories = [{'id': 1, 'name': 'person'}, {'id': 18, 'name': 'dog'}]

  def __init__(self, empty=False):
    self.empty = empty

  def __call__(self, images):
    n = len(images)
    boxes = np.tile(np.array([[[0.25, 0.25, 0.75, 0.75], [0.0, 0.0, 0.5, 0.5]]], np.float32),
                    (n, 1, 1))
    scores = np.tile(np.array([[0.9, 0.3]], np.float32), (n, 1))
    if self.empty:
      scores[:] = 0.1
    return {'detection_boxes': boxes, 'detection_scores': scores,
            'detection_classes': np.tile(np.array([[1, 18]], np.float32), (n, 1)),
            'num_detections': np.full(n, 2, np.int32)}


class OneClassSegTeacher:
  """Every pixel 'cat' (VOC 8) with probability 0.9."""
  path = 'fake'
  task = 'segmentation'
  ignore_label = 255
  categories = [{'id': i, 'name': f'class{i}'} for i in range(21)]

  def __call__(self, images):
    n, h, w, _ = images.shape
    probs = np.full((n, h, w, 21), 0.1 / 20, np.float32)
    probs[..., 8] = 0.9
    return {'probabilities': probs}


def _label(tiny_data, tmp_path, teacher, name='pseudo'):
  out = str(tmp_path / name)
  shards.run('fake', emoji_scenes.split_pattern(tiny_data, 'unlabeled_scenes'), out,
             progress=False, teacher=teacher)
  return out


def test_per_class_precision_recall_on_hand_made_boxes():
  human = {'images': [{'id': 1}], 'annotations': [
      {'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 10, 10]},
      {'image_id': 1, 'category_id': 2, 'bbox': [20, 20, 10, 10]}]}
  pseudo = {'images': [{'id': 1}], 'annotations': [
      {'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 10, 10], 'score': 0.9},   # right
      {'image_id': 1, 'category_id': 3, 'bbox': [20, 20, 10, 10], 'score': 0.8},  # wrong class
      {'image_id': 1, 'category_id': 2, 'bbox': [21, 21, 10, 10], 'score': 0.3}]}  # too weak
  rows = report.per_class_precision_recall(pseudo, human, threshold=0.5)
  assert rows[1] == {'precision': 1.0, 'recall': 1.0, 'human': 1, 'pseudo': 1}
  assert rows[2] == {'precision': None, 'recall': 0.0, 'human': 1, 'pseudo': 0}
  assert rows[3] == {'precision': 0.0, 'recall': None, 'human': 0, 'pseudo': 1}
  low = report.per_class_precision_recall(pseudo, human, threshold=0.25)
  assert low[2]['recall'] == 1.0  # IoU 0.68 with its human box


def test_planted_one_class_collapse_and_the_reference(tiny_data, tmp_path, capsys):
  pseudo = _label(tiny_data, tmp_path, OneClassTeacher())
  reference = emoji_scenes.split_pattern(tiny_data, 'holdout')
  result = report.write_report(pseudo, reference=reference, teacher=OneClassTeacher())
  out = os.path.join(pseudo, 'report')
  assert any('class person holds 100%' in w for w in result['warnings']), result['warnings']
  # One box per image against ~3 human ones: not under a quarter, so no "few boxes" warning.
  assert result['boxes_per_image'] == 1.0
  assert result['human_boxes_per_image'] > 1
  ref = result['reference']
  assert ref['at_threshold']['boxes_per_image'] == 1.0
  assert [r['threshold'] for r in ref['sweep']] == list(report.SWEEP)
  assert 0.0 <= ref['AP']['AP'] <= 1.0
  assert ref['per_class']['person']['pseudo'] == 4  # 4 holdout images, one box each
  for png in ('class_counts.png', 'scores.png', 'grid.png', 'threshold_sweep.png'):
    assert os.path.getsize(os.path.join(out, png)) > 1000, png
  md = open(os.path.join(out, 'report.md')).read()
  assert '## Warnings' in md and 'class person holds 100%' in md
  assert '| threshold | precision | recall | boxes / image |' in md
  assert json.load(open(os.path.join(out, 'report.json')))['warnings'] == result['warnings']


def test_no_pseudo_box_at_all_is_a_collapse(tiny_data, tmp_path):
  pseudo = _label(tiny_data, tmp_path, OneClassTeacher(empty=True))
  result = report.write_report(pseudo, human=emoji_scenes.split_pattern(tiny_data, 'train'))
  assert result['warnings'] == [
      'collapse: no pseudo box at all in 8 images (threshold 0.5): the student learns only '
      'background']
  assert result['empty_fraction'] == 1.0


def test_few_boxes_against_human_labels_warns():
  summary = {'num_images': 10, 'threshold': 0.5, 'boxes_per_image': 0.5}
  counts = {1: 2, 2: 2, 3: 1}
  assert report.warnings_for(summary, counts, human_per_image=1.0, names={}) == []
  few = report.warnings_for(summary, counts, human_per_image=3.0, names={})
  assert few == ['collapse: 0.50 pseudo boxes per image against 3.00 human ones (under 25%): '
                 'most objects are taught as background']


def test_segmentation_set_report(tmp_path):
  data = str(tmp_path / 'voc')
  emoji_scenes.generate(data, image_size=64, num_voc_train=4, num_voc_val=4,
                        splits=('voc_train', 'voc_val'), num_workers=1)
  pseudo = str(tmp_path / 'pseudo')
  shards.run('fake', emoji_scenes.split_pattern(data, 'voc_train'), pseudo, progress=False,
             teacher=OneClassSegTeacher())
  result = report.write_report(pseudo, reference=emoji_scenes.split_pattern(data, 'voc_val'),
                               teacher=OneClassSegTeacher())
  assert result['task'] == 'segmentation'
  assert result['ignored_pixel_fraction'] == 0.0
  assert any('class8 holds 100% of the object pixels' in w for w in result['warnings'])
  ref = result['reference']
  assert ref['ignored_fraction_of_human_pixels'] == 0.0
  assert 0.0 <= ref['mIoU'] < 0.5  # 'cat' everywhere
  assert os.path.getsize(os.path.join(pseudo, 'report', 'grid.png')) > 1000


@pytest.mark.slow
def test_incomplete_set_is_a_one_line_error(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-m', 'projects.self_training.pseudo_label.report',
                         str(tmp_path / 'nothing')], capture_output=True, text=True, env=env,
                        cwd=ROOT, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f'error: {tmp_path / "nothing"} is not a complete pseudo-label set')
  assert not os.path.exists(tmp_path / 'nothing')
