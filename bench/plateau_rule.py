"""Benchmark: what each plateau rule would have cost on runs trained their whole schedule.

Answers "does the plateau rule stop a teacher before it converges, and which window does
not?" without training anything: it replays candidate rules (`trainer.Plateau`, the code
the runs use) on the held-out histories (`plateau_history.json`) of runs that trained every
step with no stop, e.g. a teacher of `./run.sh --plateau_patience=1000000`. For each rule
and run: the step it would have stopped at, the best held-out metric it would have kept,
and what that loses against the whole schedule's best (in metric points x100; the study's
convergence tolerance is 0.5 AP). Every figure is read from the histories given.

  ./run.sh bench_plateau RUN_DIR_OR_HISTORY... [--patience 3,4,5,6] [--window 0,1/8,1/6,1/4]
"""

import fractions
import json
import os
import sys
from typing import Any, Dict, List, Sequence

from absl import app
from absl import flags

from projects.self_training.common import cli  # pylint: disable=g-bad-import-order
from projects.self_training.common import trainer

FLAGS = flags.FLAGS
flags.DEFINE_list('patience', ['3', '4', '5', '6'], 'Patience values (evals) to replay.')
flags.DEFINE_list('window', ['0'], 'Shares of the schedule the patience window must span '
                  '(`trainer.patience_for`), e.g. 1/6; 0: patience alone.')
flags.DEFINE_float('start', 0.5, 'Share of the schedule before which evals do not count.')
flags.DEFINE_float('min_delta', 0.005, 'Smallest gain that counts (0-1 scale).')
flags.DEFINE_string('metric', 'AP', 'The held-out metric of the histories.')


def load(path: str) -> Dict[str, Any]:
  """A whole-schedule history: `path` is a `plateau_history.json` or the run dir holding it."""
  if os.path.isdir(path):
    path = os.path.join(path, trainer.HISTORY_FILE)
  state = trainer.read_json(path)
  if not state or not state.get('history'):
    raise trainer.ConfigError(f'{path}: no held-out history (plateau_history.json) there')
  history = state['history']
  if any(FLAGS.metric not in h for h in history):
    raise trainer.ConfigError(f'{path}: not every eval has {FLAGS.metric} (--metric: one of '
                              f'{", ".join(sorted(history[-1]))})')
  if state.get('stopped') == 'plateau':
    raise trainer.ConfigError(f'{path}: the plateau rule stopped this run at step '
                              f'{history[-1]["step"]}; replay needs a run that trained its '
                              f'whole schedule')
  return {'path': path, 'history': history, 'steps': history[-1]['step'],
          'interval': history[0]['step']}


def replay(history: List[Dict[str, float]], rule: trainer.Plateau, metric: str):
  """(stop step, best kept) of `rule` on `history`: the run as the rule would have ended it."""
  stop = rule.stop_step(history) or history[-1]['step']
  return stop, max(h[metric] for h in history if h['step'] <= stop)


def rows(runs: Sequence[Dict[str, Any]], patiences: Sequence[int],
         windows: Sequence[float]) -> List[Dict[str, Any]]:
  out = []
  for window in windows:
    for patience in patiences:
      row = {'patience': patience, 'window': window, 'runs': []}
      for run in runs:
        rule = trainer.Plateau.for_schedule(run['steps'], run['interval'], patience, window,
                                            FLAGS.start, metric=FLAGS.metric,
                                            min_delta=FLAGS.min_delta)
        stop, kept = replay(run['history'], rule, FLAGS.metric)
        best = max(h[FLAGS.metric] for h in run['history'])
        row['runs'].append({'evals': rule.patience, 'stop': stop, 'steps': run['steps'],
                            'kept': 100 * kept, 'loss': 100 * (best - kept)})
      row['worst_loss'] = max(r['loss'] for r in row['runs'])
      row['steps_saved'] = sum(r['steps'] - r['stop'] for r in row['runs']) / sum(
          r['steps'] for r in row['runs'])
      out.append(row)
  return out


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError('give run dirs or plateau_history.json files of whole-schedule runs')
  with cli.errors_in_one_line(trainer.ConfigError, ValueError, OSError, ZeroDivisionError):
    runs = [load(p) for p in paths]
    patiences = [int(p) for p in FLAGS.patience]
    windows = [float(fractions.Fraction(w)) for w in FLAGS.window]
  for i, run in enumerate(runs):
    best = max(run['history'], key=lambda h: h[FLAGS.metric])
    print(f'run {i}: {run["path"]}: {run["steps"]} steps, best held-out {FLAGS.metric} '
          f'{100 * best[FLAGS.metric]:.2f} at {best["step"]}')
  table = rows(runs, patiences, windows)
  print(f'\nmin_delta {100 * FLAGS.min_delta:g}, evals counted from {FLAGS.start:g} of the '
        f'schedule; per run: stop step (evals in the window) / loss vs the whole schedule\'s best')
  print('| patience | window | ' + ' | '.join(f'run {i}' for i in range(len(runs))) +
        ' | worst loss | steps saved |')
  print('|---|---|' + '---|' * len(runs) + '---|---|')
  for row in table:
    cells = [f'{r["stop"]} ({r["evals"]}) / {r["loss"]:.2f}' for r in row['runs']]
    window = fractions.Fraction(row['window']).limit_denominator(100)
    print(f'| {row["patience"]} | {window} | ' + ' | '.join(cells) +
          f' | {row["worst_loss"]:.2f} | {100 * row["steps_saved"]:.0f}% |')
  print(json.dumps({'result': table}), file=sys.stderr)


if __name__ == '__main__':
  app.run(main)
