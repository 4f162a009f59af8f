"""RetinaNet teacher experiments: the embedded emoji-scenes recipe and the paper's full-scale ones.

Each function builds one recipe on top of Model Garden's `RetinaNetTask` config, with the
paper's numbers (Section 3.2, Appendix H; see shared/reference/paper_numbers.md) written
where they are used.
"""

import dataclasses
import os

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import optimization
from official.vision.configs import backbones
from official.vision.configs import common
from official.vision.configs import decoders
from official.vision.configs import retinanet as rn_cfg

from projects.self_training.configs import augment
from projects.self_training.configs import paper_cells

COCO_NUM_CLASSES = 91  # COCO category ids run 1..90; 0 is background.
COCO_TRAIN_EXAMPLES = 118287
COCO_VAL_EXAMPLES = 5000
COCO_INPUT_PATH_BASE = os.environ.get('COCO_TFRECORD_DIR', 'coco')
# Where the full-scale students read pseudo labels, `<base>/pseudo/<teacher>/pseudo-*.tfrecord`:
# the pseudo-labeler's output for ImageNet (Tables 2-4, 7, 12, 13) and Open Images (Tables
# 5, 12, 13), one set per teacher.
IMAGENET_PSEUDO_BASE = os.environ.get('IMAGENET_PSEUDO_DIR', 'imagenet')
OPEN_IMAGES_PSEUDO_BASE = os.environ.get('OPEN_IMAGES_PSEUDO_DIR', 'open_images')
# Labeled ImageNet in Model Garden's classification schema (joint training, Table 7).
IMAGENET_INPUT_PATH_BASE = os.environ.get('IMAGENET_TFRECORD_DIR', 'imagenet')
# Backbone checkpoints for ImageNet / ImageNet++ / SimCLR Init in Model Garden's variable
# names (public ones converted with `./run.sh convert_checkpoint`): Table 1's ImageNet Init
# is EfficientNet-B7 at 84.5% top-1 (AutoAugment), ImageNet++ Init at 86.9% (Noisy
# Student); Table 4 starts ResNet-50 from supervised and from SimCLR pre-training.
INIT_CHECKPOINT_BASE = os.environ.get('INIT_CHECKPOINT_DIR', 'checkpoints')
INIT_CHECKPOINTS = {
    ('efficientnet-b7', 'imagenet'): 'efficientnet-b7-imagenet',
    ('efficientnet-b7', 'imagenet_plus'): 'efficientnet-b7-imagenet-plus',
    ('efficientnet-l2', 'imagenet_plus'): 'efficientnet-l2-imagenet-plus',
    ('resnet-50', 'imagenet'): 'resnet-50-imagenet',
    ('resnet-50', 'simclr'): 'resnet-50-simclr',
}

# EfficientNet's blocks all squeeze-and-excite at 0.25 (Tan & Le, 2019; the public B7
# checkpoints have it); Model Garden's config default is 0, a smaller network (B7: 52.1M
# backbone parameters instead of 64.1M) that no public checkpoint fits.
EFFICIENTNET_SE_RATIO = 0.25


@dataclasses.dataclass
class Losses(rn_cfg.Losses):
  """Model Garden's RetinaNet losses. `fused_focal_loss`: the same focal loss computed by one
  op with a hand-written gradient (`losses/focal_loss.py`) for a faster CPU step; False runs
  Model Garden's `FocalLoss`. The measurements: docs/training.md, 'Fused focal loss'."""
  fused_focal_loss: bool = True


@dataclasses.dataclass
class RetinaNetTask(rn_cfg.RetinaNetTask):
  """Model Garden's RetinaNet task config with this project's `Losses`; every detection
  experiment here (teacher, student, joint; embedded and full scale) builds on it.

  `reproducible_inputs`: run the training input pipeline on one private thread, so that a
  run with the same seed sees the same augmented images. Model Garden's parsers draw their
  random flips and scale jitter from stateful RNG inside a parallel map, where which image
  gets which draw depends on thread timing, so two runs of the same embedded config and seed
  differed from the first batch on (the model step itself is deterministic on CPU). On for
  the embedded experiments, where the one-thread pipeline still outruns the training step;
  off at full scale, where input throughput matters more than bit-reproducibility. The
  measurements: docs/detection_experiments.md, 'why the same seed gave different runs'.
  (`tf.config.experimental.enable_op_determinism` would be the general switch, but its
  tf.data rewrite fails on Model Garden's detection parser in TF 2.20.)"""
  losses: Losses = dataclasses.field(default_factory=Losses)
  reproducible_inputs: bool = False


