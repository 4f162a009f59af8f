"""A tiny teacher trains to its plateau, resumes, and evaluates end to end on generated data."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import task_factory

from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from tests.conftest import TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _params(data_dir, extra=''):
  return trainer.build_params('emoji_retinanet',
                              params_override=f'{TINY},{pipeline.data_override(data_dir)}' + extra)


@pytest.mark.slow
def test_train_to_plateau_then_resume_and_evaluate(tiny_data, tmp_path):
  model_dir = str(tmp_path / 'teacher')
  params = _params(tiny_data)
  result = trainer.train_to_plateau(params, model_dir, progress=lambda _: None)
  assert [h['step'] for h in result['history']] == [3, 6]
  assert result['stopped'] == 'train_steps'
  assert all(0.0 <= h['AP'] <= 1.0 for h in result['history'])
  assert result['best_checkpoint'] and os.path.exists(result['best_checkpoint'] + '.index')

  # A re-run resumes: no more training, the same history.
  again = trainer.train_to_plateau(params, model_dir, progress=lambda _: None)
  assert again['history'] == result['history']

  metrics = trainer.evaluate_checkpoint(
      params, result['best_checkpoint'], emoji_scenes.split_pattern(tiny_data, 'val'),
      emoji_scenes.annotation_file(tiny_data, 'val'))
  for key in ('AP', 'AP50', 'AP75'):
    assert key in metrics


def test_plateau_rule():
  rule = trainer.Plateau(patience=2, min_delta=0.01)
  hist = lambda *aps: [{'AP': a} for a in aps]
  assert not rule.reached(hist(0.1, 0.2))
  assert not rule.reached(hist(0.1, 0.2, 0.3, 0.35))
  assert rule.reached(hist(0.1, 0.3, 0.305, 0.29))
  # Its `patience` evals all at or after `start_step`: a dip while the learning rate is
  # high does not stop a run, nor count towards a plateau.
  late = trainer.Plateau(patience=2, min_delta=0.01, start_step=2000)
  steps = lambda *aps: [{'AP': a, 'step': 500 * (i + 1)} for i, a in enumerate(aps)]
  assert rule.reached(steps(0.4, 0.3, 0.35))
  assert not late.reached(steps(0.4, 0.3, 0.35))
  assert not late.reached(steps(0.4, 0.3, 0.35, 0.39))
  assert late.reached(steps(0.4, 0.3, 0.35, 0.39, 0.38))
  assert not late.reached(steps(0.4, 0.3, 0.35, 0.39, 0.42))
  assert not trainer.Plateau(patience=None).reached(steps(0.4, 0.3, 0.3, 0.3, 0.3))
  # Replayed on a history: the step of the first eval it stops at.
  assert late.stop_step(steps(0.4, 0.3, 0.35, 0.39, 0.38, 0.37)) == 2500
  assert late.stop_step(steps(0.4, 0.3, 0.35, 0.39, 0.42)) is None


def test_plateau_window_lengthens_patience_on_long_schedules_only():
  """At least `window` of the schedule: the study's 12000-step teacher (evals every 500)
  waits 6 evals, its 32000-step Augment-S4 teacher 16, the main job's 8000-step teacher 4;
  the segmentation teacher (3000 steps, every 250) keeps its patience 4."""
  window = trainer.PLATEAU_WINDOW
  assert trainer.patience_for(12000, 500, 3, window) == 6
  assert trainer.patience_for(32000, 500, 3, window) == 16
  assert trainer.patience_for(8000, 500, 3, window) == 4
  assert trainer.patience_for(3000, 250, 4, window) == 4
  assert trainer.patience_for(12000, 500, 3, 1 / 6) == 4
  assert trainer.patience_for(12000, 500, 3, 0.0) == 3
  assert trainer.patience_for(12000, 500, None, window) is None
  # Every stage builds its rule from its schedule the same way.
  assert trainer.Plateau.for_schedule(12000, 500, 3, start=0.5, metric='mIoU') == trainer.Plateau(
      metric='mIoU', patience=6, start_step=6000)
  assert trainer.Plateau.for_schedule(12000, 500, None).describe() == 'its whole schedule'
  # A teacher's settings record the patience its schedule gets.
  s = pipeline.Settings(data_dir='', runs_dir='', teacher_override=(
      'trainer.train_steps=12000,trainer.validation_interval=500'))
  assert pipeline.teacher_rule(s).patience == 6 and pipeline.teacher_rule(s).start_step == 6000


@pytest.mark.slow
def test_main_job_rejects_incomplete_data_dir(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.pipelines.detection_main', f'--data_dir={tmp_path}',
       f'--runs_dir={tmp_path / "m"}'],
      capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
  assert proc.returncode == 2
  assert 'not a complete emoji-scenes set' in proc.stderr
  assert 'Traceback' not in proc.stderr


@pytest.mark.slow
def test_train_cli_modes(tiny_data, tmp_path):
  """Model Garden's modes through our driver: train_and_eval, then eval of the result."""
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  override = f'{TINY},{pipeline.data_override(tiny_data, "val")}'
  for mode in ('train_and_eval', 'eval'):
    proc = subprocess.run(
        [sys.executable, '-m', 'projects.self_training.train', '--experiment=emoji_retinanet',
         f'--mode={mode}', f'--model_dir={tmp_path}', f'--params_override={override}',
         f'--gin_file={ROOT}/gin/augment/s2.gin'],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / f'metrics_{mode}.json').read_text())
    assert metrics['global_step'] == 6 and 'AP' in metrics


