"""Backbone pre-training on the embedded `iconic` pool (ImageNet's role in the paper).

`emoji_iconic_classification` is Model Garden's image classification task on the iconic
images (one centered emoji per image, ~250 classes, COCO and non-COCO): the same
MobileNetV3-Small backbone the embedded detector and segmenter use, so its checkpoint
loads into them with `task.init_checkpoint_modules=backbone` (the paper's "ImageNet Init").
"""

import os

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.vision.configs import backbones
from official.vision.configs import common
from official.vision.configs import image_classification as ic_cfg

from projects.self_training.configs import retinanet
from projects.self_training.data import categories

ICONIC_IMAGE_SIZE = 64   # the generator's default `--iconic_image_size`
PRETRAIN_STEPS = 1000
PRETRAIN_BATCH_SIZE = 64


def iconic_pattern(data_dir: str, holdout: bool) -> str:
  """The iconic shards: the last one is held out for top-1, the others train.

  Every shard holds every class (the generator draws class `index % num_classes`).
  """
  shards = (2,) if holdout else (0, 1)
  return ','.join(os.path.join(data_dir, f'iconic-{i:05d}-of-00003.tfrecord') for i in shards)


@exp_factory.register_config_factory('emoji_iconic_classification')
def emoji_iconic_classification() -> cfg.ExperimentConfig:
  """Supervised classification pre-training of the embedded backbone on `iconic`."""
  data_dir = retinanet.embedded_data_dir()
  size = ICONIC_IMAGE_SIZE
  steps = PRETRAIN_STEPS
  data = dict(aug_rand_hflip=True, crop_area_range=(0.5, 1.0), center_crop_fraction=1.0,
              shuffle_buffer_size=4096, cycle_length=3)
  return cfg.ExperimentConfig(
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='float32'),
      task=ic_cfg.ImageClassificationTask(
          model=ic_cfg.ImageClassificationModel(
              num_classes=len(categories.ICONIC_CLASSES),
              input_size=[size, size, 3],
              backbone=backbones.Backbone(type='mobilenet', mobilenet=backbones.MobileNet(
                  model_id='MobileNetV3Small')),
              norm_activation=common.NormActivation(
                  activation='relu6', use_sync_bn=False, norm_momentum=0.99)),
          losses=ic_cfg.Losses(l2_weight_decay=4e-5, label_smoothing=0.1),
          train_data=ic_cfg.DataConfig(
              input_path=iconic_pattern(data_dir, False), is_training=True,
              global_batch_size=PRETRAIN_BATCH_SIZE, **data),
          validation_data=ic_cfg.DataConfig(
              input_path=iconic_pattern(data_dir, True), is_training=False,
              global_batch_size=100, drop_remainder=False, **data)),
      trainer=retinanet.embedded_trainer(steps, base_lr=0.2, warmup_steps=100,
                                         eval_every=250),
      restrictions=['task.train_data.is_training != None'])
