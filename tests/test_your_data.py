"""`./run.sh custom`: your own COCO data through the whole pipeline, VOC and YOLO to the same
records under their own ids, and every bad input as a one-line error or a counted skip
(data/your_data.py, pipelines/custom_main.py)."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from official.vision.dataloaders import tf_example_decoder
from projects.self_training.common.paths import REPO_ROOT
from projects.self_training.data import your_data
from projects.self_training.pseudo_label import schema
from tests.conftest import TINY

# Sparse ids with their own names, as a user's data set has them.
CATEGORIES = [{'id': 3, 'name': 'red square'}, {'id': 17, 'name': 'green disc'},
              {'id': 42, 'name': 'blue bar'}]
COLORS = {3: (220, 30, 30), 17: (30, 200, 30), 42: (30, 30, 220)}
NUM_LABELED = 24


def _labeled_images(root, n=NUM_LABELED, seed=0):
  """`n` scenes of colored boxes, in the sizes and modes users have: RGB JPEG, grayscale
  PNG, RGBA PNG, a nested folder; returns [{file, width, height, boxes: [(xywh, id)]}]."""
  rng = np.random.default_rng(seed)
  items = []
  for i in range(n):
    w, h = (64, 64) if i % 3 else (80, 56)
    pixels = np.full((h, w, 3), 245, np.uint8)
    boxes = []
    for _ in range(int(rng.integers(1, 3))):
      cat = int(rng.choice([3, 17, 42]))
      bw, bh = (int(v) for v in rng.integers(12, 28, 2))
      x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
      pixels[y:y + bh, x:x + bw] = COLORS[cat]
      boxes.append(([x, y, bw, bh], cat))
    image = Image.fromarray(pixels)
    rel = [f'img{i:03d}.jpg', f'img{i:03d}.png', f'img{i:03d}.png',
           os.path.join('nested', f'img{i:03d}.jpeg')][i % 4]
    image = [image, image.convert('L'), image.convert('RGBA'), image][i % 4]
    os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
    image.save(os.path.join(root, rel))
    items.append({'file': rel, 'width': w, 'height': h, 'boxes': boxes})
  return items


def _pool(root, n=8):
  """`n` unlabeled images in nested folders and one corrupt file."""
  for i in range(n):
    sub = os.path.join(root, 'a' if i % 2 else os.path.join('b', 'c'))
    os.makedirs(sub, exist_ok=True)
    pixels = np.full((60, 60, 3), 240, np.uint8)
    pixels[10:30, 10 + i:30 + i] = COLORS[[3, 17, 42][i % 3]]
    Image.fromarray(pixels).save(os.path.join(sub, f'u{i}.{"png" if i % 2 else "jpg"}'))
  with open(os.path.join(root, 'broken.jpg'), 'wb') as f:
    f.write(b'\xff\xd8\xff\xe0 not really a jpeg')
  return root


def _coco(path, items, categories=CATEGORIES):
  data = {'images': [], 'annotations': [], 'categories': categories}
  for i, item in enumerate(items):
    data['images'].append({'id': 100 + 7 * i, 'file_name': item['file'],
                           'width': item['width'], 'height': item['height']})
    for box, cat in item['boxes']:
      data['annotations'].append({'id': len(data['annotations']) + 1, 'image_id': 100 + 7 * i,
                                  'bbox': box, 'category_id': cat, 'iscrowd': 0,
                                  'area': box[2] * box[3]})
  with open(path, 'w') as f:
    json.dump(data, f)
  return str(path)


def _voc(folder, items):
  names = {c['id']: c['name'] for c in CATEGORIES}
  os.makedirs(folder, exist_ok=True)
  for item in items:
    root = ElementTree.Element('annotation')
    ElementTree.SubElement(root, 'filename').text = item['file']
    size = ElementTree.SubElement(root, 'size')
    ElementTree.SubElement(size, 'width').text = str(item['width'])
    ElementTree.SubElement(size, 'height').text = str(item['height'])
    for (x, y, w, h), cat in item['boxes']:
      obj = ElementTree.SubElement(root, 'object')
      ElementTree.SubElement(obj, 'name').text = names[cat]
      box = ElementTree.SubElement(obj, 'bndbox')
      for key, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), (x, y, x + w, y + h)):
        ElementTree.SubElement(box, key).text = str(value)
    stem = os.path.splitext(item['file'].replace(os.sep, '_'))[0]
    ElementTree.ElementTree(root).write(os.path.join(folder, stem + '.xml'))
  return str(folder)


def _yolo(folder, items):
  index = {c['id']: k for k, c in enumerate(CATEGORIES)}
  for item in items:
    path = os.path.join(folder, os.path.splitext(item['file'])[0] + '.txt')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
      for (x, y, w, h), cat in item['boxes']:
        W, H = item['width'], item['height']
        f.write(f'{index[cat]} {(x + w / 2) / W:.6f} {(y + h / 2) / H:.6f} {w / W:.6f} '
                f'{h / H:.6f}\n')
  with open(os.path.join(folder, 'classes.txt'), 'w') as f:
    f.write('\n'.join(c['name'] for c in CATEGORIES) + '\n')
  return str(folder)


@pytest.fixture(scope='module')
def user_data(tmp_path_factory):
  root = tmp_path_factory.mktemp('user')
  items = _labeled_images(str(root / 'images'))
  return {'root': root, 'items': items, 'images': str(root / 'images'),
          'pool': _pool(str(root / 'unlabeled')),
          'coco': _coco(root / 'instances.json', items),
          'voc': _voc(root / 'voc_xml', items), 'yolo': _yolo(root / 'yolo_labels', items)}


def _expected_categories(fmt):
  """voc / yolo: the categories they declare (COCO keeps the user's ids and names)."""
  if fmt == 'voc':  # names used, sorted
    return [{'id': i + 1, 'name': n} for i, n in enumerate(sorted(c['name'] for c in CATEGORIES))]
  return [{'id': i + 1, 'name': c['name']} for i, c in enumerate(CATEGORIES)]  # classes.txt


def _run_custom(args, cwd=REPO_ROOT, timeout=900):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, '-m', 'projects.self_training.pipelines.custom_main']
                        + args, capture_output=True, text=True, env=env, cwd=cwd,
                        timeout=timeout)


