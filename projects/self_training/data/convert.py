r"""Converters from real data sets to the TFRecord schema of the embedded data set.

  coco    COCO detection JSON + images -> detection TFRecords, through Model Garden's
          `official/vision/data/create_coco_tf_record.py` (same flags).
  images  a folder of unlabeled images (searched recursively) -> image-only TFRecords, the
          schema of `unlabeled_scenes` (Open Images / ImageNet as unlabeled data).
  voc     PASCAL VOC 2012 (or SegmentationClassAug) -> segmentation TFRecords, the schema
          of `voc_*` (mask values are palette indices; 255 stays the ignore label).
  subset  a deterministic fraction of a labeled split (the paper's Table 3: 20 / 50 / 100%
          of COCO): records ranked by a salted hash of their source id, the first
          ceil(fraction * N) kept, so the 20% subset lies inside the 50% one.

Shards are written under a hidden temporary name and renamed when complete, followed by
a `{output_file_prefix}.summary.json` with counts and every skipped file.

Usage:
  python -m projects.self_training.data.convert coco --image_dir=train2017 \
      --object_annotations_file=instances_train2017.json --include_masks \
      --output_file_prefix=/data/coco/train
  python -m projects.self_training.data.convert images --input_dir=/photos \
      --output_file_prefix=/data/unlabeled/photos
  python -m projects.self_training.data.convert voc --voc_root=VOCdevkit/VOC2012 \
      --voc_split=train --output_file_prefix=/data/voc/voc_train
  python -m projects.self_training.data.convert subset \
      --input_pattern='/data/coco/train-*.tfrecord' --fraction=0.2 \
      --output_file_prefix=/data/coco/subsets/train_20pct
"""

import hashlib
import io
import math
import multiprocessing
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np
from PIL import Image
import tensorflow as tf
import tqdm

# Importing it defines Model Garden's flags (--image_dir, --object_annotations_file,
# --output_file_prefix, --num_shards, --include_masks, --num_processes), reused here.
from official.vision.data import create_coco_tf_record
from official.vision.data import tf_example_builder
from official.vision.data import tfrecord_lib

from projects.self_training.common import cli
from projects.self_training.common import file_io
from projects.self_training.data.image_io import DEFAULT_SOURCE_ID_OFFSET
from projects.self_training.data.image_io import rgb_image_bytes


# ----------------------------------------------------------------------------------------
# Shared pieces.


def _require(path: str, what: str) -> None:
  if not path or not tf.io.gfile.exists(path):
    raise ValueError(f'{what} {path!r} does not exist')


def _shard_suffixes(num_shards: int) -> List[str]:
  """Model Garden's shard names after the prefix (`tfrecord_lib.write_tf_record_dataset`)."""
  return [f'-{i:05d}-of-{num_shards:05d}.tfrecord' for i in range(num_shards)]


def _write_summary(output_prefix: str, summary: Dict[str, Any]) -> str:
  path = output_prefix + '.summary.json'
  file_io.write_json(path, summary, indent=1)
  return path


def _print_summary(kind: str, summary: Dict[str, Any]) -> None:
  print(f'convert {kind}: wrote {summary["num_written"]} images to '
        f'{summary["output_pattern"]} in {summary["seconds"]:.1f} s; '
        f'skipped {summary["num_skipped"]}', flush=True)
  for item in summary.get('skipped', []):
    print(f'  skipped {item["file"]}: {item["reason"]}', flush=True)


def list_files(directory: str) -> List[str]:
  """Every file under `directory` (recursive), sorted."""
  return sorted(os.path.join(root, name)
                for root, _, names in tf.io.gfile.walk(directory) for name in names)


def _write_shards(output_prefix: str, results, total: int, num_shards: int,
                  desc: str) -> Tuple[int, List[Dict[str, str]], List[str]]:
  """Writes (serialized example | None, file, reason) results round-robin into shards."""
  suffixes = _shard_suffixes(num_shards)
  written, skipped = 0, []
  with file_io.atomic_write(output_prefix, suffixes) as tmp_prefix:
    writers = [tf.io.TFRecordWriter(tmp_prefix + suffix) for suffix in suffixes]
    try:
      for serialized, file, reason in tqdm.tqdm(results, total=total, desc=desc,
                                                unit='img', mininterval=2):
        if serialized is None:
          skipped.append({'file': file, 'reason': reason})
          continue
        writers[written % num_shards].write(serialized)
        written += 1
    finally:
      for writer in writers:
        writer.close()
  return written, skipped, [output_prefix + suffix for suffix in suffixes]


