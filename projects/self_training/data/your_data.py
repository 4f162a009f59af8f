r"""Your own labeled and unlabeled images -> a data set the detection pipeline reads.

`./run.sh custom` (pipelines/custom_main.py) calls `prepare`, which reads labeled images in
one of three formats and a folder of unlabeled images, checks them, and writes the layout
of the embedded set (`{split}-*.tfrecord`, `{split}.json` in COCO format) under one folder:

  train      the labeled images less the held-out part
  holdout    a deterministic part of the labeled images (`--holdout_fraction`, at least
             MIN_HOLDOUT images): every choice (plateau, best checkpoint) is made on it
  val        your `--val_annotations` (never used for a choice), else the held-out part
  unlabeled  every readable image under `--unlabeled_images` (nested folders; unreadable
             files counted and skipped, as the pseudo-labeler does)

Formats (`--format`, guessed from `--train_annotations` when not given):
  coco   a COCO JSON file (`images`, `annotations` with `bbox` [x, y, w, h] in pixels,
         `categories`); category ids and names are kept as you wrote them, sparse or not.
  voc    a folder of Pascal VOC XML files (`<filename>`, `<size>`, `<object><name>` and
         `<bndbox>`); categories are the names in `--classes` (one per line) or, without it,
         every name used, sorted; ids 1..K in that order.
  yolo   a folder of YOLO txt files (`class cx cy w h`, normalized), one per image with the
         image's name; names from `--classes` (a text file, one per line, or a data.yaml
         with `names`), else `classes.txt` or `data.yaml` beside the labels; class k gets
         id k + 1 (Model Garden's RetinaNet keeps class 0 for the background).

Labeled images are re-encoded as RGB JPEG (any mode PIL reads: grayscale, palette, RGBA,
16-bit) at their own size, then converted by Model Garden's `create_coco_tf_record`
(through `convert.convert_coco`). Boxes that cross an image's edge are clipped to it; boxes
of zero area, or wholly outside, are dropped; both are counted in `dataset.json`. Errors in
one line (`DataError`): an annotation naming a missing or unreadable image, a category id
used but not declared, no categories, a declared size that is not the image's, a labeled
set too small for a held-out part. Nothing half-written is left looking complete: the set
is built under a temporary name and renamed when whole, with `dataset.json` inside.
"""

import collections
import dataclasses
import hashlib
import json
import math
import os
import xml.etree.ElementTree as ElementTree
from typing import Any, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
import yaml

from projects.self_training.common import file_io
from projects.self_training.data import convert
from projects.self_training.data.image_io import rgb_image_bytes

FORMATS = ('coco', 'voc', 'yolo')
UNLABELED_SPLIT = 'unlabeled'
METADATA = 'dataset.json'
HOLDOUT_FRACTION = 0.1
# A held-out part of fewer images cannot rank checkpoints; a train part of fewer cannot
# train. So the smallest labeled set is MIN_HOLDOUT + MIN_TRAIN images.
MIN_HOLDOUT = 5
MIN_TRAIN = 10
HOLDOUT_SALT = 'self-training-holdout'
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp')
_FORMAT_VERSION = 1


class DataError(ValueError):
  """Input the set cannot be built from, in one line."""


@dataclasses.dataclass
class Labeled:
  """Labeled images in one normalized form: COCO categories, and per image its file, the
  size it declares (None: read from the file) and its boxes ([x, y, w, h] pixels) with
  their category ids."""
  categories: List[Dict[str, Any]]
  images: List[Dict[str, Any]]
  source: str


# ----------------------------------------------------------------------------------------
# Readers.


