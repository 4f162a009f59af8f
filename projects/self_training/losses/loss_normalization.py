"""The paper's loss normalization for self-training (Section 3.3, Appendix B).

    L = 1 / (1 + a) * (L_h + a * (EMA(L_h) / EMA(L_p)) * L_p)

L_h is the loss on the human-labeled half of the batch, L_p on the pseudo-labeled half,
`a` (alpha) the pseudo weight, and the EMAs (decay 0.9997 in the paper) track both losses
so the pseudo loss is rescaled to the human loss's magnitude. The ratio is a constant to
the optimizer (no gradient flows through it). `normalize=False` gives the standard loss
L_h + a * L_p, the paper's Appendix B comparison.

The EMA state lives in non-trainable variables of a Keras layer that the student task
attaches to its model, so it is saved and restored with every model checkpoint. The EMAs
are updated from the cross-replica mean of each loss, so every replica holds the same
values under MirroredStrategy and TPUStrategy.
"""

from typing import Dict, Tuple

import tensorflow as tf
import tf_keras

_EPSILON = 1e-12


class LossNormalization(tf_keras.layers.Layer):
  """Combines the human and pseudo losses; holds EMA(L_h), EMA(L_p) and an update count.

  Call it inside the replica function, once per training step:

      loss, logs = normalizer(human_loss, pseudo_loss)

  The first call sets each EMA to that step's loss (no bias toward zero); later calls
  apply `ema = decay * ema + (1 - decay) * loss`. A step with a zero or non-finite loss on
  either half leaves the EMAs (and the update count) unchanged.
  """

  def __init__(self, alpha: float = 1.0, ema_decay: float = 0.9997, normalize: bool = True,
               **kwargs):
    super().__init__(dtype=tf.float32, **kwargs)
    if alpha < 0:
      raise ValueError(f'alpha must be >= 0, got {alpha}')
    if not 0.0 <= ema_decay < 1.0:
      raise ValueError(f'ema_decay must be in [0, 1), got {ema_decay}')
    self.alpha = float(alpha)
    self.ema_decay = float(ema_decay)
    self.normalize = bool(normalize)
    variable = dict(shape=(), trainable=False,
                    synchronization=tf.VariableSynchronization.ON_WRITE,
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.ema_human_loss = self.add_weight(name='ema_human_loss', initializer='zeros',
                                          dtype=tf.float32, **variable)
    self.ema_pseudo_loss = self.add_weight(name='ema_pseudo_loss', initializer='zeros',
                                           dtype=tf.float32, **variable)
    self.num_updates = self.add_weight(name='num_updates', initializer='zeros',
                                       dtype=tf.int64, **variable)

  def _update(self, human: tf.Tensor, pseudo: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Updates both EMAs from a step whose losses are both finite and positive; any other
    step leaves them as they were. A zero pseudo loss (a pseudo batch with nothing to learn)
    would otherwise become EMA(L_p) = 0 on a first step, an EMA ratio of ~1e4 on the next,
    decaying over thousands of steps; a NaN would stay in the EMA for good."""
    usable = tf.logical_and(
        tf.reduce_all(tf.math.is_finite(tf.stack([human, pseudo]))),
        tf.logical_and(human > 0.0, pseudo > 0.0))
    first = tf.equal(self.num_updates, 0)
    d = self.ema_decay
    ema_h = tf.where(first, human, d * self.ema_human_loss + (1.0 - d) * human)
    ema_p = tf.where(first, pseudo, d * self.ema_pseudo_loss + (1.0 - d) * pseudo)
    ema_h = tf.where(usable, ema_h, self.ema_human_loss)
    ema_p = tf.where(usable, ema_p, self.ema_pseudo_loss)
    self.ema_human_loss.assign(ema_h)
    self.ema_pseudo_loss.assign(ema_p)
    self.num_updates.assign_add(tf.cast(usable, tf.int64))
    return ema_h, ema_p

  def call(self, human_loss: tf.Tensor,
           pseudo_loss: tf.Tensor) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    human_loss = tf.cast(human_loss, tf.float32)
    pseudo_loss = tf.cast(pseudo_loss, tf.float32)
    # Every replica sees the same means, so the EMAs (and the weight) agree everywhere.
    means = [tf.stop_gradient(human_loss), tf.stop_gradient(pseudo_loss)]
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      means = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, means)
    ema_h, ema_p = self._update(*means)
    if self.normalize:
      # Before the first usable step there is no average to rescale by: weight 1.
      ratio = tf.where(tf.equal(self.num_updates, 0), 1.0,
                       tf.stop_gradient(ema_h / tf.maximum(ema_p, _EPSILON)))
      pseudo_weight = self.alpha * ratio / (1.0 + self.alpha)
      loss = human_loss
      if self.alpha:  # alpha = 0 is exactly L_h, whatever L_p is.
        loss = (human_loss + self.alpha * ratio * pseudo_loss) / (1.0 + self.alpha)
    else:
      pseudo_weight = tf.constant(self.alpha, tf.float32)
      loss = human_loss + self.alpha * pseudo_loss if self.alpha else human_loss
    return loss, {
        'human_loss': means[0],
        'pseudo_loss': means[1],
        'ema_human_loss': ema_h,
        'ema_pseudo_loss': ema_p,
        'pseudo_weight': pseudo_weight,
    }

  def get_config(self):
    return dict(super().get_config(), alpha=self.alpha, ema_decay=self.ema_decay,
                normalize=self.normalize)
