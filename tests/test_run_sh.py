"""The front door: `./run.sh` subcommands and the main job's flags."""

import json
import os
import subprocess

import pytest

# Every test here launches ./run.sh.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  return subprocess.run([os.path.join(ROOT, 'run.sh'), *args], capture_output=True, text=True,
                        cwd=ROOT, timeout=300)


def test_help_lists_the_subcommands():
  proc = _run('--help')
  assert proc.returncode == 0
  for sub in ('custom', 'test', 'export', 'pseudo_label', 'segmentation', 'export_segmentation',
              'bench_margin', 'bench_overhead', 'bench_seg_scales', 'bench_seg_margin', 'bench_parallel',
              'bench_plateau', 'bench_stages', 'bench_speed',
              'pretrain', 'convert_checkpoint'):
    assert f'\n  {sub} ' in proc.stdout


def test_flags_without_a_subcommand_go_to_the_main_job():
  proc = _run('--no_such_flag=1')
  assert proc.returncode != 0
  assert 'unknown subcommand' not in proc.stderr
  assert 'no_such_flag' in proc.stderr


def test_unknown_subcommand_is_one_line():
  proc = _run('trian')
  assert proc.returncode != 0
  assert proc.stderr.strip() == "run.sh: unknown subcommand 'trian' (see ./run.sh --help)"


def test_pretrain_and_convert_checkpoint_bad_arguments_are_one_line():
  proc = _run('pretrain', 'imagenett')
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: unknown pre-training kind 'imagenett'; one of imagenet, imagenet_plus, simclr")
  proc = _run('convert_checkpoint', '--output=/tmp/x')
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      'error: convert_checkpoint needs --input and --output')


def test_a_student_steps_fraction_of_zero_is_refused():
  # A fraction <= 0 would train control and student for a single step and call it done.
  proc = _run('--student_steps_fraction=0')
  assert proc.returncode != 0
  assert '--student_steps_fraction must be above 0' in proc.stderr


def test_bench_plateau_replays_rules_on_whole_schedule_histories(tmp_path):
  """Where each rule would have stopped and what it would have lost; a run the plateau rule
  stopped cannot be replayed (one line)."""
  aps = (0.10, 0.20, 0.30, 0.38, 0.36, 0.37, 0.37, 0.40, 0.41, 0.42, 0.42, 0.43)
  history = [{'step': 500 * (i + 1), 'AP': a} for i, a in enumerate(aps)]
  (tmp_path / 'whole.json').write_text(json.dumps({'history': history,
                                                   'stopped': 'train_steps'}))
  proc = _run('bench_plateau', str(tmp_path / 'whole.json'), '--patience=3',
              '--window=0,1/4', '--start=0.25')
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = [l for l in proc.stdout.splitlines() if l.startswith('| 3 |')]
  # Patience 3 from step 1500: stops at 3500 (0.38, 0.36, 0.37, 0.37), 5.00 below the best
  # (0.43); a quarter of 6000 steps is 3 evals too.
  assert rows == ['| 3 | 0 | 3500 (3) / 5.00 | 5.00 | 42% |',
                  '| 3 | 1/4 | 3500 (3) / 5.00 | 5.00 | 42% |']
  (tmp_path / 'stopped.json').write_text(json.dumps({'history': history[:7],
                                                     'stopped': 'plateau'}))
  proc = _run('bench_plateau', str(tmp_path / 'stopped.json'))
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].endswith(
      'the plateau rule stopped this run at step 3500; replay needs a run that trained its '
      'whole schedule')
