"""Pseudo-label quality against human labels: precision, recall and boxes per image.

Run the labeler on a labeled split (e.g. `holdout`) with a low threshold, then measure
what each candidate threshold would have kept: a kept box is correct when it has the
class of a not-yet-matched human box with IoU >= 0.5 (greedy, highest score first).
"""

from typing import Dict, List, Sequence

import numpy as np


def _iou(box: Sequence[float], others: np.ndarray) -> np.ndarray:
  """IoU of one COCO [x, y, w, h] box with an [n, 4] array of them."""
  if not len(others):
    return np.zeros((0,))
  x0 = np.maximum(box[0], others[:, 0])
  y0 = np.maximum(box[1], others[:, 1])
  x1 = np.minimum(box[0] + box[2], others[:, 0] + others[:, 2])
  y1 = np.minimum(box[1] + box[3], others[:, 1] + others[:, 3])
  inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
  union = box[2] * box[3] + others[:, 2] * others[:, 3] - inter
  return inter / np.maximum(union, 1e-12)


def precision_recall(pseudo: Dict, human: Dict, thresholds: Sequence[float],
                     iou_threshold: float = 0.5) -> List[Dict[str, float]]:
  """One row per threshold: precision (None when nothing is kept), recall, boxes per image."""
  gt_by_image: Dict[int, List[Dict]] = {}
  for a in human['annotations']:
    gt_by_image.setdefault(a['image_id'], []).append(a)
  pred_by_image: Dict[int, List[Dict]] = {}
  for a in pseudo['annotations']:
    pred_by_image.setdefault(a['image_id'], []).append(a)
  image_ids = [im['id'] for im in pseudo['images']]
  num_gt = sum(len(gt_by_image.get(i, [])) for i in image_ids)
  rows = []
  for t in thresholds:
    kept = correct = empty = 0
    for image_id in image_ids:
      preds = sorted((p for p in pred_by_image.get(image_id, []) if p['score'] >= t),
                     key=lambda p: -p['score'])
      gts = gt_by_image.get(image_id, [])
      boxes = np.array([g['bbox'] for g in gts], np.float64).reshape(-1, 4)
      used = np.zeros(len(gts), bool)
      kept += len(preds)
      empty += int(not preds)
      for p in preds:
        iou = _iou(p['bbox'], boxes)
        ok = [k for k in np.argsort(-iou) if iou[k] >= iou_threshold and not used[k]
              and gts[k]['category_id'] == p['category_id']]
        if ok:
          used[ok[0]] = True
          correct += 1
    rows.append({'threshold': t, 'precision': correct / kept if kept else None,
                 'recall': correct / max(num_gt, 1),
                 'boxes_per_image': kept / max(len(image_ids), 1),
                 'human_boxes_per_image': num_gt / max(len(image_ids), 1),
                 'empty_images': empty})
  return rows
