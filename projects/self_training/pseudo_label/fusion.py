"""What the labeler keeps of a teacher's detections: the views fused, the threshold applied.

`fuse_views` fuses several views of the same images (test-time augmentation); `keep` applies
the hard threshold (and the optional ignore band) to one image's detections;
`segmentation_mask` does the same per pixel for a segmenter's class probabilities.
"""

from typing import Dict, Optional, Sequence

import numpy as np

from projects.self_training.pseudo_label.schema import IGNORE_CLASS

DEFAULT_THRESHOLD = 0.5
# An uncertain box overlapping a kept one at least this much is the same object: dropped.
DUPLICATE_IOU = 0.5

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
