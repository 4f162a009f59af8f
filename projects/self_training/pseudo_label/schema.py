"""The pseudo-label set's schema: what the labeler reads and writes, the student reads.

A set is `pseudo-SSSSS-of-NNNNN.tfrecord` shards in the schema of the human labels (Model
Garden's `tf_example_decoder` reads both), each with its sidecar JSON, then `summary.json`
and `pseudo_labels.json` (COCO format, with scores) once every shard is done.
"""

import os

# The teacher's label map inside its SavedModel, written by the export, read by the labeler:
# categories, task (detection or segmentation), the checkpoint exported.
LABEL_MAP = os.path.join('assets.extra', 'label_map.json')
RECORD_PREFIX = 'pseudo'
SUMMARY = 'summary.json'
COCO_JSON = 'pseudo_labels.json'
# Class id of "uncertain, ignore" boxes. Model Garden's anchor labeler fills unmatched
# anchors with -1, so -2 stays distinguishable after labeling.
IGNORE_CLASS = -2
# Each box's teacher score, also as a per-object attribute (`image/object/attribute/NAME`):
# Model Garden's decoder reads attributes as integers and its anchor labeler carries them to
# every anchor a box matches, which is what a student weighting boxes by score needs.
SCORE_ATTRIBUTE = 'score_permille'


def shard_name(shard_index: int, num_shards: int) -> str:
  return f'{RECORD_PREFIX}-{shard_index:05d}-of-{num_shards:05d}'


def record_pattern(output_dir: str) -> str:
  """The file pattern a student's `pseudo_data.input_path` reads."""
  return os.path.join(output_dir, f'{RECORD_PREFIX}-*-of-*.tfrecord')
