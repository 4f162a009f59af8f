r"""Self-training on your own data: labeled images (COCO JSON, Pascal VOC XML or YOLO txt)
and a folder of unlabeled ones -> teacher, pseudo labels, control and student.

  ./run.sh custom --train_annotations=instances.json --train_images=images/ \
      --unlabeled_images=unlabeled/ [--val_annotations=val.json --val_images=val/] \
      [--format=coco|voc|yolo] [--classes=classes.txt] [--experiment=E] [main-job flags]

The data (data/your_data.py) is built once under `--runs_dir/data`: a held-out part of
the labeled images for every choice, your val (or the held-out part) for the table, the
unlabeled pool. The model predicts your categories, ids and names as you wrote them:
`task.model.num_classes` is the largest id + 1, and the exported SavedModel's label map,
the pseudo labels and the table use them. Then the same stages as `./run.sh`, with every
flag of the main job (`./run.sh --help`): `--experiment` picks the recipe (default the
embedded one, which runs on a laptop CPU), `--params_override` / `--student_override` its
settings (e.g. `task.model.input_size=[256,256,3]`), `--stages`, `--seed`, `--threshold`.
Guide: docs/your_data.md.
"""

import dataclasses
import os

from absl import app
from absl import flags

from projects.self_training.common import cli
from projects.self_training.common import trainer
from projects.self_training.data import your_data
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.pipelines import detection_main
from projects.self_training.pipelines import job_cli

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(detection_main)
flags.DEFINE_string('train_annotations', None, 'Labeled data: a COCO JSON file, or a folder '
                    'of VOC .xml or YOLO .txt files.')
flags.DEFINE_string('train_images', None, 'Folder of the labeled images (the paths in the '
                    'annotations are relative to it).')
flags.DEFINE_string('unlabeled_images', None, 'Folder of unlabeled images (nested folders, '
                    'any format PIL reads; unreadable files are counted and skipped).')
flags.DEFINE_string('val_annotations', '', 'Validation labels in the same format (default: '
                    'the held-out part of the labeled images).')
flags.DEFINE_string('val_images', '', 'Folder of the validation images (default: '
                    '--train_images).')
flags.DEFINE_enum('format', '', ('',) + your_data.FORMATS, 'Annotation format (default: '
                  'from --train_annotations: .json coco, .xml files voc, .txt files yolo).')
flags.DEFINE_string('classes', '', 'voc / yolo: class names, one per line (or a YOLO '
                    'data.yaml with names); class k of YOLO is id k + 1.')
flags.DEFINE_float('holdout_fraction', your_data.HOLDOUT_FRACTION, 'Share of the labeled '
                   f'images held out for every choice (at least {your_data.MIN_HOLDOUT}).')
flags.mark_flags_as_required(['train_annotations', 'train_images', 'unlabeled_images'])


def settings(metadata) -> pipeline.Settings:
  """The main job's settings on the prepared data, predicting the data's categories."""
  data_dir = os.path.join(FLAGS.runs_dir, 'data')
  classes = f'task.model.num_classes={metadata["num_classes"]}'
  s = detection_main.settings(data_dir)
  return dataclasses.replace(
      s, pseudo_splits=(your_data.UNLABELED_SPLIT,),
      teacher_override=pipeline.join_overrides(classes, s.teacher_override),
      student_override=pipeline.join_overrides(classes, s.student_override))


def main(argv):
  start = job_cli.start(argv)
  with cli.errors_in_one_line(trainer.ConfigError, ValueError):
    if FLAGS.data_dir:
      raise trainer.ConfigError('--data_dir is the embedded set\'s; ./run.sh custom builds '
                                'its data from --train_annotations under --runs_dir/data')
    if FLAGS.label_iconic:
      raise trainer.ConfigError('--label_iconic labels the embedded set\'s iconic pool; '
                                'put every unlabeled image under --unlabeled_images')
    metadata = your_data.prepare(
        os.path.join(FLAGS.runs_dir, 'data'), FLAGS.train_annotations, FLAGS.train_images,
        FLAGS.unlabeled_images, fmt=FLAGS.format, val_annotations=FLAGS.val_annotations,
        val_images=FLAGS.val_images, classes=FLAGS.classes,
        holdout_fraction=FLAGS.holdout_fraction, progress=lambda l: print(l, flush=True))
    print('\n'.join(your_data.describe(metadata)), flush=True)
    results = detection_main.run(settings(metadata))
  results['data'] = metadata
  detection_main.report(results, start)


if __name__ == '__main__':
  app.run(main)
