"""Tests of the converters from real data sets (tiny hand-made inputs)."""

import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from official.vision.dataloaders import classification_input
from official.vision.dataloaders import segmentation_input
from official.vision.dataloaders import tf_example_decoder
from projects.self_training.data import convert

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _photo(height=48, width=64, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _save(image: Image.Image, path, **kwargs):
  image.save(str(path), **kwargs)
  return str(path)


def _records(pattern):
  files = sorted(tf.io.gfile.glob(pattern))
  assert files, pattern
  return [r.numpy() for r in tf.data.TFRecordDataset(files)]


def test_images_converter_keeps_good_images_and_lists_bad_ones(tmp_path):
  folder = tmp_path / 'photos'
  (folder / 'nested').mkdir(parents=True)
  _save(Image.fromarray(_photo()), folder / 'rgb.jpg')
  _save(Image.fromarray(_photo(seed=1)), folder / 'nested' / 'rgb.png')
  _save(Image.fromarray(_photo(seed=2)[..., 0]), folder / 'gray.png')
  rgba = np.concatenate([_photo(seed=3), np.full((48, 64, 1), 128, np.uint8)], -1)
  _save(Image.fromarray(rgba), folder / 'rgba.png')
  _save(Image.fromarray(_photo(seed=4)).convert('CMYK'), folder / 'cmyk.jpg')
  _save(Image.fromarray(_photo(seed=5)).convert('P'), folder / 'palette.gif')
  buffer = io.BytesIO()
  Image.fromarray(_photo(seed=6)).save(buffer, format='JPEG')
  (folder / 'truncated.jpg').write_bytes(buffer.getvalue()[:300])
  (folder / 'notes.txt').write_text('not an image')

  prefix = str(tmp_path / 'out' / 'unlabeled')
  summary = convert.convert_images(str(folder), prefix, num_shards=2, num_processes=0)

  assert summary['num_written'] == 6
  assert summary['num_skipped'] == 2
  assert sorted(os.path.basename(s['file']) for s in summary['skipped']) == [
      'notes.txt', 'truncated.jpg']
  with open(prefix + '.summary.json') as f:
    assert json.load(f)['skipped'] == summary['skipped']
  assert sorted(os.listdir(tmp_path / 'out')) == [
      'unlabeled-00000-of-00002.tfrecord', 'unlabeled-00001-of-00002.tfrecord',
      'unlabeled.summary.json']

  records = _records(prefix + '-*.tfrecord')
  assert len(records) == 6
  source_ids = set()
  decoder = tf_example_decoder.TfExampleDecoder()
  for record in records:
    decoded = decoder.decode(tf.constant(record))
    image = tf.io.decode_jpeg(
        classification_input.Decoder().decode(tf.constant(record))['image/encoded'])
    assert image.shape == (48, 64, 3)
    assert decoded['image'].shape == (48, 64, 3)
    assert decoded['groundtruth_boxes'].shape[0] == 0
    source_ids.add(int(decoded['source_id']))
  assert len(source_ids) == 6


def _palette_png(mask, path):
  image = Image.fromarray(mask, 'P')
  image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
  image.save(str(path))


def _voc_layout(root):
  for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
    (root / sub).mkdir(parents=True)
  masks = {}
  for i, name in enumerate(['2007_000001', '2007_000002', '2007_000003']):
    _save(Image.fromarray(_photo(seed=i)), root / 'JPEGImages' / f'{name}.jpg')
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 5:40] = 15
    mask[10:30, 40:42] = 255
    mask[35:, 50:] = i + 1
    masks[name] = mask
  for name in ('2007_000001', '2007_000002'):
    _palette_png(masks[name], root / 'SegmentationClass' / f'{name}.png')
  (root / 'ImageSets/Segmentation/train.txt').write_text('2007_000001\n2007_000002\n')
  (root / 'ImageSets/Segmentation/val.txt').write_text('2007_000003\n')
  return masks


def test_voc_converter_keeps_palette_indices_and_ignore_label(tmp_path):
  root = tmp_path / 'VOC2012'
  masks = _voc_layout(root)
  prefix = str(tmp_path / 'out' / 'voc_train')
  summary = convert.convert_voc(str(root), 'train', prefix, num_shards=1)
  assert summary['num_written'] == 2 and summary['num_skipped'] == 0

  decoder = segmentation_input.Decoder()
  for record, name in zip(_records(prefix + '-*.tfrecord'), ['2007_000001', '2007_000002']):
    decoded = decoder.decode(tf.constant(record))
    image = tf.io.decode_jpeg(decoded['image/encoded'])
    mask = tf.io.decode_png(decoded['image/segmentation/class/encoded'])[..., 0].numpy()
    assert image.shape == (48, 64, 3)
    np.testing.assert_array_equal(mask, masks[name])

  # An id whose mask is missing is skipped and listed, not a crash.
  summary = convert.convert_voc(str(root), 'val', str(tmp_path / 'out' / 'voc_val'))
  assert summary['num_written'] == 0 and summary['num_skipped'] == 1
  assert summary['skipped'][0]['file'].endswith('2007_000003.jpg')


