"""Joint training (paper Table 7): detection and iconic classification in one model.

`JointTrainingRetinaNetTask` is Model Garden's `RetinaNetTask` plus a classification
source. Each step reads one detection batch (`train_data`) and one classification batch
(`classification_data`, the `iconic` pool: ImageNet's role) and minimizes
L = L_det + classification_weight * L_cls, with the classifier on the shared backbone's
pooled last level. Appendix H's Table 7 block gives the weight: 0.5 for "w/ Joint Training",
0.2 for "w/ Self-training w/ Joint Training". Evaluation and export are the detector's.
"""

import dataclasses
import os

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.vision.configs import image_classification as ic_cfg

from projects.self_training.configs import paper_cells
from projects.self_training.configs import pretrain
from projects.self_training.configs import retinanet
from projects.self_training.configs import student
from projects.self_training.data import categories

# Appendix H, Table 7: L_det + 0.5 L_cls for joint training alone, L_det + 0.2 L_cls with
# self-training.
JOINT_WEIGHT = 0.5
JOINT_SELF_TRAINING_WEIGHT = 0.2


@dataclasses.dataclass
class JointTrainingRetinaNetTask(retinanet.RetinaNetTask):
  classification_data: ic_cfg.DataConfig = dataclasses.field(
      default_factory=lambda: ic_cfg.DataConfig(is_training=True))
  classification_weight: float = JOINT_WEIGHT
  classification_num_classes: int = len(categories.ICONIC_CLASSES)
  classification_label_smoothing: float = 0.1


@dataclasses.dataclass
class SelfTrainingJointRetinaNetTask(student.SelfTrainingRetinaNetTask,
                                     JointTrainingRetinaNetTask):
  """A student that also trains classification: pseudo_data, loss_normalization and
  classification_data (Table 7, "w/ Self-training w/ Joint Training")."""


def joint_from(detector: cfg.ExperimentConfig, classification_input_path: str,
               classification_batch_size: int,
               num_classes: int = len(categories.ICONIC_CLASSES)) -> cfg.ExperimentConfig:
  """A joint experiment from a detection experiment: same model, data and schedule."""
  task = JointTrainingRetinaNetTask(
      classification_num_classes=num_classes,
      classification_data=ic_cfg.DataConfig(
          input_path=classification_input_path, is_training=True,
          global_batch_size=classification_batch_size, aug_rand_hflip=True,
          crop_area_range=(0.5, 1.0), center_crop_fraction=1.0, shuffle_buffer_size=4096,
          cycle_length=3))
  task.override(detector.task.as_dict(), is_strict=True)
  return cfg.ExperimentConfig(runtime=detector.runtime, task=task, trainer=detector.trainer,
                              restrictions=list(detector.restrictions or []))


def joint_student_from(joint: cfg.ExperimentConfig,
                       student_config: cfg.ExperimentConfig) -> cfg.ExperimentConfig:
  """Table 7's last column: `joint`'s task (its detection and classification data) with
  the student's pseudo data, loss normalization, initialization and schedule, and the
  classification weight of joint training with self-training."""
  task = SelfTrainingJointRetinaNetTask()
  task.override(joint.task.as_dict(), is_strict=True)
  task.override({'pseudo_data': student_config.task.pseudo_data.as_dict(),
                 'loss_normalization': student_config.task.loss_normalization.as_dict(),
                 'init_checkpoint': student_config.task.init_checkpoint,
                 'init_checkpoint_modules': 'all',
                 'classification_weight': JOINT_SELF_TRAINING_WEIGHT}, is_strict=True)
  return cfg.ExperimentConfig(runtime=student_config.runtime, task=task,
                              trainer=student_config.trainer,
                              restrictions=list(student_config.restrictions or []))


@exp_factory.register_config_factory('emoji_retinanet_joint')
def emoji_retinanet_joint() -> cfg.ExperimentConfig:
  """The embedded teacher's recipe trained jointly on `iconic` classification (16 + 16),
  L = L_det + 0.5 L_cls."""
  data_dir = retinanet.embedded_data_dir()
  return joint_from(retinanet.emoji_retinanet(), pretrain.iconic_pattern(data_dir, False),
                    retinanet.EMBEDDED_BATCH_SIZE)


@exp_factory.register_config_factory('emoji_retinanet_joint_student')
def emoji_retinanet_joint_student() -> cfg.ExperimentConfig:
  """The embedded student with joint training: 16 human + 16 pseudo-labeled scenes and 16
  iconic images per step, L = L_norm + 0.2 L_cls; initialized from a (joint) teacher, like
  every student."""
  return joint_student_from(emoji_retinanet_joint(), student.emoji_retinanet_student())


# ---------------------------------------------------------------------------------------------
# Full scale (Table 7): EfficientNet-B7 on 20% of COCO with Augment-S4, and 256 ImageNet
# images per step ("the exact setup as self-training", Section 5).
# ---------------------------------------------------------------------------------------------

IMAGENET_NUM_CLASSES = 1001  # Model Garden's ImageNet records: labels 1..1000, 0 unused.


def _joint(name: str, detector_name: str, train_steps: int, cells):
  def factory() -> cfg.ExperimentConfig:
    detector = exp_factory.get_exp_config(detector_name)
    config = joint_from(detector, os.path.join(retinanet.IMAGENET_INPUT_PATH_BASE, 'train*'),
                        detector.task.train_data.global_batch_size, IMAGENET_NUM_CLASSES)
    config.task.classification_weight = JOINT_WEIGHT
    return retinanet.set_train_steps(config, train_steps)
  factory.__doc__ = (f'`{detector_name}` trained jointly on ImageNet classification, '
                     f'L = L_det + {JOINT_WEIGHT} L_cls, {train_steps:,} steps.')
  paper_cells.register(name, factory, cells)


def _joint_student(name: str, teacher_name: str, detector_name: str, train_steps: int,
                   alpha: float, cells):
  def factory() -> cfg.ExperimentConfig:
    detector_student = student.full_scale_student(
        student.student_from(exp_factory.get_exp_config(detector_name)), teacher_name, alpha,
        train_steps, retinanet.IMAGENET_PSEUDO_BASE)
    return joint_student_from(exp_factory.get_exp_config(teacher_name), detector_student)
  factory.__doc__ = (f'Student of the joint `{teacher_name}` on its ImageNet pseudo labels, '
                     f'trained jointly too: L = L_norm + {JOINT_SELF_TRAINING_WEIGHT} L_cls, '
                     f'alpha {alpha}, {train_steps:,} steps, initialized from the teacher.')
  paper_cells.register(name, factory, cells, teacher=teacher_name)


# Appendix H, Table 7 (steps): "w/ Joint Training" Rand Init 45k, ImageNet Init 90k; "w/
# Self-training w/ Joint Training" 90k with alpha 2.0, from the joint teacher.
for _init, _joint_steps in (('rand', 45_000), ('imagenet', 90_000)):
  _detector = retinanet.efficientnet_b7_name('s4', _init, 20)
  _joint(f'{_detector}_joint', _detector, _joint_steps, [('table7', _init, 'joint')])
  _joint_student(f'{_detector}_joint_student', f'{_detector}_joint', _detector, 90_000, 2.0,
                 [('table7', _init, 'joint_self_training')])