def _imap(function, items: Sequence[Any], num_processes: Optional[int]):
  if not num_processes:
    return map(function, items)
  pool = multiprocessing.get_context('fork').Pool(num_processes)
  def results():
    try:
      yield from pool.imap(function, items, chunksize=16)
    finally:
      pool.close()
      pool.join()
  return results()


# ----------------------------------------------------------------------------------------
# images: a folder of unlabeled images.


def _image_example(args) -> Tuple[Optional[bytes], str, str]:
  file, sid = args
  try:
    with tf.io.gfile.GFile(file, 'rb') as f:
      encoded, height, width = rgb_image_bytes(f.read())
  except Exception as e:  # pylint: disable=broad-except
    return None, file, f'{type(e).__name__}: {e}'.splitlines()[0]
  builder = tf_example_builder.TfExampleBuilder()
  builder.add_encoded_image_feature(encoded, 'JPEG', height, width, 3, str(sid).encode())
  return builder.example.SerializeToString(deterministic=True), file, ''


def convert_images(input_dir: str, output_prefix: str, num_shards: int = 32,
                   source_id_offset: int = DEFAULT_SOURCE_ID_OFFSET,
                   num_processes: Optional[int] = 0) -> Dict[str, Any]:
  """Converts every readable image under `input_dir` to image-only TFRecords.

  Unreadable files are skipped and listed in the summary (returned and written to
  `{output_prefix}.summary.json`). Source ids are `source_id_offset + 1 + file index`
  in sorted path order, so they are unique and stable.
  """
  _require(input_dir, 'Input folder')
  if not tf.io.gfile.isdir(input_dir):
    raise ValueError(f'Input folder {input_dir!r} is not a folder')
  start = time.time()
  files = list_files(input_dir)
  tasks = [(file, source_id_offset + 1 + i) for i, file in enumerate(files)]
  num_shards = max(1, min(num_shards, len(files)))
  written, skipped, paths = _write_shards(
      output_prefix, _imap(_image_example, tasks, num_processes), len(tasks), num_shards,
      'images')
  summary = {
      'input_dir': input_dir, 'output_pattern': f'{output_prefix}-*.tfrecord',
      'shards': paths, 'num_files': len(files), 'num_written': written,
      'num_skipped': len(skipped), 'skipped': skipped,
      'source_id_offset': source_id_offset, 'seconds': round(time.time() - start, 2),
  }
  _write_summary(output_prefix, summary)
  return summary


# ----------------------------------------------------------------------------------------
# voc: PASCAL VOC 2012 segmentation.


def _read_mask(encoded: bytes) -> np.ndarray:
  mask = Image.open(io.BytesIO(encoded))
  mask.load()
  if mask.mode not in ('P', 'L'):
    raise ValueError(f'mask mode {mask.mode} is not class indices (palette or L)')
  return np.asarray(mask, np.uint8)


def _voc_example(args) -> Tuple[Optional[bytes], str, str]:
  image_file, mask_file, sid = args
  try:
    with tf.io.gfile.GFile(image_file, 'rb') as f:
      encoded, height, width = rgb_image_bytes(f.read())
    with tf.io.gfile.GFile(mask_file, 'rb') as f:
      mask = _read_mask(f.read())
    if mask.shape != (height, width):
      raise ValueError(f'mask {mask.shape} and image {(height, width)} sizes differ')
  except Exception as e:  # pylint: disable=broad-except
    return None, image_file, f'{type(e).__name__}: {e}'.splitlines()[0]
  builder = tf_example_builder.TfExampleBuilder()
  builder.add_encoded_image_feature(encoded, 'JPEG', height, width, 3, str(sid).encode())
  builder.add_semantic_mask_matrix_feature(mask)
  return builder.example.SerializeToString(deterministic=True), image_file, ''


