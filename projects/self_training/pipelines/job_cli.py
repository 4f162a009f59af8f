"""What the staged jobs' command lines share (`./run.sh`, `./run.sh segmentation`): their
common flags, defined once, and the results file they end with."""

import os
import time
from typing import Any, Callable, Dict, Sequence

from absl import flags

from projects.self_training.common import cli
from projects.self_training.common import file_io
from projects.self_training.common import machine
from projects.self_training.common import trainer

FLAGS = flags.FLAGS
RESULTS = 'results.json'


def define_flags(defaults, stages: Sequence[str], runs_dir: str) -> None:
  """Defines the flags both jobs take, with this job's `defaults` (its `Settings`), `stages`
  and `runs_dir`. The job then calls `flags.adopt_module_key_flags(job_cli)`, so that its
  `--help` lists them."""
  flags.DEFINE_string('data_dir', None, 'An existing emoji-scenes set (default: generate or '
                      'reuse the cached default set).')
  flags.DEFINE_string('runs_dir', runs_dir, 'Where every stage writes.')
  flags.DEFINE_list('stages', list(stages), 'Stages to run, in order, with the stages they '
                    'read.')
  flags.DEFINE_list('force', [], 'Stages to redo from scratch (or "all").')
  flags.DEFINE_multi_string('gin_file', [], 'Gin files for every stage, e.g. '
                            'gin/augment/s1.gin.')
  flags.DEFINE_multi_string('gin_params', [], 'Gin bindings.')
  flags.DEFINE_string('params_override', '', 'Teacher params override (YAML or a=b,...).')
  flags.DEFINE_string('student_override', '', 'Params override for every model fine-tuned '
                      'from the teacher (control, student, ...).')
  flags.DEFINE_integer('plateau_patience', defaults.plateau_patience,
                       'Held-out evals without improvement before the teacher stops.')
  flags.DEFINE_integer('finetune_patience', defaults.finetune_patience,
                       'Held-out evals without improvement before a model fine-tuned from '
                       'the teacher (control, student, ...) stops (default: none, each trains '
                       'its whole schedule, the same compute, at its best held-out checkpoint).',
                       lower_bound=1)
  flags.DEFINE_float('plateau_start', defaults.plateau_start,
                     'Share of a model\'s steps before which held-out evals do not count '
                     'towards a plateau (the high-learning-rate part of its schedule).',
                     lower_bound=0, upper_bound=1)
  flags.DEFINE_float('plateau_window', defaults.plateau_window,
                     'Share of a model\'s steps a plateau must last at least: more evals '
                     'than the patience on a long schedule (default 1/4).',
                     lower_bound=0, upper_bound=1)
  flags.DEFINE_integer('student_steps', defaults.student_steps,
                       'Most training steps of the student and of the models it is compared '
                       'with (detection: 0 is --student_steps_fraction of the teacher\'s).')
  flags.DEFINE_float('alpha', None, 'Pseudo-loss weight alpha (default: the experiment\'s).')
  flags.DEFINE_float('threshold', defaults.threshold,
                     'Pseudo-label threshold: boxes scored below it are dropped; pixels whose '
                     'top class probability is below it get the ignore label.')
  flags.DEFINE_integer('seed', 0, 'Seed for data order and augmentation of the models '
                       'fine-tuned from the teacher.')


def start(argv: Sequence[str]) -> float:
  """Refuses stray arguments and quiets TensorFlow's logs; returns the start time."""
  cli.no_arguments(argv[1:])
  trainer.quiet_logs()
  return time.time()


def alpha_override() -> str:
  """`--alpha` as a params override ('' when not given)."""
  return '' if FLAGS.alpha is None else f'task.loss_normalization.alpha={FLAGS.alpha}'


def curve(history: Sequence[Dict[str, Any]], metric: str) -> str:
  """A held-out curve in one line: `step:percent, ...`."""
  return ', '.join(f'{h["step"]}:{100 * h[metric]:.1f}' for h in history)


def print_training(results: Dict[str, Any], keys: Sequence[str], metric: str, name: str,
                   label: Callable[[str], str] = str) -> None:
  """The teacher's held-out curve and where it stopped, then the curve of each of `keys`
  (the models fine-tuned from it) that ran."""
  t = results['teacher']
  print()
  print(f'Teacher held-out {name} by step: {curve(t["history"], metric)}')
  print(f'Teacher stopped: {t["stopped"]}; best held-out {name} {100 * t["holdout"][metric]:.1f}'
        f' at step {t["best_step"]}; training {t["train_seconds"]:.0f} s.')
  for key in keys:
    if key in results:
      print(f'{label(key)} held-out {name} by step: {curve(results[key]["history"], metric)}')


def write_results(results: Dict[str, Any], start: float) -> None:
  """Adds the wall time and the CPU it ran on, writes `--runs_dir/results.json` and says where."""
  results['wall_seconds'] = time.time() - start
  results['cpu'] = machine.cpu_model()
  path = os.path.join(FLAGS.runs_dir, RESULTS)
  file_io.write_json(path, results)
  print(f'\nMetrics: {path}; wall time {results["wall_seconds"]:.0f} s.')
