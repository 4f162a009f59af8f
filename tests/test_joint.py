"""Joint training (paper Table 7): L = L_det + w L_cls on a shared backbone (w 0.5; 0.2 with
self-training, Appendix H)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.vision.tasks import retinanet

from projects.self_training.common import trainer
from projects.self_training.configs import joint as joint_cfg
from projects.self_training.configs import pretrain as pretrain_cfg
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.tasks import joint
from tests.conftest import TINY


def _params(tiny_data, iconic_data, **replace):
  params = trainer.build_params(
      'emoji_retinanet_joint', params_override=','.join([TINY, pipeline.data_override(tiny_data)]),
      lock=False)
  params.task.classification_data.input_path = pretrain_cfg.iconic_pattern(iconic_data, False)
  params.task.classification_data.global_batch_size = 4
  for key, value in replace.items():
    setattr(params.task, key, value)
  params.lock()
  return params


def test_registered_recipe_is_the_papers_weight():
  params = trainer.build_params('emoji_retinanet_joint')
  assert params.task.classification_weight == joint_cfg.JOINT_WEIGHT == 0.5
  student = trainer.build_params('emoji_retinanet_joint_student')
  assert student.task.classification_weight == joint_cfg.JOINT_SELF_TRAINING_WEIGHT == 0.2
  assert params.task.classification_data.input_path.endswith('iconic-00001-of-00003.tfrecord')
  teacher = trainer.build_params('emoji_retinanet')
  assert params.task.model.as_dict() == teacher.task.model.as_dict()
  assert params.trainer.as_dict() == teacher.trainer.as_dict()


def test_joint_loss_is_the_weighted_sum(tiny_data, iconic_data):
  params = _params(tiny_data, iconic_data)
  task = task_factory.get_task(params.task)
  assert isinstance(task, joint.JointTrainingRetinaNetTask)
  tf_keras.utils.set_random_seed(0)
  model = task.build_model()
  detection, classification = next(iter(task.build_inputs(params.task.train_data)))
  assert classification[0].shape == (4, 64, 64, 3)
  optimizer = tf_keras.optimizers.legacy.SGD(learning_rate=0.0)  # the weights stay put
  metrics = task.build_metrics(training=True)
  logs = task.train_step((detection, classification), model, optimizer, metrics)
  # Recompute both parts: the detection loss with the official task, the classification
  # loss by hand from the classifier's logits.
  official = retinanet.RetinaNetTask(params.task)
  images, labels = detection
  outputs = model(images, training=True)
  _, _, _, det_loss = official.build_losses(outputs=outputs, labels=labels, aux_losses=None)
  endpoints = model.backbone(classification[0], training=True)
  feats = tf.reduce_mean(endpoints[str(max(int(k) for k in endpoints))], axis=[1, 2])
  logits = getattr(model, joint.CLASSIFIER_ATTR)(feats).numpy().astype(np.float64)
  onehot = np.eye(params.task.classification_num_classes)[classification[1].numpy()]
  smooth = params.task.classification_label_smoothing
  target = onehot * (1 - smooth) + smooth / onehot.shape[1]
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  class_loss = np.mean(-(target * logp).sum(1))
  regularization = float(tf.add_n(model.losses))
  expected = float(det_loss) + params.task.classification_weight * class_loss + regularization
  np.testing.assert_allclose(float(logs['total_loss']), expected, rtol=1e-4)
  np.testing.assert_allclose(float(logs['classification_loss']), class_loss, rtol=1e-4)
  np.testing.assert_allclose(float(logs['detection_loss']), float(det_loss), rtol=1e-4)
  # The classifier's weights get gradients in a real step (only its loss reaches them).
  classifier = getattr(model, joint.CLASSIFIER_ATTR)
  assert classifier.trainable_variables
  before = [v.numpy().copy() for v in classifier.trainable_variables]
  task.train_step((detection, classification), model,
                  tf_keras.optimizers.legacy.SGD(learning_rate=0.1), metrics)
  for old, v in zip(before, classifier.trainable_variables):
    assert np.abs(v.numpy() - old).max() > 0, v.name


def test_weight_zero_is_the_detection_loss(tiny_data, iconic_data):
  params = _params(tiny_data, iconic_data, classification_weight=0.0)
  task = task_factory.get_task(params.task)
  model = task.build_model()
  batch = next(iter(task.build_inputs(params.task.train_data)))
  metrics = task.build_metrics(training=True)
  logs = task.train_step(batch, model, tf_keras.optimizers.legacy.SGD(0.0), metrics)
  np.testing.assert_allclose(float(logs['total_loss']),
                             float(logs['detection_loss']) + float(tf.add_n(model.losses)),
                             rtol=1e-5)


@pytest.mark.slow
def test_joint_trains_evaluates_and_checkpoints_the_classifier(tiny_data, iconic_data,
                                                               tmp_path):
  params = _params(tiny_data, iconic_data)
  result = trainer.train_to_plateau(params, str(tmp_path), progress=lambda _: None)
  assert [h['step'] for h in result['history']] == [3, 6]
  assert 'AP' in result['best']
  names = [n for n, _ in tf.train.list_variables(result['best_checkpoint'])]
  assert any(joint.CLASSIFIER_ATTR in n for n in names)
  # Its detector evaluates like any other (the classifier is simply not read).
  detector = trainer.build_params('emoji_retinanet', params_override=','.join(
      [TINY, pipeline.data_override(tiny_data)]))
  metrics = trainer.evaluate_checkpoint(
      detector, result['best_checkpoint'],
      emoji_scenes.split_pattern(tiny_data, 'val'), emoji_scenes.annotation_file(tiny_data, 'val'))
  assert 'AP' in metrics


@pytest.mark.slow
def test_joint_student_adds_the_classification_loss_to_the_students(tiny_data, iconic_data):
  """Table 7's last column: L = L_norm(L_h, L_p) + 0.2 L_cls (+ regularization)."""
  params = trainer.build_params(
      'emoji_retinanet_joint_student',
      params_override=','.join([TINY, pipeline.data_override(tiny_data)]), lock=False)
  params.task.classification_data.input_path = pretrain_cfg.iconic_pattern(iconic_data, False)
  params.task.classification_data.global_batch_size = 4
  # Human-labeled records stand in for pseudo labels (the schema is the same), the train
  # split itself: the pseudo config then equals the human one (as in `./run.sh dryrun`),
  # and the pseudo half must still be detection batches alone.
  params.task.pseudo_data.input_path = params.task.train_data.input_path
  params.lock()
  task = task_factory.get_task(params.task)
  assert isinstance(task, joint.SelfTrainingJointRetinaNetTask)
  tf_keras.utils.set_random_seed(0)
  model = task.build_model()
  (human, classification), pseudo = next(iter(task.build_inputs(params.task.train_data)))
  assert human[0].shape == pseudo[0].shape == (4, 64, 64, 3)
  assert classification[0].shape == (4, 64, 64, 3)
  metrics = task.build_metrics(training=True)
  logs = task.train_step(((human, classification), pseudo), model,
                         tf_keras.optimizers.legacy.SGD(0.0), metrics)
  for name in ('human_loss', 'pseudo_loss', 'pseudo_weight', 'classification_loss'):
    assert np.isfinite(float(logs[name])), name
  expected = (float(logs['model_loss']) + float(tf.add_n(model.losses)) +
              0.2 * float(logs['classification_loss']))
  np.testing.assert_allclose(float(logs['total_loss']), expected, rtol=1e-4)
  # Validation data is the detector's alone.
  val = next(iter(task.build_inputs(params.task.validation_data)))
  assert val[0].shape[1:] == (64, 64, 3)


@pytest.mark.slow
def test_registered_recipe_steps_at_its_own_input_size(tiny_data, iconic_data):
  """The 96-px detector reads the 64-px iconic images resized to its size (a backbone that
  Model Garden builds for one input size rejects any other)."""
  params = trainer.build_params(
      'emoji_retinanet_joint', params_override=','.join([
          pipeline.data_override(tiny_data), 'task.train_data.global_batch_size=2']),
      lock=False)
  params.task.classification_data.input_path = pretrain_cfg.iconic_pattern(iconic_data, False)
  params.task.classification_data.global_batch_size = 2
  params.lock()
  size = params.task.model.input_size[0]
  assert size != pretrain_cfg.ICONIC_IMAGE_SIZE
  task = task_factory.get_task(params.task)
  model = task.build_model()
  detection, classification = next(iter(task.build_inputs(params.task.train_data)))
  assert detection[0].shape[1:3] == classification[0].shape[1:3] == (size, size)
  logs = task.train_step((detection, classification), model,
                         tf_keras.optimizers.legacy.SGD(0.0), task.build_metrics(training=True))
  assert np.isfinite(float(logs['total_loss'])) and float(logs['classification_loss']) > 0
