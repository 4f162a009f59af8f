"""Benchmark: what multi-scale + flip inference costs the segmentation pseudo-labeler.

Exports the embedded segmenter twice from one checkpoint (a random one unless
--checkpoint_path is given): at scale 1.0, and at the paper's six scales with flip. Times
each SavedModel's img/s on the same uint8 images (warm-up excluded; the two alternate window
by window so machine noise hits both alike; medians of the windows) and compares the
slowdown with the pixels the model sees: the sum over passes of the pass input pixels over
the single pass's. At the embedded 96x96 the scales round to multiples of 32 (64, 64, 96,
128, 160, 160); scales sharing a size run once, so the pixels actually run are fewer than
the nominal ones, and both ratios are printed. Not a test; the machine is shared and noisy.

  python bench/seg_pseudo_label_scales.py [--images 320] [--checkpoint_path CKPT]
"""

import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from official.core import task_factory  # pylint: disable=g-import-not-at-top

from projects.self_training.common import trainer
from projects.self_training.serving import export_segmentation
from projects.self_training.serving import segmentation

FLAGS = flags.FLAGS
flags.DEFINE_string('experiment', 'emoji_segmentation', 'The segmentation experiment.')
flags.DEFINE_string('params_override', '', 'Model Garden params override.')
flags.DEFINE_string('checkpoint_path', None, 'A trained checkpoint (default: random weights).')
flags.DEFINE_integer('images', 320, 'Images per timed window.')
flags.DEFINE_integer('image_size', 128, 'Side of the square input images.')
flags.DEFINE_integer('batch_size', 32, 'Images per SavedModel call.')
flags.DEFINE_integer('windows', 3, 'Timed windows per model; the median is reported.')
flags.DEFINE_list('scales', [str(s) for s in segmentation.DEFAULT_SCALES],
                  'Scales of the multi-scale export (it also flips).')
flags.DEFINE_string('out', None, 'Optional JSON file for the figures.')


def _pixels(sizes, flip, per_size=False):
  """Input pixels over the passes (each distinct size once when `per_size`)."""
  sizes = list(dict.fromkeys(sizes)) if per_size else list(sizes)
  return sum(h * w for h, w in sizes) * (2 if flip else 1)


def main(_):
  logging.set_verbosity(logging.WARNING)
  tf.get_logger().setLevel('ERROR')
  params = trainer.build_params(FLAGS.experiment, params_override=FLAGS.params_override)
  scales = export_segmentation.parse_scales(FLAGS.scales)
  input_size = list(params.task.model.input_size[:2])
  with tempfile.TemporaryDirectory(prefix='bench_seg_scales_') as tmp:
    checkpoint = FLAGS.checkpoint_path
    if not checkpoint:
      model = task_factory.get_task(params.task).build_model()
      checkpoint = tf.train.Checkpoint(model=model).save(os.path.join(tmp, 'ckpt', 'ckpt'))
    runs = {}
    for name, run_scales, flip in (('1 scale', [1.0], False),
                                   (f'{len(scales)} scales + flip', scales, True)):
      start = time.perf_counter()
      path = export_segmentation.export_segmenter(params, checkpoint, os.path.join(tmp, name),
                                                  run_scales, flip)
      export_seconds = time.perf_counter() - start
      stride = 2 ** params.task.model.max_level
      sizes = [segmentation.pass_size(input_size, s, stride) for s in run_scales]
      fn = tf.saved_model.load(path).signatures['serving_default']
      runs[name] = dict(fn=fn, sizes=sizes, flip=flip, export_seconds=export_seconds,
                        input_name=next(iter(fn.structured_input_signature[1])))

    rng = np.random.RandomState(0)
    size = FLAGS.image_size
    images = rng.randint(0, 256, (FLAGS.images, size, size, 3)).astype(np.uint8)
    batches = [tf.constant(images[k:k + FLAGS.batch_size])
               for k in range(0, len(images), FLAGS.batch_size)]

    def timed(run):
      start = time.perf_counter()
      for batch in batches:
        run['fn'](**{run['input_name']: batch})['probabilities'].numpy()
      return time.perf_counter() - start

    for run in runs.values():  # warm-up: the first calls
      run['fn'](**{run['input_name']: batches[0]})['probabilities'].numpy()
    seconds = {name: [] for name in runs}
    for _ in range(FLAGS.windows):
      for name, run in runs.items():
        seconds[name].append(timed(run))

  one, multi = runs.values()
  ips = {name: len(images) / statistics.median(s) for name, s in seconds.items()}
  base = _pixels(one['sizes'], False)
  nominal = _pixels(multi['sizes'], True) / base
  actual = _pixels(multi['sizes'], True, per_size=True) / base
  slowdown = ips['1 scale'] / ips[list(runs)[1]]
  print(f'machine: {os.cpu_count()} CPU cores; {FLAGS.experiment} at '
        f'{input_size[0]}x{input_size[1]}, {FLAGS.images} images of {size}x{size}, '
        f'batch {FLAGS.batch_size}, median of {FLAGS.windows} windows'
        f'{"" if FLAGS.checkpoint_path else ", random weights"}')
  print(f'multi-scale pass sizes: {", ".join(f"{h}x{w}" for h, w in multi["sizes"])} (+ flip)')
  print()
  print('| export | img/s | windows (s) | export (s) |')
  print('|---|---|---|---|')
  for name in runs:
    print(f'| {name} | {ips[name]:.1f} | {", ".join(f"{s:.2f}" for s in seconds[name])} '
          f'| {runs[name]["export_seconds"]:.0f} |')
  print()
  print(f'slowdown: {slowdown:.2f}x')
  print(f'pixel ratio: {nominal:.2f}x nominal (every scale and flip), {actual:.2f}x run '
        '(equal sizes once)')
  print(f'slowdown / pixel ratio: {slowdown / nominal:.2f} nominal, {slowdown / actual:.2f} run')
  if FLAGS.out:
    trainer.write_json(FLAGS.out, {
        'cpu_count': os.cpu_count(), 'input_size': input_size, 'image_size': size,
        'images': FLAGS.images, 'batch_size': FLAGS.batch_size,
        'images_per_second': ips, 'window_seconds': seconds, 'slowdown': slowdown,
        'pixel_ratio_nominal': nominal, 'pixel_ratio_run': actual,
        'pass_sizes': [list(s) for s in multi['sizes']], 'scales': scales})
    print(f'written: {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
