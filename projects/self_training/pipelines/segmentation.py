"""`./run.sh segmentation`: the paper's PASCAL self-training comparison (Table 8), embedded.

Stages, each reading the files the previous one wrote and skipped when complete:

  split      `voc_train` -> `voc_fit` (the labeled set) + `voc_holdout` (for every choice:
             plateaus, best checkpoints); `voc_val` is only ever evaluated
  teacher    trained on `voc_fit` until held-out mIoU stops improving
  export     its best checkpoint -> SavedModel with multi-scale (+flip) inference
             (embedded default: scale 1.0 + flip, chosen on voc_holdout)
  pseudo     the SavedModel labels the `voc_aug` images: top class where its probability is
             >= 0.5, the ignore label 255 elsewhere (their noisy human masks are not read)
  control    the teacher trained further on `voc_fit` alone, as many steps as the student
  train_aug  the same recipe as the student with `voc_aug`'s noisy human masks in place of
             the pseudo masks; this departs from the paper's "train + aug" row (supervised
             training on both sets) so that it differs from the student only in labels
  student    initialized from the teacher; each step half `voc_fit`, half pseudo-labeled
             `voc_aug`, with loss normalization

The table gives mIoU on `voc_val` for teacher, control, train+aug and student.
"""

import dataclasses
import os
from typing import Any, Callable, ClassVar, Dict, List, Sequence

import tensorflow as tf

from projects.self_training.common import file_io
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.pseudo_label import schema

STAGES = ('split', 'teacher', 'export', 'pseudo', 'control', 'train_aug', 'student')
DEPENDS_ON = {'split': (), 'teacher': ('split',), 'export': ('teacher',),
              'pseudo': ('export',), 'control': ('teacher',), 'train_aug': ('teacher',),
              'student': ('teacher', 'pseudo')}
FIT, HOLDOUT = 'voc_fit', 'voc_holdout'


@dataclasses.dataclass
class Settings(pipeline.Settings):
  """One `./run.sh segmentation` run; the defaults are the embedded job's."""
  teacher_experiment: str = 'emoji_segmentation'
  student_experiment: str = 'emoji_segmentation_student'
  holdout_size: int = 100
  # Held-out mIoU on 100 images can dip by several points mid-schedule while the learning
  # rate is high, which patience 3 mistook for the plateau: a plateau must last 4 evals
  # (1000 steps) before the teacher stops. The measurements: docs/segmentation.md, 'How the
  # defaults were chosen'.
  plateau_patience: int = 4
  # From a teacher at its plateau, control and student peak on voc_holdout early in a longer
  # run (both are evaluated at their best held-out checkpoint), so 300 steps, checked every
  # 100, keep the run within its 20 minutes (docs/segmentation.md, 'How the defaults were
  # chosen').
  student_steps: int = 300
  student_learning_rate: float = 0.04
  student_warmup_steps: int = 50
  eval_interval: int = 100
  # The paper's six scales (the export's default, 0.5-1.75) hurt this teacher: it
  # trained with scale jitter 0.8-1.2 only, and at 96 px the scales round to 64..160 px.
  # Chosen on voc_holdout; the measurements: docs/segmentation.md, 'Pseudo-mask scales'.
  scales: Sequence[float] = (1.0,)
  flip: bool = True
  pseudo_splits: Sequence[str] = ('voc_aug',)

  depends_on: ClassVar[Dict[str, Sequence[str]]] = DEPENDS_ON
  metric: ClassVar[str] = 'mean_iou'
  metric_name: ClassVar[str] = 'mIoU'

  def split_pattern(self, split: str) -> str:
    if split in (FIT, HOLDOUT):
      return os.path.join(self.dir('split'), f'{split}-*.tfrecord')
    return emoji_scenes.split_pattern(self.data_dir, split)

  def data_override(self) -> str:
    return (f'task.train_data.input_path={self.split_pattern(FIT)},'
            f'task.validation_data.input_path={self.split_pattern(HOLDOUT)}')

  def val_metrics(self, params, checkpoint: str) -> Dict[str, float]:
    logs = trainer.evaluate_checkpoint(params, checkpoint, self.split_pattern('voc_val'), None)
    return {k: v for k, v in logs.items() if k == 'mean_iou' or k.startswith('iou/')}


