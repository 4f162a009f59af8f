"""The self-training student: Model Garden's RetinaNet task on human + pseudo-labeled batches.

Each training step reads one batch from `train_data` (human labels) and one from
`pseudo_data` (the pseudo-labeler's records, same schema), runs the model on each half,
computes the RetinaNet loss (focal + box, each normalized by its own half's
positives) separately for the two halves, and combines them with `LossNormalization`.
The two halves go through the model as two calls, so batch-norm statistics are those of
each half (with `concat_halves`, one call on both); with alpha = 0 the loss and gradients
are the official task's on the human batch (to float rounding: the focal term is
`tasks/detection.py`'s fused op). Evaluation is the official task's.

Anchors that Model Garden's anchor labeler matched to an "ignore" pseudo box (class
IGNORE_CLASS, written by the labeler for scores between --ignore_threshold and
--threshold) get no classification or box loss, and do not count as positives; with
`pseudo_background_weight` below 1, background anchors of the pseudo half weigh less; with
`pseudo_score_weight`, the anchors of each pseudo box weigh the teacher's score for it.
"""

import functools
from typing import Any, List, Optional

import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.vision.losses import loss_utils

from projects.self_training.configs import student as student_cfg
from projects.self_training.pseudo_label.schema import IGNORE_CLASS
from projects.self_training.pseudo_label.schema import SCORE_ATTRIBUTE
from projects.self_training.tasks import detection
from projects.self_training.tasks import self_training


# Model Garden's anchor labeler gives background (and below-threshold ignored) anchors the
# class target -1, which one-hot encodes to all zeros.
UNMATCHED_TARGET = -1


@task_factory.register_task_cls(student_cfg.SelfTrainingRetinaNetTask)
class SelfTrainingRetinaNetTask(self_training.SelfTrainingMixin, detection.RetinaNetTask):
  """RetinaNet with a pseudo-labeled half per batch and the paper's loss normalization."""

  def build_model(self) -> tf_keras.Model:
    return self.attach_normalizer(super().build_model())

  def build_inputs(self, params, input_context: Optional[tf.distribute.InputContext] = None):
    """The human dataset zipped with the pseudo one for training; the official otherwise."""
    if not self.is_train_data(params):
      return super().build_inputs(params, input_context)
    # The pseudo half is detection data alone, whatever a subclass's bases add to the human
    # half (a joint student's classification batches), even when the two configs are equal.
    return self.zip_pseudo(params, input_context, super().build_inputs,
                           functools.partial(detection.RetinaNetTask.build_inputs, self))

  def pseudo_data_config(self, pseudo):
    """With `pseudo_score_weight`, the decoder also reads each box's score attribute."""
    if not self.task_config.pseudo_score_weight:
      return pseudo
    return pseudo.replace(decoder={'type': 'simple_decoder', 'simple_decoder': {
        'attribute_names': [SCORE_ATTRIBUTE]}})

  def pseudo_label_weights(self, labels):
    """Zeroes the loss weights of anchors matched to IGNORE_CLASS boxes, scales the
    classification weight of background anchors by `pseudo_background_weight`, and with
    `pseudo_score_weight` both weights of a box's anchors by its teacher score."""
    targets = loss_utils.multi_level_flatten(labels['cls_targets'], last_dim=None)
    dtype = labels['cls_weights'].dtype
    keep = tf.cast(tf.not_equal(targets, IGNORE_CLASS), dtype)
    background = tf.cast(tf.equal(targets, UNMATCHED_TARGET), dtype)
    scale = 1.0 + (self.task_config.pseudo_background_weight - 1.0) * background
    box_scale = tf.ones_like(keep)
    labels = dict(labels)
    attributes = labels.pop('attribute_targets', {})
    if self.task_config.pseudo_score_weight:
      # Background anchors carry 0 here (the anchor labeler's fill value): weight 1.
      score = tf.cast(loss_utils.multi_level_flatten(attributes[SCORE_ATTRIBUTE],
                                                     last_dim=None), dtype) / 1000.0
      box_scale = tf.where(targets >= 0, score, 1.0)
    return dict(labels, cls_weights=labels['cls_weights'] * keep * scale * box_scale,
                box_weights=labels['box_weights'] * keep * box_scale)

  def build_metrics(self, training: bool = True) -> List[Any]:
    metrics = super().build_metrics(training)
    return metrics + self.self_training_metrics() if training else metrics

  def train_step(self, inputs, model, optimizer, metrics=None):
    return self.student_step(inputs, model, optimizer, metrics)

  def student_step(self, inputs, model, optimizer, metrics=None, extra_loss=None,
                   extra_values=None):
    """The student's step; `extra_loss(model)` adds a term inside the tape (joint training)
    and `extra_values` (filled by it) are logged as metrics of the same names."""
    human, (pseudo_images, pseudo_labels) = inputs
    inputs = (human, (pseudo_images, self.pseudo_label_weights(pseudo_labels)))

    def half_loss(outputs, labels):
      # The official loss of one half: (weighted total, cls, box, model loss).
      _, cls_loss, box_loss, model_loss = self.build_losses(
          outputs=outputs, labels=labels, aux_losses=None)
      return model_loss, {'cls_loss': cls_loss, 'box_loss': box_loss}

    loss, st_logs, halves = self.self_training_step(
        inputs, model, optimizer, half_loss, self.task_config.losses.loss_weight, extra_loss)
    values = dict(st_logs, total_loss=loss, **halves['human']['parts'], **(extra_values or {}))
    return self_training.update_metrics(metrics, values, {self.loss: loss})