@pytest.mark.slow
def test_custom_data_end_to_end(user_data, tmp_path):
  """COCO with sparse ids: VOC and YOLO make the same records under their own ids (the test
  below), and past the records nothing depends on the format."""
  runs = tmp_path / 'runs'
  # Scores from a 6-step model sit below the detector's default 0.05 floor (and the view
  # fusion's): keep them all, from one view, so the pseudo labels hold boxes whose classes
  # can be checked.
  tiny = TINY + ',task.model.detection_generator.pre_nms_score_threshold=0.0'
  proc = _run_custom([f'--train_annotations={user_data["coco"]}',
                      f'--train_images={user_data["images"]}',
                      f'--unlabeled_images={user_data["pool"]}', f'--runs_dir={runs}',
                      f'--params_override={tiny}', f'--student_override={TINY}',
                      '--student_steps=6', '--threshold=0.0', '--paper_labels',
                      '--noparallel_control'])
  assert proc.returncode == 0, proc.stderr[-3000:]
  expected = CATEGORIES
  # The stages one after another (the main job's end-to-end test has the control beside).
  assert '[control]' not in proc.stdout
  assert 'beside' not in json.loads((runs / 'results.json').read_text())['control']
  for row in ('| teacher |', '| supervised control (same steps) |',
              '| student (self-training) |'):
    assert row in proc.stdout
  assert 'Student - control:' in proc.stdout
  assert '(= holdout: no --val_annotations)' in proc.stdout
  assert 'unlabeled 8 (1 unreadable files skipped)' in proc.stdout
  meta = json.loads((runs / 'data' / your_data.METADATA).read_text())
  assert meta['categories'] == expected
  assert meta['splits']['holdout']['images'] == your_data.MIN_HOLDOUT
  assert meta['splits']['train']['images'] == NUM_LABELED - your_data.MIN_HOLDOUT
  assert meta['splits']['train']['skipped_by_converter'] == 0
  # The SavedModel's label map carries the user's categories...
  label_map = json.loads((runs / 'export' / 'saved_model' / schema.LABEL_MAP).read_text())
  assert label_map['categories'] == expected
  # ...and the pseudo labels use those ids alone, read back by Model Garden's decoder.
  decoder = tf_example_decoder.TfExampleDecoder()
  classes = []
  for record in tf.data.TFRecordDataset(tf.io.gfile.glob(schema.record_pattern(
      str(runs / 'pseudo')))):
    classes += decoder.decode(record)['groundtruth_classes'].numpy().tolist()
  declared = {c['id'] for c in expected}
  assert classes and set(classes) <= declared | {schema.IGNORE_CLASS}, set(classes)
  summary = json.loads((runs / 'pseudo' / schema.SUMMARY).read_text())
  assert summary['num_images'] == 8 and set(summary['boxes_per_class']) <= {
      c['name'] for c in expected} | {str(schema.IGNORE_CLASS)}
  results = json.loads((runs / 'results.json').read_text())
  assert results['data']['num_classes'] == max(declared) + 1
  # The labeled records hold RGB images at their own sizes, whatever the files' modes.
  sizes = set()
  for record in tf.data.TFRecordDataset(tf.io.gfile.glob(str(runs / 'data' / 'train-*'))):
    image = decoder.decode(record)['image']
    assert image.shape[-1] == 3
    sizes.add(tuple(image.shape[:2].as_list()))
  assert sizes == {(64, 64), (56, 80)}


