"""Self-training student configs: the RetinaNet task plus pseudo-labeled data and the loss.

`SelfTrainingRetinaNetTask` is Model Garden's `RetinaNetTask` with:
  pseudo_data          the pseudo-labeled TFRecords (same schema as `train_data`); each
                       step takes one batch of each, so `train_data.global_batch_size` +
                       `pseudo_data.global_batch_size` images (the paper: 256 + 256);
                       a pseudo batch size of 0 (the default) means as many as the human
  loss_normalization   alpha, EMA decay, and normalized vs standard loss (Appendix B)
  pseudo_background_weight  the background anchors' weight in the pseudo half (default 1)
  pseudo_score_weight  each pseudo box's anchors weigh its teacher score (default off)
  concat_halves        one model call on both halves (default: one call per half)

The student starts from the teacher's checkpoint (`init_checkpoint`, all modules: the
paper's default) or, with `init_checkpoint=''`, from random weights.
"""

import dataclasses
import os

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams
from official.vision.configs import retinanet as rn_cfg

from projects.self_training.common import paths
from projects.self_training.configs import retinanet

# Where the main job writes its stages (teacher, export, pseudo labels, student).
EMBEDDED_RUNS_DIR = paths.RUNS_DIR


# Appendix B: the moving averages decay at 0.9997, a horizon of 1 / (1 - 0.9997) = 3333
# steps, which is 1/27 of the paper's 90k-step students (Appendix H, Table 2).
PAPER_EMA_DECAY = 0.9997
PAPER_STUDENT_STEPS = 90_000
EMA_HORIZON_FRACTION = 1.0 / (1.0 - PAPER_EMA_DECAY) / PAPER_STUDENT_STEPS


def ema_decay_for(train_steps: int) -> float:
  """The EMA decay whose horizon is the same fraction of a `train_steps` run as the paper's
  (0.9997 at 90k steps): a 4000-step student averages over its last ~148 steps, where 0.9997
  would still hold 30% of its first step's loss at the end."""
  horizon = EMA_HORIZON_FRACTION * max(int(train_steps), 1)
  return round(max(0.0, 1.0 - 1.0 / horizon), 8)  # under 27 steps: no averaging at all


@dataclasses.dataclass
class LossNormalization(hyperparams.Config):
  """L = 1/(1+alpha) (L_h + alpha EMA(L_h)/EMA(L_p) L_p); `normalize=False`: L_h + alpha L_p."""
  alpha: float = 1.0
  ema_decay: float = PAPER_EMA_DECAY
  normalize: bool = True


@dataclasses.dataclass
class SelfTrainingRetinaNetTask(retinanet.RetinaNetTask):
  pseudo_data: rn_cfg.DataConfig = dataclasses.field(
      default_factory=lambda: rn_cfg.DataConfig(is_training=True))
  loss_normalization: LossNormalization = dataclasses.field(default_factory=LossNormalization)
  # The classification weight of the background anchors of pseudo-labeled images: 1 as in
  # the paper; below 1 trusts less the teacher's "nothing here", which at threshold 0.5 is
  # also said of most objects it missed. Human-labeled images keep weight 1.
  pseudo_background_weight: float = 1.0
  # One model call on the human and pseudo halves together (batch norm over both) instead
  # of one call per half.
  concat_halves: bool = False
  # Each pseudo box's anchors weigh its teacher score (classification and box loss); False,
  # as in the paper: every kept box weighs 1. Needs records from this project's labeler.
  pseudo_score_weight: bool = False


def pseudo_batch_size(task) -> int:
  """Pseudo images per step: `pseudo_data.global_batch_size`, or with 0 the human batch's."""
  return task.pseudo_data.global_batch_size or task.train_data.global_batch_size


def has_pseudo_data(task) -> bool:
  """True for a student task: one with pseudo-labeled data to read."""
  pseudo = getattr(task, 'pseudo_data', None)
  return pseudo is not None and bool(pseudo.input_path or pseudo.tfds_name)


def student_from(teacher: cfg.ExperimentConfig, pseudo_input_path: str = '',
                 pseudo_batch_size: int = 0) -> cfg.ExperimentConfig:
  """A student experiment built from a teacher experiment: same model, data and schedule.

  The pseudo half uses the human half's parser (so the same augmentation) and, with
  `pseudo_batch_size` 0, its batch size (resolved when the inputs are built, so an
  override of `train_data.global_batch_size` moves both).
  """
  task = teacher.task.as_dict()
  train = teacher.task.train_data
  pseudo = rn_cfg.DataConfig(
      input_path=pseudo_input_path,
      is_training=True,
      global_batch_size=pseudo_batch_size,
      dtype=train.dtype,
      shuffle_buffer_size=train.shuffle_buffer_size,
      parser=train.parser.as_dict())
  student = SelfTrainingRetinaNetTask(pseudo_data=pseudo)
  student.override(task, is_strict=True)
  config = cfg.ExperimentConfig(runtime=teacher.runtime, task=student, trainer=teacher.trainer,
                                restrictions=list(teacher.restrictions or []))
  config.task.init_checkpoint_modules = 'all'
  return config


