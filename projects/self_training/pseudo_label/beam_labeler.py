r"""Pseudo-labeling on Apache Beam: the labeler's shards as the pipeline's work items.

The pool is split exactly as the single-process labeler splits it (item `k` goes to shard
`k % num_shards`), and each shard is labeled by the same code (`shards.label_shard`: batched
inference, decode threads, bad images counted and listed, the shard written under a
temporary name and renamed when complete, its sidecar JSON last). So the output equals the
single-process labeler's record for record, a failed or preempted worker's shard is redone
from scratch by Beam's retry, and a re-run skips complete shards. The teacher SavedModel is
loaded once per worker process (`apache_beam.utils.shared.Shared`) and reused by every
shard that worker labels. When every shard is done, one step writes `pseudo_labels.json`
and `summary.json` (`shards.merge`).

Parallelism is across shards: give `--num_shards` a few times the number of workers
(e.g. 1024 shards for 1.2M images on 64 workers). A TFRecord input is read by every shard
with `tf.data`'s `shard` (each shard scans the files and keeps its items), so with many
shards prefer an image folder or TFDS input, or many input files.

Pipeline options (runner, project, workers) follow the labeler's flags:

  # one machine, 2 processes
  python -m projects.self_training.pseudo_label.beam_labeler \
      --saved_model=runs/teacher_export/saved_model \
      --input='.cache/emoji_scenes/unlabeled_scenes-*.tfrecord' --output_dir=runs/pseudo \
      --num_shards=8 -- --runner=DirectRunner --direct_num_workers=2 \
      --direct_running_mode=multi_processing

Everything after `--` goes to Beam's `PipelineOptions` (Dataflow, Flink and Spark lines in
the README).
"""

import os
from typing import Any, Dict, List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import apache_beam as beam
from apache_beam.options import pipeline_options
from apache_beam.utils import shared
import tensorflow as tf

from projects.self_training.common import cli
from projects.self_training.common.file_io import read_json
from projects.self_training.pseudo_label import fusion
from projects.self_training.pseudo_label import labeler
from projects.self_training.pseudo_label import schema
from projects.self_training.pseudo_label import shards
from projects.self_training.pseudo_label.teacher import LabelerError
from projects.self_training.pseudo_label.teacher import Teacher

NAMESPACE = 'pseudo_label'


class LabelShard(beam.DoFn):
  """Labels one shard index into `output_dir` (skipped when its sidecar exists)."""

  def __init__(self, saved_model: str, source: str, output_dir: str, num_shards: int,
               threshold: float, batch_size: int, ignore_threshold: Optional[float],
               handle: shared.Shared, flip: bool = False):
    super().__init__()
    self._saved_model = saved_model
    self._source = source
    self._output_dir = output_dir
    self._num_shards = num_shards
    self._threshold = threshold
    self._batch_size = batch_size
    self._ignore_threshold = ignore_threshold
    self._flip = flip
    self._handle = handle
    self._teacher = None
    self._counters = {name: beam.metrics.Metrics.counter(NAMESPACE, name) for name in
                      ('shards_labeled', 'shards_skipped', 'images', 'boxes', 'skipped_inputs')}

  def setup(self):
    # One SavedModel per worker process, shared by its threads and bundles.
    self._teacher = self._handle.acquire(lambda: Teacher(self._saved_model, self._flip))

  def process(self, shard_index: int):
    if shards.shard_done(self._output_dir, shard_index, self._num_shards):
      self._counters['shards_skipped'].inc()
      yield shard_index
      return
    sidecar = shards.label_shard(
        self._teacher, self._source, self._output_dir, shard_index, self._num_shards,
        self._threshold, self._batch_size, progress=False,
        ignore_threshold=self._ignore_threshold)
    self._counters['shards_labeled'].inc()
    self._counters['images'].inc(sidecar['num_images'])
    self._counters['boxes'].inc(sidecar['num_boxes'])
    self._counters['skipped_inputs'].inc(sidecar['num_skipped'])
    logging.info('%s: %d images in %.1f s', sidecar['shard'], sidecar['num_images'],
                 sidecar['seconds'])
    yield shard_index