def cosine_sgd(train_steps, base_lr, warmup_steps, warmup_lr, momentum=0.9):
  """SGD with momentum, cosine decay and linear warm-up (the paper's detection schedule)."""
  return optimization.OptimizationConfig({
      'optimizer': {'type': 'sgd', 'sgd': {'momentum': momentum}},
      'learning_rate': {
          'type': 'cosine',
          'cosine': {'initial_learning_rate': base_lr, 'decay_steps': train_steps},
      },
      'warmup': {
          'type': 'linear',
          'linear': {'warmup_steps': warmup_steps, 'warmup_learning_rate': warmup_lr},
      },
  })


def set_train_steps(config: cfg.ExperimentConfig, train_steps: int) -> cfg.ExperimentConfig:
  """Train steps and the schedule's length together: a cosine decays over the whole run, a
  stepwise schedule's boundaries keep their fractions of it."""
  learning_rate = config.trainer.optimizer_config.learning_rate
  if learning_rate.type == 'stepwise':
    learning_rate.stepwise.boundaries = [
        round(b * train_steps / config.trainer.train_steps)
        for b in learning_rate.stepwise.boundaries]
  else:
    learning_rate.cosine.decay_steps = train_steps
  config.trainer.train_steps = train_steps
  return config


def embedded_trainer(steps, base_lr, warmup_steps, eval_every,
                     summary_interval=50) -> cfg.TrainerConfig:
  """The embedded experiments' trainer: cosine SGD (warm-up from base_lr / 10), a held-out
  eval and a checkpoint every `eval_every` steps (kept, for the best-checkpoint choice)."""
  return cfg.TrainerConfig(
      train_steps=steps,
      validation_steps=-1,
      validation_interval=eval_every,
      steps_per_loop=50,
      summary_interval=summary_interval,
      checkpoint_interval=eval_every,
      max_to_keep=20,
      optimizer_config=cosine_sgd(steps, base_lr=base_lr, warmup_steps=warmup_steps,
                                  warmup_lr=base_lr / 10))


def embedded_data_dir() -> str:
  """Where the embedded data set lives: $EMOJI_SCENES_DIR, else the generator's cache."""
  if os.environ.get('EMOJI_SCENES_DIR'):
    return os.environ['EMOJI_SCENES_DIR']
  from projects.self_training.data import emoji_scenes  # pylint: disable=g-import-not-at-top
  return emoji_scenes.DEFAULT_DATA_DIR


# ---------------------------------------------------------------------------------------------
# Embedded scale: trains usefully on 2 CPU cores in minutes.
# ---------------------------------------------------------------------------------------------

EMBEDDED_IMAGE_SIZE = 96
EMBEDDED_TRAIN_STEPS = 6000
EMBEDDED_BATCH_SIZE = 16