def guess_format(annotations: str) -> str:
  """coco for a .json file, voc for a folder of .xml files, yolo for a folder of .txt."""
  if not tf.io.gfile.exists(annotations):
    raise DataError(f'annotations {annotations!r} do not exist')
  if not tf.io.gfile.isdir(annotations):
    if annotations.lower().endswith('.json'):
      return 'coco'
    raise DataError(f'cannot tell the format of {annotations!r}: pass --format '
                    f'({", ".join(FORMATS)})')
  names = [n.lower() for n in _files(annotations)]
  if any(n.endswith('.xml') for n in names):
    return 'voc'
  if any(n.endswith('.txt') for n in names):
    return 'yolo'
  raise DataError(f'{annotations!r} holds neither .xml (voc) nor .txt (yolo) files')


def read(fmt: str, annotations: str, images: str, classes: str = '') -> Labeled:
  if fmt not in FORMATS:
    raise DataError(f'unknown format {fmt!r}; expected one of {", ".join(FORMATS)}')
  if not images or not tf.io.gfile.isdir(images):
    raise DataError(f'image folder {images!r} does not exist')
  if not tf.io.gfile.exists(annotations):
    raise DataError(f'annotations {annotations!r} do not exist')
  reader = {'coco': read_coco, 'voc': read_voc, 'yolo': read_yolo}[fmt]
  return reader(annotations, images, classes)


def _files(directory: str) -> List[str]:
  """Paths under `directory` (recursive), relative to it, sorted."""
  return [os.path.relpath(path, directory) for path in convert.list_files(directory)]


def _check_categories(categories: List[Dict[str, Any]], source: str) -> None:
  if not categories:
    raise DataError(f'{source} declares no categories')
  ids = [c['id'] for c in categories]
  if len(set(ids)) != len(ids):
    raise DataError(f'{source} declares category id {_first_repeat(ids)} twice')
  for c in categories:
    if not isinstance(c['id'], int) or c['id'] < 1:
      raise DataError(f'{source}: category id {c["id"]!r} ({c["name"]!r}) must be an '
                      'integer >= 1 (0 is the background)')


def _first_repeat(values):
  seen = set()
  for v in values:
    if v in seen:
      return v
    seen.add(v)
  return None


def _check_used(category_id: int, declared: Dict[int, str], source: str, where: str) -> None:
  if category_id not in declared:
    raise DataError(f'{where} uses category {category_id}, which {source} does not declare '
                    f'(declared: {", ".join(str(i) for i in sorted(declared))})')


def read_coco(path: str, images: str, classes: str = '') -> Labeled:
  del classes  # a COCO file declares its own
  try:
    with tf.io.gfile.GFile(path) as f:
      data = json.load(f)
  except ValueError as e:
    raise DataError(f'{path} is not valid JSON: {e}') from None
  for key in ('images', 'annotations', 'categories'):
    if not isinstance(data.get(key), list):
      raise DataError(f'{path} has no {key!r} list (a COCO detection file has images, '
                      'annotations and categories)')
  categories = [{'id': c.get('id'), 'name': str(c.get('name', c.get('id')))}
                for c in data['categories']]
  _check_categories(categories, path)
  declared = {c['id']: c['name'] for c in categories}
  out, by_id = [], {}
  for image in data['images']:
    if 'id' not in image or 'file_name' not in image:
      raise DataError(f'{path}: an image entry lacks id or file_name: {image}')
    entry = {'path': os.path.join(images, image['file_name']), 'name': image['file_name'],
             'width': image.get('width'), 'height': image.get('height'),
             'boxes': [], 'classes': []}
    by_id[image['id']] = entry
    out.append(entry)
  for i, a in enumerate(data['annotations']):
    where = f'{path} annotation {a.get("id", i)}'
    if a.get('image_id') not in by_id:
      raise DataError(f'{where} names image id {a.get("image_id")!r}, which has no entry '
                      'in images')
    bbox = a.get('bbox')
    if not (isinstance(bbox, list) and len(bbox) == 4):
      raise DataError(f'{where} has no bbox [x, y, width, height]')
    _check_used(a.get('category_id'), declared, path, where)
    entry = by_id[a['image_id']]
    entry['boxes'].append([float(v) for v in bbox])
    entry['classes'].append(int(a['category_id']))
  return Labeled(categories, out, path)