@exp_factory.register_config_factory('emoji_retinanet_student')
def emoji_retinanet_student() -> cfg.ExperimentConfig:
  """The embedded student: 16 human + 16 pseudo-labeled scenes per step.

  As in the paper (256 -> 256 + 256), the human half keeps the teacher's batch and the
  pseudo half doubles it: splitting the teacher's 16 images into 8 + 8 halved the human
  batch, and that alone cost held-out AP (the measurements: docs/detection_experiments.md,
  'Student variants').

  Set `task.pseudo_data.input_path` to the pseudo-labeler's records and
  `task.init_checkpoint` to the teacher's checkpoint (the main job does both).
  """
  config = student_from(retinanet.emoji_retinanet())
  # Chosen on `holdout` (never `val`) among 0.25 / 0.5 / 1, part of the paper's grid; the
  # measurements: docs/detection_experiments.md, 'Student variants' and 'Alpha from the
  # plateaued teacher'.
  config.task.loss_normalization.alpha = 0.5
  config.task.pseudo_data.input_path = os.path.join(
      EMBEDDED_RUNS_DIR, 'pseudo', 'pseudo-*-of-*.tfrecord')
  return config


# A full-scale student starts from its teacher's model directory (the latest checkpoint
# there), `$TEACHERS_DIR/<teacher experiment>`, as the paper initializes every student
# (Section 3.2; random initialization is only Table 10's ablation). A missing one stops the
# run at the restore, instead of training from random weights.
TEACHERS_BASE = os.environ.get('TEACHERS_DIR', 'teachers')


def teacher_checkpoint(teacher_name: str) -> str:
  return os.path.join(TEACHERS_BASE, teacher_name)


def pseudo_labels(pseudo_base: str, teacher_name: str) -> str:
  """The pseudo-labeler's records of `teacher_name` on the unlabeled set under `pseudo_base`."""
  return os.path.join(pseudo_base, 'pseudo', teacher_name, 'pseudo-*-of-*.tfrecord')


def full_scale_student(config: cfg.ExperimentConfig, teacher_name: str, alpha: float,
                       train_steps: int, pseudo_base: str) -> cfg.ExperimentConfig:
  """Makes `config`, a student of `teacher_name`, the paper's: initialized from the
  teacher's checkpoint, on its pseudo labels, with Appendix H's alpha and steps."""
  config.task.init_checkpoint = teacher_checkpoint(teacher_name)
  config.task.init_checkpoint_modules = 'all'
  config.task.pseudo_data.input_path = pseudo_labels(pseudo_base, teacher_name)
  config.task.loss_normalization.alpha = alpha
  return retinanet.set_train_steps(config, train_steps)


_SOURCES = {retinanet.IMAGENET_PSEUDO_BASE: 'ImageNet', retinanet.OPEN_IMAGES_PSEUDO_BASE:
            'Open Images'}


def _full_scale_student(name: str, teacher_name: str, train_steps: int, alpha: float,
                        pseudo_base: str, cells, augmentation: str = ''):
  """Registers `name`: the student of `teacher_name` (as many pseudo-labeled images per step
  as human ones) with Appendix H's steps and alpha. `augmentation`: a stronger policy than
  the teacher's (Table 5: Augment-S3), on the teacher's own flips and scale jitter."""
  def factory() -> cfg.ExperimentConfig:
    config = full_scale_student(student_from(exp_factory.get_exp_config(teacher_name)),
                                teacher_name, alpha, train_steps, pseudo_base)
    if augmentation:
      parser = config.task.train_data.parser
      retinanet.with_augmentation(config, dataclasses.replace(
          retinanet.augment.PRESETS[augmentation],
          scale_jitter=(parser.aug_scale_min, parser.aug_scale_max)))
    return config
  factory.__doc__ = (f'Student of `{teacher_name}` on its {_SOURCES[pseudo_base]} pseudo '
                     f'labels: {train_steps:,} steps, alpha {alpha}, initialized from the '
                     'teacher.')
  retinanet.paper_cells.register(name, factory, cells, teacher=teacher_name)


