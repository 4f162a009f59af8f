"""Benchmark: the student's margin over the same-steps supervised control, over seeds, beside
the ceiling of self-training (the same student with perfect pseudo labels).

One run's noise on the embedded set is about 1 AP, so a single main-job run cannot show a
gain of that size. This reuses the main job's teacher, export and pseudo labels (running
them first if missing) and trains, once per seed (data order and augmentation):

  control   the teacher trained further on human labels alone
  student   the teacher's pseudo labels on the unlabeled pool (the main job's student)
  ceiling   the same student with the pool's pseudo half replaced by human-labeled scenes
            of another seed of the generator, as many as the pool: a flawless teacher

and reports `val` AP of each, the student's margin over the control, the ceiling's margin,
and the share of the ceiling the pseudo labels reach. `--jobs 2` trains two arms at a time,
one CPU thread each (on 2 cores, 1.4x the throughput of one two-thread job).

  ./run.sh bench_margin [--seeds 0,1,2] [--ceiling_seeds 0,1,2] [--jobs 2] [main-job flags]
"""

import concurrent.futures
import os
import statistics
import subprocess
import sys

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from projects.self_training.common import cli
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.pipelines import detection_main as main_job  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds for control and student.')
flags.DEFINE_list('ceiling_seeds', None, 'Seeds that also train the ceiling student '
                  '(default: every seed; empty: none).')
flags.DEFINE_integer('jobs', 1, 'Arms trained at a time, each on cores / jobs threads.')
flags.DEFINE_string('arm', None, 'Internal: train one SEED:ARM and exit.')

ARMS = ('control', 'student', 'ceiling')
CEILING_SEED = 7  # the generator seed of the ceiling's human-labeled pool


def ceiling_pool(data_dir: str) -> str:
  """Human-labeled scenes of another generator seed, as many as `data_dir`'s pool (made once,
  cached beside the data set)."""
  meta = emoji_scenes.read_metadata(data_dir) or {}
  size = meta.get('counts', {}).get(emoji_scenes.UNLABELED_SPLIT, {}).get('images')
  if not size:
    raise trainer.ConfigError(f'{data_dir} has no {emoji_scenes.UNLABELED_SPLIT} count')
  out = emoji_scenes.ensure_dataset(
      os.path.join(os.path.dirname(os.path.abspath(data_dir)),
                   f'{os.path.basename(os.path.abspath(data_dir))}_ceiling{size}'),
      seed=CEILING_SEED, splits=('train',), num_train=size,
      image_size=meta.get('params', {}).get('image_size', emoji_scenes.DEFAULTS['image_size']))
  return emoji_scenes.split_pattern(out, 'train')


def settings(data_dir: str, seed: int, arm: str) -> pipeline.Settings:
  s = main_job.settings(data_dir)
  s.seed = seed
  s.force = []
  s.finetune_subdir = arm_dir(seed, arm)
  if arm == 'ceiling':
    s.pseudo_input = ceiling_pool(data_dir)
  return s


def train_arm(data_dir: str, seed: int, arm: str):
  s = settings(data_dir, seed, arm)
  progress = lambda line: print(f'[seed {seed} {arm}] {line}', flush=True)
  teacher = pipeline.teacher(s, progress)
  if arm == 'control':
    return pipeline.finetune(s, 'control', s.teacher_experiment, teacher['checkpoint'],
                             progress=progress)
  return pipeline.student(s, teacher['checkpoint'], progress)


def _subprocess(data_dir: str, seed: int, arm: str, threads: int) -> int:
  """Trains one arm in a child process on `threads` CPU threads, with this run's main-job
  flags."""
  env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(threads),
             TF_NUM_INTEROP_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
  passed = [FLAGS[f.name].serialize() for f in FLAGS.get_key_flags_for_module(main_job.__name__)
            if f.present and f.name != 'data_dir']
  cmd = [sys.executable, os.path.abspath(__file__), f'--arm={seed}:{arm}',
         f'--data_dir={data_dir}'] + passed
  return subprocess.run(cmd, env=env, check=False).returncode


