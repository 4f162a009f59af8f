"""Multi-scale (and flip) inference of a segmentation teacher, as a Model Garden export module.

The paper computes its segmentation pseudo labels with multi-scale inference at the scales
0.5, 0.75, 1, 1.25, 1.5, 1.75 and says no more. Here the teacher's class probabilities are
averaged over those scales of its input size, optionally with a horizontal flip of each (our
choice, not the paper's), at the original image resolution. Model Garden's
`SegmentationModule` runs one pass at the configured input size and returns logits at the
head's level (1/4 resolution), so this subclass keeps its normalization, resizing, decoding
and signatures and replaces `serve`:

  for each scale s (and the flipped image):
      normalize -> resize to the pass size (padded like Model Garden when the experiment keeps
      the aspect ratio) -> model -> softmax -> bilinear resize to the original h x w (cropping
      the padding) -> (flip back)
  probabilities = mean over all passes               [batch, h, w, num_classes], float32

Pass sizes. round(s * input_size) per side, rounded to a multiple of 2**max_level: the
backbone + FPN/NAS-FPN add a lateral feature to the upsampled coarser one, which fails for
other sizes (72x72 with max_level 5 does). At the embedded 96x96 the six scales thus run at
64, 64, 96, 128, 160, 160 (at the paper's 512x512 with max_level 7 they are exact). Scales with
the same pass size run once and count with their multiplicity: the same average, less work.

The model is built with unknown spatial dims ([None, None]) instead of Model Garden's fixed
InputSpec, which rejects any other size at the backbone; the variables are the same, so a
training checkpoint restores unchanged. Each pass has a static size, which the head's pyramid
fusion needs.
"""

import collections
import math
from typing import List, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.vision.modeling import factory
from official.vision.ops import preprocess_ops
from official.vision.serving import semantic_segmentation

DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
INPUT_TYPES = ('image_tensor', 'image_bytes', 'tf_example')


def check_scales(scales: Sequence[float]) -> Tuple[float, ...]:
  """The scales as floats; a ValueError for an empty list or a scale <= 0."""
  scales = tuple(float(s) for s in scales)
  if not scales:
    raise ValueError('no scales given')
  bad = [s for s in scales if not s > 0 or math.isinf(s)]
  if bad:
    raise ValueError(f'scales must be positive and finite, got {bad[0]}')
  return scales


def pass_size(input_size: Sequence[int], scale: float, stride: int) -> Tuple[int, int]:
  """`scale * input_size` per side, rounded half up to a multiple of `stride` (at least one)."""
  return tuple(max(1, math.floor(scale * d / stride + 0.5)) * stride for d in input_size[:2])


