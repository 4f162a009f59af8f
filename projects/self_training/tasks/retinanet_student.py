"""The self-training student: Model Garden's RetinaNet task on human + pseudo-labeled batches.

Each training step reads one batch from `train_data` (human labels) and one from
`pseudo_data` (the pseudo-labeler's records, same schema), runs the model on each half,
computes the official RetinaNet loss (focal + box, each normalized by its own half's
positives) separately for the two halves, and combines them with `LossNormalization`.
The two halves go through the model as two calls, so batch-norm statistics are those of
each half; with alpha = 0 the loss and gradients are exactly the official task's on the
human batch. Evaluation is the official task's.

Anchors that Model Garden's anchor labeler matched to an "ignore" pseudo box (class
IGNORE_CLASS, written by the labeler for scores between --ignore_threshold and
--threshold) get no classification or box loss, and do not count as positives.
"""

from typing import Any, List, Optional

import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.vision.losses import loss_utils
from official.vision.tasks import retinanet

from projects.self_training.configs import student as student_cfg
from projects.self_training.losses import loss_normalization
from projects.self_training.pseudo_label.labeler import IGNORE_CLASS

NORMALIZER_ATTR = 'loss_normalization'
SELF_TRAINING_METRICS = ('human_loss', 'pseudo_loss', 'ema_human_loss', 'ema_pseudo_loss',
                         'pseudo_weight')


@task_factory.register_task_cls(student_cfg.SelfTrainingRetinaNetTask)
class SelfTrainingRetinaNetTask(retinanet.RetinaNetTask):
  """RetinaNet with a pseudo-labeled half per batch and the paper's loss normalization."""

  def build_model(self) -> tf_keras.Model:
    model = super().build_model()
    ln = self.task_config.loss_normalization
    # An attribute of the model, so the EMAs are saved and restored with its checkpoints.
    setattr(model, NORMALIZER_ATTR, loss_normalization.LossNormalization(
        alpha=ln.alpha, ema_decay=ln.ema_decay, normalize=ln.normalize,
        name='loss_normalization'))
    return model

  def _is_train_data(self, params) -> bool:
    return params.is_training and params.as_dict() == self.task_config.train_data.as_dict()

  def build_inputs(self, params, input_context: Optional[tf.distribute.InputContext] = None):
    """The human dataset zipped with the pseudo one for training; the official otherwise."""
    if not self._is_train_data(params):
      return super().build_inputs(params, input_context)
    pseudo = self.task_config.pseudo_data
    if not pseudo.input_path and not pseudo.tfds_name:
      raise ValueError('task.pseudo_data.input_path is empty: point it at the '
                       "pseudo-labeler's records (pseudo-*-of-*.tfrecord)")
    pseudo = pseudo.replace(global_batch_size=student_cfg.pseudo_batch_size(self.task_config))
    human = super().build_inputs(params, input_context)
    pseudo = super().build_inputs(pseudo, input_context)
    return tf.data.Dataset.zip((human, pseudo))

  @staticmethod
  def ignore_uncertain(labels):
    """Zeroes the loss weights of anchors matched to IGNORE_CLASS boxes."""
    targets = loss_utils.multi_level_flatten(labels['cls_targets'], last_dim=None)
    keep = tf.cast(tf.not_equal(targets, IGNORE_CLASS), labels['cls_weights'].dtype)
    return dict(labels, cls_weights=labels['cls_weights'] * keep,
                box_weights=labels['box_weights'] * keep)

  def build_metrics(self, training: bool = True) -> List[Any]:
    metrics = super().build_metrics(training)
    if training:
      metrics += [tf_keras.metrics.Mean(name, dtype=tf.float32)
                  for name in SELF_TRAINING_METRICS]
    return metrics

  def train_step(self, inputs, model, optimizer, metrics=None):
    (human_images, human_labels), (pseudo_images, pseudo_labels) = inputs
    num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    normalizer = getattr(model, NORMALIZER_ATTR)
    pseudo_labels = self.ignore_uncertain(pseudo_labels)
    with tf.GradientTape() as tape:
      losses = {}
      for key, images, labels in (('human', human_images, human_labels),
                                  ('pseudo', pseudo_images, pseudo_labels)):
        outputs = model(images, training=True)
        outputs = tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), outputs)
        # The official loss of one half: (weighted total, cls, box, model loss).
        losses[key] = self.build_losses(outputs=outputs, labels=labels, aux_losses=None)
      combined, st_logs = normalizer(losses['human'][3], losses['pseudo'][3])
      loss = combined
      if model.losses:
        loss += tf.reduce_sum(model.losses)
      loss = self.task_config.losses.loss_weight * loss
      scaled_loss = loss / num_replicas
      if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        scaled_loss = optimizer.get_scaled_loss(scaled_loss)
    tvars = model.trainable_variables
    grads = tape.gradient(scaled_loss, tvars)
    if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
      grads = optimizer.get_unscaled_gradients(grads)
    optimizer.apply_gradients(list(zip(grads, tvars)))

    all_losses = {
        'total_loss': loss,
        'cls_loss': losses['human'][1],
        'box_loss': losses['human'][2],
        'model_loss': combined,
        **st_logs,
    }
    logs = {self.loss: loss}
    for m in metrics or []:
      m.update_state(all_losses[m.name])
      logs[m.name] = m.result()
    return logs