def convert_voc(voc_root: str, split: str, output_prefix: str,
                mask_dir: Optional[str] = None, image_set_file: Optional[str] = None,
                num_shards: int = 32, source_id_offset: int = DEFAULT_SOURCE_ID_OFFSET,
                num_processes: Optional[int] = 0) -> Dict[str, Any]:
  """Converts a VOC 2012 segmentation split to TFRecords with class-index masks.

  Args:
    voc_root: folder with JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/.
    split: name of the image set (`ImageSets/Segmentation/{split}.txt`).
    output_prefix: shards are written to `{output_prefix}-0000i-of-0000n.tfrecord`.
    mask_dir: mask folder instead of `SegmentationClass` (e.g. SegmentationClassAug).
    image_set_file: list of image ids instead of the split's list (e.g. train_aug.txt).
    num_shards: number of output shards.
    source_id_offset: source ids are offset + 1 + position in the list.
    num_processes: worker processes (0 = in this process).

  Returns:
    The summary, also written to `{output_prefix}.summary.json`.
  """
  _require(voc_root, 'VOC root')
  image_dir = os.path.join(voc_root, 'JPEGImages')
  mask_dir = mask_dir or os.path.join(voc_root, 'SegmentationClass')
  image_set_file = image_set_file or os.path.join(
      voc_root, 'ImageSets', 'Segmentation', f'{split}.txt')
  for path, what in ((image_dir, 'VOC image folder'), (mask_dir, 'VOC mask folder'),
                     (image_set_file, 'VOC image set')):
    _require(path, what)
  start = time.time()
  with tf.io.gfile.GFile(image_set_file, 'r') as f:
    ids = [line.split()[0] for line in f if line.strip()]
  tasks = [(os.path.join(image_dir, f'{image_id}.jpg'),
            os.path.join(mask_dir, f'{image_id}.png'), source_id_offset + 1 + i)
           for i, image_id in enumerate(ids)]
  num_shards = max(1, min(num_shards, len(tasks)))
  written, skipped, paths = _write_shards(
      output_prefix, _imap(_voc_example, tasks, num_processes), len(tasks), num_shards,
      f'voc {split}')
  summary = {
      'voc_root': voc_root, 'split': split, 'mask_dir': mask_dir,
      'image_set_file': image_set_file, 'output_pattern': f'{output_prefix}-*.tfrecord',
      'shards': paths, 'num_listed': len(ids), 'num_written': written,
      'num_skipped': len(skipped), 'skipped': skipped, 'ignore_label': 255,
      'source_id_offset': source_id_offset, 'seconds': round(time.time() - start, 2),
  }
  _write_summary(output_prefix, summary)
  return summary


# ----------------------------------------------------------------------------------------
# coco: Model Garden's converter.


def convert_coco(image_dirs: Sequence[str], object_annotations_file: str,
                 output_prefix: str, num_shards: int = 32, include_masks: bool = True,
                 num_processes: Optional[int] = 0) -> Dict[str, Any]:
  """Converts COCO-format detection data with Model Garden's create_coco_tf_record.

  Model Garden's functions do the conversion; this adds input checks, temporary
  shard names renamed when complete, and the summary JSON.
  """
  _require(object_annotations_file, 'COCO annotation file')
  image_dirs = [image_dirs] if isinstance(image_dirs, str) else list(image_dirs)
  if not image_dirs:
    raise ValueError('No COCO image folder given (--image_dir)')
  for image_dir in image_dirs:
    _require(image_dir, 'COCO image folder')
  start = time.time()
  # pylint: disable=protected-access
  images = create_coco_tf_record._load_images_info(object_annotations_file)
  img_to_obj_annotation, id_to_name_map = (
      create_coco_tf_record._load_object_annotations(object_annotations_file))
  # pylint: enable=protected-access
  annotations = create_coco_tf_record.generate_annotations(
      images=images, image_dirs=image_dirs, img_to_obj_annotation=img_to_obj_annotation,
      id_to_name_map=id_to_name_map, include_masks=include_masks)
  num_shards = max(1, min(num_shards, len(images)))
  suffixes = _shard_suffixes(num_shards)
  with file_io.atomic_write(output_prefix, suffixes) as tmp_prefix:
    num_skipped_annotations = tfrecord_lib.write_tf_record_dataset(
        tmp_prefix, annotations, create_coco_tf_record.create_tf_example, num_shards,
        multiple_processes=num_processes)
  paths = [output_prefix + suffix for suffix in suffixes]
  summary = {
      'image_dirs': image_dirs, 'object_annotations_file': object_annotations_file,
      'output_pattern': f'{output_prefix}-*.tfrecord', 'shards': paths,
      'num_written': len(images), 'num_skipped': 0,
      'num_skipped_annotations': num_skipped_annotations,
      'include_masks': include_masks, 'seconds': round(time.time() - start, 2),
  }
  _write_summary(output_prefix, summary)
  return summary


# ----------------------------------------------------------------------------------------
# Labeled fractions.

SUBSET_SALT = 'rethinking-self-training-subset'


def _source_id(record: bytes, where: str) -> bytes:
  feature = tf.train.Example.FromString(record).features.feature.get('image/source_id')
  if feature is None or not feature.bytes_list.value:
    raise ValueError(f'{where} has no image/source_id to rank it by')
  return feature.bytes_list.value[0]


def _records(files: Sequence[str]):
  for file in files:
    for i, record in enumerate(tf.data.TFRecordDataset(file).as_numpy_iterator()):
      yield record, f'record {i} of {file}'


