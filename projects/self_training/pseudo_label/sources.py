"""Unlabeled image sources for the pseudo-labeler: TFRecords, an image folder, a TFDS split.

Every source yields `Item`s in a fixed order, so shard `i` of `N` (items `i, i+N, ...`) is
the same set on every run and every worker. Items carry the encoded image bytes (written
to the pseudo-labeled records unchanged when they are an RGB JPEG) and a source id that
becomes the COCO image id.
"""

import dataclasses
import os
from typing import Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from projects.self_training.data import image_io

TFDS_PREFIX = 'tfds:'


class SourceError(ValueError):
  """A missing or unreadable input path: reported in one line."""


@dataclasses.dataclass
class Item:
  source_id: str
  encoded: Optional[bytes]      # None when only pixels are known (TFDS)
  pixels: Optional[np.ndarray] = None
  name: str = ''                # file name or record position, for skip reports


def describe(spec: str) -> str:
  if spec.startswith(TFDS_PREFIX):
    return 'tfds'
  if tf.io.gfile.isdir(spec):
    return 'folder'
  return 'tfrecord'


def iterate(spec: str, shard_index: int = 0, num_shards: int = 1) -> Iterator[Item]:
  """Items `shard_index`, `shard_index + num_shards`, ... of the source `spec`.

  `spec` is a TFRecord file pattern (comma-separated patterns allowed), a folder of image
  files (searched recursively, sorted by path), or `tfds:NAME/CONFIG:VERSION` with
  `@SPLIT` (e.g. `tfds:coco/2017@unlabeled`); a TFDS data dir comes from $TFDS_DATA_DIR.
  """
  kind = describe(spec)
  if kind == 'tfds':
    yield from _tfds_items(spec[len(TFDS_PREFIX):], shard_index, num_shards)
  elif kind == 'folder':
    files = sorted(os.path.join(root, n) for root, _, names in tf.io.gfile.walk(spec)
                   for n in names)
    for i in range(shard_index, len(files), num_shards):
      try:
        with tf.io.gfile.GFile(files[i], 'rb') as f:
          data = f.read()
      except (OSError, tf.errors.OpError) as e:
        data = None
        err = str(e).splitlines()[0]
      item = Item(str(image_io.DEFAULT_SOURCE_ID_OFFSET + 1 + i), data, name=files[i])
      if data is None:
        item.name = f'{files[i]} ({err})'
      yield item
  else:
    files = tfrecord_files(spec)
    dataset = tf.data.TFRecordDataset(files).shard(num_shards, shard_index)
    features = {'image/encoded': tf.io.FixedLenFeature((), tf.string),
                'image/source_id': tf.io.FixedLenFeature((), tf.string, default_value='')}
    # Batches of serialized records: tf.data's per-element cost in eager mode would
    # otherwise be a large part of the labeler's time for small images.
    dataset = dataset.batch(64).map(lambda s: tf.io.parse_example(s, features),
                                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    position = 0
    for batch in dataset.prefetch(2).as_numpy_iterator():
      for encoded, sid in zip(batch['image/encoded'], batch['image/source_id']):
        index = shard_index + position * num_shards
        position += 1
        sid = sid.decode() or str(index + 1)
        yield Item(sid, encoded, name=f'record {index} (source_id {sid})')


def tfrecord_files(spec: str) -> List[str]:
  files = []
  for pattern in spec.split(','):
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise SourceError(f'input not found: {pattern}')
    files.extend(matched)
  return files


def check(spec: str) -> None:
  """Raises SourceError if `spec` names nothing readable."""
  kind = describe(spec)
  if kind == 'tfrecord':
    tfrecord_files(spec)
  elif kind == 'tfds':
    _tfds_builder(spec[len(TFDS_PREFIX):])


def _tfds_parse(spec: str) -> Tuple[str, str]:
  if '@' not in spec:
    raise SourceError(f'tfds source {TFDS_PREFIX}{spec} needs @SPLIT, e.g. tfds:coco/2017@train')
  name, split = spec.rsplit('@', 1)
  return name, split


def _tfds_builder(spec: str):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name, _ = _tfds_parse(spec)
  try:
    return tfds.builder(name, data_dir=os.environ.get('TFDS_DATA_DIR'))
  except Exception as e:  # pylint: disable=broad-except
    raise SourceError(f'tfds dataset {name!r}: {str(e).splitlines()[0]}') from None


def _tfds_items(spec: str, shard_index: int, num_shards: int) -> Iterator[Item]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name, split = _tfds_parse(spec)
  try:
    dataset = tfds.load(name, split=split, data_dir=os.environ.get('TFDS_DATA_DIR'),
                        shuffle_files=False, download=False)
  except Exception as e:  # pylint: disable=broad-except
    raise SourceError(f'tfds {name}@{split}: {str(e).splitlines()[0]}') from None
  dataset = dataset.shard(num_shards, shard_index)
  for position, ex in enumerate(tfds.as_numpy(dataset)):
    index = shard_index + position * num_shards
    sid = ex.get('image/id', ex.get('id', index + 1))
    if isinstance(sid, bytes):
      sid = sid.decode()
    yield Item(str(int(sid) if np.ndim(sid) == 0 and not isinstance(sid, str) else sid),
               None, pixels=np.asarray(ex['image']), name=f'{name}@{split}[{index}]')


def decode(item: Item) -> Tuple[np.ndarray, bytes]:
  """(uint8 RGB pixels, RGB JPEG bytes to store); raises on undecodable data."""
  if item.pixels is not None:
    pixels = np.asarray(item.pixels)
    if pixels.ndim == 2:
      pixels = pixels[..., None]
    if pixels.shape[-1] == 1:
      pixels = np.repeat(pixels, 3, axis=-1)
    pixels = np.ascontiguousarray(pixels[..., :3].astype(np.uint8))
    return pixels, image_io.jpeg_bytes(pixels)
  if item.encoded is None:
    raise SourceError('unreadable file')
  return image_io.decode_rgb(item.encoded)