def _first_batches(params, seed, num_batches=6):
  """Digests of the first training batches (images and box targets) from `seed`."""
  tf_keras.utils.set_random_seed(seed)
  task = task_factory.get_task(params.task)
  digests = []
  for images, labels in task.build_inputs(params.task.train_data).take(num_batches):
    digests.append(hashlib.md5(images.numpy().tobytes() + tf.concat(
        [tf.reshape(v, [-1]) for v in labels['box_targets'].values()], 0).numpy().tobytes()
                               ).hexdigest())
  return digests


def test_the_same_seed_gives_the_same_augmented_batches(tiny_data):
  # Scale jitter over the whole range, so that any difference in the draws shows.
  params = _params(tiny_data, ',task.train_data.parser.aug_scale_min=0.5,'
                   'task.train_data.parser.aug_scale_max=2.0')
  assert params.task.reproducible_inputs
  assert trainer.build_params('emoji_retinanet_student').task.reproducible_inputs
  first = _first_batches(params, seed=0)
  assert len(first) == 6 and len(set(first)) == 6
  assert _first_batches(params, seed=0) == first
  assert _first_batches(params, seed=1) != first


@pytest.mark.slow
def test_the_same_seed_trains_the_same_teacher(tiny_data, tmp_path):
  params = _params(tiny_data)
  weights, histories = [], []
  for run in ('a', 'b'):
    tf_keras.utils.set_random_seed(0)
    result = trainer.train_to_plateau(params, str(tmp_path / run), progress=lambda _: None)
    histories.append([{k: v for k, v in h.items() if k not in ('images_per_second',
                                                             'train_seconds', 'eval_seconds')}
                      for h in result['history']])
    reader = tf.train.load_checkpoint(result['best_checkpoint'])
    weights.append({k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                    if k.startswith(('backbone/', 'decoder/', 'head/'))})
  assert histories[0] == histories[1]
  assert weights[0].keys() == weights[1].keys() and len(weights[0]) > 10
  for k, v in weights[0].items():
    np.testing.assert_array_equal(v, weights[1][k], err_msg=k)


def test_stage_times_account_for_the_whole_wall_time():
  # Each trained model's training, held-out evals and val eval; export; labeling; the rest
  # is "other", so the shares add up to the wall time, and a stage that did not run is no
  # row at all.
  trained = lambda train, evals, val: {'train_seconds': train, 'val_eval_seconds': val,
                                       'history': [{'eval_seconds': e} for e in evals]}
  results = {'teacher': trained(600.0, [10.0, 20.0], 5.0), 'export_seconds': 15.0,
             'pseudo': {'seconds': 50.0}, 'pseudo_quality': {'seconds': 10.0},
             'student': trained(200.0, [5.0], 5.0), 'wall_seconds': 1000.0}
  rows = {r['stage']: r for r in pipeline.stage_times(results)}
  assert rows['teacher: held-out evals']['seconds'] == 30.0
  assert rows['student: training']['share'] == pytest.approx(0.2)
  assert rows['other (data, start-up, model building)']['seconds'] == pytest.approx(80.0)
  assert not any(stage.startswith('supervised control') for stage in rows)
  assert sum(r['share'] for r in rows.values()) == pytest.approx(1.0)
  table = pipeline.stage_table(list(rows.values()))
  assert table[-1] == '| all | 1000 | |'


def test_a_control_beside_the_rest_is_left_out_of_the_wall_times_sum():
  # Trained in its own process while the export, labels and student ran: its seconds
  # overlap theirs, so they are shown, marked, and not part of what makes up the wall time.
  trained = lambda train, **kw: dict({'train_seconds': train, 'val_eval_seconds': 1.0,
                                      'history': [{'eval_seconds': 2.0}]}, **kw)
  results = {'teacher': trained(500.0), 'control': trained(300.0, beside=True),
             'student': trained(400.0), 'wall_seconds': 1000.0}
  rows = {r['stage']: r for r in pipeline.stage_times(results)}
  beside = 'supervised control (own process, beside the rest): training'
  assert rows[beside]['seconds'] == 300.0 and rows[beside]['beside']
  assert rows['other (data, start-up, model building)']['seconds'] == pytest.approx(94.0)
  assert pipeline.stage_table(list(rows.values()))[-1] == '| all but the stages beside | 1000 | |'


def test_results_name_the_cpu_they_ran_on():
  from projects.self_training.common import machine  # pylint: disable=g-import-not-at-top
  name = machine.cpu_model()
  assert name.endswith(f', {os.cpu_count()} cores') and len(name) > len(', 2 cores')
