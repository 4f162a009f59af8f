"""The fused focal loss and the detection task that uses it: values and gradients equal
Model Garden's `FocalLoss` and `RetinaNetTask.build_losses`."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.vision.losses import focal_loss as official_focal_loss
from official.vision.tasks import retinanet
from projects.self_training.common import trainer
from projects.self_training.losses import focal_loss
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.tasks import detection
from tests.conftest import TINY


def _official(y_true, logits, weights, alpha, gamma):
  loss = official_focal_loss.FocalLoss(alpha=alpha, gamma=gamma,
                                       reduction=tf_keras.losses.Reduction.SUM)
  return loss(y_true=y_true, y_pred=logits, sample_weight=weights)


def _value_and_grad(fn, logits, *args):
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = fn(*args[:1], logits, *args[1:])
  return value.numpy(), tape.gradient(value, logits).numpy()


@pytest.mark.parametrize('gamma', [0.0, 0.5, 1.5, 2.0])
@pytest.mark.parametrize('alpha', [0.25, 0.75])
def test_fused_focal_loss_equals_the_official(alpha, gamma):
  rng = np.random.default_rng(0)
  classes = rng.integers(0, 7, size=(3, 50))
  y_true = tf.one_hot(classes, 7)
  logits = tf.constant(rng.normal(-2.0, 3.0, size=(3, 50, 7)), tf.float32)
  weights = tf.constant(rng.random((3, 50)) * (rng.random((3, 50)) > 0.2), tf.float32)
  want, want_grad = _value_and_grad(
      lambda y, x, w: _official(y, x, w, alpha, gamma), logits, y_true, weights)
  got, got_grad = _value_and_grad(
      lambda y, x, w: focal_loss.focal_loss_sum(y, x, w, alpha, gamma), logits, y_true, weights)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-7)
  assert np.abs(got_grad).max() > 0


def test_fused_focal_loss_is_finite_for_saturated_logits():
  y_true = tf.constant([[[1.0, 0.0], [0.0, 1.0]]])
  logits = tf.constant([[[60.0, -60.0], [60.0, -60.0]]])  # right, then confidently wrong
  value, grad = _value_and_grad(
      lambda y, x, w: focal_loss.focal_loss_sum(y, x, w, 0.25, 0.1), logits, y_true,
      tf.ones([1, 2]))
  assert np.isfinite(value) and np.isfinite(grad).all()
  assert value > 50  # the wrong anchor: -log(sigmoid(-60)) = 60, times its weights
  np.testing.assert_allclose(grad[0, 0], [0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize('experiment', ['emoji_retinanet', 'emoji_retinanet_student'])
def test_detection_losses_equal_the_official_task(tiny_data, experiment):
  params = trainer.build_params(experiment, params_override=','.join(
      (TINY, pipeline.data_override(tiny_data))))
  assert params.task.losses.fused_focal_loss
  task = task_factory.get_task(params.task)
  assert isinstance(task, detection.RetinaNetTask)
  official = retinanet.RetinaNetTask(params.task)
  tf_keras.utils.set_random_seed(0)
  model = official.build_model()
  images, labels = next(iter(official.build_inputs(params.task.train_data)))
  outputs = model(images, training=True)
  assert float(tf.reduce_sum(labels['box_weights'])) > 0  # positives in the batch

  def losses_and_grads(which):
    with tf.GradientTape() as tape:
      logits = outputs['cls_outputs']
      tape.watch(list(logits.values()))
      values = which.build_losses(outputs=outputs, labels=labels, aux_losses=model.losses)
    return values, tape.gradient(values[0], list(logits.values()))

  (want, want_grads), (got, got_grads) = losses_and_grads(official), losses_and_grads(task)
  for name, a, b in zip(('total', 'cls', 'box', 'model'), got, want):
    np.testing.assert_allclose(float(a), float(b), rtol=1e-5, err_msg=name)
  for a, b in zip(got_grads, want_grads):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-8)
  # The switch off runs Model Garden's own op.
  params.task.losses.fused_focal_loss = False
  unfused = task_factory.get_task(params.task).build_losses(
      outputs=outputs, labels=labels, aux_losses=model.losses)
  assert float(unfused[1]) == float(want[1])
