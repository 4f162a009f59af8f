"""Shared fixtures: a tiny generated data set and a tiny training override."""

import os

import pytest
import tensorflow as tf

from projects.self_training.data import emoji_scenes

# 64 px, batch 4, 6 steps with an eval every 3: the smallest run that exercises every path.
TINY = ('task.model.input_size=[64,64,3],task.train_data.global_batch_size=4,'
        'task.validation_data.global_batch_size=4,trainer.train_steps=6,'
        'trainer.validation_interval=3,trainer.steps_per_loop=3,trainer.summary_interval=3,'
        'trainer.optimizer_config.learning_rate.cosine.decay_steps=6,'
        'trainer.optimizer_config.warmup.linear.warmup_steps=1')


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
  """12 train, 4 holdout, 6 val and 8 unlabeled scenes at 64 px."""
  out = str(tmp_path_factory.mktemp('data') / 'scenes')
  emoji_scenes.generate(out, image_size=64, num_train=12, num_holdout=4, num_val=6,
                        num_unlabeled=8, splits=('train', 'holdout', 'val', 'unlabeled_scenes'),
                        num_workers=1)
  return out


@pytest.fixture(scope='session')
def iconic_data(tmp_path_factory):
  """36 iconic images at 64 px in 3 shards of 12 (train: 2 shards, held out: 1)."""
  out = str(tmp_path_factory.mktemp('iconic') / 'scenes')
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(emoji_scenes, 'IMAGES_PER_SHARD', 12)
    emoji_scenes.generate(out, num_iconic=36, splits=(emoji_scenes.ICONIC_SPLIT,),
                          num_workers=1)
  assert len(tf.io.gfile.glob(os.path.join(out, 'iconic-*-of-00003.tfrecord'))) == 3
  return out


# The longest tests (about 1-6 minutes each here) start first, so that with `-n 2` neither
# worker is left running one of them alone at the end.
SLOW_FIRST = ('test_study.py::test_study_runs_a_tiny_grid',
              'test_student.py::test_whole_pipeline_end_to_end',
              'test_segmentation.py::test_segmentation_pipeline_end_to_end',
              'test_teacher.py::test_train_cli_modes',
              'test_experiments.py::test_dryrun_steps_a_full_scale_recipe',
              'test_teacher.py::test_train_to_plateau_then_resume',
              'test_joint.py::test_joint_trains_evaluates',
              'test_pseudo_label.py::test_beam_pipeline_equals')


def pytest_collection_modifyitems(items):
  def rank(item):
    for k, prefix in enumerate(SLOW_FIRST):
      if prefix in item.nodeid:
        return k
    return len(SLOW_FIRST)
  items.sort(key=rank)  # stable: the rest keep their order