def _read_class_names(classes: str, near: str) -> Optional[List[str]]:
  """Names from `classes` (text: one per line; YAML: `names` as a list or {index: name}),
  else from classes.txt / data.yaml in `near` or its parent; None when there is none."""
  if not classes:
    for folder in (near, os.path.dirname(os.path.abspath(near))):
      for name in ('classes.txt', 'data.yaml', 'dataset.yaml'):
        if tf.io.gfile.exists(os.path.join(folder, name)):
          classes = os.path.join(folder, name)
          break
      if classes:
        break
  if not classes:
    return None
  if not tf.io.gfile.exists(classes):
    raise DataError(f'--classes {classes!r} does not exist')
  with tf.io.gfile.GFile(classes) as f:
    text = f.read()
  if classes.lower().endswith(('.yaml', '.yml')):
    names = (yaml.safe_load(text) or {}).get('names')
    if isinstance(names, dict):
      names = [names[k] for k in sorted(names)]
    if not isinstance(names, list):
      raise DataError(f'{classes} has no names list')
    return [str(n) for n in names]
  return [line.strip() for line in text.splitlines() if line.strip()]


def read_voc(folder: str, images: str, classes: str = '') -> Labeled:
  entries, used = [], []
  for rel in _files(folder):
    if not rel.lower().endswith('.xml'):
      continue
    xml_path = os.path.join(folder, rel)
    try:
      root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as e:
      raise DataError(f'{xml_path} is not valid XML: {e}') from None
    filename = root.findtext('filename') or os.path.splitext(rel)[0] + '.jpg'
    size = root.find('size')
    width = height = None
    if size is not None and size.findtext('width') and size.findtext('height'):
      width, height = int(float(size.findtext('width'))), int(float(size.findtext('height')))
      width, height = (width or None), (height or None)  # VOC writes 0 when unknown
    boxes, names = [], []
    for obj in root.findall('object'):
      name = (obj.findtext('name') or '').strip()
      box = obj.find('bndbox')
      if not name or box is None:
        raise DataError(f'{xml_path}: an object lacks <name> or <bndbox>')
      try:
        x0, y0, x1, y1 = (float(box.findtext(k)) for k in ('xmin', 'ymin', 'xmax', 'ymax'))
      except (TypeError, ValueError):
        raise DataError(f'{xml_path}: a <bndbox> lacks xmin/ymin/xmax/ymax') from None
      boxes.append([x0, y0, x1 - x0, y1 - y0])
      names.append(name)
      used.append(name)
    entries.append({'path': os.path.join(images, filename), 'name': filename,
                    'width': width, 'height': height, 'boxes': boxes, 'names': names,
                    'where': xml_path})
  if not entries:
    raise DataError(f'{folder} holds no .xml files')
  declared = _read_class_names(classes, folder) if classes else None
  names = declared if declared is not None else sorted(set(used))
  categories = [{'id': i + 1, 'name': n} for i, n in enumerate(names)]
  _check_categories(categories, classes or folder)
  ids = {c['name']: c['id'] for c in categories}
  for e in entries:
    for name in e['names']:
      if name not in ids:
        raise DataError(f'{e["where"]} uses class {name!r}, which {classes} does not list '
                        f'(listed: {", ".join(names)})')
    e['classes'] = [ids[n] for n in e.pop('names')]
    e.pop('where')
  return Labeled(categories, entries, folder)


