r"""Pseudo-labels unlabeled images with an exported teacher (the SavedModel alone).

Detection and segmentation alike: the SavedModel's label map (`assets.extra/label_map.json`)
says which (`"task": "segmentation"`, else detection).

Segmentation: the teacher's class probabilities (averaged over its export's scales and
flips) give each pixel its top class where that probability is >= `--threshold` (0.5)
and the ignore label (255) elsewhere; the records have the schema of the human masks
(`image/segmentation/class/encoded`, PNG). The summary gives the fraction of ignored
pixels and the class pixel histogram.

Detection: boxes with score >= `--threshold` (the paper's hard threshold, 0.5) are kept and written
as TFRecords in the schema of the human labels (Model Garden's `tf_example_decoder` reads
both), with the score in `image/object/bbox/confidence` and, in per mille, in the attribute
`image/object/attribute/score_permille` (what a student with `pseudo_score_weight` reads).
Images with no kept box are still written: they teach background.

With `--ignore_threshold` below `--threshold`, boxes scored in between are written too,
with class `IGNORE_CLASS` (-2): the student gives the anchors they match no loss at all,
instead of teaching the teacher's uncertain objects as background (an uncertain box on an
object the teacher kept, i.e. another class's guess, is dropped). They are left out of
the COCO JSON and counted separately.

Test-time augmentation (detection): `--saved_model` may list several exports of one
detector at different input sizes (`./run.sh export --input_size 128` writes
`saved_model_128/`), and `--flip` adds each image mirrored. Every view labels the image;
boxes of one class that overlap (IoU >= 0.55) across views are fused into their
score-weighted mean box with the mean score over all views (`fuse_views`), so an object
seen in every view keeps its score and one seen in a single view of four keeps a quarter:
on the embedded teacher, 96 + 128 px, each mirrored, raised recall at the same precision.

The pool is split into `--num_shards` shards (item `k` goes to shard `k % num_shards`).
Each shard is written under a temporary name and renamed when complete, followed by its
sidecar JSON (its COCO images and annotations, counts, skipped inputs); a re-run skips
shards whose sidecar exists, so a killed run resumes without duplicate or partial records.
`--shard_index` runs one shard (one worker each); without it, every missing shard runs
here. When the last shard is done, `pseudo_labels.json` (COCO format, with scores) and
`summary.json` (images, boxes, boxes per class, empty images, skipped inputs) are written.

  python -m projects.self_training.pseudo_label.labeler \
      --saved_model=runs/teacher_export/saved_model \
      --input='.cache/emoji_scenes/unlabeled_scenes-*.tfrecord' --output_dir=runs/pseudo
"""

import collections
import concurrent.futures
import dataclasses
import os
import re
import sys
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tqdm

from official.vision.data import tf_example_builder

from projects.self_training.common import cli
from projects.self_training.common.file_io import atomic_write
from projects.self_training.common.file_io import read_json
from projects.self_training.common.file_io import write_json
from projects.self_training.pseudo_label import sources
from projects.self_training.pseudo_label.schema import COCO_JSON
from projects.self_training.pseudo_label.schema import IGNORE_CLASS
from projects.self_training.pseudo_label.schema import LABEL_MAP
from projects.self_training.pseudo_label.schema import record_pattern
from projects.self_training.pseudo_label.schema import SCORE_ATTRIBUTE
from projects.self_training.pseudo_label.schema import shard_name
from projects.self_training.pseudo_label.schema import SUMMARY

DEFAULT_THRESHOLD = 0.5
# An uncertain box overlapping a kept one at least this much is the same object: dropped.
DUPLICATE_IOU = 0.5


class LabelerError(ValueError):
  """A missing SavedModel, a missing input, a bad flag: reported in one line."""


