"""Labels a pool shard by shard: decoding, batched teacher calls, atomic shards, the merge.

Each shard is written under a temporary name and renamed when complete, followed by its
sidecar JSON; a re-run skips shards whose sidecar exists. When every shard is done, `merge`
writes `pseudo_labels.json` and `summary.json`. `pseudo_label/beam_labeler.py` runs the same
`label_shard` and `merge` as a Beam pipeline.
"""

import collections
import concurrent.futures
import os
import re
import sys
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tqdm

from projects.self_training.common.file_io import atomic_write
from projects.self_training.common.file_io import read_json
from projects.self_training.common.file_io import write_json
from projects.self_training.pseudo_label import sources
from projects.self_training.pseudo_label.fusion import DEFAULT_THRESHOLD
from projects.self_training.pseudo_label.fusion import keep
from projects.self_training.pseudo_label.fusion import segmentation_mask
from projects.self_training.pseudo_label.records import Labeled
from projects.self_training.pseudo_label.records import SegLabeled
from projects.self_training.pseudo_label.schema import COCO_JSON
from projects.self_training.pseudo_label.schema import record_pattern
from projects.self_training.pseudo_label.schema import shard_name
from projects.self_training.pseudo_label.schema import SUMMARY
from projects.self_training.pseudo_label.teacher import LabelerError
from projects.self_training.pseudo_label.teacher import Teacher


def _decode_all(items: Iterable[sources.Item], workers: int = 2) -> Iterator[Tuple]:
  """(item, pixels, stored bytes, error) in input order; decoding runs in threads."""
  def work(item):
    try:
      pixels, stored = sources.decode(item)
      if pixels.ndim != 3 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(f'bad image shape {pixels.shape}')
      return item, pixels, stored, ''
    except Exception as e:  # pylint: disable=broad-except
      # Without object addresses (PIL's '<_io.BytesIO object at 0x...>'): the reason is
      # part of the output, which is deterministic.
      reason = re.sub(r' at 0x[0-9a-fA-F]+', '', f'{type(e).__name__}: {e}'.splitlines()[0])
      return item, None, None, reason
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(work, item))
      if len(pending) >= 256:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


def _batches(decoded: Iterator[Tuple], batch_size: int) -> Iterator[List[Tuple]]:
  chunk = []
  for entry in decoded:
    chunk.append(entry)
    if len(chunk) == batch_size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def label_chunk(teacher: Teacher, chunk: Sequence[Tuple], threshold: float,
                ignore_threshold: Optional[float] = None):
  """Pseudo labels for one chunk, in input order; one model call per distinct image size."""
  by_shape = collections.defaultdict(list)
  for pos, (_, pixels, _, err) in enumerate(chunk):
    if not err:
      by_shape[pixels.shape].append(pos)
  results: Dict[int, Labeled] = {}
  declared = [int(c['id']) for c in teacher.categories]
  for positions in by_shape.values():
    outputs = teacher(np.stack([chunk[p][1] for p in positions]))
    for i, p in enumerate(positions):
      item, pixels, stored, _ = chunk[p]
      if teacher.task == 'segmentation':
        mask = segmentation_mask(outputs['probabilities'][i], threshold, teacher.ignore_label)
        results[p] = SegLabeled(item.source_id, stored, pixels.shape[0], pixels.shape[1],
                                mask, teacher.ignore_label)
        continue
      boxes, classes, scores = keep(outputs, i, threshold, ignore_threshold, declared)
      results[p] = Labeled(item.source_id, stored, pixels.shape[0], pixels.shape[1],
                           boxes, classes, scores)
  return [(chunk[p][0], results.get(p), chunk[p][3]) for p in range(len(chunk))]


def _labeled_chunks(teacher: Teacher, chunks: Iterator[List[Tuple]], threshold: float,
                    ignore_threshold: Optional[float]) -> Iterator[List[Tuple]]:
  """`label_chunk` over `chunks`, one chunk ahead in a thread.

  The model call of chunk k+1 (which releases the GIL) overlaps the writing of chunk k.
  """
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    ahead = None
    for chunk in chunks:
      submitted = pool.submit(label_chunk, teacher, chunk, threshold, ignore_threshold)
      if ahead is not None:
        yield ahead.result()
      ahead = submitted
    if ahead is not None:
      yield ahead.result()


def _image_id(source_id: str, fallback: int) -> Any:
  return int(source_id) if source_id.isdigit() else fallback


