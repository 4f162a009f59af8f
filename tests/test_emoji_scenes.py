"""Tests of the embedded data set generator (tiny sizes; a few seconds in all)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from official.vision.dataloaders import classification_input
from official.vision.dataloaders import segmentation_input
from official.vision.dataloaders import tf_example_decoder
from official.vision.evaluation import coco_evaluator
from projects.self_training.data import categories
from projects.self_training.data import compose
from projects.self_training.data import emoji_scenes
from projects.self_training.data import render

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(image_size=64, iconic_image_size=32, num_train=8, num_holdout=2, num_val=4,
            num_unlabeled=4, num_iconic=6, num_voc_train=4, num_voc_aug=6, num_voc_val=2,
            num_workers=1)


@pytest.fixture(scope='module')
def tiny_dir(tmp_path_factory):
  out_dir = str(tmp_path_factory.mktemp('emoji') / 'set')
  emoji_scenes.generate(out_dir, **TINY)
  return out_dir


def _records(data_dir, split):
  files = sorted(tf.io.gfile.glob(emoji_scenes.split_pattern(data_dir, split)))
  return [r.numpy() for r in tf.data.TFRecordDataset(files)]


def _data_files(data_dir):
  return sorted(n for n in os.listdir(data_dir) if n != 'metadata.json')


def _read_bytes(path):
  with open(path, 'rb') as f:
    return f.read()


def _cli(*args):
  return subprocess.run(
      [sys.executable, '-m', 'projects.self_training.data.emoji_scenes', *args],
      cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL='3'),
      capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_same_seed_same_bytes_in_another_process_and_other_seed_differs(tiny_dir, tmp_path):
  # Another process (other hash seed) with 2 workers, through the command line.
  flags = [f'--{k}={v}' for k, v in TINY.items() if k != 'num_workers']
  result = _cli(f'--out_dir={tmp_path / "again"}', '--num_workers=2', *flags)
  assert result.returncode == 0, result.stderr[-2000:]
  assert _data_files(tiny_dir) == _data_files(tmp_path / 'again')
  for name in _data_files(tiny_dir):
    assert _read_bytes(os.path.join(tiny_dir, name)) == _read_bytes(
        tmp_path / 'again' / name), name
  with open(os.path.join(tiny_dir, 'metadata.json')) as a, open(
      tmp_path / 'again' / 'metadata.json') as b:
    assert json.load(a)['counts'] == json.load(b)['counts']

  emoji_scenes.generate(str(tmp_path / 'other'), **dict(TINY, seed=1, splits=['train']))
  name = 'train-00000-of-00001.tfrecord'
  assert _read_bytes(os.path.join(tiny_dir, name)) != _read_bytes(
      tmp_path / 'other' / name)


def test_detection_records_decode_and_match_coco_json(tiny_dir):
  size = TINY['image_size']
  for split in emoji_scenes.DETECTION_SPLITS:
    with open(emoji_scenes.annotation_file(tiny_dir, split)) as f:
      coco = json.load(f)
    by_image = {}
    for annotation in coco['annotations']:
      by_image.setdefault(annotation['image_id'], []).append(annotation)
    records = _records(tiny_dir, split)
    assert len(records) == len(coco['images']) == TINY[f'num_{split}']
    without_masks = tf_example_decoder.TfExampleDecoder(include_mask=False)
    decoder = tf_example_decoder.TfExampleDecoder(include_mask=True)
    for record in records:
      assert without_masks.decode(tf.constant(record))['groundtruth_boxes'].shape[0] > 0
      d = {k: v.numpy() for k, v in decoder.decode(tf.constant(record)).items()}
      assert d['image'].shape == (size, size, 3)
      annotations = by_image[int(d['source_id'])]
      masks = d['groundtruth_instance_masks']
      assert masks.shape == (len(annotations), size, size)
      # Visible masks of one image never overlap.
      assert masks.sum(axis=0).max() <= 1
      assert not d['groundtruth_is_crowd'].any()
      for box, cls, area, mask, annotation in zip(
          d['groundtruth_boxes'], d['groundtruth_classes'], d['groundtruth_area'], masks,
          annotations):
        xmin, ymin, xmax, ymax = render.mask_bbox(mask > 0)
        np.testing.assert_allclose(box * size, [ymin, xmin, ymax, xmax], atol=1e-4)
        assert annotation['bbox'] == [xmin, ymin, xmax - xmin, ymax - ymin]
        assert cls == annotation['category_id']
        assert area == mask.sum() == annotation['area']
        assert cls in categories.COCO_ID_TO_NAME


def test_coco_evaluator_accepts_json_and_ground_truth_scores_ap_one(tiny_dir):
  evaluator = coco_evaluator.COCOEvaluator(
      annotation_file=emoji_scenes.annotation_file(tiny_dir, 'val'), include_mask=False,
      need_rescale_bboxes=False)
  decoder = tf_example_decoder.TfExampleDecoder()
  decoded = [decoder.decode(tf.constant(r)) for r in _records(tiny_dir, 'val')]
  n = max(int(tf.shape(d['groundtruth_classes'])[0]) for d in decoded)
  predictions = {'source_id': [], 'num_detections': [], 'detection_boxes': [],
                 'detection_classes': [], 'detection_scores': []}
  for d in decoded:
    k = int(tf.shape(d['groundtruth_classes'])[0])
    boxes = np.zeros((n, 4), np.float32)
    boxes[:k] = d['groundtruth_boxes'].numpy() * TINY['image_size']
    classes = np.zeros(n, np.int64)
    classes[:k] = d['groundtruth_classes'].numpy()
    predictions['source_id'].append(int(d['source_id']))
    predictions['num_detections'].append(k)
    predictions['detection_boxes'].append(boxes)
    predictions['detection_classes'].append(classes)
    predictions['detection_scores'].append(np.where(np.arange(n) < k, 0.9, 0.0))
  evaluator.update_state(None, {k: tf.constant(np.array(v)) for k, v in predictions.items()})
  assert evaluator.result()['AP'] == pytest.approx(1.0)


def test_visibility_filter_drops_mostly_hidden_objects():
  def square(y, x, side=10):
    mask = np.zeros((40, 40), bool)
    mask[y:y + side, x:x + side] = True
    return mask
  hidden = square(0, 0)  # fully covered by the next object
  front = square(0, 0)
  half_hidden = square(20, 20)  # 50% covered by the last object
  last = square(20, 25)
  kept, masks = compose._visible_masks([hidden, front, half_hidden, last])
  assert kept == [1, 2, 3]
  assert [m.sum() for m in masks] == [100, 50, 100]


def test_scenes_keep_only_sufficiently_visible_objects():
  photos = render.default_backgrounds()[:2]
  for index in range(10):
    rng = np.random.default_rng([3, index])
    _, classes, masks = compose.draw_scene(rng, photos, 64, ['🚗', '🐕', '🍕'])
    assert len(classes) == len(masks) >= 1
    assert all(m.any() for m in masks)
    assert np.sum(masks, axis=0).max() <= 1


def test_unlabeled_scenes_have_no_labels_and_ids_are_unique(tiny_dir):
  ids = []
  for split in emoji_scenes.SPLITS:
    for record in _records(tiny_dir, split):
      features = tf.train.Example.FromString(record).features.feature
      ids.append(features['image/source_id'].bytes_list.value[0])
      if split == emoji_scenes.UNLABELED_SPLIT:
        assert not [k for k in features if k.startswith('image/object')]
        assert 'image/segmentation/class/encoded' not in features
        assert 'image/class/label' not in features
  assert len(ids) == len(set(ids)) == sum(TINY[k] for k in TINY if k.startswith('num_')
                                          and k != 'num_workers')


def test_iconic_decodes_with_classification_decoder(tiny_dir):
  with open(os.path.join(tiny_dir, 'iconic_classes.json')) as f:
    classes = json.load(f)
  assert len(classes) == len(categories.ICONIC_CLASSES) >= 200
  assert {c['coco_id'] for c in classes if c['coco_id']} == {
      c.id for c in categories.COCO_DRAWN}
  decoder = classification_input.Decoder()
  labels = []
  for record in _records(tiny_dir, 'iconic'):
    d = decoder.decode(tf.constant(record))
    image = tf.io.decode_jpeg(d['image/encoded'])
    assert image.shape == (TINY['iconic_image_size'], TINY['iconic_image_size'], 3)
    labels.append(int(d['image/class/label']))
    # Each also carries its object on another background, under Model Garden's image keys.
    second = tf.train.Example.FromString(record).features.feature[
        f'{emoji_scenes.ICONIC_SECOND_VIEW_PREFIX}/image/encoded'].bytes_list.value[0]
    assert tf.io.decode_jpeg(second).shape == image.shape
    assert not np.array_equal(tf.io.decode_jpeg(second), image)
  assert all(0 <= label < len(classes) for label in labels)
  assert len(set(labels)) == len(labels)


def test_iconic_second_view_is_the_same_object_on_another_photo():
  black, white = np.zeros((80, 80, 3), np.uint8), np.full((80, 80, 3), 255, np.uint8)
  photos = [('black', black), ('white', white)]
  emoji = categories.ICONIC_CLASSES[0].emoji
  first, second = compose.draw_iconic(np.random.default_rng(3), photos, 48, emoji)
  # One view is on the black photo, the other on the white one (never the same photo
  # twice): a pixel of alpha a differs by (1 - a) * 255 in every channel alike when the
  # object over it is drawn the same in both. 255 on the background, less on the object.
  difference = np.abs(first.astype(int) - second.astype(int))
  assert np.array_equal(difference.min(axis=-1), difference.max(axis=-1))
  assert all(difference[c].max() == 255 for c in [(0, 0), (0, -1), (-1, 0), (-1, -1)])
  assert (difference.max(axis=-1) < 128).mean() > 0.05


def test_voc_splits_decode_with_segmentation_decoder(tiny_dir):
  decoder = segmentation_input.Decoder()
  for split in emoji_scenes.VOC_SPLITS:
    values = set()
    for record in _records(tiny_dir, split):
      d = decoder.decode(tf.constant(record))
      image = tf.io.decode_jpeg(d['image/encoded']).numpy()
      mask = tf.io.decode_png(d['image/segmentation/class/encoded']).numpy()
      assert image.shape[:2] == mask.shape[:2] == (TINY['image_size'],) * 2
      values |= set(np.unique(mask).tolist())
    assert values <= set(range(21)) | {255}
    assert values - {0, 255}, split
    # Clean VOC-style masks have an ignore band on boundaries; the noisy ones do not.
    assert (255 in values) == (split != 'voc_aug')


def test_at_least_40_coco_categories_render():
  drawn = [c for c in categories.COCO_DRAWN if render.render_emoji(c.emoji).size]
  assert len(drawn) == len(categories.COCO_DRAWN) >= 40
  assert len(categories.COCO_CATEGORIES) == 80
  assert all(render.render_emoji(c.emoji).size for c in categories.VOC_CATEGORIES)
  assert render.render_emoji('\U0010FFFC').size == 0  # no glyph in the font


def test_ensure_dataset_caches_and_never_trusts_partial_sets(tmp_path, capsys):
  out_dir = str(tmp_path / 'cache')
  small = dict(TINY, splits=['train', 'iconic'])
  assert emoji_scenes.ensure_dataset(out_dir, **small) == out_dir
  assert 'generated' in capsys.readouterr().out
  emoji_scenes.ensure_dataset(out_dir, **dict(small, num_workers=2))
  assert 'reused' in capsys.readouterr().out
  emoji_scenes.ensure_dataset(out_dir, **dict(small, num_train=3))
  assert 'generated' in capsys.readouterr().out
  assert len(_records(out_dir, 'train')) == 3
  # A set without its metadata (interrupted, half-copied) is regenerated.
  os.remove(os.path.join(out_dir, 'metadata.json'))
  emoji_scenes.ensure_dataset(out_dir, **dict(small, num_train=3))
  assert 'generated' in capsys.readouterr().out
  assert not [p for p in os.listdir(tmp_path) if '.tmp-' in p or '.old-' in p]


def test_interrupted_generation_leaves_no_set(tmp_path, monkeypatch):
  out_dir = str(tmp_path / 'set')
  original = emoji_scenes._write_split

  def interrupted(work_dir, split, count, pool):
    if split == 'iconic':
      raise KeyboardInterrupt
    return original(work_dir, split, count, pool)

  monkeypatch.setattr(emoji_scenes, '_write_split', interrupted)
  with pytest.raises(KeyboardInterrupt):
    emoji_scenes.ensure_dataset(out_dir, **dict(TINY, splits=['train', 'iconic']))
  assert os.listdir(tmp_path) == []
  assert emoji_scenes.read_metadata(out_dir) is None


def test_backgrounds_folder_skips_corrupt_files_and_bad_entries_raise(tmp_path):
  folder = tmp_path / 'photos'
  folder.mkdir()
  tf.io.write_file(str(folder / 'a.png'),
                   tf.io.encode_png(np.full((80, 90, 3), 120, np.uint8)))
  (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
  photos, skipped = render.load_backgrounds([str(folder)])
  assert len(photos) == 1 and skipped == [str(folder / 'broken.jpg')]
  with pytest.raises(ValueError, match='broken.jpg'):
    render.load_backgrounds([str(folder / 'broken.jpg')])
  with pytest.raises(ValueError, match='nowhere'):
    render.load_backgrounds([str(tmp_path / 'nowhere')])
  metadata = emoji_scenes.generate(str(tmp_path / 'set'), **dict(
      TINY, backgrounds=[str(folder)], splits=['train']))
  assert metadata['backgrounds_skipped'] == [str(folder / 'broken.jpg')]


@pytest.mark.slow
def test_cli_bad_backgrounds_is_a_one_line_error(tmp_path):
  missing = str(tmp_path / 'no_such_photo.jpg')
  result = _cli(f'--out_dir={tmp_path / "set"}', f'--backgrounds={missing}')
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      f'emoji_scenes: error: --backgrounds: {missing} does not exist')
  assert not os.path.exists(tmp_path / 'set')
