"""Imports every module that registers experiments or tasks with Model Garden's factories."""

# pylint: disable=unused-import
from official.vision import registry_imports as _official
from projects.self_training.configs import retinanet
from projects.self_training.tasks import detection
from projects.self_training.configs import student
from projects.self_training.tasks import retinanet_student
from projects.self_training.configs import pretrain
from projects.self_training.tasks import simclr
from projects.self_training.configs import joint
from projects.self_training.tasks import joint as joint_task
from projects.self_training.configs import segmentation
from projects.self_training.tasks import segmentation as segmentation_task
from projects.self_training.tasks import segmentation_student
