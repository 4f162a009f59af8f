"""Model Garden's RetinaNet task: the focal loss by one fused op, reproducible inputs.

Every detection experiment of this project (teacher, control, student, joint; embedded and
full scale) runs this task or a subclass of it. It is the official `RetinaNetTask`
(model, inputs, evaluation, export) with two changes. `reproducible_inputs` runs the
training input pipeline on one thread (the same seed, the same augmented images). With
`losses.fused_focal_loss` (the default) the focal term of `build_losses` is
`losses/focal_loss.focal_loss_sum`, the same loss with a hand-written gradient, for a faster
embedded training step on a CPU, where the unfused focal loss over 91 classes x 9 anchors
was a large part of the step (the measurements: docs/training.md, 'Fused focal loss').
Normalization, box loss and regularization are the official task's;
`tests/test_focal_loss.py` checks that the losses and gradients equal the official task's.
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.vision.losses import loss_utils
from official.vision.tasks import retinanet

from projects.self_training.configs import retinanet as rn_configs
from projects.self_training.losses import focal_loss


@task_factory.register_task_cls(rn_configs.RetinaNetTask)
class RetinaNetTask(retinanet.RetinaNetTask):
  """The official RetinaNet task; its focal loss fused when `losses.fused_focal_loss`."""

  def build_inputs(self, params, input_context: Optional[tf.distribute.InputContext] = None):
    """The official inputs; training ones on one private thread with `reproducible_inputs`
    (the same seed, the same augmented images; see the config)."""
    dataset = super().build_inputs(params, input_context)
    if params.is_training and self.task_config.reproducible_inputs:
      options = tf.data.Options()
      options.threading.private_threadpool_size = 1
      dataset = dataset.with_options(options)
    return dataset

  def build_losses(self, outputs: Mapping[str, Any], labels: Mapping[str, Any],
                   aux_losses: Optional[Any] = None):
    params = self.task_config
    if not params.losses.fused_focal_loss or params.model.head.attribute_heads:
      return super().build_losses(outputs, labels, aux_losses)
    # The official task's loss, term by term, with the focal term fused. The classification
    # and box terms are both divided by the positives (box weights) + 1.
    normalizer = tf.reduce_sum(labels['box_weights']) + 1.0
    num_classes = params.model.num_classes
    cls_loss = focal_loss.focal_loss_sum(
        y_true=tf.one_hot(loss_utils.multi_level_flatten(labels['cls_targets'], last_dim=None),
                          num_classes),
        y_pred=loss_utils.multi_level_flatten(outputs['cls_outputs'], last_dim=num_classes),
        weights=labels['cls_weights'] / normalizer,
        alpha=params.losses.focal_loss_alpha, gamma=params.losses.focal_loss_gamma)
    huber = tf_keras.losses.Huber(params.losses.huber_loss_delta,
                                 reduction=tf_keras.losses.Reduction.SUM)
    box_loss = huber(
        y_true=loss_utils.multi_level_flatten(labels['box_targets'], last_dim=4),
        y_pred=loss_utils.multi_level_flatten(outputs['box_outputs'], last_dim=4),
        sample_weight=labels['box_weights'] / normalizer)
    model_loss = cls_loss + params.losses.box_loss_weight * box_loss
    total_loss = model_loss + tf.reduce_sum(aux_losses) if aux_losses else model_loss
    return params.losses.loss_weight * total_loss, cls_loss, box_loss, model_loss
