"""Backbone pre-training on `iconic`: supervised and SimCLR, the linear probe, and loading
the result through `gin/init/*.gin` into the embedded detector and segmenter."""

import os

import numpy as np
import pytest
import tensorflow as tf

from official.core import task_factory
from official.vision.ops import preprocess_ops

from projects.self_training.common import trainer
from projects.self_training.configs import pretrain as pretrain_cfg
from projects.self_training.data import categories
from projects.self_training.pipelines import pretrain
from projects.self_training.tasks import simclr

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_PRETRAIN = ('trainer.train_steps=4,trainer.validation_interval=2,trainer.steps_per_loop=2,'
                 'trainer.summary_interval=2,task.train_data.global_batch_size=4,'
                 'task.validation_data.global_batch_size=4,'
                 'trainer.optimizer_config.learning_rate.cosine.decay_steps=4,'
                 'trainer.optimizer_config.warmup.linear.warmup_steps=1')


def test_nt_xent_matches_hand_computation():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(6, 5)).astype(np.float32)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  t = 0.5
  loss, _, positives = simclr.nt_xent(tf.constant(z), t)
  sim = z @ z.T / t
  expected = []
  for i in range(6):
    others = [j for j in range(6) if j != i]
    pair = (i + 3) % 6
    expected.append(-sim[i, pair] + np.log(np.sum(np.exp(sim[i, others]))))
  np.testing.assert_allclose(loss.numpy(), np.mean(expected), rtol=1e-5)
  assert positives.numpy().tolist() == [3, 4, 5, 0, 1, 2]


def test_simclr_views_are_two_different_normalized_crops(iconic_data):
  params = pretrain.build_params('emoji_iconic_simclr', iconic_data, TINY_PRETRAIN)
  task = simclr.SimCLRTask(params.task)
  views, _ = next(iter(task.build_inputs(params.task.train_data)))
  assert views.shape == (4, 2, 64, 64, 3)
  assert not np.allclose(views[:, 0], views[:, 1])
  # Normalized as the classifier's inputs: not 0..255, and not squeezed into [0, 1] / 58.
  assert -5 < float(tf.reduce_mean(views)) < 5
  assert 0.2 < float(tf.math.reduce_std(views)) < 5


def _first_iconic_example(data_dir):
  record = next(iter(tf.data.TFRecordDataset(pretrain_cfg.iconic_pattern(data_dir, False)
                                             .split(',')[0])))
  feature = tf.train.Example.FromString(record.numpy()).features.feature
  return [tf.io.decode_jpeg(feature[key].bytes_list.value[0]).numpy().astype(np.float32)
          for key in ('image/encoded', pretrain_cfg.SimCLR().second_view_key)]


@pytest.mark.parametrize('second_view_key, sources', [
    ('second_view/image/encoded', (0, 1)),  # the default: the object on two backgrounds
    ('', (0, 0)),                           # SimCLR's own: two views of one image
    ('not/in/the/data', (0, 0)),            # real data without second views falls back
])
def test_simclr_views_come_from_the_image_and_its_second_view(
    second_view_key, sources, iconic_data):
  # Whole-image crops and no color change, so each view is its source, maybe flipped.
  override = (TINY_PRETRAIN + ',task.train_data.shuffle_buffer_size=1,'
              'task.simclr.crop_area_range=[1.0,1.0],task.simclr.color_strength=0.0,'
              'task.simclr.grayscale_probability=0.0,'
              f'task.simclr.second_view_key={second_view_key!r}')
  params = pretrain.build_params('emoji_iconic_simclr', iconic_data, override)
  data = params.task.train_data.replace(
      input_path=pretrain_cfg.iconic_pattern(iconic_data, False).split(',')[0],
      is_training=False, global_batch_size=1)
  views, _ = next(iter(simclr.SimCLRTask(params.task).build_inputs(data)))
  images = _first_iconic_example(iconic_data)
  for view, source in zip(views[0].numpy(), sources):
    unnormalized = view * np.array(preprocess_ops.STDDEV_RGB) + np.array(preprocess_ops.MEAN_RGB)
    error = min(np.abs(unnormalized - candidate).max()
                for candidate in (images[source], images[source][:, ::-1]))
    assert error < 1.0, (second_view_key, source, error)


