"""Backbone pre-training on `iconic`: its checkpoint loads into the embedded segmenter.

No training: the classifier is built with random weights, saved the way Model Garden's
trainer saves it, and read back with `init_checkpoint_modules=backbone`; every backbone
variable must come from the checkpoint (counted), and a wrong-architecture checkpoint is
an error, never a silent partial load.
"""

import numpy as np
import pytest
import tensorflow as tf

from official.core import task_factory

from projects.self_training import trainer
from projects.self_training.data import categories


def _save_classifier(path, model_id='MobileNetV3Small'):
  params = trainer.build_params('emoji_iconic_classification', params_override=(
      f'task.model.backbone.mobilenet.model_id={model_id}'))
  assert params.task.model.num_classes == len(categories.ICONIC_CLASSES)
  model = task_factory.get_task(params.task).build_model()
  model(tf.zeros([1] + params.task.model.input_size))
  tf.train.Checkpoint(model=model, **model.checkpoint_items).write(path)
  return model


def _segmenter(checkpoint):
  params = trainer.build_params('emoji_segmentation', params_override=(
      f'task.init_checkpoint={checkpoint},task.init_checkpoint_modules=backbone'))
  task = task_factory.get_task(params.task)
  model = task.build_model()
  model(tf.zeros([1] + params.task.model.input_size))
  return task, model


def test_iconic_backbone_loads_into_segmenter(tmp_path):
  classifier = _save_classifier(str(tmp_path / 'ckpt'))
  task, model = _segmenter(str(tmp_path / 'ckpt'))
  task.initialize(model)
  ours, theirs = model.backbone.variables, classifier.backbone.variables
  assert len(ours) == len(theirs) > 100
  for mine, saved in zip(ours, theirs):  # same architecture: same variable order
    np.testing.assert_array_equal(mine.numpy(), saved.numpy(), err_msg=mine.name)


def test_other_backbone_checkpoint_is_an_error(tmp_path):
  _save_classifier(str(tmp_path / 'ckpt'), model_id='MobileNetV2')
  task, model = _segmenter(str(tmp_path / 'ckpt'))
  with pytest.raises((AssertionError, ValueError)):
    task.initialize(model)