def split(s: Settings, progress: Callable[[str], None] = print) -> Dict[str, int]:
  """Writes `voc_fit` and `voc_holdout` from `voc_train`: the last `holdout_size` records
  are held out. Each file is written under a temporary name and renamed when complete."""
  pipeline.fresh(s, 'split')
  out = s.dir('split')
  done = trainer.read_json(os.path.join(out, 'split.json'))
  if done:
    pipeline.same_settings('split', out, done, {'holdout_size': s.holdout_size})
    progress(f'split: complete in {out} ({done[FIT]} + {done[HOLDOUT]}), skipped')
    return done
  files = sorted(tf.io.gfile.glob(emoji_scenes.split_pattern(s.data_dir, 'voc_train')))
  records = [r.numpy() for r in tf.data.TFRecordDataset(files)]
  if len(records) <= s.holdout_size:
    raise trainer.ConfigError(f'voc_train has {len(records)} images; --holdout_size='
                              f'{s.holdout_size} leaves none to train on')
  parts = {FIT: records[:-s.holdout_size], HOLDOUT: records[-s.holdout_size:]}
  for name, part in parts.items():
    final = os.path.join(out, f'{name}-00000-of-00001.tfrecord')
    with file_io.atomic_write(final) as tmp, tf.io.TFRecordWriter(tmp) as writer:
      for r in part:
        writer.write(r)
  done = {'holdout_size': s.holdout_size, FIT: len(parts[FIT]), HOLDOUT: len(parts[HOLDOUT])}
  trainer.write_json(os.path.join(out, 'split.json'), done)
  progress(f'split: voc_train -> {FIT} ({done[FIT]}) + {HOLDOUT} ({done[HOLDOUT]})')
  return done


def export(s: Settings, teacher_summary: Dict[str, Any],
           progress: Callable[[str], None] = print) -> str:
  from projects.self_training.serving import export_segmentation  # pylint: disable=g-import-not-at-top
  pipeline.fresh(s, 'export')
  path = os.path.join(s.dir('export'), 'saved_model')
  if tf.io.gfile.exists(os.path.join(path, 'saved_model.pb')):
    progress(f'export: complete in {path}, skipped')
    return path
  path = export_segmentation.export_segmenter(
      pipeline.teacher_params(s), teacher_summary['checkpoint'], s.dir('export'),
      scales=tuple(s.scales), flip=s.flip)
  progress(f'export: {path} (scales {", ".join(str(x) for x in s.scales)}'
           f'{", + flip" if s.flip else ""})')
  return path


def pseudo_label(s: Settings, saved_model: str,
                 progress: Callable[[str], None] = print) -> Dict[str, Any]:
  from projects.self_training.pseudo_label import shards  # pylint: disable=g-import-not-at-top
  pipeline.fresh(s, 'pseudo')
  out = s.dir('pseudo')
  done = trainer.read_json(os.path.join(out, schema.SUMMARY))
  if done:
    pipeline.same_settings('pseudo', out, done, {'threshold': s.threshold})
    progress(f'pseudo: complete in {out} ({done["num_images"]} images, '
             f'{100 * done["ignored_pixel_fraction"]:.1f}% of pixels ignored), skipped')
    return done
  source = ','.join(s.split_pattern(x) for x in s.pseudo_splits)
  summary = shards.run(saved_model, source, out, threshold=s.threshold, num_shards=2,
                       batch_size=32)
  progress(f'pseudo: {summary["num_images"]} images, '
           f'{100 * summary["ignored_pixel_fraction"]:.1f}% of pixels ignored, '
           f'{summary["num_skipped"]} skipped, in {summary["seconds"]:.0f} s '
           f'({summary["num_images"] / max(summary["seconds"], 1e-9):.1f} img/s)')
  return summary


def run(s: Settings, stages: Sequence[str] = STAGES,
        progress: Callable[[str], None] = print) -> Dict[str, Any]:
  """Runs `stages` and what they read, in order (each skipped when complete); returns every
  stage's summary."""
  pipeline.check_stages(s, stages)
  stages = pipeline.with_prerequisites(s, stages)
  out: Dict[str, Any] = {'split': split(s, progress)}
  out['teacher'] = pipeline.teacher(s, progress)
  init = out['teacher']['checkpoint']
  if 'control' in stages:
    out['control'] = pipeline.finetune(s, 'control', s.teacher_experiment, init,
                                       progress=progress)
  if 'train_aug' in stages:
    out['train_aug'] = pipeline.finetune(
        s, 'train_aug', s.student_experiment, init,
        f'task.pseudo_data.input_path={s.split_pattern("voc_aug")},'
        f'task.pseudo_data.seed={s.seed}', progress)
  if pipeline.export_and_label(s, stages, out, export, pseudo_label, progress) is None:
    return out
  if 'student' in stages:
    out['student'] = pipeline.finetune(
        s, 'student', s.student_experiment, init,
        f'task.pseudo_data.input_path={schema.record_pattern(s.dir("pseudo"))},'
        f'task.pseudo_data.seed={s.seed}', progress)
  return out


ROWS = (('teacher', 'teacher (voc_train)'),
        ('control', 'supervised control (voc_train, same steps)'),
        ('train_aug', 'voc_train + voc_aug noisy human labels'),
        ('student', 'self-training: voc_train + voc_aug pseudo labels'))


def table(results: Dict[str, Any], split_name: str = 'val') -> List[str]:
  """Markdown rows: model, mIoU on `split_name` (percent)."""
  rows = ['| model | mIoU |', '|---|---|']
  for key, name in ROWS:
    if key in results:
      rows.append(f'| {name} | {100 * results[key][split_name]["mean_iou"]:.1f} |')
  return rows