def read_yolo(folder: str, images: str, classes: str = '') -> Labeled:
  names = _read_class_names(classes, folder)
  if names is None:
    raise DataError(f'no class names for {folder}: pass --classes (classes.txt, one name per '
                    'line, or a data.yaml with names), or put classes.txt beside the labels')
  categories = [{'id': i + 1, 'name': n} for i, n in enumerate(names)]
  _check_categories(categories, classes or folder)
  declared = {c['id']: c['name'] for c in categories}
  labels = {os.path.splitext(rel)[0]: rel for rel in _files(folder)
            if rel.lower().endswith('.txt') and os.path.basename(rel) != 'classes.txt'}
  entries, matched = [], set()
  for rel in _files(images):
    if not rel.lower().endswith(IMAGE_EXTENSIONS):
      continue
    stem = os.path.splitext(rel)[0]
    entry = {'path': os.path.join(images, rel), 'name': rel, 'width': None, 'height': None,
             'boxes': [], 'classes': [], 'normalized': True}
    if stem in labels:  # YOLO: an image without a label file has no objects
      matched.add(stem)
      txt = os.path.join(folder, labels[stem])
      with tf.io.gfile.GFile(txt) as f:
        for n, line in enumerate(f.read().splitlines(), 1):
          if not line.strip():
            continue
          parts = line.split()
          try:
            k, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:5])
          except (ValueError, IndexError):
            raise DataError(f'{txt} line {n}: expected "class cx cy w h", got {line!r}') from None
          _check_used(k + 1, declared, classes or 'the class names',
                      f'{txt} line {n} (class {k})')
          entry['boxes'].append([cx - w / 2, cy - h / 2, w, h])
          entry['classes'].append(k + 1)
    entries.append(entry)
  orphans = sorted(set(labels) - matched)
  if orphans:
    raise DataError(f'{len(orphans)} label file(s) in {folder} name no image in {images}, '
                    f'first: {labels[orphans[0]]}')
  if not entries:
    raise DataError(f'{images} holds no images ({", ".join(IMAGE_EXTENSIONS)})')
  return Labeled(categories, entries, folder)


# ----------------------------------------------------------------------------------------
# Checks, the held-out part and writing.


def load_images(labeled: Labeled) -> Tuple[List[Dict[str, Any]], Dict[str, int]]:
  """Reads every labeled image (RGB JPEG bytes, its real size), clips each box to its
  image and drops empty ones; returns the images and the counts of what was changed."""
  missing = [e['name'] for e in labeled.images if not tf.io.gfile.exists(e['path'])]
  if missing:
    raise DataError(f'{len(missing)} of {len(labeled.images)} labeled images named by '
                    f'{labeled.source} are missing, first: {missing[0]}')
  counts = collections.Counter()
  out = []
  for e in labeled.images:
    try:
      with tf.io.gfile.GFile(e['path'], 'rb') as f:
        encoded, height, width = rgb_image_bytes(f.read())
    except Exception as err:  # pylint: disable=broad-except
      raise DataError(f'labeled image {e["path"]} is unreadable: '
                      f'{type(err).__name__}: {err}'.splitlines()[0]) from None
    if (e['width'], e['height']) != (None, None) and (e['width'], e['height']) != (width, height):
      raise DataError(f'{labeled.source} says {e["name"]} is {e["width"]}x{e["height"]}, '
                      f'the file is {width}x{height}: its boxes would be misplaced')
    boxes, classes = [], []
    for box, k in zip(e['boxes'], e['classes']):
      x, y, w, h = box
      if e.get('normalized'):
        x, y, w, h = x * width, y * height, w * width, h * height
      x0, y0 = max(0.0, x), max(0.0, y)
      x1, y1 = min(float(width), x + w), min(float(height), y + h)
      if x1 - x0 <= 0 or y1 - y0 <= 0:
        counts['boxes_dropped_empty_or_outside'] += 1
        continue
      if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        counts['boxes_clipped_to_image'] += 1
      # Model Garden's converter drops a box with x + w > width: keep rounding inside.
      w, h = x1 - x0, y1 - y0
      while x0 + w > width:
        w = math.nextafter(w, 0)
      while y0 + h > height:
        h = math.nextafter(h, 0)
      boxes.append([x0, y0, w, h])
      classes.append(k)
    counts['boxes'] += len(boxes)
    out.append({'name': e['name'], 'encoded': encoded, 'width': width, 'height': height,
                'boxes': boxes, 'classes': classes})
  return out, dict(counts)


