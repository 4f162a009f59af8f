"""One student step on 2 replicas (MirroredStrategy over 2 logical CPUs) equals the
single-device step: losses, loss-normalization EMAs and updated weights.

Model Garden's RetinaNet loss divides each replica's loss by that replica's own positive
anchors (+1), as the official task does, so replicas with different images give a loss that
differs from one big batch by design. The test therefore gives every replica the same two
scenes: the 2-replica step on 4 + 4 images (2 human + 2 pseudo per replica) must then equal
the single-device step on 2 + 2, and any error in the split (a replica getting only human or
only pseudo images), in the gradient all-reduce (the per-replica loss scaling) or in the
EMAs' cross-replica mean shows up as a difference. Both steps run eagerly (the strategy
runs each replica's step in its own thread): the arithmetic of a traced step, without
tracing it twice.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from projects.self_training.data import emoji_scenes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_STEP = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from official.core import task_factory
    from projects.self_training.common import trainer
    from projects.self_training.tasks import self_training

    human, pseudo, annotations, init = sys.argv[1:5]
    def params_for(batch):
      no_aug = 'aug_rand_hflip=false,aug_scale_min=1.0,aug_scale_max=1.0'
      override = ','.join([
          'task.model.input_size=[64,64,3]', f'task.annotation_file={annotations}',
          'task.loss_normalization.alpha=1.0', 'task.loss_normalization.ema_decay=0.5',
          'task.model.norm_activation.use_sync_bn=true',
          'task.init_checkpoint=""',
      ] + [f'task.{d}.{k}' for d, path in (('train_data', human), ('pseudo_data', pseudo))
           for k in (f'input_path={path}', f'global_batch_size={batch}', 'shuffle_buffer_size=1',
                     *[f'parser.{a}' for a in no_aug.split(',')])])
      return trainer.build_params('emoji_retinanet_student', params_override=override)

    def step(strategy, batch, first):
      params = params_for(batch)
      with strategy.scope():
        task = task_factory.get_task(params.task)
        model = task.build_model()
        model(tf.zeros([1, 64, 64, 3]), training=False)
        if first:  # the single-device model's initial weights start both runs
          tf.train.Checkpoint(model=model).write(init)
        else:
          tf.train.Checkpoint(model=model).read(init).expect_partial()
        before = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
        optimizer = task.create_optimizer(params.trainer.optimizer_config, params.runtime)
        metrics = task.build_metrics(training=True)
      data = strategy.distribute_datasets_from_function(
          lambda ctx: task.build_inputs(params.task.train_data, ctx))
      inputs = next(iter(data))
      # Images per replica: [human per replica, pseudo per replica].
      split = [[int(x.shape[0]) for x in strategy.experimental_local_results(half[0])]
               for half in inputs]
      # Eager: the same arithmetic without tracing the step twice (minutes on this CPU).
      logs = strategy.run(task.train_step, args=(inputs, model, optimizer, metrics))
      loss = strategy.experimental_local_results(logs[task.loss])
      norm = getattr(model, self_training.NORMALIZER_ATTR)
      emas = [[float(v) for v in strategy.experimental_local_results(e)]
              for e in (norm.ema_human_loss, norm.ema_pseudo_loss)]
      weights = [strategy.experimental_local_results(v) for v in model.trainable_variables]
      return {'split': split,
              'loss': [float(x) for x in loss], 'emas': emas,
              'replicas_agree': all(np.array_equal(w[0].numpy(), w[-1].numpy())
                                    for w in weights),
              'weights': np.concatenate([w[0].numpy().ravel() for w in weights]),
              'before': before}

    one = step(tf.distribute.get_strategy(), 2, first=True)
    two = step(tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']), 4, first=False)
    print(json.dumps({
        'one': {k: v for k, v in one.items() if k not in ('weights', 'before')},
        'two': {k: v for k, v in two.items() if k not in ('weights', 'before')},
        'max_weight_diff': float(np.max(np.abs(one['weights'] - two['weights']))),
        'max_update': float(np.max(np.abs(one['weights'] - one['before']))),
    }))
''')


def _two_scenes(tiny_data, path, skip):
  """A record file holding two train scenes, so every batch of 2 is (a, b)."""
  files = tf.io.gfile.glob(emoji_scenes.split_pattern(tiny_data, 'train'))
  records = list(tf.data.TFRecordDataset(files).skip(skip).take(2))
  with tf.io.TFRecordWriter(path) as w:
    for r in records:
      w.write(r.numpy())
  return path


def _run(*args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-c', _STEP, *args], capture_output=True, text=True,
                        env=env, cwd=ROOT, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_two_replica_student_step_equals_the_single_device_step(tiny_data, tmp_path):
  human = _two_scenes(tiny_data, str(tmp_path / 'human.tfrecord'), skip=0)
  pseudo = _two_scenes(tiny_data, str(tmp_path / 'pseudo.tfrecord'), skip=2)
  annotations = emoji_scenes.annotation_file(tiny_data, 'val')
  out = json.loads(_run(human, pseudo, annotations, str(tmp_path / 'init')))
  print(json.dumps(out))
  one, two = out['one'], out['two']
  # The 1:1 human/pseudo split holds on every replica: 2 + 2 each, as on one device.
  assert one['split'] == [[2], [2]] and two['split'] == [[2, 2], [2, 2]]
  assert two['replicas_agree']
  np.testing.assert_allclose(two['loss'], one['loss'] * 2, rtol=1e-4)
  assert one['emas'][0] != one['emas'][1]  # the halves differ
  for ema_one, ema_two in zip(one['emas'], two['emas']):
    assert ema_two[0] == ema_two[1]
    np.testing.assert_allclose(ema_two, ema_one * 2, rtol=1e-4)
  assert out['max_update'] > 1e-4  # the step moved the weights ...
  assert out['max_weight_diff'] < 1e-3 * out['max_update'], out  # ... the same way
