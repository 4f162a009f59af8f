"""The experiment builder's flags and the evaluation of one checkpoint."""

import pytest
import tensorflow as tf
import tf_keras

from official.core import task_factory

from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from tests.conftest import TINY

SERVICE = 'grpc://data-service:5050'


def test_tf_data_service_reaches_every_training_input():
  """Model Garden's `--tf_data_service` switches the service on for the human, pseudo and
  classification inputs, not only their address; evaluation reads on its own."""
  for name, inputs in (('retinanet_efficientnetb7_fpn_coco_s4_student',
                        ('train_data', 'pseudo_data')),
                       ('emoji_retinanet_joint', ('train_data', 'classification_data')),
                       ('seg_nasfpn_efficientnetb7_pascal_student',
                        ('train_data', 'pseudo_data'))):
    params = trainer.build_params(name, tf_data_service=SERVICE)
    for data in inputs:
      config = getattr(params.task, data)
      assert config.enable_tf_data_service, (name, data)
      assert config.tf_data_service_address == SERVICE, (name, data)
    assert not params.task.validation_data.enable_tf_data_service
  plain = trainer.build_params('emoji_retinanet')
  assert not plain.task.train_data.enable_tf_data_service
  assert not plain.task.train_data.tf_data_service_address


def _params(tiny_data, experiment='emoji_retinanet'):
  return trainer.build_params(experiment, params_override=f'{TINY},'
                              f'{pipeline.data_override(tiny_data)}')


def _checkpoint(params, path, with_optimizer=True) -> str:
  """A checkpoint as the trainer writes one: the model and, beside it, optimizer state."""
  tf_keras.backend.clear_session()
  task = task_factory.get_task(params.task)
  model = task.build_model()
  items = {'model': model}
  if with_optimizer:
    optimizer = tf_keras.optimizers.legacy.SGD(learning_rate=0.0, momentum=0.9)
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    items.update(optimizer=optimizer, global_step=tf.Variable(6, dtype=tf.int64))
  return tf.train.Checkpoint(**items).write(path)


def _evaluate(params, checkpoint, tiny_data):
  return trainer.evaluate_checkpoint(params, checkpoint,
                                     emoji_scenes.split_pattern(tiny_data, 'val'),
                                     emoji_scenes.annotation_file(tiny_data, 'val'))


@pytest.mark.slow
def test_evaluate_checkpoint_restores_the_whole_model(tiny_data, tmp_path):
  params = _params(tiny_data)
  metrics = _evaluate(params, _checkpoint(params, str(tmp_path / 'teacher' / 'ckpt')), tiny_data)
  assert 'AP' in metrics


@pytest.mark.slow
def test_evaluate_checkpoint_refuses_a_checkpoint_of_another_model(tiny_data, tmp_path):
  """A segmenter's checkpoint (same backbone, other heads) or a backbone alone would leave
  part of the detector at its random initialization: refused in one line."""
  params = _params(tiny_data)
  segmenter = trainer.build_params('emoji_segmentation',
                                   params_override='task.model.input_size=[64,64,3]')
  wrong = _checkpoint(segmenter, str(tmp_path / 'segmenter' / 'ckpt'))
  with pytest.raises(trainer.ConfigError, match='does not restore the whole model') as e:
    _evaluate(params, wrong, tiny_data)
  assert '\n' not in str(e.value)
  tf_keras.backend.clear_session()
  model = task_factory.get_task(params.task).build_model()
  backbone_only = tf.train.Checkpoint(model=tf.train.Checkpoint(backbone=model.backbone)).write(
      str(tmp_path / 'backbone' / 'ckpt'))
  with pytest.raises(trainer.ConfigError, match='does not restore the whole model'):
    _evaluate(params, backbone_only, tiny_data)