def _labels_by_file(data_dir, split, names):
  """{original file: sorted [(class name, x, y, w, h)]} of a prepared split's annotations,
  the file Model Garden's converter wrote its records from."""
  with open(os.path.join(data_dir, f'{split}.json')) as f:
    coco = json.load(f)
  files = {im['id']: im['original_file'] for im in coco['images']}
  out = {name: [] for name in files.values()}
  for a in coco['annotations']:
    out[files[a['image_id']]].append((names[a['category_id']], *a['bbox']))
  return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize('fmt', ['voc', 'yolo'])
def test_voc_and_yolo_make_the_coco_records_under_their_own_ids(user_data, tmp_path, fmt):
  """The same labels as VOC XML or YOLO txt (the format told from the files): the same
  images, held-out part and boxes as from the COCO file, each box under its class's id in
  that format, which the model, label map and pseudo labels then use (the COCO test above
  runs them end to end)."""
  coco = _prepare(user_data, tmp_path / 'coco')
  other = _prepare(user_data, tmp_path / fmt, train_annotations=user_data[fmt])
  assert other['inputs']['format'] == fmt
  expected = _expected_categories(fmt)
  assert other['categories'] == expected and other['num_classes'] == len(expected) + 1
  assert other['splits'] == coco['splits'] and other['counts'] == coco['counts']
  for split in ('train', 'holdout'):
    ours = _labels_by_file(str(tmp_path / fmt), split, {c['id']: c['name'] for c in expected})
    theirs = _labels_by_file(str(tmp_path / 'coco'), split,
                             {c['id']: c['name'] for c in CATEGORIES})
    assert ours.keys() == theirs.keys()
    for name, boxes in theirs.items():  # YOLO's normalized 6 decimals: within 0.001 px
      assert [b[0] for b in ours[name]] == [b[0] for b in boxes], name
      np.testing.assert_allclose([b[1:] for b in ours[name]], [b[1:] for b in boxes],
                                 atol=1e-3, err_msg=name)


