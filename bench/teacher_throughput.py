"""Benchmark: embedded teacher training img/s against tf.data input img/s for Augment-S1..S4.

Also the teacher's training img/s with the fused focal loss (the default) against Model
Garden's unfused one, in alternating windows.

Answers "is the input pipeline the bottleneck?" in one run on one machine: every figure is
measured here, now, and the verdict is the ratio input img/s / train img/s per policy
(above 1: the pipeline keeps up). Not a test; timings on a shared machine are noisy, so
each figure is the median of several timed windows.

  ./run.sh bench [--train_steps 60] [--input_batches 60]
"""

import os
import statistics
import sys
import time

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import timing  # pylint: disable=g-import-not-at-top,g-bad-import-order

from official.core import task_factory

from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline

FLAGS = flags.FLAGS
flags.DEFINE_integer('train_steps', 60, 'Timed training steps (after warm-up).')
flags.DEFINE_integer('input_batches', 60, 'Timed input batches per policy (after warm-up).')
flags.DEFINE_integer('windows', 3, 'Timed windows; the median is reported.')
flags.DEFINE_string('data_dir', None, 'Emoji-scenes set (default: the cached default set).')
flags.DEFINE_string('out', os.path.join(ROOT, 'runs', 'bench', 'teacher_throughput.json'),
                    'Where to write the measured figures as JSON.')

POLICIES = ('s1', 's2', 's3', 's4')


def _params(data_dir, gin_file=None):
  override = pipeline.data_override(data_dir)
  gin_files = [os.path.join(ROOT, 'gin', 'augment', f'{gin_file}.gin')] if gin_file else []
  return trainer.build_params('emoji_retinanet', params_override=override, gin_files=gin_files)


def _median_rate(run, units, windows):
  rates = []
  for _ in range(windows):
    start = time.perf_counter()
    run()
    rates.append(units / (time.perf_counter() - start))
  return statistics.median(rates)


def input_images_per_second(params, batches, windows):
  """The training tf.data pipeline alone: decode, augment, anchor labels, batch."""
  task = task_factory.get_task(params.task)
  iterator = iter(task.build_inputs(params.task.train_data))
  for _ in range(5):
    next(iterator)
  def run():
    for _ in range(batches):
      next(iterator)
  return _median_rate(run, batches * params.task.train_data.global_batch_size, windows)


def main(_):
  logging.set_verbosity(logging.WARNING)
  tf.get_logger().setLevel('ERROR')
  data_dir = FLAGS.data_dir or emoji_scenes.ensure_dataset()
  base = _params(data_dir)
  size = base.task.model.input_size[0]
  print(f'machine: {os.cpu_count()} CPU cores; embedded teacher at {size}x{size}, '
        f'batch {base.task.train_data.global_batch_size}')
  # The default fused focal loss against Model Garden's own (tasks/detection.py).
  unfused = base.replace(task={'losses': {'fused_focal_loss': False}})
  train = timing.train_images_per_second({'fused': base, 'official': unfused},
                                         FLAGS.train_steps, FLAGS.windows)
  train_ips = train['fused']
  rows = []
  for policy in POLICIES:
    ips = input_images_per_second(_params(data_dir, policy), FLAGS.input_batches, FLAGS.windows)
    rows.append({'policy': f'Augment-{policy.upper()}', 'input_images_per_second': ips,
                 'input_over_train': ips / train_ips})
  print()
  print(f'Teacher training (Augment-S1, input included): {train_ips:.1f} img/s; with Model '
        f'Garden\'s unfused focal loss {train["official"]:.1f} img/s '
        f'(fused / official: {train_ips / train["official"]:.2f}x)')
  print()
  print('| policy | tf.data img/s | input / train |')
  print('|---|---|---|')
  for r in rows:
    print(f'| {r["policy"]} | {r["input_images_per_second"]:.0f} | {r["input_over_train"]:.1f}x |')
  trainer.write_json(FLAGS.out, {'cpu_count': os.cpu_count(), 'image_size': size,
                                 'train_images_per_second': train_ips,
                                 'train_images_per_second_unfused_focal': train['official'],
                                 'input': rows})
  print(f'\nwritten: {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
