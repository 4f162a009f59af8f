"""Benchmark: one embedded teacher on every core against N teachers side by side, one per
share of the cores.

Answers "should the study run its seeds side by side (`./run.sh study --jobs N`)?" in one
run on one machine: the embedded RetinaNet is small (96 px, batch 16), so one process may
not keep every core busy. Every figure is measured here, now: the summed training img/s of
N processes started together (each with `cpu_count / N` TensorFlow threads) over the img/s
of one process alone; above 1, side by side trains more images per second in all. Each
process's figure is the median of its timed windows, after a warm-up that traces the step.
Not a test; the machine is shared and noisy.

  ./run.sh bench_parallel [--jobs 2] [--augment s1] [--train_steps 60] [--windows 3]
"""

import json
import os
import subprocess
import sys

from absl import app
from absl import flags

# The flags (--train_steps, --windows, --data_dir, --out) are teacher_throughput's; the
# timed loop is timing's, which teacher_throughput also runs.
import teacher_throughput
import timing

from projects.self_training.common import cli  # pylint: disable=g-bad-import-order

FLAGS = flags.FLAGS
flags.DEFINE_integer('jobs', 2, 'Processes side by side.')
flags.DEFINE_enum('augment', 's1', list(teacher_throughput.POLICIES),
                  'The teacher\'s augmentation.')
flags.DEFINE_bool('child', False, 'Internal: time one teacher and print its img/s.')
OUT = os.path.join(teacher_throughput.ROOT, 'runs', 'bench', 'parallel_runs.json')

RESULT = 'parallel_runs result: '


def child():
  """Times one teacher (the same loop as `teacher_throughput`) and prints its img/s."""
  from projects.self_training.data import emoji_scenes  # pylint: disable=g-import-not-at-top
  data_dir = FLAGS.data_dir or emoji_scenes.ensure_dataset()
  params = teacher_throughput._params(data_dir, FLAGS.augment)  # pylint: disable=protected-access
  rate = timing.train_images_per_second({'teacher': params}, FLAGS.train_steps,
                                        FLAGS.windows)['teacher']
  print(RESULT + json.dumps({'images_per_second': rate}), flush=True)


def run_side_by_side(jobs: int):
  """Starts `jobs` children together; returns each one's img/s."""
  env = cli.shared_cores_env(jobs)
  cmd = [sys.executable, os.path.abspath(__file__), '--child', f'--augment={FLAGS.augment}',
         f'--train_steps={FLAGS.train_steps}', f'--windows={FLAGS.windows}'] + (
             [f'--data_dir={FLAGS.data_dir}'] if FLAGS.data_dir else [])
  procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for _ in range(jobs)]
  rates = []
  for proc in procs:
    out, err = proc.communicate()
    lines = [l for l in out.splitlines() if l.startswith(RESULT)]
    if proc.returncode or not lines:
      sys.exit(f'error: a timed teacher failed (exit {proc.returncode}): '
               f'{(err.strip().splitlines() or ["no output"])[-1]}')
    rates.append(json.loads(lines[-1][len(RESULT):])['images_per_second'])
  return rates


def main(_):
  if FLAGS.child:
    child()
    return
  if FLAGS.jobs < 2:
    raise app.UsageError('--jobs must be at least 2 (one process is the baseline)')
  print(f'machine: {os.cpu_count()} CPU cores; embedded teacher, Augment-{FLAGS.augment.upper()}'
        f', {FLAGS.windows} windows of {FLAGS.train_steps} steps per process')
  alone = run_side_by_side(1)[0]
  side = run_side_by_side(FLAGS.jobs)
  ratio = sum(side) / alone
  print()
  print('| layout | img/s per process | img/s in all |')
  print('|---|---|---|')
  print(f'| 1 process, {os.cpu_count()} threads | {alone:.1f} | {alone:.1f} |')
  print(f'| {FLAGS.jobs} processes side by side, {max(1, (os.cpu_count() or 1) // FLAGS.jobs)} '
        f'thread(s) each | {" / ".join(f"{r:.1f}" for r in side)} | {sum(side):.1f} |')
  print(f'\nside by side / alone: {ratio:.2f}x (above 1: `--jobs {FLAGS.jobs}` trains more '
        'images per second in all)')
  out = OUT if FLAGS['out'].using_default_value else FLAGS.out
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, 'w') as f:
    json.dump({'cpu_count': os.cpu_count(), 'augment': FLAGS.augment, 'jobs': FLAGS.jobs,
               'alone_images_per_second': alone, 'side_by_side_images_per_second': side,
               'ratio': ratio}, f, indent=2)
  print(f'written: {out}')


if __name__ == '__main__':
  app.run(main)
