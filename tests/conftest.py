"""Shared fixtures: a tiny generated data set and a tiny training override."""

import os

from projects.self_training.common import cli

# `./run.sh test` runs 3 pytest workers: each TensorFlow process (a worker, or a pipeline a
# test launches) gets its share of the cores, as `./run.sh study --jobs` gives its seeds,
# rather than a thread per core in every process (measured on 2 cores: the three longest
# tests side by side took 345 s instead of 394 s, docs/commands.md). Set before TensorFlow
# starts; a value you exported wins.
for _key, _value in cli.shared_cores_env(
    int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))).items():
  if _key.startswith('TF_NUM_'):
    os.environ.setdefault(_key, _value)

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from projects.self_training.data import emoji_scenes  # pylint: disable=g-import-not-at-top,wrong-import-position

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


# `./run.sh test` runs pytest-xdist with `--dist loadfile --no-loadscope-reorder`: a test
# file runs whole on one of the 3 workers (its module fixtures, e.g. an exported model, are
# built once), and the files go out in this order, the longest first, each free worker
# taking the next. (pytest-xdist's `xdist_group` marks do not group under pytest 9 here.)
LONGEST_FILES = ('test_student.py', 'test_study.py', 'test_your_data.py', 'test_experiments.py',
                 'test_segmentation.py', 'test_teacher.py', 'test_pseudo_label.py',
                 'test_joint.py', 'test_pretrain.py', 'test_multi_replica.py',
                 'test_seg_export.py', 'test_trainer.py', 'test_init.py',
                 'test_convert_checkpoint.py')


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.nodeid.split('::')[0].rsplit('/', 1)[-1]
    return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)
  items.sort(key=rank)  # stable: a file's tests keep their order
