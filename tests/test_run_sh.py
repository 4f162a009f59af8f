"""The front door: `./run.sh` subcommands and the main job's flags."""

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
