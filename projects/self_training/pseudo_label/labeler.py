r"""Pseudo-labels unlabeled images with an exported teacher (the SavedModel alone).

Detection and segmentation alike: the SavedModel's label map (`assets.extra/label_map.json`)
says which (`"task": "segmentation"`, else detection).

Segmentation: the teacher's class probabilities (averaged over its export's scales and
flips) give each pixel its top class where that probability is >= `--threshold` (0.5)
and the ignore label (255) elsewhere; the records have the schema of the human masks
(`image/segmentation/class/encoded`, PNG). The summary gives the fraction of ignored
pixels and the class pixel histogram.

Detection: boxes with score >= `--threshold` (the paper's hard threshold, 0.5) are kept and written
as TFRecords in the schema of the human labels (Model Garden's `tf_example_decoder` reads
both), with the score in `image/object/bbox/confidence` and, in per mille, in the attribute
`image/object/attribute/score_permille` (what a student with `pseudo_score_weight` reads).
Images with no kept box are still written: they teach background.

With `--ignore_threshold` below `--threshold`, boxes scored in between are written too,
with class `IGNORE_CLASS` (-2): the student gives the anchors they match no loss at all,
instead of teaching the teacher's uncertain objects as background (an uncertain box on an
object the teacher kept, i.e. another class's guess, is dropped). They are left out of
the COCO JSON and counted separately.

Test-time augmentation (detection): `--saved_model` may list several exports of one
detector at different input sizes (`./run.sh export --input_size 128` writes
`saved_model_128/`), and `--flip` adds each image mirrored. Every view labels the image;
boxes of one class that overlap (IoU >= 0.55) across views are fused into their
score-weighted mean box with the mean score over all views (`fuse_views`), so an object
seen in every view keeps its score and one seen in a single view of four keeps a quarter:
on the embedded teacher, 96 + 128 px, each mirrored, raised recall at the same precision.

The pool is split into `--num_shards` shards (item `k` goes to shard `k % num_shards`).
Each shard is written under a temporary name and renamed when complete, followed by its
sidecar JSON (its COCO images and annotations, counts, skipped inputs); a re-run skips
shards whose sidecar exists, so a killed run resumes without duplicate or partial records.
`--shard_index` runs one shard (one worker each); without it, every missing shard runs
here. When the last shard is done, `pseudo_labels.json` (COCO format, with scores) and
`summary.json` (images, boxes, boxes per class, empty images, skipped inputs) are written.

  python -m projects.self_training.pseudo_label.labeler \
      --saved_model=runs/teacher_export/saved_model \
      --input='.cache/emoji_scenes/unlabeled_scenes-*.tfrecord' --output_dir=runs/pseudo

This module is the command line; the parts live beside it: `teacher.py` (the SavedModel
and its views), `fusion.py` (view fusion, the threshold, the ignore band), `records.py`
(one image's tf.Example and COCO entries), `shards.py` (the pool shard by shard and the
merge; `run` is what the pipelines call), `schema.py` (file names and constants the student
shares), `beam_labeler.py` (the same shards as a Beam pipeline).
"""


from absl import app
from absl import flags

from projects.self_training.common import cli
from projects.self_training.pseudo_label.fusion import DEFAULT_THRESHOLD
from projects.self_training.pseudo_label.shards import describe
from projects.self_training.pseudo_label.shards import run
from projects.self_training.pseudo_label.teacher import LabelerError


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('saved_model', None, 'Exported teacher (a saved_model directory); '
                      'comma-separated, exports of one detector at several input sizes, '
                      'whose detections are fused (test-time augmentation).')
  flags.DEFINE_bool('flip', False, 'Also label each image mirrored and fuse the two views '
                    '(detection; with several SavedModels, each is run both ways).')
  flags.DEFINE_string('input', None, 'Unlabeled images: TFRecord pattern(s), an image folder, '
                      'or tfds:NAME@SPLIT.')
  flags.DEFINE_string('output_dir', None, 'Where the pseudo-labeled shards go.')
  flags.DEFINE_float('threshold', DEFAULT_THRESHOLD, 'Keep boxes with score >= this.')
  flags.DEFINE_float('ignore_threshold', None, 'Also keep boxes scored in [this, --threshold) '
                     'as "ignore" regions (class -2): the student neither rewards nor '
                     'penalizes them. Default: none.')
  flags.DEFINE_integer('num_shards', 1, 'Shards the pool is split into (one per worker).')
  flags.DEFINE_integer('shard_index', None, 'Label only this shard (default: all missing).')
  flags.DEFINE_integer('batch_size', 64, 'Images per model call.')


def main(argv):
  cli.no_arguments(argv[1:])
  with cli.errors_in_one_line(LabelerError):
    for name in ('saved_model', 'input', 'output_dir'):
      if not getattr(FLAGS, name):
        raise LabelerError(f'--{name} is required')
    summary = run(FLAGS.saved_model, FLAGS.input, FLAGS.output_dir, FLAGS.threshold,
                  FLAGS.num_shards, FLAGS.shard_index, FLAGS.batch_size,
                  ignore_threshold=FLAGS.ignore_threshold, flip=FLAGS.flip)
  if summary.get('complete') is False:
    print(f'pseudo-label: shard done; other shards still missing in {FLAGS.output_dir}')
    return
  print(describe(summary))
  for s in summary['skipped'][:20]:
    print(f'  skipped {s["source_id"]} ({s["input"]}): {s["reason"]}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