def _merge(done: List[int], saved_model: str, output_dir: str, num_shards: int,
           threshold: float, source: str, ignore_threshold: Optional[float],
           flip: bool = False) -> Dict[str, Any]:
  if sorted(done) != list(range(num_shards)):
    raise RuntimeError(f'pseudo-label: {num_shards - len(set(done))} shard(s) missing')
  label_map = os.path.join(saved_model.split(',')[0], schema.LABEL_MAP)
  categories = read_json(label_map).get('categories', []) if tf.io.gfile.exists(label_map) else []
  summary = shards.merge(output_dir, num_shards, saved_model, categories, threshold, source,
                         ignore_threshold, flip)
  if summary is None:
    raise RuntimeError(f'pseudo-label: a shard sidecar is missing in {output_dir}')
  return summary


def build(pipeline: beam.Pipeline, saved_model: str, source: str, output_dir: str,
          num_shards: int, threshold: float = fusion.DEFAULT_THRESHOLD, batch_size: int = 64,
          ignore_threshold: Optional[float] = None, flip: bool = False):
  """Adds the labeling to `pipeline`; returns the PCollection holding the summary."""
  return (pipeline
          | 'Shards' >> beam.Create(list(range(num_shards)))
          | 'Spread' >> beam.Reshuffle()
          | 'Label' >> beam.ParDo(LabelShard(saved_model, source, output_dir, num_shards,
                                             threshold, batch_size, ignore_threshold,
                                             shared.Shared(), flip))
          | 'AllDone' >> beam.combiners.ToList()
          | 'Merge' >> beam.Map(_merge, saved_model, output_dir, num_shards, threshold, source,
                                ignore_threshold, flip))


def run(saved_model: str, source: str, output_dir: str, num_shards: int = 1,
        threshold: float = fusion.DEFAULT_THRESHOLD, batch_size: int = 64,
        ignore_threshold: Optional[float] = None,
        beam_args: Sequence[str] = ('--runner=DirectRunner',), flip: bool = False
        ) -> Dict[str, Any]:
  """Runs the pipeline to completion; returns the summary (read back from `output_dir`)."""
  shards.check_args(source, threshold, num_shards, None, ignore_threshold)
  for path in saved_model.split(','):
    if not tf.io.gfile.exists(os.path.join(path, 'saved_model.pb')):
      raise LabelerError(f'no SavedModel at {path} (saved_model.pb missing)')
  tf.io.gfile.makedirs(output_dir)
  options = pipeline_options.PipelineOptions(list(beam_args))
  # The DoFn's module-level imports travel with it to remote workers.
  options.view_as(pipeline_options.SetupOptions).save_main_session = False
  with beam.Pipeline(options=options) as pipeline:
    build(pipeline, saved_model, source, output_dir, num_shards, threshold, batch_size,
          ignore_threshold, flip)
  return read_json(os.path.join(output_dir, schema.SUMMARY))


FLAGS = flags.FLAGS


def main(argv):
  beam_args = argv[1:]
  with cli.errors_in_one_line(LabelerError):
    for name in ('saved_model', 'input', 'output_dir'):
      if not getattr(FLAGS, name):
        raise LabelerError(f'--{name} is required')
    if FLAGS.shard_index is not None:
      raise LabelerError('--shard_index is for the single-process labeler; the Beam '
                                 'pipeline labels every missing shard')
    summary = run(FLAGS.saved_model, FLAGS.input, FLAGS.output_dir, FLAGS.num_shards,
                  FLAGS.threshold, FLAGS.batch_size, FLAGS.ignore_threshold,
                  beam_args or ['--runner=DirectRunner'], FLAGS.flip)
  print(shards.describe(summary))
  for s in summary['skipped'][:20]:
    print(f'  skipped {s["source_id"]} ({s["input"]}): {s["reason"]}')


if __name__ == '__main__':
  labeler.define_flags()
  app.run(main)