def label_shard(teacher: Teacher, source: str, output_dir: str, shard_index: int,
                num_shards: int, threshold: float = DEFAULT_THRESHOLD, batch_size: int = 64,
                progress: bool = True,
                ignore_threshold: Optional[float] = None) -> Dict[str, Any]:
  """Labels shard `shard_index` of `source` into `output_dir`; returns its sidecar."""
  name = shard_name(shard_index, num_shards)
  final = os.path.join(output_dir, name + '.tfrecord')
  images, annotations, skipped = [], [], []
  per_class = collections.Counter()
  num_empty = num_ignored = num_pixels = 0
  start = time.time()
  bar = tqdm.tqdm(desc=f'pseudo-label {name}', unit='img', disable=not progress,
                  mininterval=2, file=sys.stdout)
  try:
    with atomic_write(final) as tmp, tf.io.TFRecordWriter(tmp) as writer:
      items = sources.iterate(source, shard_index, num_shards)
      chunks = _batches(_decode_all(items), batch_size)
      for labeled_chunk in _labeled_chunks(teacher, chunks, threshold, ignore_threshold):
        for item, labeled, err in labeled_chunk:
          bar.update(1)
          if labeled is None:
            skipped.append({'source_id': item.source_id, 'input': item.name, 'reason': err})
            continue
          writer.write(labeled.example())
          image, anns = labeled.coco(
              _image_id(item.source_id, len(images)), len(annotations) + 1)
          images.append(image)
          annotations.extend(anns)
          stats = labeled.stats()
          per_class.update(stats['per_class'])
          num_empty += stats['empty']
          num_ignored += stats['ignored']
          num_pixels += stats['pixels']
  finally:
    bar.close()
  seconds = time.time() - start
  unit = 'pixels' if teacher.task == 'segmentation' else 'boxes'
  sidecar = {
      'shard': name, 'records': os.path.basename(final), 'num_images': len(images),
      'num_boxes': len(annotations), 'num_empty_images': num_empty,
      'num_ignore_boxes' if unit == 'boxes' else 'num_ignored_pixels': num_ignored,
      'num_pixels': num_pixels,
      f'{unit}_per_class': {str(k): v for k, v in sorted(per_class.items())},
      'num_skipped': len(skipped), 'skipped': skipped, 'seconds': seconds,
      'images_per_second': len(images) / max(seconds, 1e-9),
      'images': images, 'annotations': annotations,
  }
  write_json(os.path.join(output_dir, name + '.json'), sidecar, indent=None)
  return sidecar


def merge(output_dir: str, num_shards: int, teacher_path: str, categories: List[Dict],
          threshold: float, source: str, ignore_threshold: Optional[float] = None,
          flip: bool = False) -> Optional[Dict[str, Any]]:
  """Writes summary.json and the COCO JSON once every shard's sidecar exists."""
  paths = [os.path.join(output_dir, shard_name(i, num_shards) + '.json')
           for i in range(num_shards)]
  if not all(tf.io.gfile.exists(p) for p in paths):
    return None
  shards = [read_json(p) for p in paths]
  images, annotations = [], []
  for s in shards:
    images.extend(s['images'])
    for a in s['annotations']:
      annotations.append(dict(a, id=len(annotations) + 1))
  segmentation = 'pixels_per_class' in shards[0]
  unit = 'pixels' if segmentation else 'boxes'
  per_class = collections.Counter()
  for s in shards:
    per_class.update({int(k): v for k, v in s[f'{unit}_per_class'].items()})
  names = {int(c['id']): c['name'] for c in categories}
  num_images = sum(s['num_images'] for s in shards)
  common = {
      'saved_model': teacher_path, 'flip': flip, 'input': source, 'threshold': threshold,
      'num_shards': num_shards, 'num_images': num_images,
      'num_skipped': sum(s['num_skipped'] for s in shards),
      'skipped': [x for s in shards for x in s['skipped']],
      'seconds': sum(s['seconds'] for s in shards),
      'records': record_pattern(output_dir),
  }
  if segmentation:
    num_pixels = sum(s['num_pixels'] for s in shards)
    labeled = sum(per_class.values())
    summary = dict(
        common, task='segmentation',
        num_pixels=num_pixels,
        ignored_pixel_fraction=sum(s['num_ignored_pixels'] for s in shards) / max(num_pixels, 1),
        num_empty_images=sum(s['num_empty_images'] for s in shards),
        pixels_per_class={names.get(k, str(k)): v for k, v in sorted(per_class.items())},
        class_histogram={names.get(k, str(k)): round(v / max(labeled, 1), 6)
                         for k, v in sorted(per_class.items())})
    write_json(os.path.join(output_dir, COCO_JSON),
               {'images': images, 'annotations': [], 'categories': categories}, indent=None)
    write_json(os.path.join(output_dir, SUMMARY), summary)
    return summary
  summary = dict(
      common,
      ignore_threshold=ignore_threshold,
      num_ignore_boxes=sum(s.get('num_ignore_boxes', 0) for s in shards),
      num_boxes=sum(s['num_boxes'] for s in shards),
      boxes_per_image=sum(s['num_boxes'] for s in shards) / max(num_images, 1),
      num_empty_images=sum(s['num_empty_images'] for s in shards),
      boxes_per_class={names.get(k, str(k)): v for k, v in sorted(per_class.items())})
  write_json(os.path.join(output_dir, COCO_JSON),
             {'images': images, 'annotations': annotations, 'categories': categories},
             indent=None)
  write_json(os.path.join(output_dir, SUMMARY), summary)
  return summary


