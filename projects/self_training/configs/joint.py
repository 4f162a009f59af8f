"""Joint training (paper Table 7): detection and iconic classification in one model.

`JointTrainingRetinaNetTask` is Model Garden's `RetinaNetTask` plus a classification
source. Each step reads one detection batch (`train_data`) and one classification batch
(`classification_data`, the `iconic` pool: ImageNet's role) and minimizes
L = L_det + classification_weight * L_cls, with the classifier on the shared backbone's
pooled last level (the paper: L_det + 0.2 L_cls). Evaluation and export are the detector's.
"""

import dataclasses

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.vision.configs import image_classification as ic_cfg

from projects.self_training.configs import pretrain
from projects.self_training.configs import retinanet
from projects.self_training.configs import student
from projects.self_training.data import categories

PAPER_CLASSIFICATION_WEIGHT = 0.2


@dataclasses.dataclass
class JointTrainingRetinaNetTask(retinanet.RetinaNetTask):
  classification_data: ic_cfg.DataConfig = dataclasses.field(
      default_factory=lambda: ic_cfg.DataConfig(is_training=True))
  classification_weight: float = PAPER_CLASSIFICATION_WEIGHT
  classification_num_classes: int = len(categories.ICONIC_CLASSES)
  classification_label_smoothing: float = 0.1


@dataclasses.dataclass
class SelfTrainingJointRetinaNetTask(student.SelfTrainingRetinaNetTask,
                                     JointTrainingRetinaNetTask):
  """A student that also trains classification: pseudo_data, loss_normalization and
  classification_data (Table 7, "w/ Self-training w/ Joint Training")."""


def joint_from(detector: cfg.ExperimentConfig, classification_input_path: str,
               classification_batch_size: int) -> cfg.ExperimentConfig:
  """A joint experiment from a detection experiment: same model, data and schedule."""
  task = JointTrainingRetinaNetTask(classification_data=ic_cfg.DataConfig(
      input_path=classification_input_path, is_training=True,
      global_batch_size=classification_batch_size, aug_rand_hflip=True,
      crop_area_range=(0.5, 1.0), center_crop_fraction=1.0, shuffle_buffer_size=4096,
      cycle_length=3))
  task.override(detector.task.as_dict(), is_strict=True)
  return cfg.ExperimentConfig(runtime=detector.runtime, task=task, trainer=detector.trainer,
                              restrictions=list(detector.restrictions or []))


@exp_factory.register_config_factory('emoji_retinanet_joint')
def emoji_retinanet_joint() -> cfg.ExperimentConfig:
  """The embedded teacher's recipe trained jointly on `iconic` classification (16 + 16)."""
  data_dir = retinanet.embedded_data_dir()
  return joint_from(retinanet.emoji_retinanet(), pretrain.iconic_pattern(data_dir, False),
                    retinanet.EMBEDDED_BATCH_SIZE)


@exp_factory.register_config_factory('emoji_retinanet_joint_student')
def emoji_retinanet_joint_student() -> cfg.ExperimentConfig:
  """The embedded student with joint training: 16 human + 16 pseudo-labeled scenes and 16
  iconic images per step; initialized from a (joint) teacher, like every student."""
  joint = emoji_retinanet_joint()
  config = student.emoji_retinanet_student()
  task = SelfTrainingJointRetinaNetTask()
  task.override(joint.task.as_dict(), is_strict=True)
  task.override({'pseudo_data': config.task.pseudo_data.as_dict(),
                 'loss_normalization': config.task.loss_normalization.as_dict(),
                 'init_checkpoint_modules': 'all'}, is_strict=True)
  return cfg.ExperimentConfig(runtime=config.runtime, task=task, trainer=config.trainer,
                              restrictions=list(config.restrictions or []))
