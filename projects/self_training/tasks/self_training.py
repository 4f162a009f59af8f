"""What every self-training student task shares, whatever it predicts.

A student step reads one batch of human labels (`train_data`) and one of pseudo labels
(`pseudo_data`, the pseudo-labeler's records in the same schema), runs the model on each
half, computes the task's own loss separately for the two halves (L_h, L_p), and combines
them with the paper's loss normalization (`losses.loss_normalization.LossNormalization`).
The two halves go through the model as two calls, so batch-norm statistics are those of
each half (with alpha = 0 loss and gradients are exactly the supervised task's on the
human batch), or with the task config's `concat_halves` as one call on the concatenated
batch: one batch norm over all of it, as a 512-image TPU batch has.

`SelfTrainingMixin` goes before a Model Garden task class in the bases:

    class SelfTrainingRetinaNetTask(SelfTrainingMixin, retinanet.RetinaNetTask): ...

and the subclass's `train_step` calls `self_training_step` with its per-half loss.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

import tensorflow as tf
import tf_keras

from projects.self_training.configs.student import pseudo_batch_size
from projects.self_training.losses import loss_normalization

NORMALIZER_ATTR = 'loss_normalization'
SELF_TRAINING_METRICS = ('human_loss', 'pseudo_loss', 'ema_human_loss', 'ema_pseudo_loss',
                         'pseudo_weight')


class SelfTrainingMixin:
  """Pseudo-labeled input, the loss normalizer on the model, the combined train step."""

  def attach_normalizer(self, model: tf_keras.Model) -> tf_keras.Model:
    """Puts the normalizer on the model, so its EMAs are saved with every checkpoint."""
    ln = self.task_config.loss_normalization
    setattr(model, NORMALIZER_ATTR, loss_normalization.LossNormalization(
        alpha=ln.alpha, ema_decay=ln.ema_decay, normalize=ln.normalize,
        name='loss_normalization'))
    return model

  def is_train_data(self, params) -> bool:
    return is_train_data(self.task_config, params)

  def zip_pseudo(self, params, input_context, build: Callable[..., tf.data.Dataset],
                 build_pseudo: Optional[Callable[..., tf.data.Dataset]] = None):
    """(human batch, pseudo batch) pairs; `build(params, input_context)` reads the human
    source, `build_pseudo` (default: `build`) the pseudo one."""
    pseudo = self.task_config.pseudo_data
    if not pseudo.input_path and not pseudo.tfds_name:
      raise ValueError('task.pseudo_data.input_path is empty: point it at the '
                       "pseudo-labeler's records (pseudo-*-of-*.tfrecord)")
    pseudo = self.pseudo_data_config(
        pseudo.replace(global_batch_size=pseudo_batch_size(self.task_config)))
    return tf.data.Dataset.zip((build(params, input_context),
                                (build_pseudo or build)(pseudo, input_context)))

  def pseudo_data_config(self, pseudo):
    """The pseudo half's data config as read; a task that needs more of the records (e.g.
    the teacher's scores) adds it here."""
    return pseudo

  def self_training_metrics(self) -> List[Any]:
    return [tf_keras.metrics.Mean(name, dtype=tf.float32) for name in SELF_TRAINING_METRICS]

  def self_training_step(
      self, inputs, model: tf_keras.Model, optimizer,
      half_loss: Callable[[Any, Any], Tuple[tf.Tensor, Dict[str, tf.Tensor]]],
      loss_weight: float = 1.0,
      extra_loss: Optional[Callable[[tf_keras.Model], tf.Tensor]] = None,
  ) -> Tuple[tf.Tensor, Dict[str, Any], Dict[str, Any]]:
    """One optimizer step on a (human, pseudo) pair of batches.

    `half_loss(outputs, labels)` returns the task's loss on one half without regularization
    (`model.losses` is added once, to the combined loss) and a dict of its parts to log.
    `extra_loss(model)`, when given, is added to the total inside the same tape (joint
    training's weighted classification loss).
    Returns the total loss, the normalizer's logs, and per half (`'human'`, `'pseudo'`)
    the model outputs, labels, loss and parts.
    """
    (human_images, human_labels), (pseudo_images, pseudo_labels) = inputs
    normalizer = getattr(model, NORMALIZER_ATTR)
    with tf.GradientTape() as tape:
      halves = {}
      outputs = self._forward(model, human_images, pseudo_images)
      for key, labels in (('human', human_labels), ('pseudo', pseudo_labels)):
        half, parts = half_loss(outputs[key], labels)
        halves[key] = {'outputs': outputs[key], 'labels': labels, 'loss': half,
                       'parts': parts}
      combined, st_logs = normalizer(halves['human']['loss'], halves['pseudo']['loss'])
      loss = combined
      if model.losses:
        loss += tf.add_n(model.losses)
      loss = loss_weight * loss
      if extra_loss is not None:
        loss += extra_loss(model)
      scaled_loss = scale_loss(loss, optimizer)
    apply_scaled_gradients(tape, scaled_loss, model, optimizer)
    return loss, dict(st_logs, model_loss=combined), halves


  def _forward(self, model: tf_keras.Model, human_images, pseudo_images) -> Dict[str, Any]:
    """The model's float32 outputs on each half: two calls, or with `concat_halves` one call
    on both halves together (one batch-norm over the whole batch), split back."""
    cast = lambda out: tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), out)
    if not getattr(self.task_config, 'concat_halves', False):
      return {'human': cast(model(human_images, training=True)),
              'pseudo': cast(model(pseudo_images, training=True))}
    n = tf.shape(human_images)[0]
    both = cast(model(tf.concat([human_images, pseudo_images], axis=0), training=True))
    return {'human': tf.nest.map_structure(lambda x: x[:n], both),
            'pseudo': tf.nest.map_structure(lambda x: x[n:], both)}


def scale_loss(loss: tf.Tensor, optimizer) -> tf.Tensor:
  """The replica's share of `loss` (gradients are summed across replicas), loss-scaled
  under mixed precision; call inside the tape, as Model Garden's train steps do."""
  scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
  if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
    scaled = optimizer.get_scaled_loss(scaled)
  return scaled


def apply_scaled_gradients(tape: tf.GradientTape, scaled_loss: tf.Tensor,
                           model: tf_keras.Model, optimizer) -> None:
  """One optimizer step on the model's trainable variables from `scale_loss`'s output."""
  tvars = model.trainable_variables
  grads = tape.gradient(scaled_loss, tvars)
  if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
    grads = optimizer.get_unscaled_gradients(grads)
  optimizer.apply_gradients(list(zip(grads, tvars)))


def is_train_data(task_config, params) -> bool:
  """True when `params` is the task's training data config (not validation, not pseudo)."""
  return params.is_training and params.as_dict() == task_config.train_data.as_dict()


def update_metrics(metrics: Optional[List[Any]], values: Dict[str, Any],
                   logs: Dict[str, Any]) -> Dict[str, Any]:
  """Mean metrics named like `values`' keys take those values; the rest are left alone."""
  for m in metrics or []:
    if m.name in values:
      m.update_state(values[m.name])
      logs[m.name] = m.result()
  return logs