def holdout_size(num_labeled: int, fraction: float) -> int:
  """Images in the held-out part; a one-line error when the set is too small to carve."""
  if not 0 < fraction < 1:
    raise DataError(f'--holdout_fraction must be in (0, 1), got {fraction}')
  n = max(MIN_HOLDOUT, round(fraction * num_labeled))
  if num_labeled - n < MIN_TRAIN:
    raise DataError(f'{num_labeled} labeled images are too few to carve a held-out part: '
                    f'it takes at least {MIN_HOLDOUT + MIN_TRAIN} ({MIN_HOLDOUT} held out, '
                    f'{MIN_TRAIN} to train on)')
  return n


def carve(names: Sequence[str], fraction: float) -> List[bool]:
  """Which images are held out: those whose salted hash of their name ranks first, so the
  same set always carves the same part, whatever order the files are listed in."""
  rank = sorted(range(len(names)), key=lambda i: hashlib.sha256(
      f'{HOLDOUT_SALT}:{names[i]}'.encode()).hexdigest())
  held = set(rank[:holdout_size(len(names), fraction)])
  return [i in held for i in range(len(names))]


def _write_split(out_dir: str, split: str, images: Sequence[Dict[str, Any]],
                 categories: List[Dict[str, Any]], num_shards: int) -> Dict[str, Any]:
  """`{split}.json` and `{split}-*.tfrecord` (Model Garden's converter) from `images`."""
  staging = os.path.join(out_dir, '.images', split)
  tf.io.gfile.makedirs(staging)
  coco = {'images': [], 'annotations': [], 'categories': categories}
  for i, image in enumerate(images, 1):
    file_name = f'{i:07d}.jpg'
    with tf.io.gfile.GFile(os.path.join(staging, file_name), 'wb') as f:
      f.write(image['encoded'])
    coco['images'].append({'id': i, 'file_name': file_name, 'width': image['width'],
                           'height': image['height'], 'original_file': image['name']})
    for box, k in zip(image['boxes'], image['classes']):
      coco['annotations'].append({'id': len(coco['annotations']) + 1, 'image_id': i,
                                  'bbox': box, 'area': box[2] * box[3], 'iscrowd': 0,
                                  'category_id': k})
  annotations = os.path.join(out_dir, f'{split}.json')
  with tf.io.gfile.GFile(annotations, 'w') as f:
    json.dump(coco, f)
  summary = convert.convert_coco([staging], annotations, os.path.join(out_dir, split),
                                 num_shards=max(1, min(num_shards, len(images))),
                                 include_masks=False)
  tf.io.gfile.rmtree(staging)
  return {'images': len(images), 'boxes': len(coco['annotations']),
          'skipped_by_converter': summary['num_skipped_annotations']}