class Teacher:
  """The exported detector: batched uint8 images in, kept boxes out.

  `saved_model_dir` is one SavedModel, or several exports of the same detector at different
  input sizes (a list, or comma-separated); with more than one, or with `flip`, every
  image is labeled in each view (each SavedModel, each also on the mirrored image) and
  the views' detections are fused (`fuse_views`): test-time augmentation for pseudo
  labels. The first SavedModel's label map is the teacher's.
  """

  def __init__(self, saved_model_dir, flip: bool = False):
    paths = ([p for p in saved_model_dir.split(',') if p] if isinstance(saved_model_dir, str)
             else list(saved_model_dir))
    if not paths:
      raise LabelerError('no SavedModel given')
    for path in paths:
      if not tf.io.gfile.exists(os.path.join(path, 'saved_model.pb')):
        raise LabelerError(f'no SavedModel at {path} (saved_model.pb missing)')
    self.path = ','.join(paths)
    self.flip = flip
    self._models = [tf.saved_model.load(path) for path in paths]
    self._fns = [m.signatures['serving_default'] for m in self._models]
    self._input_name = next(iter(self._fns[0].structured_input_signature[1]))
    label_map = os.path.join(paths[0], LABEL_MAP)
    self.label_map = read_json(label_map) if tf.io.gfile.exists(label_map) else {}
    self.categories = self.label_map.get('categories', [])
    self.task = self.label_map.get('task', 'detection')
    self.ignore_label = int(self.label_map.get('ignore_label', 255))
    self.num_views = len(paths) * (2 if flip else 1)
    if self.num_views > 1:
      if self.task != 'detection':
        raise LabelerError('several SavedModels or --flip: detection only (a segmentation '
                           'export runs its scales and flips inside)')
      for path in paths[1:]:
        other = os.path.join(path, LABEL_MAP)
        cats = read_json(other).get('categories', []) if tf.io.gfile.exists(other) else []
        if cats != self.categories:
          raise LabelerError(f'{path} has another label map than {paths[0]}')

  def _call(self, fn, images: np.ndarray) -> Dict[str, np.ndarray]:
    out = fn(**{self._input_name: tf.constant(images)})
    return {k: v.numpy() for k, v in out.items()}

  def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
    """Serving outputs for a uint8 batch [n, h, w, 3] of one size (fused over the views)."""
    if self.num_views == 1:
      return self._call(self._fns[0], images)
    views = []
    for fn in self._fns:
      views.append(self._call(fn, images))
      if self.flip:
        mirrored = self._call(fn, np.ascontiguousarray(images[:, :, ::-1]))
        boxes = mirrored['detection_boxes'].copy()
        boxes[..., 1], boxes[..., 3] = 1.0 - mirrored['detection_boxes'][..., 3], \
            1.0 - mirrored['detection_boxes'][..., 1]
        views.append(dict(mirrored, detection_boxes=boxes))
    return fuse_views(views)


# Test-time augmentation (several views of each image): a view's detections scored below
# FUSE_MIN_SCORE are left out of the fusion (each would add less than FUSE_MIN_SCORE / views
# to a fused score), and boxes of one class overlapping at least FUSE_IOU are one object.
FUSE_MIN_SCORE = 0.05
FUSE_IOU = 0.55


def fuse_views(views: Sequence[Dict[str, np.ndarray]], iou: float = FUSE_IOU,
               min_score: float = FUSE_MIN_SCORE) -> Dict[str, np.ndarray]:
  """Weighted box fusion of several views' detections of the same images.

  `views`: serving outputs, boxes normalized [ymin, xmin, ymax, xmax] in the frame of the
  original image (a mirrored view's boxes mirrored back). Per image and class, the highest
  scored box not yet taken and every untaken box of its class overlapping it with IoU >=
  `iou` (from any view, its own included) form one object: its box is their
  score-weighted mean, its score their sum over the number of views, so an object seen in
  one view of four keeps a quarter of its score. Returns the serving outputs' layout, each
  image's objects by descending score, as many slots as one view has.
  """
  n, slots = views[0]['detection_scores'].shape[:2]
  boxes = np.zeros((n, slots, 4), np.float32)
  scores = np.zeros((n, slots), np.float32)
  classes = np.zeros((n, slots), np.float32)
  num = np.zeros((n,), np.float32)
  for i in range(n):
    b, s, c = [], [], []
    for v in views:
      k = int(v['num_detections'][i])
      take = v['detection_scores'][i, :k] >= min_score
      b.append(v['detection_boxes'][i, :k][take])
      s.append(v['detection_scores'][i, :k][take])
      c.append(v['detection_classes'][i, :k][take])
    b, s, c = np.concatenate(b), np.concatenate(s), np.concatenate(c)
    order = np.argsort(-s, kind='stable')
    b, s, c = b[order], s[order], c[order]
    same = (box_iou(b, b) >= iou) & (c[:, None] == c[None, :])
    free = np.ones(len(s), bool)
    fused = []
    for j in range(len(s)):
      if not free[j]:
        continue
      group = free & same[j]
      group[j] = True
      free &= ~group
      w = s[group]
      fused.append((float(w.sum()) / len(views), (b[group] * w[:, None]).sum(0) / w.sum(),
                    c[j]))
    fused.sort(key=lambda t: -t[0])
    fused = fused[:slots]
    num[i] = len(fused)
    for r, (score, box, cls) in enumerate(fused):
      scores[i, r], boxes[i, r], classes[i, r] = score, box, cls
  return {'detection_boxes': boxes, 'detection_scores': scores,
          'detection_classes': classes, 'num_detections': num}