def main(argv):
  cli.no_arguments(argv[1:])  # e.g. a glob the shell expanded: quote it
  trainer.quiet_logs()
  data_dir = emoji_scenes.resolve_data_dir(FLAGS.data_dir)
  with cli.errors_in_one_line(trainer.ConfigError, ValueError):
    if FLAGS.arm:
      seed, arm = FLAGS.arm.split(':')
      train_arm(data_dir, int(seed), arm)
      return
    if FLAGS.jobs < 1:
      raise trainer.ConfigError(f'--jobs must be >= 1, got {FLAGS.jobs}')
    seeds = [int(x) for x in FLAGS.seeds]
    ceiling = seeds if FLAGS.ceiling_seeds is None else [int(x) for x in FLAGS.ceiling_seeds]
    # The shared stages once (teacher, export, pseudo labels), then every seed's arms.
    s = main_job.settings(data_dir)
    pipeline.run(s, ('pseudo',), progress=lambda line: print(line, flush=True))
    if ceiling:
      ceiling_pool(data_dir)
    todo = [(seed, arm) for seed in seeds for arm in ARMS
            if arm != 'ceiling' or seed in ceiling]
    if FLAGS.jobs == 1:
      for seed, arm in todo:
        train_arm(data_dir, seed, arm)
    else:
      threads = max(1, (os.cpu_count() or 1) // FLAGS.jobs)
      with concurrent.futures.ThreadPoolExecutor(FLAGS.jobs) as pool:
        codes = list(pool.map(lambda t: _subprocess(data_dir, *t, threads), todo))
      failed = [f'{seed}:{arm}' for (seed, arm), code in zip(todo, codes) if code]
      if failed:
        raise trainer.ConfigError(f'arms failed: {", ".join(failed)} (see their output above)')
  report(data_dir, seeds, ceiling)


def arm_dir(seed: int, arm: str) -> str:
  """Where an arm's stage writes, under --runs_dir (a pipeline `finetune_subdir`)."""
  return os.path.join('seeds', f'seed{seed}' + ('_ceiling' if arm == 'ceiling' else ''))


def _result(seed: int, arm: str):
  stage = 'control' if arm == 'control' else 'student'
  return trainer.read_json(os.path.join(FLAGS.runs_dir, arm_dir(seed, arm), stage,
                                        pipeline.RESULT))


def _stats(values):
  return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def report(data_dir: str, seeds, ceiling) -> None:
  rows = []
  for seed in seeds:
    row = {'seed': seed}
    for arm in ARMS:
      if arm == 'ceiling' and seed not in ceiling:
        continue
      r = _result(seed, arm)
      row[arm] = {'val': r['val'], 'holdout': r['holdout'], 'best_step': r['best_step'],
                  'stopped': r.get('stopped')}
    row['margin_AP'] = row['student']['val']['AP'] - row['control']['val']['AP']
    row['holdout_margin_AP'] = (row['student']['holdout']['AP'] -
                                row['control']['holdout']['AP'])
    if 'ceiling' in row:
      row['ceiling_margin_AP'] = row['ceiling']['val']['AP'] - row['control']['val']['AP']
    rows.append(row)
  pct = lambda x: f'{100 * x:.1f}'
  print()
  print('| seed | control AP | student AP | student - control | ceiling AP | '
        'ceiling - control | held-out: control / student |')
  print('|---|---|---|---|---|---|---|')
  for r in rows:
    ceil = (f'{pct(r["ceiling"]["val"]["AP"])} | {100 * r["ceiling_margin_AP"]:+.1f}'
            if 'ceiling' in r else '— | —')
    print(f'| {r["seed"]} | {pct(r["control"]["val"]["AP"])} | '
          f'{pct(r["student"]["val"]["AP"])} | {100 * r["margin_AP"]:+.1f} | {ceil} | '
          f'{pct(r["control"]["holdout"]["AP"])} / {pct(r["student"]["holdout"]["AP"])} |')
  margins = [100 * r['margin_AP'] for r in rows]
  mean, spread = _stats(margins)
  out = {'rows': rows, 'mean_margin_AP': mean / 100, 'std_margin_AP': spread / 100}
  print(f'\nmargin over {len(margins)} seeds: mean {mean:+.2f} AP, std {spread:.2f}, '
        f'min {min(margins):+.1f}, max {max(margins):+.1f}; held-out mean '
        f'{100 * statistics.mean(r["holdout_margin_AP"] for r in rows):+.2f}')
  ceilings = [100 * r['ceiling_margin_AP'] for r in rows if 'ceiling_margin_AP' in r]
  if ceilings:
    c_mean, c_spread = _stats(ceilings)
    paired = [100 * r['margin_AP'] for r in rows if 'ceiling_margin_AP' in r]
    share = statistics.mean(paired) / c_mean if c_mean > 0 else float('nan')
    print(f'ceiling (perfect pseudo labels) over {len(ceilings)} seeds: mean {c_mean:+.2f} '
          f'AP, std {c_spread:.2f}; the pseudo labels reach {100 * share:.0f}% of it')
    out.update(mean_ceiling_margin_AP=c_mean / 100, std_ceiling_margin_AP=c_spread / 100,
               share_of_ceiling=share)
  trainer.write_json(os.path.join(FLAGS.runs_dir, 'seeds', 'margin.json'), out)


if __name__ == '__main__':
  app.run(main)