def prepare(out_dir: str, train_annotations: str, train_images: str, unlabeled_images: str,
            fmt: str = '', val_annotations: str = '', val_images: str = '', classes: str = '',
            holdout_fraction: float = HOLDOUT_FRACTION, num_shards: int = 8,
            progress=print) -> Dict[str, Any]:
  """Builds the set in `out_dir` (reused when `dataset.json` says it was built from the same
  inputs); returns its `dataset.json`."""
  inputs = {'format': fmt or guess_format(train_annotations),
            'train_annotations': os.path.abspath(train_annotations),
            'train_images': os.path.abspath(train_images),
            'val_annotations': os.path.abspath(val_annotations) if val_annotations else '',
            'val_images': os.path.abspath(val_images or train_images) if val_annotations else '',
            'unlabeled_images': os.path.abspath(unlabeled_images), 'classes': classes,
            'holdout_fraction': holdout_fraction, 'format_version': _FORMAT_VERSION}
  done = file_io.read_json(os.path.join(out_dir, METADATA))
  if done is not None:
    if done.get('inputs') != inputs:
      changed = sorted(k for k in inputs if done.get('inputs', {}).get(k) != inputs[k])
      raise DataError(f'{out_dir} was built from other inputs ({", ".join(changed)}); '
                      'use another --runs_dir, or delete it to rebuild')
    progress(f'data: complete in {out_dir}, skipped')
    return done
  if not unlabeled_images or not tf.io.gfile.isdir(unlabeled_images):
    raise DataError(f'unlabeled image folder {unlabeled_images!r} does not exist')
  fmt = inputs['format']
  labeled = read(fmt, train_annotations, train_images, classes)
  val = read(fmt, val_annotations, val_images or train_images, classes) if val_annotations else None
  if val is not None and val.categories != labeled.categories:
    raise DataError(f'{val.source} declares other categories than {labeled.source}')
  images, counts = load_images(labeled)
  held = carve([im['name'] for im in images], holdout_fraction)
  with file_io.atomic_write(out_dir) as tmp:
    tf.io.gfile.makedirs(tmp)
    splits = {
        'train': _write_split(tmp, 'train', [im for im, h in zip(images, held) if not h],
                              labeled.categories, num_shards),
        'holdout': _write_split(tmp, 'holdout', [im for im, h in zip(images, held) if h],
                                labeled.categories, num_shards)}
    if val is not None:
      val_images_loaded, val_counts = load_images(val)
      counts.update({f'val_{k}': v for k, v in val_counts.items()})
      splits['val'] = _write_split(tmp, 'val', val_images_loaded, labeled.categories,
                                   num_shards)
    else:  # the held-out part doubles as val: say so wherever val is printed
      for name in tf.io.gfile.listdir(tmp):
        if name.startswith('holdout'):
          tf.io.gfile.copy(os.path.join(tmp, name),
                           os.path.join(tmp, 'val' + name[len('holdout'):]))
      splits['val'] = dict(splits['holdout'], same_as='holdout')
    pool = convert.convert_images(unlabeled_images, os.path.join(tmp, UNLABELED_SPLIT),
                                  num_shards=num_shards)
    if not pool['num_written']:
      raise DataError(f'no readable image under {unlabeled_images} '
                      f'({pool["num_skipped"]} unreadable files)')
    splits[UNLABELED_SPLIT] = {'images': pool['num_written'], 'skipped': pool['skipped']}
    metadata = {'inputs': inputs, 'categories': labeled.categories,
                'num_classes': max(c['id'] for c in labeled.categories) + 1,
                'splits': splits, 'counts': counts}
    file_io.write_json(os.path.join(tmp, METADATA), metadata)
  return metadata


def describe(metadata: Dict[str, Any]) -> List[str]:
  """What the set holds, in a few lines for the job's output."""
  s, c = metadata['splits'], metadata['counts']
  names = ', '.join(f'{x["id"]}:{x["name"]}' for x in metadata['categories'])
  lines = [f'data: {len(metadata["categories"])} categories ({names})',
           f'data: train {s["train"]["images"]} images ({s["train"]["boxes"]} boxes), '
           f'holdout {s["holdout"]["images"]}, val {s["val"]["images"]}'
           + (' (= holdout: no --val_annotations)' if s['val'].get('same_as') else '')
           + f', unlabeled {s[UNLABELED_SPLIT]["images"]} '
           f'({len(s[UNLABELED_SPLIT]["skipped"])} unreadable files skipped)']
  changed = {k: v for k, v in c.items() if k.startswith(('boxes_', 'val_boxes_')) and v}
  if changed:
    lines.append('data: ' + ', '.join(f'{k.replace("_", " ")}: {v}'
                                      for k, v in sorted(changed.items())))
  for item in s[UNLABELED_SPLIT]['skipped'][:5]:
    lines.append(f'  skipped {item["file"]}: {item["reason"]}')
  return lines