def subset_split(input_pattern: str, fraction: float, output_prefix: str, num_shards: int = 1,
                 salt: str = SUBSET_SALT) -> Dict[str, Any]:
  """Writes the first ceil(fraction * N) records of a split in salted-hash order of their
  source ids (records keep their input order and bytes). Subsets of one split with one
  salt are nested: every record of a smaller fraction is in every larger one."""
  if not 0 < fraction <= 1:
    raise ValueError(f'--fraction must be in (0, 1], got {fraction}')
  start = time.time()
  files = sorted(tf.io.gfile.glob(input_pattern))
  if not files:
    raise ValueError(f'no TFRecord matches {input_pattern!r}')
  ids = [_source_id(record, where) for record, where in _records(files)]
  if len(set(ids)) != len(ids):
    duplicate = next(i for i in ids if ids.count(i) > 1)
    raise ValueError(f'source id {duplicate.decode()!r} appears twice in {input_pattern!r}')
  count = math.ceil(fraction * len(ids))
  keep = set(sorted(ids, key=lambda i: hashlib.sha256(salt.encode() + b'/' + i).digest())
             [:count])
  results = ((record, where, '') for record, where in _records(files)
             if _source_id(record, where) in keep)
  written, _, paths = _write_shards(output_prefix, results, count, num_shards,
                                    f'subset {fraction:g}')
  summary = {
      'input_pattern': input_pattern, 'fraction': fraction, 'salt': salt,
      'num_input': len(ids), 'num_written': written, 'num_skipped': 0,
      'output_pattern': f'{output_prefix}-*.tfrecord', 'shards': paths,
      'source_ids': sorted(i.decode() for i in keep), 'seconds': round(time.time() - start, 2),
  }
  _write_summary(output_prefix, summary)
  return summary


# ----------------------------------------------------------------------------------------
# Command line.

flags.DEFINE_string('input_dir', None, 'images: folder of images (searched recursively).')
flags.DEFINE_string('voc_root', None, 'voc: VOC2012 folder (JPEGImages/, ...).')
flags.DEFINE_string('voc_split', 'train', 'voc: image set name (train, val, trainval).')
flags.DEFINE_string('voc_mask_dir', None,
                    'voc: mask folder instead of SegmentationClass (e.g. '
                    'SegmentationClassAug).')
flags.DEFINE_string('voc_image_set', None, 'voc: image id list instead of '
                    'ImageSets/Segmentation/{voc_split}.txt (e.g. train_aug.txt).')
flags.DEFINE_string('input_pattern', None, 'subset: the labeled split\'s TFRecord pattern.')
flags.DEFINE_float('fraction', None, 'subset: fraction of the split to keep, in (0, 1].')
flags.DEFINE_string('subset_salt', SUBSET_SALT, 'subset: salt of the ranking hash.')
flags.DEFINE_integer('source_id_offset', DEFAULT_SOURCE_ID_OFFSET,
                     'images, voc: source ids start after this number.')

_COMMANDS = ('coco', 'images', 'voc', 'subset')


def main(argv):
  if len(argv) != 2 or argv[1] not in _COMMANDS:
    raise app.UsageError(f'Give one command: {" | ".join(_COMMANDS)} (got {argv[1:]})')
  fl = flags.FLAGS
  command = argv[1]
  with cli.errors_in_one_line(ValueError, prefix=f'convert {command}: error'):
    # Model Garden's create_coco_tf_record defaults it to /tmp/train: never write there
    # (over an earlier conversion) unasked.
    if not fl['output_file_prefix'].present:
      raise ValueError('--output_file_prefix is required (where to write the TFRecords)')
    if command == 'coco':
      summary = convert_coco([d for d in fl.image_dir if d], fl.object_annotations_file,
                             fl.output_file_prefix, fl.num_shards, fl.include_masks,
                             fl.num_processes)
    elif command == 'images':
      summary = convert_images(fl.input_dir, fl.output_file_prefix, fl.num_shards,
                               fl.source_id_offset, fl.num_processes)
    elif command == 'subset':
      if fl.fraction is None or not fl.input_pattern:
        raise ValueError('subset needs --input_pattern, --fraction and --output_file_prefix')
      summary = subset_split(fl.input_pattern, fl.fraction, fl.output_file_prefix,
                             fl['num_shards'].value if fl['num_shards'].present else 1,
                             fl.subset_salt)
    else:
      summary = convert_voc(fl.voc_root, fl.voc_split, fl.output_file_prefix,
                            fl.voc_mask_dir, fl.voc_image_set, fl.num_shards,
                            fl.source_id_offset, fl.num_processes)
  _print_summary(command, summary)


if __name__ == '__main__':
  app.run(main)