@exp_factory.register_config_factory('emoji_retinanet')
def emoji_retinanet() -> cfg.ExperimentConfig:
  """A small RetinaNet for the embedded emoji scenes (COCO's role), trained from scratch.

  MobileNetV3-Small backbone, FPN on levels 3-4 and a 2-conv head at 64 filters; 6 anchors
  per location (2 scales x 3 aspect ratios), with `anchor_size` 2: 16 and 23 px anchors at
  level 3, 32 and 45 px at level 4, for the 12-48 px objects at 96 px input. The paper's
  levels 3-7 and 9 anchors are the full-scale recipes'; here level 5's 64-101 px anchors
  fit almost no object, the previous head (levels 3-5, 9 anchors) stepped 1.16x slower
  than this one (1.35x in another run: the machine is noisy), and this head's teachers
  learned faster on `holdout` (`./run.sh bench_speed`; docs/benchmarks.md). One scale (3
  anchors) stepped faster still but gave 40% of the objects no anchor at IoU 0.5 and
  learned far slower, as aspect ratio 1 alone had. MobileNetV3-Small for its faster step
  than MobileNetV2; a full-conv head, since a separable one stepped faster but learned far
  slower; `batched` NMS for eval, since Model Garden's default `v2` is far slower on CPU.
  The measurements: docs/detection_experiments.md, 'the embedded model (backbone, head,
  NMS)'.

  6000 steps: with this head, 6000-step teachers reached 39.3 and 39.7 held-out AP (seeds
  0, 1), above the 38.8 and 38.8 of the previous head's 8000-step teachers, and flat over
  their last 1000 steps; 8000 steps of this head gave 41.3 and 40.5 for a third more
  time. The earlier measurements, with the previous head (a 4000-step schedule ended while
  held-out AP still rose, 8000 steps reached the plateau): docs/detection_experiments.md,
  'the paper's student protocol, and a teacher trained to its plateau'; this head's:
  'a cheaper head'.
  """
  data_dir = embedded_data_dir()
  size = EMBEDDED_IMAGE_SIZE
  batch = EMBEDDED_BATCH_SIZE
  steps = EMBEDDED_TRAIN_STEPS
  config = cfg.ExperimentConfig(
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='float32'),
      task=RetinaNetTask(
          reproducible_inputs=True,
          annotation_file=os.path.join(data_dir, 'val.json'),
          model=rn_cfg.RetinaNet(
              num_classes=COCO_NUM_CLASSES,
              input_size=[size, size, 3],
              min_level=3,
              max_level=4,
              anchor=rn_cfg.Anchor(num_scales=2, aspect_ratios=[0.5, 1.0, 2.0], anchor_size=2.0),
              backbone=backbones.Backbone(
                  type='mobilenet',
                  mobilenet=backbones.MobileNet(model_id='MobileNetV3Small')),
              decoder=decoders.Decoder(type='fpn', fpn=decoders.FPN(num_filters=64)),
              head=rn_cfg.RetinaNetHead(num_convs=2, num_filters=64),
              detection_generator=rn_cfg.DetectionGenerator(
                  nms_version='batched', pre_nms_top_k=1000, max_num_detections=100),
              norm_activation=common.NormActivation(
                  activation='relu6', use_sync_bn=False, norm_momentum=0.99)),
          losses=Losses(l2_weight_decay=4e-5),
          train_data=rn_cfg.DataConfig(
              input_path=os.path.join(data_dir, 'train-*.tfrecord'),
              is_training=True,
              global_batch_size=batch,
              dtype='float32',
              shuffle_buffer_size=2000,
              parser=rn_cfg.Parser(aug_rand_hflip=True, aug_scale_min=0.8, aug_scale_max=1.2)),
          validation_data=rn_cfg.DataConfig(
              input_path=os.path.join(data_dir, 'val-*.tfrecord'),
              is_training=False,
              global_batch_size=32,
              dtype='float32',
              drop_remainder=False),
          # COCO AP is defined at 100 detections per image; fewer makes pycocotools report -1.
          max_num_eval_detections=100),
      trainer=embedded_trainer(steps, base_lr=0.08, warmup_steps=150, eval_every=500,
                               summary_interval=100),
      restrictions=[
          'task.train_data.is_training != None',
          'task.validation_data.is_training != None',
      ])
  return config


# ---------------------------------------------------------------------------------------------
# Full scale: the paper's recipes (Section 3.2, Appendix H), for TPU / GPU pods. Each
# registered experiment is one cell (or several equal ones) of the paper's tables, with
# Appendix H's steps for it; `paper_cells` records which.
# ---------------------------------------------------------------------------------------------


def backbone_name(backbone) -> str:
  """'efficientnet-b7', 'resnet-50', 'spinenet-143': the backbone as the paper names it."""
  return f'{backbone.type}-{getattr(backbone, backbone.type).model_id}'


def set_initialization(task, init: str) -> None:
  """Rand Init (no checkpoint) or the backbone's `INIT_CHECKPOINTS` checkpoint for `init`."""
  if init == 'rand':
    return
  name = INIT_CHECKPOINTS[(backbone_name(task.model.backbone), init)]
  task.init_checkpoint = os.path.join(INIT_CHECKPOINT_BASE, name)
  task.init_checkpoint_modules = 'backbone'


