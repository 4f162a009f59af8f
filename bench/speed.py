"""Benchmark: the training step of teacher, student and segmenter before and after each
speed lever, as ratios from one run; and a finished main job's stage times.

Answers "what did each lever buy?" on one machine in one run. Every variant is built
through the experiments' own configs and trained through Model Garden's Orbit runner with
its real input pipeline (`timing.train_images_per_second`); the variants'
timed windows alternate, so load from other jobs on a shared machine falls on all alike,
and each figure is the median of `--windows` windows. The levers:

  teacher   the head before (levels 3-5, 9 anchors a location), each lever alone (levels
            3-4; 6 anchors: 2 scales x 3 aspect ratios) and both (the default now); and
            3 anchors (one scale) on levels 3-4, a lever measured and not taken
  student   before and after (the same head change; 16 human + 16 pseudo images a step,
            the pseudo half read from `train`: a step's cost does not depend on where its
            boxes came from); and after, in one model call on both halves
            (`task.concat_halves`), a lever measured and not taken
  segmenter no lever touches it: its step in the same run shows how far the machine's
            speed moved between windows (its ratio is to itself: 1.00 by definition)

And for each teacher head, how well its anchors fit the objects, with no training: the share
of `train`'s boxes that some anchor overlaps at IoU >= 0.5 (the labeler's positive
threshold) and the positive anchors per box (Model Garden also forces each box's best
anchor positive, however low its IoU).

With `--runs_dir` holding a finished main job (`results.json`), it also prints that job's
stage times: training and held-out evals of each model, its `val` eval, the labeling,
and the rest of the wall time. Not a test: the machine is shared and noisy.

  ./run.sh bench_speed [--steps 40] [--windows 3] [--runs_dir runs]
"""

import os
import sys

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import timing  # pylint: disable=g-import-not-at-top,g-bad-import-order

from official.vision.ops import anchor
from official.vision.ops import box_ops

from projects.self_training.common import file_io
from projects.self_training.common import machine
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.pipelines import job_cli

FLAGS = flags.FLAGS
flags.DEFINE_integer('steps', 40, 'Timed training steps a window (after a warm-up window).')
flags.DEFINE_integer('windows', 3, 'Alternating timed windows; medians are reported.')
flags.DEFINE_list('models', ['teacher', 'student', 'segmenter'], 'Which steps to time.')
flags.DEFINE_string('data_dir', None, 'Emoji-scenes set (default: the cached default set).')
flags.DEFINE_string('runs_dir', None, 'A finished main job\'s --runs_dir: its stage times too.')
flags.DEFINE_string('out', os.path.join(ROOT, 'runs', 'bench', 'speed.json'),
                    'Where to write the measured figures as JSON.')

# The embedded RetinaNet's head before this benchmark's levers: FPN levels 3-5 and 9
# anchors a location (3 scales x 3 aspect ratios), as the paper's RetinaNet.
HEAD_BEFORE = 'task.model.max_level=5,task.model.anchor.num_scales=3'
# name -> override on the experiment's default, per model; the first is the ratios' base.
LEVERS = {
    'teacher': {
        'before (levels 3-5, 9 anchors)': HEAD_BEFORE,
        'levels 3-4 alone': 'task.model.anchor.num_scales=3',
        '6 anchors alone': 'task.model.max_level=5',
        'after (levels 3-4, 6 anchors: the default)': '',
        'levels 3-4, 3 anchors (not taken)': 'task.model.anchor.num_scales=1',
    },
    'student': {
        'before (levels 3-5, 9 anchors)': HEAD_BEFORE,
        'after (the default)': '',
        'after, one model call on both halves (not taken)': 'task.concat_halves=true',
    },
    'segmenter': {'the default (no lever applies)': ''},
}
EXPERIMENTS = {'teacher': 'emoji_retinanet', 'student': 'emoji_retinanet_student',
               'segmenter': 'emoji_segmentation'}


def data_override(model: str, data_dir: str) -> str:
  """Points `model`'s experiment at the embedded set (its held-out data is never read)."""
  if model == 'segmenter':
    return f'task.train_data.input_path={emoji_scenes.split_pattern(data_dir, "voc_train")}'
  override = pipeline.data_override(data_dir)
  if model == 'student':
    override += f',task.pseudo_data.input_path={emoji_scenes.split_pattern(data_dir, "train")}'
  return override


