"""A fine-tuning stage in a process of its own, beside the rest of the job.

The supervised control reads the teacher alone, so the main job need not wait for it: with
`--parallel_control` it trains in a child process on its share of the cores while the parent exports
the teacher, labels the pool and trains the student (on 2 cores, two TensorFlow processes
side by side do more work than one on both cores: `./run.sh bench_parallel`). The child gets
the parent's `Settings` as JSON and runs the same `finetune` the parent would have run, so
its records are those of the stage run in place; only its thread count differs (the same
seed on other thread counts draws other rounding, so other curves).

  beside.start(settings, 'control', experiment, init_checkpoint, result_file) -> Beside
  .result() waits and returns the stage's summary; .stop() ends the child early.
"""

import dataclasses
import importlib
import json
import subprocess
import sys
import threading
from typing import Any, Dict, Optional

from absl import app

from projects.self_training.common import cli
from projects.self_training.common import trainer


class Beside:
  """A stage training in a child process, its output forwarded line by line with a prefix."""

  def __init__(self, proc: subprocess.Popen, forward: threading.Thread, stage: str,
               result_file: str):
    self._proc, self._forward = proc, forward
    self.stage, self._result_file = stage, result_file

  def result(self) -> Dict[str, Any]:
    """Waits for the child; its stage's summary, or a one-line error naming its exit."""
    code = self._proc.wait()
    self._forward.join()
    done = trainer.read_json(self._result_file)
    if code or done is None:
      raise trainer.ConfigError(f'{self.stage} (in its own process) failed with exit status '
                                f'{code}: its lines above, prefixed [{self.stage}]')
    return dict(done, beside=True)

  def stop(self) -> None:
    """Ends the child (the parent failed or was interrupted); its stage stays incomplete."""
    if self._proc.poll() is None:
      self._proc.kill()
      self._proc.wait()
    self._forward.join(timeout=5)


def start(settings, stage: str, experiment: str, init_checkpoint: Optional[str],
          result_file: str, processes: int = 2) -> Beside:
  """Starts `pipeline.finetune(settings, stage, experiment, init_checkpoint)` in a child
  process on 1 / `processes` of the cores, its lines to this process's standard output,
  each after `[stage] `."""
  kind = type(settings)
  job = {'settings_class': f'{kind.__module__}:{kind.__qualname__}',
         'settings': dataclasses.asdict(settings), 'stage': stage, 'experiment': experiment,
         'init_checkpoint': init_checkpoint}
  proc, forward = cli.start_prefixed([sys.executable, '-m', __name__, json.dumps(job)],
                                     f'[{stage}] ', cli.shared_cores_env(processes))
  return Beside(proc, forward, stage, result_file)


def _settings(job: Dict[str, Any]):
  module, name = job['settings_class'].split(':')
  return getattr(importlib.import_module(module), name)(**job['settings'])


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('beside.py is started by the pipeline with one JSON argument')
  job = json.loads(argv[1])
  trainer.quiet_logs()
  from projects.self_training.pipelines import detection as pipeline  # pylint: disable=g-import-not-at-top
  with cli.errors_in_one_line(trainer.ConfigError, ValueError):
    pipeline.finetune(_settings(job), job['stage'], job['experiment'], job['init_checkpoint'],
                      progress=lambda line: print(line, flush=True))


if __name__ == '__main__':
  app.run(main)