def _prepare(user_data, out, **kw):
  args = dict(train_annotations=user_data['coco'], train_images=user_data['images'],
              unlabeled_images=user_data['pool'], progress=lambda line: None)
  args.update(kw)
  return your_data.prepare(str(out), **args)


def _edited_coco(user_data, tmp_path, edit):
  with open(user_data['coco']) as f:
    data = json.load(f)
  edit(data)
  path = tmp_path / 'edited.json'
  path.write_text(json.dumps(data))
  return str(path)


def test_boxes_over_the_edge_are_clipped_and_empty_ones_counted(user_data, tmp_path):
  def edit(data):
    first = data['images'][1]  # 64 x 64
    more = [[50, 50, 30, 30], [10, 10, 0, 8], [70, 70, 5, 5]]  # over the edge, empty, outside
    for box in more:
      data['annotations'].append({'id': 9000 + len(data['annotations']), 'iscrowd': 0,
                                  'image_id': first['id'], 'bbox': box, 'category_id': 17})
  meta = _prepare(user_data, tmp_path / 'data',
                  train_annotations=_edited_coco(user_data, tmp_path, edit))
  assert meta['counts']['boxes_clipped_to_image'] == 1
  assert meta['counts']['boxes_dropped_empty_or_outside'] == 2
  human = sum(len(item['boxes']) for item in user_data['items'])
  assert meta['counts']['boxes'] == human + 1
  assert meta['splits']['train']['skipped_by_converter'] == 0
  assert meta['splits']['holdout']['skipped_by_converter'] == 0
  assert any('clipped' in line for line in your_data.describe(meta))
  # A re-run reuses the set; other inputs are refused rather than mixed with it.
  assert _prepare(user_data, tmp_path / 'data',
                  train_annotations=_edited_coco(user_data, tmp_path, edit)) == meta
  with pytest.raises(your_data.DataError, match='built from other inputs'):
    _prepare(user_data, tmp_path / 'data', holdout_fraction=0.3)


@pytest.mark.parametrize('edit, needle', [
    (lambda d: d['images'][0].update(file_name='nowhere.jpg'),
     r'1 of 24 labeled images named by .* are missing, first: nowhere.jpg'),
    (lambda d: d['annotations'][0].update(category_id=5),
     r'uses category 5, which .* does not declare \(declared: 3, 17, 42\)'),
    (lambda d: d.update(categories=[]), 'declares no categories'),
    (lambda d: d['annotations'][0].update(image_id=-1), 'names image id -1'),
    (lambda d: d['images'][0].update(width=640), r'says img000.jpg is 640x56, the file is 80x56'),
    (lambda d: d['categories'].append({'id': 3, 'name': 'again'}), 'category id 3 twice'),
    (lambda d: d['categories'].append({'id': 0, 'name': 'bg'}), 'must be an integer >= 1'),
])
def test_bad_coco_is_a_one_line_error_and_writes_nothing(user_data, tmp_path, edit, needle):
  out = tmp_path / 'data'
  with pytest.raises(your_data.DataError, match=needle) as err:
    _prepare(user_data, out, train_annotations=_edited_coco(user_data, tmp_path, edit))
  assert '\n' not in str(err.value)
  assert not out.exists() and not list(tmp_path.glob('.data*'))


def test_unreadable_labeled_image_is_an_error(user_data, tmp_path):
  images = tmp_path / 'images'
  images.mkdir()
  for item in user_data['items']:
    os.makedirs(os.path.dirname(images / item['file']), exist_ok=True)
    (images / item['file']).write_bytes(
        open(os.path.join(user_data['images'], item['file']), 'rb').read())
  (images / user_data['items'][5]['file']).write_bytes(b'garbage')
  with pytest.raises(your_data.DataError, match='labeled image .*img005.png is unreadable'):
    _prepare(user_data, tmp_path / 'data', train_images=str(images))


