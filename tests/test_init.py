"""Backbone initialization: `gin/init/*.gin`, and strict loading of init checkpoints.

No training: models are built with random weights and saved the way Model Garden's trainer
saves them (`tf.train.Checkpoint(model=..., **model.checkpoint_items)`).
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import task_factory

from projects.self_training.common import initialization
from projects.self_training.common import trainer
from projects.self_training.pipelines import detection as pipeline
from tests.conftest import TINY

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_INIT = os.path.join(REPO_ROOT, 'gin', 'init')


def _gin(name):
  return os.path.join(GIN_INIT, f'{name}.gin')


def _built(experiment, override=''):
  params = trainer.build_params(experiment, params_override=override)
  task = task_factory.get_task(params.task)
  model = task.build_model()
  model(tf.zeros([1] + params.task.model.input_size), training=False)
  return params, task, model


def _save(model, path):
  """As Model Garden's trainer saves: with the optimizer, whose momentum slots sit beside
  each weight in the checkpoint's object graph."""
  optimizer = tf_keras.optimizers.legacy.SGD(momentum=0.9)  # Model Garden's 'sgd'
  variables = model.trainable_variables
  optimizer.apply_gradients(zip([tf.zeros_like(v) for v in variables], variables))
  return tf.train.Checkpoint(model=model, optimizer=optimizer,
                             **model.checkpoint_items).write(path)


@pytest.fixture(scope='module')
def iconic_checkpoint(tmp_path_factory):
  """A MobileNetV3-Small classifier checkpoint (the embedded ImageNet Init's architecture)."""
  _, _, model = _built('emoji_iconic_classification')
  path = _save(model, str(tmp_path_factory.mktemp('ckpt') / 'iconic'))
  assert any(initialization.OPTIMIZER_SLOT in k for k, _ in tf.train.list_variables(path))
  return path, model


@pytest.mark.parametrize('experiment', ['emoji_retinanet', 'emoji_segmentation'])
def test_variable_paths_are_the_checkpoint_keys(experiment, tmp_path):
  _, _, model = _built(experiment)
  root = tf.train.Checkpoint(**model.checkpoint_items)
  written = dict(tf.train.list_variables(root.write(str(tmp_path / 'c'))))
  ours = initialization.variable_paths(root)
  assert set(ours) == {k for k in written if k.endswith(initialization.VARIABLE_SUFFIX)}
  assert all(written[k] == v.shape.as_list() for k, v in ours.items())


@pytest.mark.parametrize('name, checkpoint, modules', [
    ('rand', '', ''),
    ('imagenet', 'runs/pretrain/imagenet/best_ckpt', 'backbone'),
    ('imagenet_plus', 'runs/pretrain/imagenet_plus/best_ckpt', 'backbone'),
    ('simclr', 'runs/pretrain/simclr/best_ckpt', 'backbone'),
])
def test_gin_file_sets_init_checkpoint(name, checkpoint, modules):
  params = trainer.build_params('emoji_retinanet', gin_files=[_gin(name)])
  assert params.task.init_checkpoint == checkpoint
  assert params.task.init_checkpoint_modules == modules


def test_rand_init_clears_the_experiments_checkpoint():
  params = trainer.build_params(
      'emoji_retinanet', params_override='task.init_checkpoint=/somewhere/ckpt',
      gin_files=[_gin('rand')])
  # --params_override comes after gin, like Model Garden's config files: it wins.
  assert params.task.init_checkpoint == '/somewhere/ckpt'
  params = trainer.build_params('emoji_retinanet_student', gin_files=[_gin('rand')])
  assert params.task.init_checkpoint == ''


def test_full_scale_checkpoint_is_a_binding():
  params = trainer.build_params(
      'retinanet_efficientnetb7_fpn_coco_s1', gin_files=[_gin('imagenet')],
      gin_params=["IMAGENET_CHECKPOINT='gs://bucket/effnet-b7-aa'"])
  assert params.task.init_checkpoint == 'gs://bucket/effnet-b7-aa'
  assert params.task.init_checkpoint_modules == 'backbone'


def test_gin_init_composes_with_augmentation():
  params = trainer.build_params(
      'emoji_segmentation',
      gin_files=[_gin('imagenet'), os.path.join(REPO_ROOT, 'gin', 'augment', 's4.gin')])
  assert params.task.init_checkpoint_modules == 'backbone'
  assert params.task.train_data.aug_type.type == 'randaug'


@pytest.mark.parametrize('binding, needle', [
    ("initialization.modules='backbone,neck'", "'neck'"),
    ("initialization.checkpointt='x'", 'checkpointt'),
])
def test_bad_init_binding_is_one_line_error(binding, needle):
  with pytest.raises(trainer.ConfigError) as err:
    trainer.build_params('emoji_retinanet', gin_files=[_gin('imagenet')], gin_params=[binding])
  assert needle in str(err.value) and '\n' not in str(err.value)


