"""Model Garden's segmentation parser with the paper's augmentation policies on image and mask.

Model Garden's `segmentation_input.Parser` only flips and scales. `AugmentingParser` first
runs the AutoAugment / RandAugment policy of `train_data.aug_type` (Augment-S2..S4) on the
decoded training image and its mask together (`ops/seg_augment.py`: geometric ops move the
mask, color ops touch only the image), then Model Garden's flip and scale jitter.
Evaluation images are parsed as Model Garden parses them.
"""

import tensorflow as tf

from official.vision.dataloaders import segmentation_input
from official.vision.ops import preprocess_ops

from projects.self_training.ops import seg_augment


class AugmentingParser(segmentation_input.Parser):
  """Model Garden's parser; training images and masks first go through `aug_type`."""

  def __init__(self, aug_type=None, **kwargs):
    super().__init__(**kwargs)
    self._aug_type = aug_type
    self._augmenting = False

  def _parse_train_data(self, data):
    self._augmenting = self._aug_type is not None
    try:
      return super()._parse_train_data(data)
    finally:
      self._augmenting = False

  def _prepare_image_and_label(self, data):
    image, label = super()._prepare_image_and_label(data)
    if not self._augmenting:
      return image, label
    # The parent decoded and normalized the uint8 image; undo the normalization exactly
    # (the policies work on uint8 pixels), augment, and normalize again.
    mean = tf.constant(self._image_feature.mean, tf.float32)
    std = tf.constant(self._image_feature.stddev, tf.float32)
    pixels = tf.cast(tf.clip_by_value(tf.round(image * std + mean), 0.0, 255.0), tf.uint8)
    shape = tf.shape(label)
    mask = tf.reshape(label, [shape[1], shape[2], 1])
    pixels, mask = seg_augment.distort_image_and_mask(pixels, mask, self._aug_type,
                                                      ignore_label=self._ignore_label)
    image = preprocess_ops.normalize_image(
        pixels, [m / 255.0 for m in self._image_feature.mean],
        [s / 255.0 for s in self._image_feature.stddev])
    return image, tf.reshape(mask, shape)