def measure(models, data_dir: str, steps: int, windows: int):
  """ms a step for every lever of every model in `models`: one run, windows alternating."""
  variants, where = {}, {}
  for model in models:
    for lever, override in LEVERS[model].items():
      params = trainer.build_params(EXPERIMENTS[model], params_override=pipeline.join_overrides(
          data_override(model, data_dir), override))
      key = f'{model}: {lever}'
      variants[key] = params
      where[key] = (model, lever, params.task.train_data.global_batch_size)
  rates = timing.train_images_per_second(variants, steps, windows)
  rows = []
  for key, rate in rates.items():
    model, lever, batch = where[key]
    rows.append({'model': model, 'lever': lever, 'ms_per_step': 1000 * batch / rate})
  for row in rows:
    base = next(r for r in rows if r['model'] == row['model'])
    row['speed_vs_before'] = base['ms_per_step'] / row['ms_per_step']
  return rows


def anchor_coverage(data_dir: str):
  """For each teacher variant's head: the share of `train`'s boxes with an anchor at IoU >=
  0.5, and positive anchors per box (boxes as annotated, before augmentation)."""
  annotations = file_io.read_json(emoji_scenes.annotation_file(data_dir, 'train'))
  xywh = np.array([a['bbox'] for a in annotations['annotations']], np.float32)
  boxes = np.stack([xywh[:, 1], xywh[:, 0], xywh[:, 1] + xywh[:, 3], xywh[:, 0] + xywh[:, 2]], 1)
  rows = []
  for lever, override in LEVERS['teacher'].items():
    model = trainer.build_params(EXPERIMENTS['teacher'], params_override=override).task.model
    anchors = anchor.Anchor(model.min_level, model.max_level, model.anchor.num_scales,
                            model.anchor.aspect_ratios, model.anchor.anchor_size,
                            model.input_size[:2]).multilevel_boxes
    flat = tf.concat([tf.reshape(a, [-1, 4]) for a in anchors.values()], 0)
    iou = box_ops.bbox_overlap(flat[None], tf.constant(boxes)[None])[0].numpy()  # [A, boxes]
    rows.append({'lever': lever, 'anchors': int(flat.shape[0]),
                 'covered': float(np.mean(iou.max(0) >= 0.5)),
                 'positives_per_box': float(np.mean((iou >= 0.5).sum(0)))})
  return rows


def print_steps(rows) -> None:
  print('| model | variant | ms a step | speed vs the first row |')
  print('|---|---|---|---|')
  for r in rows:
    print(f'| {r["model"]} | {r["lever"]} | {r["ms_per_step"]:.0f} | '
          f'{r["speed_vs_before"]:.2f}x |')


def main(_):
  trainer.quiet_logs()
  unknown = [m for m in FLAGS.models if m not in LEVERS]
  if unknown:
    raise app.UsageError(f'--models: unknown {unknown[0]!r}; one of {", ".join(LEVERS)}')
  out = {'cpu': machine.cpu_model(), 'steps': FLAGS.steps, 'windows': FLAGS.windows}
  print(f'machine: {out["cpu"]}; {FLAGS.windows} alternating '
        f'windows of {FLAGS.steps} steps a variant, medians')
  if FLAGS.runs_dir:
    results = file_io.read_json(os.path.join(FLAGS.runs_dir, job_cli.RESULTS))
    if not results:
      raise app.UsageError(f'--runs_dir {FLAGS.runs_dir}: no {job_cli.RESULTS} (a finished '
                           'main job writes it)')
    out['stage_seconds'] = pipeline.stage_times(results)
    print('\n'.join(pipeline.stage_table(out['stage_seconds'])))
  data_dir = FLAGS.data_dir or emoji_scenes.ensure_dataset()
  out['steps_table'] = measure(FLAGS.models, data_dir, FLAGS.steps, FLAGS.windows)
  out['anchor_coverage'] = anchor_coverage(data_dir)
  print()
  print_steps(out['steps_table'])
  print('\nAnchors against the boxes of `train` (IoU >= 0.5):')
  print('| teacher head | anchors an image | boxes with an anchor | positive anchors a box |')
  print('|---|---|---|---|')
  for r in out['anchor_coverage']:
    print(f'| {r["lever"]} | {r["anchors"]} | {100 * r["covered"]:.1f}% | '
          f'{r["positives_per_box"]:.2f} |')
  file_io.write_json(FLAGS.out, out)
  print(f'\nwritten: {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
