"""Benchmark: seconds per step of the study's fine-tuning stages, as the study runs them.

Answers "how long do the default grid's controls and students take at an augmentation?"
in one run on one machine, for `./run.sh study`'s time estimate (docs/study.md, "What the
default grid needs"). `--jobs` processes start together, one per share of the cores as the
study's seeds run (`--jobs 2`: one core each); each trains a control (the teacher's
experiment: its step is the teacher's) and then a student (human + pseudo batch a step)
through the pipeline's own `finetune`, at the study's augmentation and init gin files,
held-out evals every `--eval_interval` steps. No teacher is needed: both start from the
init, and the student's pseudo half is the human `train` split (a step's cost does not
depend on its boxes' source). Each stage's figure is the median over its intervals after
the first (which traces the step), training alone and with its held-out eval. Not a test;
the machine is shared and noisy.

  ./run.sh bench_stages [--augment s1,s4] [--init rand] [--steps 1500] [--jobs 2]
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from projects.self_training.common import cli  # pylint: disable=g-import-not-at-top
from projects.self_training.common import paths
from projects.self_training.common import trainer

FLAGS = flags.FLAGS
flags.DEFINE_list('augment', ['s1', 's4'], 'The stages\' augmentations, timed one after the '
                  'other; each later one also as a ratio to the first.')
flags.DEFINE_enum('init', 'rand', ['rand'], 'The stages\' init (pre-trained ones need a '
                  'pre-trained checkpoint; their step costs the same).')
flags.DEFINE_integer('steps', 1500, 'Steps per stage (at least 2 eval intervals).')
flags.DEFINE_integer('eval_interval', 500, 'Held-out eval every this many steps (the study\'s).')
flags.DEFINE_integer('jobs', 2, 'Processes side by side, as `./run.sh study --jobs`.')
flags.DEFINE_string('data_dir', None, 'Emoji-scenes set (default: the cached default set).')
flags.DEFINE_string('out', os.path.join(ROOT, 'runs', 'bench', 'stage_rates.json'),
                    'Where to write the figures.')
flags.DEFINE_string('child', None, 'Internal: train both stages under this directory.')

STAGES = ('control', 'student')
AUGMENTS = ('s1', 's2', 's3', 's4')
RESULT = 'stage_rates result: '


def child(runs_dir: str, seed: int):
  """Trains a control and a student under `runs_dir`; prints their eval intervals."""
  from projects.self_training.data import emoji_scenes  # pylint: disable=g-import-not-at-top
  from projects.self_training.pipelines import detection as pipeline  # pylint: disable=g-import-not-at-top
  data_dir = FLAGS.data_dir or emoji_scenes.ensure_dataset()
  s = pipeline.Settings(
      data_dir=data_dir, runs_dir=runs_dir, seed=seed,
      gin_files=[os.path.join(paths.GIN_DIR, 'augment', f'{FLAGS.augment[0]}.gin'),
                 os.path.join(paths.GIN_DIR, 'init', f'{FLAGS.init}.gin')],
      student_steps=FLAGS.steps, eval_interval=FLAGS.eval_interval,
      pseudo_input=emoji_scenes.split_pattern(data_dir, 'train'))
  quiet = lambda line: None
  pipeline.finetune(s, 'control', s.teacher_experiment, None, progress=quiet)
  pipeline.student(s, None, progress=quiet)
  out = {}
  for stage in STAGES:
    history = trainer.read_json(os.path.join(s.dir(stage), trainer.HISTORY_FILE))['history']
    steps = [h['step'] for h in history]
    out[stage] = [{'steps': b - a, 'train_seconds': h['train_seconds'],
                   'eval_seconds': h.get('eval_seconds', 0.0)}
                  for a, b, h in zip([0] + steps, steps, history)]
  print(RESULT + json.dumps(out), flush=True)


def per_step(runs, stage: str) -> dict:
  """Median seconds a step of `stage` over every process's intervals after its first (the
  first traces the step), training alone and with its held-out eval."""
  later = [i for r in runs for i in r[stage][1:]]
  return {'seconds_per_step': statistics.median(i['train_seconds'] / i['steps'] for i in later),
          'seconds_per_step_with_evals': statistics.median(
              (i['train_seconds'] + i['eval_seconds']) / i['steps'] for i in later),
          'intervals': len(later)}


def main(_):
  if FLAGS.child:
    child(FLAGS.child, int(os.path.basename(FLAGS.child)))
    return
  if FLAGS.steps < 2 * FLAGS.eval_interval:
    raise app.UsageError('--steps must be at least 2 eval intervals (the first one traces)')
  unknown = sorted(set(FLAGS.augment) - set(AUGMENTS))
  if unknown:
    raise app.UsageError(f'--augment: unknown {", ".join(unknown)} (one of {", ".join(AUGMENTS)})')
  print(f'machine: {os.cpu_count()} CPU cores; {FLAGS.jobs} processes side by side, '
        f'{FLAGS.init} init, {FLAGS.steps} steps a stage')
  from projects.self_training.data import emoji_scenes  # pylint: disable=g-import-not-at-top
  data_dir = FLAGS.data_dir or emoji_scenes.ensure_dataset()  # made once, before the children
  rows = {}
  for augment in FLAGS.augment:
    runs = side_by_side(augment, data_dir)
    rows[augment] = {'stages': {stage: per_step(runs, stage) for stage in STAGES}, 'runs': runs}
  first = FLAGS.augment[0]
  print()
  print(f'| augmentation | stage | s a step, training | with held-out evals | / Augment-{first.upper()} '
        '| intervals (after the first) |')
  print('|---|---|---|---|---|---|')
  for augment, r in rows.items():
    for stage, x in r['stages'].items():
      ratio = x['seconds_per_step_with_evals'] / rows[first]['stages'][stage][
          'seconds_per_step_with_evals']
      x['ratio_to_first'] = ratio
      print(f'| Augment-{augment.upper()} | {stage} | {x["seconds_per_step"]:.3f} | '
            f'{x["seconds_per_step_with_evals"]:.3f} | {ratio:.2f}x | {x["intervals"]} |')
  trainer.write_json(FLAGS.out, {'cpu_count': os.cpu_count(), 'jobs': FLAGS.jobs,
                                 'init': FLAGS.init, 'steps': FLAGS.steps, 'augment': rows})
  print(f'\nwritten: {FLAGS.out}')


def side_by_side(augment: str, data_dir: str):
  """`--jobs` children started together at `augment`; each one's eval intervals."""
  env = cli.shared_cores_env(FLAGS.jobs)
  flags_out = [f'--augment={augment}', f'--init={FLAGS.init}', f'--steps={FLAGS.steps}',
               f'--eval_interval={FLAGS.eval_interval}', f'--data_dir={data_dir}']
  with tempfile.TemporaryDirectory(prefix='bench_stages_') as tmp:
    procs = []
    for k in range(FLAGS.jobs):  # output to files: a full pipe would stall a child
      log = open(os.path.join(tmp, f'{k}.log'), 'w+')
      procs.append((subprocess.Popen([sys.executable, os.path.abspath(__file__),
                                      f'--child={os.path.join(tmp, str(k))}'] + flags_out,
                                     env=env, stdout=log, stderr=subprocess.STDOUT), log))
    runs = []
    for proc, log in procs:
      proc.wait()
      log.seek(0)
      lines = log.read().splitlines()
      log.close()
      results = [l for l in lines if l.startswith(RESULT)]
      if proc.returncode or not results:
        sys.exit(f'error: a timed run failed (exit {proc.returncode}): '
                 f'{(lines or ["no output"])[-1]}')
      runs.append(json.loads(results[-1][len(RESULT):]))
  return runs


if __name__ == '__main__':
  app.run(main)