def test_too_small_a_labeled_set_says_how_small_is_too_small(user_data, tmp_path):
  small = _coco(tmp_path / 'small.json', user_data['items'][:14])
  with pytest.raises(your_data.DataError,
                     match=r'14 labeled images are too few .* at least 15 \(5 held out, 10'):
    _prepare(user_data, tmp_path / 'data', train_annotations=small)
  assert sum(your_data.carve([str(i) for i in range(15)], 0.1)) == 5


def test_the_held_out_part_is_deterministic_and_order_free():
  names = [f'photo_{i}.jpg' for i in range(200)]
  held = your_data.carve(names, 0.1)
  assert sum(held) == 20
  shuffled = list(reversed(names))
  again = dict(zip(shuffled, your_data.carve(shuffled, 0.1)))
  assert [again[n] for n in names] == held
  # A grown set keeps most of its held-out part.
  more = your_data.carve(names + [f'new_{i}.jpg' for i in range(20)], 0.1)
  assert sum(a and b for a, b in zip(held, more)) >= 15


def test_pool_without_a_readable_image_is_an_error_and_leaves_nothing(user_data, tmp_path):
  pool = tmp_path / 'pool'
  pool.mkdir()
  (pool / 'a.jpg').write_bytes(b'nope')
  out = tmp_path / 'data'
  with pytest.raises(your_data.DataError, match=r'no readable image under .* \(1 unreadable'):
    _prepare(user_data, out, unlabeled_images=str(pool))
  assert not out.exists() and not list(tmp_path.glob('.data*'))


def test_voc_and_yolo_errors(user_data, tmp_path):
  classes = tmp_path / 'two.txt'
  classes.write_text('red square\ngreen disc\n')
  with pytest.raises(your_data.DataError, match="uses class 'blue bar', which .* does not list"):
    your_data.read('voc', user_data['voc'], user_data['images'], str(classes))
  with pytest.raises(your_data.DataError, match=r'line 1 \(class 2\) uses category 3'):
    bad = tmp_path / 'yolo'
    _yolo(bad, user_data['items'][:3])
    (bad / 'classes.txt').write_text('red square\ngreen disc\n')
    (bad / 'img000.txt').write_text('2 0.5 0.5 0.2 0.2\n')
    your_data.read('yolo', str(bad), user_data['images'])
  nameless = tmp_path / 'nameless'
  nameless.mkdir()
  (nameless / 'img000.txt').write_text('0 0.5 0.5 0.2 0.2\n')
  with pytest.raises(your_data.DataError, match='no class names'):
    your_data.read('yolo', str(nameless), user_data['images'])
  with pytest.raises(your_data.DataError, match='pass --format'):
    your_data.guess_format(str(classes))
  # YOLO names from a data.yaml in either form.
  yaml_dir = tmp_path / 'yaml'
  _yolo(yaml_dir, user_data['items'][:3])
  os.remove(yaml_dir / 'classes.txt')
  (yaml_dir / 'data.yaml').write_text('names: {0: red square, 1: green disc, 2: blue bar}\n')
  labeled = your_data.read('yolo', str(yaml_dir), user_data['images'])
  assert [c['name'] for c in labeled.categories] == [c['name'] for c in CATEGORIES]


@pytest.mark.slow
def test_cli_reports_bad_input_in_one_line(user_data, tmp_path):
  bad = _edited_coco(user_data, tmp_path, lambda d: d['annotations'][0].update(category_id=5))
  proc = _run_custom([f'--train_annotations={bad}', f'--train_images={user_data["images"]}',
                      f'--unlabeled_images={user_data["pool"]}',
                      f'--runs_dir={tmp_path / "runs"}'], timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and 'uses category 5' in errors[0], proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert not (tmp_path / 'runs' / 'data').exists()
  proc = _run_custom([f'--train_images={user_data["images"]}',
                      f'--unlabeled_images={user_data["pool"]}'], timeout=300)
  assert proc.returncode != 0 and 'train_annotations' in proc.stderr
