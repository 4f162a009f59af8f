"""RetinaNet's sigmoid focal loss as one op with a hand-written gradient.

The same loss as Model Garden's `official/vision/losses/focal_loss.FocalLoss` (Lin et al.,
2017), summed with per-anchor weights as the official RetinaNet task sums it:

    FL = sum_{b,a,c} w[b,a] * alpha_t * (1 - p_t)^gamma * -log(p_t)

with p_t = sigmoid(x) for the true class and 1 - sigmoid(x) for the others, and alpha_t =
alpha for the true class and 1 - alpha for the others. The official class builds it from
about ten element-wise ops on a [batch, anchors, classes] tensor and lets autodiff
differentiate each, so on a CPU the loss and its gradient cost about as much as the
detection head. Here the gradient is written out,

    dFL/dx = s * w * alpha_t * (1 - p_t)^gamma * (gamma * p_t * log(p_t) - (1 - p_t)),

s = +1 for the true class and -1 for the others, which makes the loss and its gradient much
cheaper on a CPU (the measurements: docs/training.md, 'Fused focal loss', and
docs/benchmarks.md, `./run.sh bench`). The gradient is finite for every gamma >= 0, where the
official autodiff of `pow` can give NaN for small gamma. `tests/test_focal_loss.py` checks values
and gradients against the official class.
"""

import tensorflow as tf


def focal_loss_sum(y_true: tf.Tensor, y_pred: tf.Tensor, weights: tf.Tensor, alpha: float,
                   gamma: float) -> tf.Tensor:
  """The weighted sum of the focal loss.

  Args:
    y_true: [batch, anchors, classes] one-hot targets (0 or 1).
    y_pred: [batch, anchors, classes] logits.
    weights: [batch, anchors] per-anchor weights.
    alpha: the weight of the true class; 1 - alpha weighs the others.
    gamma: the focusing exponent, >= 0.

  Returns:
    A float32 scalar; its gradient flows to `y_pred` only.
  """
  y_true = tf.cast(y_true, tf.float32)
  y_pred = tf.cast(y_pred, tf.float32)
  weights = tf.cast(weights, tf.float32)

  @tf.custom_gradient
  def fused(logits):
    sign = 2.0 * y_true - 1.0
    z = sign * logits                        # log-odds of the right answer
    p_t = tf.sigmoid(z)
    log_p_t = -tf.nn.softplus(-z)            # stable log(sigmoid(z))
    one_minus = 1.0 - p_t
    if gamma == 1.5:                         # the paper's and Model Garden's default
      modulator = one_minus * tf.sqrt(one_minus)
    else:
      modulator = tf.pow(one_minus, gamma)
    alpha_t = (1.0 - alpha) + (2.0 * alpha - 1.0) * y_true
    scale = alpha_t * weights[..., tf.newaxis] * modulator
    loss = -tf.reduce_sum(scale * log_p_t)

    def grad(upstream):
      return upstream * scale * sign * (gamma * p_t * log_p_t - one_minus)

    return loss, grad

  return fused(y_pred)