def test_plus_is_longer_and_noisier():
  base = trainer.build_params('emoji_iconic_classification')
  plus = trainer.build_params('emoji_iconic_classification_plus')
  assert plus.trainer.train_steps == pretrain_cfg.PLUS_STEPS_FACTOR * base.trainer.train_steps
  assert base.task.model.dropout_rate == 0.0
  assert plus.task.model.dropout_rate == pretrain_cfg.PLUS_DROPOUT > 0


@pytest.mark.parametrize('kind, gin_name', [('imagenet', 'imagenet'), ('simclr', 'simclr')])
@pytest.mark.slow
def test_pretrain_reports_top1_resumes_and_loads_into_the_segmenter(
    kind, gin_name, iconic_data, tmp_path):
  runs = str(tmp_path / 'runs')
  lines = []
  result = pretrain.run(kind, runs, iconic_data, TINY_PRETRAIN, progress=lines.append)
  assert 0.0 <= result['linear_probe_top1'] <= 1.0
  assert result['probe_holdout_images'] == 12 and result['probe_train_images'] == 24
  key = 'contrastive_top1' if kind == 'simclr' else 'top1'
  assert 0.0 <= result[key] <= 1.0
  assert 'linear probe' in lines[-1]
  # A re-run skips the finished kind.
  again = []
  assert pretrain.run(kind, runs, iconic_data, TINY_PRETRAIN, progress=again.append) == result
  assert again == [f'pretrain {kind}: complete, skipped '
                   f'({os.path.join(pretrain.kind_dir(runs, kind), pretrain.RESULT_FILE)})']
  # The gin file's default path is the kind's best checkpoint under runs/.
  assert result['best_checkpoint'].startswith(
      os.path.join(pretrain.kind_dir(runs, kind), trainer.BEST_SUBDIR))
  params = trainer.build_params(
      'emoji_segmentation', gin_files=[os.path.join(REPO_ROOT, 'gin', 'init', f'{gin_name}.gin')],
      # The gin files name the directory; its latest (best) checkpoint is read.
      gin_params=[f"{gin_name.upper()}_CHECKPOINT="
                  f"'{os.path.join(pretrain.kind_dir(runs, kind), trainer.BEST_SUBDIR)}'"])
  task = trainer.build_task(params, str(tmp_path / 'seg'))
  model = task.build_model()
  model(tf.zeros([1] + params.task.model.input_size), training=False)
  task.initialize(model)
  assert task.init_variable_count == len(model.backbone.variables)


def test_unknown_kind_is_an_error(tmp_path):
  with pytest.raises(trainer.ConfigError, match='unknown pre-training kind'):
    pretrain.run('imagenet_pluss', str(tmp_path))


def test_missing_iconic_data_is_one_line_error(tmp_path):
  with pytest.raises(trainer.ConfigError, match='iconic shard not found'):
    pretrain.run('imagenet', str(tmp_path / 'runs'), str(tmp_path / 'nowhere'))


def test_iconic_classes_match_the_experiment():
  params = trainer.build_params('emoji_iconic_simclr')
  assert params.task.model.num_classes == len(categories.ICONIC_CLASSES)


def test_batch_norm_recalibration_moves_statistics_toward_the_images():
  params = trainer.build_params('emoji_iconic_classification')
  backbone = task_factory.get_task(params.task).build_model().backbone
  first = [v for v in backbone.variables if 'moving_mean' in v.name][0]
  before = first.numpy().copy()
  images = np.random.default_rng(0).normal(2.0, 1.0, (40, 64, 64, 3)).astype(np.float32)
  pretrain.recalibrate_batch_norm(backbone, images, epochs=1, batch_size=16)
  assert not np.allclose(before, first.numpy())
  assert all(v.trainable is False for v in backbone.variables if 'moving' in v.name)