def coco_train(fraction: float = 1.0) -> str:
  """COCO train2017, or the nested subset Table 3 trains on, written by
  `./run.sh convert subset --fraction F --output_file_prefix <base>/subsets/train_<F>pct`
  (in its own folder: `<base>/train*` must not read it)."""
  if fraction >= 1.0:
    return os.path.join(COCO_INPUT_PATH_BASE, 'train*')
  return os.path.join(COCO_INPUT_PATH_BASE, 'subsets',
                      f'train_{round(100 * fraction)}pct-*.tfrecord')


def _full_scale_trainer(train_steps, optimizer_config) -> cfg.TrainerConfig:
  return cfg.TrainerConfig(
      train_steps=train_steps,
      validation_steps=COCO_VAL_EXAMPLES // 8,
      validation_interval=5000,
      steps_per_loop=500,
      summary_interval=500,
      checkpoint_interval=5000,
      optimizer_config=optimizer_config)


def _full_scale_retinanet(backbone, train_steps, batch=256, base_lr=0.32):
  """RetinaNet on COCO as the paper trains it.

  640x640 input, levels P3-P7, 9 anchors per location, batch 256, weight decay 1e-4,
  learning rate 0.32 with cosine decay and a linear warm-up from 0.0032 over 1000 steps,
  synchronized batch norm, bfloat16.
  """
  return cfg.ExperimentConfig(
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='bfloat16'),
      task=RetinaNetTask(
          annotation_file=os.path.join(COCO_INPUT_PATH_BASE, 'instances_val2017.json'),
          model=rn_cfg.RetinaNet(
              num_classes=COCO_NUM_CLASSES,
              input_size=[640, 640, 3],
              min_level=3,
              max_level=7,
              anchor=rn_cfg.Anchor(num_scales=3, aspect_ratios=[0.5, 1.0, 2.0], anchor_size=4.0),
              backbone=backbone,
              decoder=decoders.Decoder(type='fpn', fpn=decoders.FPN()),
              norm_activation=common.NormActivation(activation='swish', use_sync_bn=True)),
          losses=Losses(l2_weight_decay=1e-4),
          train_data=rn_cfg.DataConfig(
              input_path=coco_train(),
              is_training=True,
              global_batch_size=batch,
              parser=rn_cfg.Parser()),
          validation_data=rn_cfg.DataConfig(
              input_path=os.path.join(COCO_INPUT_PATH_BASE, 'val*'),
              is_training=False,
              global_batch_size=8)),
      trainer=_full_scale_trainer(train_steps, cosine_sgd(
          train_steps, base_lr=base_lr * batch / 256, warmup_steps=1000,
          warmup_lr=0.0032 * batch / 256)),
      restrictions=[
          'task.train_data.is_training != None',
          'task.validation_data.is_training != None',
      ])


def with_augmentation(config, aug: augment.Augmentation):
  """`aug` on the training parsers: the human half's and, for a student, the pseudo half's."""
  size = config.task.model.input_size[0]
  for name in ('train_data', 'pseudo_data'):
    data = getattr(config.task, name, None)
    if data is not None:
      augment.apply_augmentation(getattr(data, 'parser', data), aug, size)
  return config


def efficientnet_b7_fpn(train_steps):
  """RetinaNet + EfficientNet-B7 FPN, the paper's main detector (Tables 2-3, 7, 10, 13)."""
  return _full_scale_retinanet(
      backbones.Backbone(type='efficientnet', efficientnet=backbones.EfficientNet(
          model_id='b7', se_ratio=EFFICIENTNET_SE_RATIO, stochastic_depth_drop_rate=0.2)),
      train_steps)


def resnet50_fpn(train_steps):
  """RetinaNet + ResNet-50 FPN (Table 4)."""
  return _full_scale_retinanet(
      backbones.Backbone(type='resnet', resnet=backbones.ResNet(model_id=50)), train_steps)


