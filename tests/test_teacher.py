"""A tiny teacher trains to its plateau, resumes, and evaluates end to end on generated data."""

import json
import os
import subprocess
import sys

import pytest

from projects.self_training import pipeline
from projects.self_training import trainer
from projects.self_training.data import emoji_scenes
from tests.conftest import TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _params(data_dir, extra=''):
  return trainer.build_params('emoji_retinanet',
                              params_override=f'{TINY},{pipeline.data_override(data_dir)}' + extra)


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


def test_main_job_rejects_incomplete_data_dir(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.main', f'--data_dir={tmp_path}',
       f'--runs_dir={tmp_path / "m"}'],
      capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
  assert proc.returncode == 2
  assert 'not a complete emoji-scenes set' in proc.stderr
  assert 'Traceback' not in proc.stderr


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