class MultiScaleSegmentationModule(semantic_segmentation.SegmentationModule):
  """`SegmentationModule` whose `serve` averages softmax probabilities over scales and flips.

  `serve` (and so every signature) returns `probabilities` [batch, h, w, num_classes] at the
  input images' resolution (all images of one call share h x w) and `image_info` [batch, 4, 2],
  Model Garden's image info for the configured input size.
  """

  def __init__(self,
               params: cfg.ExperimentConfig,
               *,
               batch_size: Optional[int],
               input_image_size: Optional[List[int]] = None,
               input_type: str = 'image_tensor',
               num_channels: int = 3,
               model: Optional[tf_keras.Model] = None,
               input_name: Optional[str] = None,
               scales: Sequence[float] = DEFAULT_SCALES,
               flip: bool = False):
    """Like `SegmentationModule`; `input_image_size` defaults to `task.model.input_size`.

    Args:
      params: the segmentation experiment.
      batch_size: fixed batch size of the signatures, or None.
      input_image_size: [height, width] of scale 1.0.
      input_type: 'image_tensor', 'image_bytes' or 'tf_example' (not 'tflite': `serve`
        preprocesses uint8 images itself).
      num_channels: image channels.
      model: a model to export instead of a new one; it must accept every pass size.
      input_name: the signatures' input tensor name.
      scales: scales of `input_image_size`, one pass each.
      flip: also run each scale on the horizontally flipped image.
    """
    if input_type not in INPUT_TYPES:
      raise ValueError(f'input_type {input_type!r} is not one of {", ".join(INPUT_TYPES)}')
    input_image_size = [int(d) for d in (input_image_size or params.task.model.input_size)[:2]]
    stride = 2 ** params.task.model.max_level
    scales = check_scales(scales)
    sizes = tuple(pass_size(input_image_size, s, stride) for s in scales)
    self.scales = scales
    self.flip = bool(flip)
    self.pass_sizes = sizes
    # Distinct pass sizes in order, with how many scales map to each.
    self._passes = tuple(collections.Counter(sizes).items())
    self._base_size = pass_size(input_image_size, 1.0, stride)
    super().__init__(params, batch_size=batch_size, input_image_size=input_image_size,
                     input_type=input_type, num_channels=num_channels, model=model,
                     input_name=input_name)
    # One trace of the model per pass size, shared by the signatures (not one each). Held
    # in a closure, not as a tf.function attribute, which the SavedModel would serialize
    # (and so trace) once more on its own.
    model_call = tf.function(self.inference_step)
    self.inference_step = lambda images: model_call(images)

  def _build_model(self):
    input_specs = tf_keras.layers.InputSpec(shape=[None, None, None, self._num_channels])
    model = factory.build_segmentation_model(
        input_specs=input_specs, model_config=self.params.task.model, l2_regularizer=None)
    # Creates the head's variables now (as Model Garden's task does), so that restoring a
    # checkpoint checks every one of them instead of deferring them to the first trace.
    model(tf_keras.Input(list(self._base_size) + [self._num_channels]), training=False)
    return model

  def _resize(self, images: tf.Tensor, size: Tuple[int, int]):
    """Model Garden's `resize_and_crop_image` on a whole batch of one image size.

    The batch is folded into the channels ([b, h, w, c] -> [h, w, b * c]): the bilinear
    resize is per channel and the padding is shared, so this is the per-image result.
    """
    shape = tf.shape(images)
    folded = tf.reshape(tf.transpose(images, [1, 2, 0, 3]),
                        tf.stack([shape[1], shape[2], shape[0] * shape[3]]))
    folded, image_info = preprocess_ops.resize_and_crop_image(
        folded, list(size), padded_size=list(size), aug_scale_min=1.0, aug_scale_max=1.0,
        keep_aspect_ratio=self.params.task.train_data.preserve_aspect_ratio)
    images = tf.transpose(tf.reshape(folded, [size[0], size[1], -1, self._num_channels]),
                          [2, 0, 1, 3])
    return images, image_info

  def _to_image_size(self, probs: tf.Tensor, image_info: tf.Tensor,
                     image_size: tf.Tensor) -> tf.Tensor:
    """Pass probabilities [b, h', w', k] -> [b, h, w, k] over the original image.

    With padding, as Model Garden's `rescale_output`: the whole canvas is resized by
    1 / image_scale and the padding cropped (the small tolerance keeps float noise from
    adding a pixel).
    """
    if not self.params.task.train_data.preserve_aspect_ratio:
      return tf.image.resize(probs, image_size, method='bilinear')
    full = tf.cast(tf.math.ceil(image_info[1] / image_info[2] - 1e-3), tf.int32)
    probs = tf.image.resize(probs, full, method='bilinear')
    return probs[:, :image_size[0], :image_size[1], :]

  def serve(self, images: tf.Tensor):
    """uint8 images [batch, h, w, 3] -> {'probabilities', 'image_info'}."""
    if isinstance(images, tf.RaggedTensor):
      images = images.to_tensor()
    batch = tf.shape(images)[0]
    image_size = tf.shape(images)[1:3]
    image_feature = self.params.task.train_data.image_feature
    images = preprocess_ops.normalize_image(
        tf.cast(images, tf.float32), offset=image_feature.mean, scale=image_feature.stddev)
    if self.flip:
      images = tf.concat([images, tf.image.flip_left_right(images)], axis=0)

    total = 0.0
    base_info = None
    for size, count in self._passes:
      canvas, image_info = self._resize(images, size)
      logits = self.inference_step(canvas)['logits']
      probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
      total += float(count) * self._to_image_size(probs, image_info, image_size)
      if size == self._base_size:
        base_info = image_info
    if self.flip:
      direct, flipped = tf.split(total, 2, axis=0)
      total = direct + tf.image.flip_left_right(flipped)
    passes = len(self.scales) * (2 if self.flip else 1)
    probabilities = total / float(passes)
    probabilities.set_shape([self._batch_size, None, None, self.params.task.model.num_classes])

    if base_info is None:  # scale 1.0 not among the passes: its image info alone
      _, base_info = self._resize(images[:1], self._base_size)
    image_info = tf.tile(base_info[tf.newaxis], tf.stack([batch, 1, 1]))
    return {'probabilities': probabilities, 'image_info': image_info}