_IMAGENET, _OID = retinanet.IMAGENET_PSEUDO_BASE, retinanet.OPEN_IMAGES_PSEUDO_BASE
# Tables 2 and 13, EfficientNet-B7 Rand Init on all of COCO, Appendix H's (steps, alpha):
# self-training on ImageNet 45k 1.0 / 90k 1.0 / 90k 0.5 / 90k 0.5, on Open Images 90k 3.0 /
# 90k 2.0 / 90k 0.5 / 120k 0.5.
for _aug, _imagenet, _oid in (('s1', (45_000, 1.0), (90_000, 3.0)),
                              ('s2', (90_000, 1.0), (90_000, 2.0)),
                              ('s3', (90_000, 0.5), (90_000, 0.5)),
                              ('s4', (90_000, 0.5), (120_000, 0.5))):
  _teacher = retinanet.efficientnet_b7_name(_aug)
  _cells = [('table2', 'rand_st', _aug), ('table13', 'rand_st', _aug)]
  if _aug == 's4':  # Table 3 is Augment-S4 throughout
    _cells.append(('table3', 'rand_st', 'f100'))
  _full_scale_student(f'{_teacher}_student', _teacher, *_imagenet, _IMAGENET, _cells)
  _full_scale_student(f'{_teacher}_student_oid', _teacher, *_oid, _OID,
                      [('table13', 'rand_st_oid', _aug)])
# Table 3 (Augment-S4, ImageNet self-training) by init and labeled percentage, (steps,
# alpha); its 20% column is also Table 7's "w/ Self-training".
for _init, _by_percent in (
    ('rand', {20: (90_000, 3.0), 50: (90_000, 1.0)}),
    ('imagenet', {20: (90_000, 3.0), 50: (45_000, 1.0), 100: (90_000, 1.0)}),
    ('imagenet_plus', {20: (90_000, 3.0), 50: (45_000, 1.0), 100: (45_000, 0.25)})):
  for _percent, _recipe in _by_percent.items():
    _teacher = retinanet.efficientnet_b7_name('s4', _init, _percent)
    _cells = [('table3', f'{_init}_st', f'f{_percent}')]
    if _percent == 20 and _init != 'imagenet_plus':
      _cells.append(('table7', _init, 'self_training'))
    _full_scale_student(f'{_teacher}_student', _teacher, *_recipe, _IMAGENET, _cells)
# Table 4: ResNet-50 Rand Init w/ Self-training, 120k steps, alpha 0.25.
_full_scale_student('retinanet_resnet50_fpn_coco_s4_student', 'retinanet_resnet50_fpn_coco_s4',
                    120_000, 0.25, _IMAGENET, [('table4', 'rand_st', 'ap')])
# Table 12, ResNet-101 Rand Init, (steps, alpha): self-training on ImageNet 90k 1.0 / 90k 1.0
# / 90k 0.5 / 180k 0.25, on Open Images 90k 2.0 / 90k 2.0 / 90k 0.5 / 180k 0.5.
for _aug, _imagenet, _oid in (('s1', (90_000, 1.0), (90_000, 2.0)),
                              ('s2', (90_000, 1.0), (90_000, 2.0)),
                              ('s3', (90_000, 0.5), (90_000, 0.5)),
                              ('s4', (180_000, 0.25), (180_000, 0.5))):
  _teacher = f'retinanet_resnet101_fpn_coco_{_aug}'
  _full_scale_student(f'{_teacher}_student', _teacher, *_imagenet, _IMAGENET,
                      [('table12', 'rand_st', _aug)])
  _full_scale_student(f'{_teacher}_student_oid', _teacher, *_oid, _OID,
                      [('table12', 'rand_st_oid', _aug)])
# Table 5: SpineNet self-training on Open Images with Augment-S3 (its caption; the baselines
# keep SpineNet's augmentation): AutoAugment at SpineNet's scale jitter (0.1, 2.0), which
# departs from S3's (0.5, 2.0) so as not to narrow the baseline's (the authors' released
# SpineNet self-training configs keep a wide one, 0.1-1.9). At the teachers' batch of 128 (so
# 128 + 128) and halved learning rate: SpineNet-143 472k steps, alpha 0.25; SpineNet-190
# 370k, alpha 0.5.
_full_scale_student('retinanet_spinenet143_coco_student', 'retinanet_spinenet143_coco', 472_000,
                    0.25, _OID, [('table5', 'spinenet143_st', 'val')], augmentation='S3')
_full_scale_student('retinanet_spinenet190_coco_student', 'retinanet_spinenet190_coco', 370_000,
                    0.5, _OID, [('table5', 'spinenet190_st', 'val')], augmentation='S3')