def test_coco_converter_uses_model_garden_schema(tmp_path):
  image_dir = tmp_path / 'images'
  image_dir.mkdir()
  images, annotations = [], []
  for i in range(2):
    _save(Image.fromarray(_photo(seed=i)), image_dir / f'{i:012d}.jpg')
    images.append({'id': 100 + i, 'file_name': f'{i:012d}.jpg', 'height': 48, 'width': 64})
    annotations.append({
        'id': i + 1, 'image_id': 100 + i, 'category_id': 18, 'iscrowd': 0,
        'bbox': [8.0, 4.0, 32.0, 16.0], 'area': 512.0,
        'segmentation': [[8.0, 4.0, 40.0, 4.0, 40.0, 20.0, 8.0, 20.0]]})
  annotation_file = tmp_path / 'instances.json'
  annotation_file.write_text(json.dumps({
      'images': images, 'annotations': annotations,
      'categories': [{'id': 18, 'name': 'dog', 'supercategory': 'animal'}]}))

  prefix = str(tmp_path / 'out' / 'train')
  summary = convert.convert_coco([str(image_dir)], str(annotation_file), prefix,
                                 num_shards=2, include_masks=True, num_processes=0)
  assert summary['num_written'] == 2
  assert not [n for n in os.listdir(tmp_path / 'out') if '.tmp-' in n]

  decoder = tf_example_decoder.TfExampleDecoder(include_mask=True)
  seen = set()
  for record in _records(prefix + '-*.tfrecord'):
    decoded = decoder.decode(tf.constant(record))
    seen.add(int(decoded['source_id']))
    np.testing.assert_allclose(decoded['groundtruth_boxes'].numpy(),
                               [[4 / 48, 8 / 64, 20 / 48, 40 / 64]], atol=1e-6)
    assert decoded['groundtruth_classes'].numpy().tolist() == [18]
    assert decoded['groundtruth_instance_masks'].shape == (1, 48, 64)
  assert seen == {100, 101}


@pytest.mark.slow
def test_missing_inputs_are_clear_errors(tmp_path):
  missing = str(tmp_path / 'nowhere')
  with pytest.raises(ValueError, match='nowhere'):
    convert.convert_images(missing, str(tmp_path / 'out'))
  with pytest.raises(ValueError, match='nowhere'):
    convert.convert_voc(missing, 'train', str(tmp_path / 'out'))
  with pytest.raises(ValueError, match='nowhere'):
    convert.convert_coco([str(tmp_path)], missing, str(tmp_path / 'out'))

  result = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.data.convert', 'images',
       f'--input_dir={missing}', f'--output_file_prefix={tmp_path / "out" / "x"}'],
      cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL='3'),
      capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      f"convert images: error: Input folder '{missing}' does not exist")


def test_labeled_subsets_are_nested_deterministic_and_byte_identical(tiny_data, tmp_path):
  pattern = os.path.join(tiny_data, 'train-*.tfrecord')
  originals = set(_records(pattern))
  ids = {}
  for fraction in (0.2, 0.5, 1.0):
    prefix = str(tmp_path / f'train_{int(fraction * 100)}')
    summary = convert.subset_split(pattern, fraction, prefix)
    records = _records(prefix + '-*.tfrecord')
    assert summary['num_input'] == len(originals) == 12
    assert len(records) == summary['num_written'] == {0.2: 3, 0.5: 6, 1.0: 12}[fraction]
    assert set(records) <= originals  # the human labels, untouched
    ids[fraction] = set(summary['source_ids'])
    assert len(ids[fraction]) == len(records)
    again = convert.subset_split(pattern, fraction, str(tmp_path / 'again'))
    assert _records(str(tmp_path / 'again') + '-*.tfrecord') == records
    assert again['source_ids'] == summary['source_ids']
  assert ids[0.2] < ids[0.5] < ids[1.0]
  other = convert.subset_split(pattern, 0.5, str(tmp_path / 'salted'), salt='another')
  assert set(other['source_ids']) != ids[0.5]  # the salt, not file order, picks the subset
  assert not tf.io.gfile.glob(str(tmp_path / '.*tmp*'))


@pytest.mark.slow
def test_subset_bad_input_is_one_line(tmp_path):
  with pytest.raises(ValueError, match='no TFRecord matches'):
    convert.subset_split(str(tmp_path / 'none-*.tfrecord'), 0.2, str(tmp_path / 'out'))
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.data.convert', 'subset',
       f'--input_pattern={tmp_path}/x-*.tfrecord', '--fraction=1.5',
       f'--output_file_prefix={tmp_path}/out'],
      capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1] == (
      'convert subset: error: --fraction must be in (0, 1], got 1.5')
  # Without --output_file_prefix: an error, not Model Garden's default /tmp/train.
  proc = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.data.convert', 'subset',
       f'--input_pattern={tmp_path}/x-*.tfrecord', '--fraction=0.5'],
      capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1] == (
      'convert subset: error: --output_file_prefix is required (where to write the TFRecords)')