@pytest.mark.parametrize('experiment', ['emoji_retinanet', 'emoji_segmentation'])
@pytest.mark.slow
def test_iconic_backbone_loads_every_variable(experiment, iconic_checkpoint, tmp_path):
  path, classifier = iconic_checkpoint
  params, _, _ = _built(experiment)
  params = trainer.build_params(
      experiment, gin_files=[_gin('imagenet')],
      gin_params=[f"IMAGENET_CHECKPOINT='{path}'"])
  task = trainer.build_task(params, str(tmp_path))
  model = task.build_model()
  model(tf.zeros([1] + params.task.model.input_size), training=False)
  task.initialize(model)
  theirs = classifier.backbone.variables
  assert task.init_variable_count == len(model.backbone.variables) == len(theirs) > 100
  for mine, saved in zip(model.backbone.variables, theirs):  # same architecture, same order
    np.testing.assert_array_equal(mine.numpy(), saved.numpy(), err_msg=mine.name)


def _strict_task(experiment, checkpoint, tmp_path, modules='backbone'):
  params = trainer.build_params(
      experiment, params_override=f'task.init_checkpoint={checkpoint}', lock=False)
  params.task.init_checkpoint_modules = modules
  task = trainer.build_task(params, str(tmp_path))
  model = task.build_model()
  model(tf.zeros([1] + params.task.model.input_size), training=False)
  return task, model


@pytest.mark.slow
def test_other_architecture_is_one_line_error_naming_the_variable(tmp_path):
  _, _, v2 = _built('emoji_iconic_classification',
                    'task.model.backbone.mobilenet.model_id=MobileNetV2')
  path = _save(v2, str(tmp_path / 'v2'))
  task, model = _strict_task('emoji_retinanet', path, tmp_path)
  before = [v.numpy() for v in model.backbone.variables]
  with pytest.raises(initialization.CheckpointMismatch) as err:
    task.initialize(model)
  message = str(err.value)
  assert '\n' not in message and 'backbone/' in message and 'does not fit' in message
  for old, var in zip(before, model.backbone.variables):  # nothing half-loaded
    np.testing.assert_array_equal(old, var.numpy())


@pytest.mark.slow
def test_wider_checkpoint_names_the_shape(tmp_path):
  _, _, wide = _built('emoji_iconic_classification',
                      'task.model.backbone.mobilenet.filter_size_scale=2.0')
  path = _save(wide, str(tmp_path / 'wide'))
  task, model = _strict_task('emoji_segmentation', path, tmp_path)
  with pytest.raises(initialization.CheckpointMismatch, match=r'has shape \[.*\] there'):
    task.initialize(model)


@pytest.mark.slow
def test_missing_checkpoint_and_module(tmp_path, iconic_checkpoint):
  task, model = _strict_task('emoji_retinanet', str(tmp_path / 'nothing'), tmp_path)
  with pytest.raises(initialization.CheckpointMismatch, match='not found'):
    task.initialize(model)
  # The student's whole-model restore from its teacher: a moved run dir is one line too.
  task, model = _strict_task('emoji_retinanet', str(tmp_path / 'moved' / 'best_ckpt-26'),
                             tmp_path, modules='all')
  with pytest.raises(initialization.CheckpointMismatch, match='not found'):
    task.initialize(model)
  empty = tmp_path / 'empty'
  empty.mkdir()
  task, model = _strict_task('emoji_retinanet', str(empty), tmp_path)
  with pytest.raises(initialization.CheckpointMismatch, match='holds no checkpoint'):
    task.initialize(model)
  # The classifier checkpoint has no decoder: asking for one is an error, not a skip.
  task, model = _strict_task('emoji_retinanet', iconic_checkpoint[0], tmp_path,
                             modules='backbone,decoder')
  with pytest.raises(initialization.CheckpointMismatch, match='decoder'):
    task.initialize(model)


@pytest.mark.slow
def test_train_cli_reports_unfit_checkpoint_in_one_line(tiny_data, iconic_checkpoint, tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  override = ','.join([TINY, pipeline.data_override(tiny_data)])
  proc = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.train', '--experiment=emoji_retinanet',
       '--mode=train', f'--model_dir={tmp_path / "run"}', f'--params_override={override}',
       f'--gin_file={_gin("imagenet")}', '--gin_params=initialization.modules="decoder"',
       f"--gin_params=IMAGENET_CHECKPOINT='{iconic_checkpoint[0]}'"],
      capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and 'decoder/' in errors[0], proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert not tf.io.gfile.glob(str(tmp_path / 'run' / 'ckpt-*'))  # no checkpoint written
