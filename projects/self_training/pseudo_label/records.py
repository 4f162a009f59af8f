"""One image's pseudo labels as a tf.Example in the human labels' schema, and as COCO JSON."""

import collections
import dataclasses
from typing import Any, Dict, List, Tuple

import numpy as np

from official.vision.data import tf_example_builder

from projects.self_training.pseudo_label.schema import IGNORE_CLASS
from projects.self_training.pseudo_label.schema import SCORE_ATTRIBUTE


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