def resnet101_appendix_e(train_steps):
  """RetinaNet + ResNet-101 FPN as Appendix E trains it (Table 12, Figure 2): float32
  instead of bfloat16 "for training stability". (Its other change, batch-norm beta/gamma in
  the weight decay, departs from the paper here: Model Garden regularizes kernels only.)"""
  config = _full_scale_retinanet(
      backbones.Backbone(type='resnet', resnet=backbones.ResNet(model_id=101)), train_steps)
  config.runtime.mixed_precision_dtype = 'float32'
  return config


# Appendix E: "the RandAugment magnitude was increased from 10 to 15" for ResNet-101.
RESNET101_PRESETS = dict(augment.PRESETS, S4=dataclasses.replace(
    augment.PRESETS['S4'], randaugment_magnitude=15.0))
def _teacher(name, build, aug, train_steps, cells, init='rand', fraction=1.0,
             presets=augment.PRESETS):
  """Registers `name`: `build(train_steps)` with Augment-`aug`, `init` and `fraction` of COCO."""
  def factory() -> cfg.ExperimentConfig:
    config = with_augmentation(build(train_steps), presets[aug.upper()])
    set_initialization(config.task, init)
    config.task.train_data.input_path = coco_train(fraction)
    return config
  factory.__doc__ = (f'{build.__doc__.splitlines()[0]} {paper_cells.INIT_NAMES[init]}, '
                     f'Augment-{aug.upper()}, {fraction:.0%} of COCO, {train_steps:,} steps.')
  paper_cells.register(name, factory, cells)


def efficientnet_b7_name(aug: str, init: str = 'rand', percent: int = 100) -> str:
  """The registered B7 teacher's name: `retinanet_efficientnetb7_fpn_coco[20pct]_s4[_imagenet]`."""
  coco = 'coco' if percent == 100 else f'coco{percent}pct'
  return f'retinanet_efficientnetb7_fpn_{coco}_{aug}' + ('' if init == 'rand' else f'_{init}')


# Table 2 (and Table 13's supervised row, Table 3's 100% column): EfficientNet-B7 on all of
# COCO, each policy trained to its peak, Appendix H: Rand Init 45k / 90k / 90k / 120k steps,
# ImageNet Init 22.5k / 45k / 90k / 90k.
for _aug, _rand_steps, _imagenet_steps in (('s1', 45_000, 22_500), ('s2', 90_000, 45_000),
                                           ('s3', 90_000, 90_000), ('s4', 120_000, 90_000)):
  _table3 = ['f100'] if _aug == 's4' else []  # Table 3 is Augment-S4 throughout
  _teacher(efficientnet_b7_name(_aug), efficientnet_b7_fpn, _aug, _rand_steps,
           [('table2', 'rand', _aug), ('table13', 'rand', _aug)] +
           [('table3', 'rand', c) for c in _table3])
  _teacher(efficientnet_b7_name(_aug, 'imagenet'), efficientnet_b7_fpn, _aug, _imagenet_steps,
           [('table2', 'imagenet', _aug)] + [('table3', 'imagenet', c) for c in _table3],
           init='imagenet')
# Table 3: Augment-S4; ImageNet++ Init peaks at 45k steps on all of COCO. On 20% / 50% of it
# (Table 7 is the 20% column): Rand Init 45k / 90k, ImageNet Init 5.625k / 22.5k,
# ImageNet++ Init 5.625k / 11.25k.
_teacher(efficientnet_b7_name('s4', 'imagenet_plus'), efficientnet_b7_fpn, 's4', 45_000,
         [('table3', 'imagenet_plus', 'f100')], init='imagenet_plus')
for _percent, _steps in ((20, (45_000, 5_625, 5_625)), (50, (90_000, 22_500, 11_250))):
  for _init, _init_steps in zip(('rand', 'imagenet', 'imagenet_plus'), _steps):
    _cells = [('table3', _init, f'f{_percent}')]
    if _percent == 20 and _init != 'imagenet_plus':
      _cells.append(('table7', _init, 'supervised'))
    _teacher(efficientnet_b7_name('s4', _init, _percent), efficientnet_b7_fpn, 's4',
             _init_steps, _cells, init=_init, fraction=_percent / 100)
