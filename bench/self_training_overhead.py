"""Benchmark: what self-training adds on top of Model Garden, as ratios from one run.

  student step / official RetinaNet step, same 16 images per step (target <= 1.05); also
      against this project's RetinaNet task (the official one with its focal loss fused),
      which the student builds on: what self-training itself adds
  the embedded student's 16 + 16 step in one model call on the concatenated batch /
      in two calls, one per half (`task.concat_halves`)
  pseudo-labeler end-to-end img/s / bare batched SavedModel img/s on the same decoded
      images (target >= 0.9)

  ./run.sh bench_overhead [--saved_model runs/export/saved_model] [--images 1024]
"""

import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from official.core import task_factory  # pylint: disable=g-import-not-at-top

from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.pseudo_label import shards
from projects.self_training.pseudo_label import sources
from projects.self_training.pseudo_label.teacher import Teacher

FLAGS = flags.FLAGS
flags.DEFINE_string('data_dir', None, 'Emoji-scenes set (default: the cached default set).')
flags.DEFINE_string('saved_model', os.path.join(ROOT, 'runs', 'export', 'saved_model'),
                    'An exported teacher (the main job writes one).')
flags.DEFINE_integer('steps', 30, 'Timed train steps per window.')
flags.DEFINE_integer('windows', 5, 'Alternating timed windows; medians are reported.')
flags.DEFINE_integer('images', 1024, 'Images to pseudo-label per timed run.')
flags.DEFINE_string('out', os.path.join(ROOT, 'runs', 'bench', 'self_training_overhead.json'),
                    'Where to write the figures.')


def _step_fn(experiment, data_dir, extra=''):
  params = trainer.build_params(experiment, params_override=','.join(
      x for x in (pipeline.data_override(data_dir), extra) if x))
  task = task_factory.get_task(params.task)
  model = task.build_model()
  optimizer = task.create_optimizer(params.trainer.optimizer_config, params.runtime)
  batch = next(iter(task.build_inputs(params.task.train_data)))
  step = tf.function(lambda b: task.train_step(b, model, optimizer, metrics=None))
  step(batch)
  def run():
    for _ in range(FLAGS.steps):
      step(batch)
  return run


def _median_seconds(fns):
  """Alternates the functions window by window so machine noise hits all of them alike."""
  times = [[] for _ in fns]
  for _ in range(FLAGS.windows):
    for k, fn in enumerate(fns):
      start = time.perf_counter()
      fn()
      times[k].append(time.perf_counter() - start)
  return [statistics.median(t) for t in times]


def main(_):
  tf.get_logger().setLevel('ERROR')
  data_dir = FLAGS.data_dir or emoji_scenes.ensure_dataset()
  # Model Garden's RetinaNet task as it ships (its focal loss unfused), the project's
  # teacher task (the same loss, fused: tasks/detection.py) and the student, which builds
  # on the latter; the same global batch: 8 human + 8 pseudo against 16.
  official = _step_fn('emoji_retinanet', data_dir, 'task.losses.fused_focal_loss=false')
  fused = _step_fn('emoji_retinanet', data_dir)
  student = _step_fn('emoji_retinanet_student', data_dir,
                     f'task.pseudo_data.input_path={emoji_scenes.split_pattern(data_dir, "train")},'
                     'task.train_data.global_batch_size=8,task.pseudo_data.global_batch_size=8')
  # The embedded student's own step, 16 human + 16 pseudo: two model calls (one per half,
  # the default) against one call on the concatenated 32 (`task.concat_halves`).
  pseudo = f'task.pseudo_data.input_path={emoji_scenes.split_pattern(data_dir, "train")}'
  two_calls = _step_fn('emoji_retinanet_student', data_dir, pseudo)
  one_call = _step_fn('emoji_retinanet_student', data_dir, f'{pseudo},task.concat_halves=true')
  t_official, t_fused, t_student, t_two, t_one = _median_seconds(
      [official, fused, student, two_calls, one_call])
  step_ratio = t_student / t_official
  ms = lambda t: f'{1000 * t / FLAGS.steps:.0f} ms'
  print(f'train step (16 images): Model Garden\'s RetinaNet task {ms(t_official)}, this '
        f'project\'s (fused focal loss) {ms(t_fused)}, student 8+8 {ms(t_student)}')
  print(f'student / official: {step_ratio:.3f} (target <= 1.05); student / fused teacher '
        f'task (self-training alone): {t_student / t_fused:.3f}')
  print(f'student step 16+16: two model calls {ms(t_two)}, one call on the concatenated '
        f'batch {ms(t_one)}; one / two: {t_one / t_two:.3f}')

  if not tf.io.gfile.exists(os.path.join(FLAGS.saved_model, 'saved_model.pb')):
    print(f'no SavedModel at {FLAGS.saved_model}: run ./run.sh first for the labeler figures')
    return
  teacher = Teacher(FLAGS.saved_model)
  source = emoji_scenes.split_pattern(data_dir, emoji_scenes.UNLABELED_SPLIT)
  # The labeler labels shard 0 of `num_shards` (about `images` images); the bare call runs
  # on the same images, decoded beforehand.
  num_shards = max(1, sum(1 for _ in sources.iterate(source)) // FLAGS.images)
  items = list(sources.iterate(source, 0, num_shards))
  pixels = np.stack([sources.decode(i)[0] for i in items])
  def bare():
    for k in range(0, len(pixels), 64):
      teacher(pixels[k:k + 64])
  def end_to_end():
    with tempfile.TemporaryDirectory() as out:
      shards.label_shard(teacher, source, out, 0, num_shards, progress=False)
  bare()  # warm-up
  t_bare, t_e2e = _median_seconds([bare, end_to_end])
  bare_ips, e2e_ips = len(pixels) / t_bare, len(items) / t_e2e
  print(f'pseudo-labeling: bare SavedModel {bare_ips:.0f} img/s, end to end {e2e_ips:.0f} img/s, '
        f'ratio {e2e_ips / bare_ips:.3f} (target >= 0.9)')
  trainer.write_json(FLAGS.out, {
      'official_step_seconds': t_official / FLAGS.steps,
      'teacher_task_step_seconds': t_fused / FLAGS.steps,
      'student_over_teacher_task': t_student / t_fused,
      'student_step_seconds': t_student / FLAGS.steps, 'step_ratio': step_ratio,
      'student_two_calls_step_seconds': t_two / FLAGS.steps,
      'student_one_call_step_seconds': t_one / FLAGS.steps,
      'one_call_over_two_calls': t_one / t_two,
      'bare_images_per_second': bare_ips, 'end_to_end_images_per_second': e2e_ips,
      'labeler_ratio': e2e_ips / bare_ips, 'cpu_count': os.cpu_count()})
  print(f'written: {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
