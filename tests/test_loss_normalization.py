"""Loss normalization: hand computation, alpha = 0, no gradient through the ratio, checkpoints,
and agreement across replicas under MirroredStrategy."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from projects.self_training.losses.loss_normalization import LossNormalization

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = [(2.0, 8.0), (1.5, 6.0), (1.0, 9.0), (0.8, 3.0), (0.7, 2.5)]


def _by_hand(steps, alpha, decay):
  ema_h = ema_p = None
  out = []
  for lh, lp in steps:
    ema_h = lh if ema_h is None else decay * ema_h + (1 - decay) * lh
    ema_p = lp if ema_p is None else decay * ema_p + (1 - decay) * lp
    out.append(((lh + alpha * ema_h / ema_p * lp) / (1 + alpha), ema_h, ema_p))
  return out


@pytest.mark.parametrize('alpha,decay', [(0.5, 0.9), (2.0, 0.9997), (1.0, 0.0)])
def test_matches_hand_computation_over_steps(alpha, decay):
  norm = LossNormalization(alpha=alpha, ema_decay=decay)
  for (lh, lp), (want, ema_h, ema_p) in zip(STEPS, _by_hand(STEPS, alpha, decay)):
    loss, logs = norm(tf.constant(lh), tf.constant(lp))
    assert float(loss) == pytest.approx(want, rel=1e-6)
    assert float(logs['ema_human_loss']) == pytest.approx(ema_h, rel=1e-6)
    assert float(logs['ema_pseudo_loss']) == pytest.approx(ema_p, rel=1e-6)
    assert float(logs['pseudo_weight']) == pytest.approx(alpha * ema_h / ema_p / (1 + alpha),
                                                         rel=1e-6)
  assert int(norm.num_updates.numpy()) == len(STEPS)


def test_first_step_sets_the_emas_to_the_losses():
  norm = LossNormalization(alpha=1.0, ema_decay=0.9997)
  loss, logs = norm(tf.constant(3.0), tf.constant(12.0))
  assert float(logs['ema_human_loss']) == 3.0 and float(logs['ema_pseudo_loss']) == 12.0
  # Ratio 3/12 brings the pseudo loss to the human loss's scale: (3 + 1 * 0.25 * 12) / 2.
  assert float(loss) == pytest.approx(3.0)


@pytest.mark.parametrize('bad', [0.0, float('nan'), float('inf')])
def test_a_zero_or_non_finite_loss_leaves_the_emas_alone(bad):
  # A zero pseudo loss on the first step used to set EMA(L_p) = 0, so the next step's
  # pseudo weight was EMA(L_h) / 1e-12; a NaN stayed in the EMAs for good.
  norm = LossNormalization(alpha=1.0, ema_decay=0.9)
  loss, logs = norm(tf.constant(2.0), tf.constant(bad))
  assert int(norm.num_updates.numpy()) == 0
  if bad == 0.0:
    assert float(loss) == pytest.approx(1.0)  # (2 + 1 * 1 * 0) / 2: weight 1, no EMA yet
  _, logs = norm(tf.constant(3.0), tf.constant(12.0))
  assert float(logs['ema_human_loss']) == 3.0 and float(logs['ema_pseudo_loss']) == 12.0
  assert float(logs['pseudo_weight']) == pytest.approx(0.25 / 2)
  # Later bad steps, on either half, change nothing either.
  for lh, lp in ((bad, 5.0), (4.0, bad)):
    _, logs = norm(tf.constant(lh), tf.constant(lp))
    assert float(logs['ema_human_loss']) == 3.0 and float(logs['ema_pseudo_loss']) == 12.0
  assert int(norm.num_updates.numpy()) == 1


def test_alpha_zero_is_exactly_the_human_loss():
  norm = LossNormalization(alpha=0.0)
  for lh, lp in STEPS + [(0.3, float('inf'))]:
    loss, _ = norm(tf.constant(lh), tf.constant(lp))
    assert loss.numpy() == np.float32(lh)


def test_ratio_carries_no_gradient():
  norm = LossNormalization(alpha=0.5, ema_decay=0.9)
  norm(tf.constant(2.0), tf.constant(8.0))  # initializes the EMAs
  lh, lp = tf.Variable(1.0), tf.Variable(4.0)
  with tf.GradientTape() as tape:
    loss, logs = norm(lh, lp)
  g_h, g_p = tape.gradient(loss, [lh, lp])
  ratio = float(logs['ema_human_loss'] / logs['ema_pseudo_loss'])
  assert float(g_h) == pytest.approx(1 / 1.5)
  assert float(g_p) == pytest.approx(0.5 * ratio / 1.5)


def test_standard_loss_switch():
  norm = LossNormalization(alpha=2.0, normalize=False)
  loss, logs = norm(tf.constant(1.0), tf.constant(5.0))
  assert float(loss) == pytest.approx(11.0)
  assert float(logs['pseudo_weight']) == 2.0


def test_rejects_bad_settings():
  with pytest.raises(ValueError, match='alpha'):
    LossNormalization(alpha=-1.0)
  with pytest.raises(ValueError, match='ema_decay'):
    LossNormalization(ema_decay=1.0)


def test_ema_state_survives_checkpoint_save_and_restore(tmp_path):
  model = tf_keras.Sequential([tf_keras.layers.Dense(1)])
  model.loss_normalization = LossNormalization(alpha=1.0, ema_decay=0.9)
  for lh, lp in STEPS[:3]:
    model.loss_normalization(tf.constant(lh), tf.constant(lp))
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / 'ckpt'))

  fresh = tf_keras.Sequential([tf_keras.layers.Dense(1)])
  fresh.loss_normalization = LossNormalization(alpha=1.0, ema_decay=0.9)
  tf.train.Checkpoint(model=fresh).read(path).expect_partial()
  a, b = model.loss_normalization, fresh.loss_normalization
  assert float(b.ema_human_loss) == float(a.ema_human_loss) != 0.0
  assert float(b.ema_pseudo_loss) == float(a.ema_pseudo_loss)
  assert int(b.num_updates) == 3
  # The restored layer continues the same sequence as the original.
  la, _ = a(tf.constant(0.5), tf.constant(2.0))
  lb, _ = b(tf.constant(0.5), tf.constant(2.0))
  assert float(la) == float(lb)


_MIRRORED = textwrap.dedent('''
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from projects.self_training.losses.loss_normalization import LossNormalization
    steps = [((2.0, 8.0), (4.0, 2.0)), ((1.0, 6.0), (3.0, 4.0)), ((0.5, 1.0), (1.5, 9.0))]
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    with strategy.scope():
      norm = LossNormalization(alpha=1.0, ema_decay=0.9)
    @tf.function
    def step(pairs):
      def fn():
        r = tf.distribute.get_replica_context().replica_id_in_sync_group
        lh = tf.gather(pairs[:, 0], r)
        lp = tf.gather(pairs[:, 1], r)
        _, logs = norm(lh, lp)
        return logs['ema_human_loss'], logs['ema_pseudo_loss']
      return strategy.run(fn)
    replica_values = []
    for pair in steps:
      eh, ep = step(tf.constant(pair))
      replica_values.append([[float(v) for v in strategy.experimental_local_results(eh)],
                             [float(v) for v in strategy.experimental_local_results(ep)]])
    stored = [[float(v) for v in norm.ema_human_loss.values],
              [float(v) for v in norm.ema_pseudo_loss.values]]
    single = LossNormalization(alpha=1.0, ema_decay=0.9)
    for pair in steps:
      mean = [(pair[0][k] + pair[1][k]) / 2 for k in range(2)]
      single(tf.constant(mean[0]), tf.constant(mean[1]))
    print(json.dumps({'replicas': replica_values, 'stored': stored,
                      'single': [float(single.ema_human_loss), float(single.ema_pseudo_loss)]}))
''')


@pytest.mark.slow
def test_mirrored_strategy_emas_equal_the_single_device_run():
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-c', _MIRRORED], capture_output=True, text=True,
                        env=env, cwd=ROOT, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  import json  # pylint: disable=g-import-not-at-top
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  for eh, ep in out['replicas']:
    assert eh[0] == eh[1] and ep[0] == ep[1]  # every replica holds the same EMAs
  np.testing.assert_allclose(out['stored'][0], [out['single'][0]] * 2, rtol=1e-6)
  np.testing.assert_allclose(out['stored'][1], [out['single'][1]] * 2, rtol=1e-6)