# Table 4: ResNet-50, Augment-S4, all of COCO: Rand Init 200k steps, supervised and SimCLR
# ImageNet Init 160k.
_teacher('retinanet_resnet50_fpn_coco_s4', resnet50_fpn, 's4', 200_000, [('table4', 'rand', 'ap')])
_teacher('retinanet_resnet50_fpn_coco_s4_imagenet', resnet50_fpn, 's4', 160_000,
         [('table4', 'imagenet', 'ap')], init='imagenet')
_teacher('retinanet_resnet50_fpn_coco_s4_simclr', resnet50_fpn, 's4', 160_000,
         [('table4', 'simclr', 'ap')], init='simclr')
# Table 12: ResNet-101, Rand Init: 45k / 90k / 90k / 180k steps.
for _aug, _steps in (('s1', 45_000), ('s2', 90_000), ('s3', 90_000), ('s4', 180_000)):
  _teacher(f'retinanet_resnet101_fpn_coco_{_aug}', resnet101_appendix_e, _aug, _steps,
           [('table12', 'rand', _aug)], presets=RESNET101_PRESETS)


def spinenet(model_id: str, train_steps: int, batch: int = 128) -> cfg.ExperimentConfig:
  """SpineNet-143/190 RetinaNet at 1280 px (Table 5).

  The paper keeps SpineNet's own hyperparameters except the batch, 128 instead of 256, and
  the learning rate, halved with it. They are Model Garden's SpineNet COCO recipe
  (`retinanet_spinenet_coco`, read here, not copied): weight decay 4e-5, flips and scale
  jitter (0.1, 2.0), a stepwise schedule dropping 10x at 95% and 98% of the run after a
  2000-step linear warm-up from 0.0067, drop connect 0.2, swish and synchronized batch norm.
  From its `coco_spinenet{143,190}_tpu.yaml`: 1280 px, anchor size 4, bfloat16, and the
  head (4 convolutions of 256 filters for SpineNet-143; 7 of 512 for SpineNet-190, with
  which it has the paper's 164M parameters). The paper adds Soft-NMS with sigma 0.3.
  """
  garden = rn_cfg.retinanet_spinenet_coco()
  task = RetinaNetTask()
  task.override(garden.task.as_dict(), is_strict=True)
  task.model.backbone.spinenet.model_id = model_id
  task.model.input_size = [1280, 1280, 3]
  task.model.anchor.anchor_size = 4.0
  task.model.head.num_convs, task.model.head.num_filters = (
      (7, 512) if model_id == '190' else (4, 256))
  task.model.detection_generator = rn_cfg.DetectionGenerator(
      nms_version='v1', soft_nms_sigma=0.3, pre_nms_score_threshold=0.05)
  task.annotation_file = os.path.join(COCO_INPUT_PATH_BASE, 'instances_val2017.json')
  task.train_data.input_path = coco_train()
  task.train_data.global_batch_size = batch
  task.validation_data.input_path = os.path.join(COCO_INPUT_PATH_BASE, 'val*')
  optimizer = garden.trainer.optimizer_config
  stepwise = optimizer.learning_rate.stepwise
  stepwise.values = [v * batch / garden.task.train_data.global_batch_size
                     for v in stepwise.values]
  config = cfg.ExperimentConfig(
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='bfloat16'), task=task,
      trainer=_full_scale_trainer(garden.trainer.train_steps, optimizer),
      restrictions=[
          'task.train_data.is_training != None',
          'task.validation_data.is_training != None',
          'task.model.min_level == task.model.backbone.spinenet.min_level',
          'task.model.max_level == task.model.backbone.spinenet.max_level',
      ])
  return set_train_steps(config, train_steps)


def _spinenet_teacher(model_id: str, train_steps: int):
  def factory() -> cfg.ExperimentConfig:
    return spinenet(model_id, train_steps)
  factory.__doc__ = (f'SpineNet-{model_id} (Table 5): SpineNet\'s own recipe at batch 128, '
                     f'{train_steps:,} steps.')
  paper_cells.register(f'retinanet_spinenet{model_id}_coco', factory,
                       [('table5', f'spinenet{model_id}', 'val')])


# Table 5 / Appendix H: SpineNet-143 472k steps, SpineNet-190 370k.
_spinenet_teacher('143', 472_000)
_spinenet_teacher('190', 370_000)
