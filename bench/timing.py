"""Timing helpers the benchmarks share: no flags, so that each benchmark defines its own."""

import contextlib
import io
import statistics
import tempfile
import time

from official.core import task_factory
from official.core import train_lib
import tensorflow as tf


def train_images_per_second(variants, steps, windows):
  """Full training steps (Orbit loop, real input pipeline) of the embedded teacher.

  `variants` maps a name to its params; their windows alternate (one window of each in
  turn), so load from other jobs on a shared machine falls on all of them alike. Returns
  the median img/s per name. Orbit's progress lines (it prints them) are not shown.
  """
  with contextlib.redirect_stdout(io.StringIO()):
    never = steps * 10**7  # Orbit wants both intervals to be multiples of steps_per_loop
    strategy = tf.distribute.get_strategy()
    runners = {}
    for name, params in variants.items():
      params = params.replace(trainer={'checkpoint_interval': never, 'summary_interval': never,
                                       'steps_per_loop': steps})
      runner = train_lib.OrbitExperimentRunner(
          strategy, task_factory.get_task(params.task), 'train', params,
          tempfile.mkdtemp(prefix='bench_teacher_'))
      runner.controller.train(steps=steps, checkpoint_at_completion=False)  # warm-up: tracing
      runners[name] = (runner, params.task.train_data.global_batch_size)
    rates = {name: [] for name in runners}
    for _ in range(windows):
      for name, (runner, batch) in runners.items():
        start = time.perf_counter()
        runner.controller.train(steps=int(runner.trainer.global_step.numpy()) + steps,
                                checkpoint_at_completion=False)
        rates[name].append(steps * batch / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}
