"""Semantic segmentation: Model Garden's task with mask-aware augmentation and self-training.

`SelfTrainingSegmentationTask` is registered for `configs.segmentation`'s task config:

- Training data go through `AugmentingParser`, Model Garden's segmentation parser plus
  the AutoAugment / RandAugment policy of `train_data.aug_type` (Augment-S2..S4), applied
  to the image and its mask together before Model Garden's flip and scale jitter
  (`data/seg_augment.py`: geometric ops move the mask, color ops touch only the image).
- Without `pseudo_data` it is the supervised task (teacher, controls). With it, each step
  reads a human and a pseudo-labeled batch and combines the official segmentation loss of
  each half with the paper's loss normalization (`tasks/self_training.py`). The official
  loss averages over non-ignored pixels only, so a pixel the pseudo-labeler marked 255
  (top class probability below its threshold) adds nothing to L_p.

Evaluation is the official task's (mean IoU over the 21 classes).
"""

from typing import Any, List, Optional

import tensorflow as tf
import tf_keras

from official.common import dataset_fn
from official.core import task_factory
from official.vision.dataloaders import input_reader
from official.vision.dataloaders import input_reader_factory
from official.vision.dataloaders import segmentation_input
from official.vision.dataloaders import tfds_factory
from official.vision.ops import preprocess_ops
from official.vision.tasks import semantic_segmentation

from projects.self_training.configs import segmentation as seg_cfg
from projects.self_training.tasks import self_training


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
    from projects.self_training.data import seg_augment  # pylint: disable=g-import-not-at-top
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


@task_factory.register_task_cls(seg_cfg.SelfTrainingSegmentationTask)
class SelfTrainingSegmentationTask(self_training.SelfTrainingMixin,
                                   semantic_segmentation.SemanticSegmentationTask):
  """Segmentation with mask-aware augmentation; a student when `pseudo_data` is set."""

  @property
  def is_student(self) -> bool:
    return self_training.has_pseudo_data(self.task_config)

  def build_model(self) -> tf_keras.Model:
    model = super().build_model()
    return self.attach_normalizer(model) if self.is_student else model

  def _read(self, params, input_context: Optional[tf.distribute.InputContext] = None):
    """The official input pipeline with `AugmentingParser` in place of Model Garden's."""
    losses = self.task_config.losses
    if params.tfds_name:
      decoder = tfds_factory.get_segmentation_decoder(params.tfds_name)
    else:
      decoder = segmentation_input.Decoder(
          image_feature=params.image_feature,
          additional_dense_features=params.additional_dense_features)
    parser = AugmentingParser(
        aug_type=params.aug_type if params.is_training else None,
        output_size=params.output_size, crop_size=params.crop_size,
        ignore_label=losses.ignore_label, resize_eval_groundtruth=params.resize_eval_groundtruth,
        gt_is_matting_map=losses.gt_is_matting_map,
        groundtruth_padded_size=params.groundtruth_padded_size,
        aug_scale_min=params.aug_scale_min, aug_scale_max=params.aug_scale_max,
        aug_rand_hflip=params.aug_rand_hflip, preserve_aspect_ratio=params.preserve_aspect_ratio,
        dtype=params.dtype, image_feature=params.image_feature,
        additional_dense_features=params.additional_dense_features,
        centered_crop=params.centered_crop)
    reader = input_reader_factory.input_reader_generator(
        params, dataset_fn=dataset_fn.pick_dataset_fn(params.file_type),
        decoder_fn=decoder.decode, combine_fn=input_reader.create_combine_fn(params),
        parser_fn=parser.parse_fn(params.is_training))
    return reader.read(input_context=input_context)

  def build_inputs(self, params, input_context: Optional[tf.distribute.InputContext] = None):
    if self.is_student and self.is_train_data(params):
      return self.zip_pseudo(params, input_context, self._read)
    return self._read(params, input_context)

  def build_metrics(self, training: bool = True) -> List[Any]:
    metrics = super().build_metrics(training)
    return metrics + self.self_training_metrics() if training and self.is_student else metrics

  def train_step(self, inputs, model, optimizer, metrics=None):
    if not self.is_student:
      return super().train_step(inputs, model, optimizer, metrics)

    def half_loss(outputs, labels):
      if isinstance(outputs, tf.Tensor):
        outputs = {'logits': outputs}
      return self.build_losses(labels=labels, model_outputs=outputs, aux_losses=None), {}

    loss, st_logs, halves = self.self_training_step(inputs, model, optimizer, half_loss)
    names = set(self_training.SELF_TRAINING_METRICS)
    official = [m for m in metrics or [] if m.name not in names]
    logs = {self.loss: loss}
    if official:  # train mean IoU, on the human half
      human = halves['human']
      outputs = human['outputs']
      outputs = {'logits': outputs} if isinstance(outputs, tf.Tensor) else outputs
      self.process_metrics(official, human['labels'], outputs)
      logs.update({m.name: m.result() for m in official})
    return self_training.update_metrics(metrics, st_logs, logs)