@dataclasses.dataclass
class Labeled:
  """One image's pseudo labels: boxes normalized [ymin, xmin, ymax, xmax]."""
  source_id: str
  encoded: bytes
  height: int
  width: int
  boxes: np.ndarray
  classes: np.ndarray
  scores: np.ndarray

  def example(self) -> bytes:
    builder = tf_example_builder.TfExampleBuilder()
    builder.add_encoded_image_feature(self.encoded, 'JPEG', self.height, self.width, 3,
                                      self.source_id.encode())
    b = self.boxes
    builder.add_boxes_feature(
        xmins=b[:, 1].tolist(), xmaxs=b[:, 3].tolist(), ymins=b[:, 0].tolist(),
        ymaxs=b[:, 2].tolist(), labels=self.classes.tolist(), confidences=self.scores.tolist())
    areas = (b[:, 2] - b[:, 0]) * self.height * (b[:, 3] - b[:, 1]) * self.width
    builder.add_floats_feature('image/object/area', areas.tolist())
    builder.add_ints_feature('image/object/is_crowd', [0] * len(b))
    builder.add_ints_feature(f'image/object/attribute/{SCORE_ATTRIBUTE}',
                             np.round(1000 * self.scores).astype(np.int64).tolist())
    return builder.example.SerializeToString(deterministic=True)

  def stats(self) -> Dict[str, Any]:
    real = self.classes[self.classes != IGNORE_CLASS]
    return {'per_class': collections.Counter(int(c) for c in real), 'empty': int(len(real) == 0),
            'ignored': int(len(self.classes) - len(real)), 'pixels': 0}

  def coco(self, image_id: Any, first_annotation_id: int) -> Tuple[Dict, List[Dict]]:
    image = {'id': image_id, 'height': self.height, 'width': self.width}
    anns = []
    real = self.classes != IGNORE_CLASS
    for k, (box, cls, score) in enumerate(zip(self.boxes[real], self.classes[real],
                                              self.scores[real])):
      y0, x0 = box[0] * self.height, box[1] * self.width
      h, w = (box[2] - box[0]) * self.height, (box[3] - box[1]) * self.width
      anns.append({'id': first_annotation_id + k, 'image_id': image_id,
                   'category_id': int(cls), 'score': round(float(score), 5),
                   'bbox': [round(float(v), 3) for v in (x0, y0, w, h)],
                   'area': round(float(w * h), 3), 'iscrowd': 0})
    return image, anns


@dataclasses.dataclass
class SegLabeled:
  """One image's pseudo mask: a class per pixel, `ignore_label` where the teacher is unsure."""
  source_id: str
  encoded: bytes
  height: int
  width: int
  mask: np.ndarray   # uint8 [height, width]
  ignore_label: int = 255

  def example(self) -> bytes:
    builder = tf_example_builder.TfExampleBuilder()
    builder.add_encoded_image_feature(self.encoded, 'JPEG', self.height, self.width, 3,
                                      self.source_id.encode())
    builder.add_semantic_mask_matrix_feature(self.mask)
    return builder.example.SerializeToString(deterministic=True)

  def coco(self, image_id: Any, first_annotation_id: int) -> Tuple[Dict, List[Dict]]:
    del first_annotation_id
    return {'id': image_id, 'height': self.height, 'width': self.width}, []

  def stats(self) -> Dict[str, Any]:
    values, counts = np.unique(self.mask, return_counts=True)
    per_class = collections.Counter({int(v): int(c) for v, c in zip(values, counts)
                                     if v != self.ignore_label})
    ignored = int(self.mask.size - sum(per_class.values()))
    return {'per_class': per_class, 'empty': int(ignored == self.mask.size),
            'ignored': ignored, 'pixels': int(self.mask.size)}


