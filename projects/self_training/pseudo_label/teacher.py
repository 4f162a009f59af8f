"""The exported teacher: a SavedModel (or several views of one) called on uint8 batches."""

import os
from typing import Dict

import numpy as np
import tensorflow as tf

from projects.self_training.common.file_io import read_json
from projects.self_training.pseudo_label.fusion import fuse_views
from projects.self_training.pseudo_label.schema import LABEL_MAP


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