def check_args(source: str, threshold: float, num_shards: int,
               shard_index: Optional[int] = None,
               ignore_threshold: Optional[float] = None) -> None:
  """Raises LabelerError (one line) on a bad flag or an input that names nothing."""
  if num_shards < 1:
    raise LabelerError(f'--num_shards must be >= 1, got {num_shards}')
  if shard_index is not None and not 0 <= shard_index < num_shards:
    raise LabelerError(f'--shard_index must be in [0, {num_shards}), got {shard_index}')
  if not 0.0 <= threshold <= 1.0:
    raise LabelerError(f'--threshold must be in [0, 1], got {threshold}')
  if ignore_threshold is not None and not 0.0 <= ignore_threshold <= threshold:
    raise LabelerError(f'--ignore_threshold must be in [0, --threshold], got {ignore_threshold}')
  try:
    sources.check(source)
  except sources.SourceError as e:
    raise LabelerError(str(e)) from None


def shard_done(output_dir: str, shard_index: int, num_shards: int) -> bool:
  """A shard is complete when its sidecar JSON exists (written after its records)."""
  return tf.io.gfile.exists(os.path.join(output_dir, shard_name(shard_index, num_shards) + '.json'))


def run(saved_model: str, source: str, output_dir: str, threshold: float = DEFAULT_THRESHOLD,
        num_shards: int = 1, shard_index: Optional[int] = None, batch_size: int = 64,
        progress: bool = True, teacher: Optional[Teacher] = None,
        ignore_threshold: Optional[float] = None, flip: bool = False) -> Dict[str, Any]:
  """Labels every missing shard (or only `shard_index`); returns the summary when complete.

  A shard is done when its sidecar JSON exists; done shards are not redone.
  """
  check_args(source, threshold, num_shards, shard_index, ignore_threshold)
  teacher = teacher or Teacher(saved_model, flip)
  tf.io.gfile.makedirs(output_dir)
  todo = range(num_shards) if shard_index is None else [shard_index]
  done = 0
  for i in todo:
    if shard_done(output_dir, i, num_shards):
      done += 1
      continue
    label_shard(teacher, source, output_dir, i, num_shards, threshold, batch_size, progress,
                ignore_threshold)
  if done and progress:
    print(f'pseudo-label: {done} shard(s) already complete in {output_dir}, skipped')
  summary = merge(output_dir, num_shards, teacher.path, teacher.categories, threshold, source,
                  ignore_threshold, flip=getattr(teacher, 'flip', False))
  return summary or {'complete': False, 'output_dir': output_dir}


def describe(summary: Dict[str, Any]) -> str:
  """One line on a complete pseudo-label set."""
  if summary.get('task') == 'segmentation':
    return (f'pseudo-label: {summary["num_images"]} images, '
            f'{100 * summary["ignored_pixel_fraction"]:.1f}% of pixels ignored, '
            f'{summary["num_empty_images"]} wholly ignored, {summary["num_skipped"]} skipped '
            f'-> {summary["records"]}')
  return (f'pseudo-label: {summary["num_images"]} images, {summary["num_boxes"]} boxes '
          f'({summary["boxes_per_image"]:.2f}/image), {summary["num_empty_images"]} with no box, '
          f'{summary["num_ignore_boxes"]} ignore regions, {summary["num_skipped"]} skipped '
          f'-> {summary["records"]}')