def segmentation_mask(probabilities: np.ndarray, threshold: float,
                      ignore_label: int = 255) -> np.ndarray:
  """The top class per pixel where its probability is >= threshold, else `ignore_label`."""
  top = np.argmax(probabilities, axis=-1)
  confident = np.max(probabilities, axis=-1) >= threshold
  return np.where(confident, top, ignore_label).astype(np.uint8)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of every [ymin, xmin, ymax, xmax] box in `a` [n, 4] with every one in `b` [m, 4]."""
  y0 = np.maximum(a[:, None, 0], b[None, :, 0])
  x0 = np.maximum(a[:, None, 1], b[None, :, 1])
  y1 = np.minimum(a[:, None, 2], b[None, :, 2])
  x1 = np.minimum(a[:, None, 3], b[None, :, 3])
  inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
  area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
  return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def keep(outputs: Dict[str, np.ndarray], i: int, threshold: float,
         ignore_threshold: Optional[float] = None, declared: Optional[Sequence[int]] = None):
  """Boxes of image `i` of a batch with score >= threshold (and a positive area).

  With `declared` (the label map's category ids), a box of any other class is dropped: a
  model over sparse ids (num_classes = the largest id + 1) has outputs for ids no category
  has.

  With `ignore_threshold`, boxes scored in [ignore_threshold, threshold) are kept too,
  with class IGNORE_CLASS, except those overlapping a kept box with IoU >=
  DUPLICATE_IOU: the teacher's per-class NMS leaves its low-score guesses of another
  class on a confidently detected object, and such a box would take that object's anchors
  (each anchor is matched to the box it overlaps most) away from its real label.
  """
  n = int(outputs['num_detections'][i])
  boxes = outputs['detection_boxes'][i, :n].astype(np.float32)
  scores = outputs['detection_scores'][i, :n].astype(np.float32)
  classes = outputs['detection_classes'][i, :n].astype(np.int64)
  low = threshold if ignore_threshold is None else min(ignore_threshold, threshold)
  ok = (scores >= low) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  if declared:
    ok &= np.isin(classes, np.asarray(list(declared), np.int64))
  sure = scores >= threshold
  classes = np.where(sure, classes, IGNORE_CLASS)
  if ignore_threshold is not None and np.any(ok & sure) and np.any(ok & ~sure):
    overlap = box_iou(boxes, boxes[ok & sure]).max(axis=1)
    ok &= sure | (overlap < DUPLICATE_IOU)
  return boxes[ok], classes[ok], scores[ok]


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


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('saved_model', None, 'Exported teacher (a saved_model directory); '
                      'comma-separated, exports of one detector at several input sizes, '
                      'whose detections are fused (test-time augmentation).')
  flags.DEFINE_bool('flip', False, 'Also label each image mirrored and fuse the two views '
                    '(detection; with several SavedModels, each is run both ways).')
  flags.DEFINE_string('input', None, 'Unlabeled images: TFRecord pattern(s), an image folder, '
                      'or tfds:NAME@SPLIT.')
  flags.DEFINE_string('output_dir', None, 'Where the pseudo-labeled shards go.')
  flags.DEFINE_float('threshold', DEFAULT_THRESHOLD, 'Keep boxes with score >= this.')
  flags.DEFINE_float('ignore_threshold', None, 'Also keep boxes scored in [this, --threshold) '
                     'as "ignore" regions (class -2): the student neither rewards nor '
                     'penalizes them. Default: none.')
  flags.DEFINE_integer('num_shards', 1, 'Shards the pool is split into (one per worker).')
  flags.DEFINE_integer('shard_index', None, 'Label only this shard (default: all missing).')
  flags.DEFINE_integer('batch_size', 64, 'Images per model call.')


def main(argv):
  cli.no_arguments(argv[1:])
  with cli.errors_in_one_line(LabelerError):
    for name in ('saved_model', 'input', 'output_dir'):
      if not getattr(FLAGS, name):
        raise LabelerError(f'--{name} is required')
    summary = run(FLAGS.saved_model, FLAGS.input, FLAGS.output_dir, FLAGS.threshold,
                  FLAGS.num_shards, FLAGS.shard_index, FLAGS.batch_size,
                  ignore_threshold=FLAGS.ignore_threshold, flip=FLAGS.flip)
  if summary.get('complete') is False:
    print(f'pseudo-label: shard done; other shards still missing in {FLAGS.output_dir}')
    return
  print(describe(summary))
  for s in summary['skipped'][:20]:
    print(f'  skipped {s["source_id"]} ({s["input"]}): {s["reason"]}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
