"""Every registered experiment validates, and every full-scale model builds on CPU."""

import math

import pytest
import tf_keras

from projects.self_training.common import trainer
from projects.self_training.data import categories
from projects.self_training.data import emoji_scenes
from projects.self_training.tools import full_scale

def test_all_experiments_validate():
  names = trainer.project_experiments()
  assert 'emoji_retinanet' in names
  assert {f'retinanet_efficientnetb7_fpn_coco_s{k}' for k in range(1, 5)} <= set(names)
  assert {'emoji_segmentation', 'seg_nasfpn_efficientnetb7_pascal',
          'seg_nasfpn_efficientnetl2_pascal'} <= set(names)
  for name in names:
    params = trainer.build_params(name)
    # COCO ids (1..90, 0 background) for detection; the 21 VOC classes for segmentation;
    # the iconic pool's classes for backbone pre-training.
    if name.startswith('emoji_iconic_'):
      expected = len(categories.ICONIC_CLASSES)
    elif name.startswith(('seg_', 'emoji_seg')):
      expected = 21
    else:
      expected = 91
    assert params.task.model.num_classes == expected, name
    assert params.trainer.train_steps > 0


def test_paper_recipe_numbers():
  p = trainer.build_params('retinanet_efficientnetb7_fpn_coco_s1')
  assert p.task.model.input_size == [640, 640, 3]
  assert (p.task.model.min_level, p.task.model.max_level) == (3, 7)
  assert p.task.model.anchor.num_scales * len(p.task.model.anchor.aspect_ratios) == 9
  assert p.task.train_data.global_batch_size == 256
  assert p.task.losses.l2_weight_decay == 1e-4
  assert p.task.model.norm_activation.use_sync_bn
  lr = p.trainer.optimizer_config
  assert lr.learning_rate.type == 'cosine'
  assert lr.learning_rate.cosine.initial_learning_rate == pytest.approx(0.32)
  assert lr.warmup.linear.warmup_learning_rate == pytest.approx(0.0032)
  assert lr.warmup.linear.warmup_steps == 1000
  assert p.trainer.train_steps == 45_000
  spine = trainer.build_params('retinanet_spinenet190_coco')
  assert spine.task.train_data.global_batch_size == 128
  # SpineNet's own schedule (Model Garden's recipe) at half its learning rate.
  schedule = spine.trainer.optimizer_config.learning_rate
  assert schedule.type == 'stepwise'
  assert schedule.stepwise.values == pytest.approx([0.16, 0.016, 0.0016])
  assert schedule.stepwise.boundaries == [351_500, 362_600]  # 95% and 98% of 370k steps
  assert spine.task.losses.l2_weight_decay == 4e-5
  assert spine.task.model.detection_generator.soft_nms_sigma == 0.3


def test_student_recipe_numbers():
  """Appendix H's alpha and steps; SpineNet students on Open Images at 128 + 128."""
  for aug, steps, alpha in (('s1', 45_000, 1.0), ('s4', 90_000, 0.5)):
    p = trainer.build_params(f'retinanet_efficientnetb7_fpn_coco_{aug}_student')
    assert p.task.loss_normalization.alpha == alpha
    assert p.trainer.train_steps == steps
    assert p.trainer.optimizer_config.learning_rate.cosine.decay_steps == steps
    assert p.task.pseudo_data.input_path.startswith(
        f'imagenet/pseudo/retinanet_efficientnetb7_fpn_coco_{aug}/')
    assert p.task.train_data.global_batch_size == 256
    assert p.task.pseudo_data.global_batch_size in (0, 256)  # 0: the human batch's
    assert p.task.init_checkpoint == f'teachers/retinanet_efficientnetb7_fpn_coco_{aug}'
  for model_id, steps, alpha in (('143', 472_000, 0.25), ('190', 370_000, 0.5)):
    p = trainer.build_params(f'retinanet_spinenet{model_id}_coco_student')
    assert p.task.model.backbone.spinenet.model_id == model_id
    assert p.task.loss_normalization.alpha == alpha
    assert p.trainer.train_steps == steps
    assert p.task.pseudo_data.input_path.startswith('open_images/pseudo/')
    assert p.task.train_data.global_batch_size == 128
    assert p.trainer.optimizer_config.learning_rate.stepwise.values[0] == pytest.approx(0.16)
    assert p.task.model.detection_generator.soft_nms_sigma == 0.3
    # Table 5's caption: Augment-S3 for self-training, at SpineNet's own scale jitter.
    for parser in (p.task.train_data.parser, p.task.pseudo_data.parser):
      assert parser.aug_type.type == 'autoaug'
      assert (parser.aug_scale_min, parser.aug_scale_max) == (0.1, 2.0)
    assert p.task.model.backbone.spinenet.stochastic_depth_drop_rate == 0.2
    assert p.task.init_checkpoint_modules == 'all'  # from the teacher


def test_resnet101_follows_appendix_e():
  s4 = trainer.build_params('retinanet_resnet101_fpn_coco_s4')
  assert s4.runtime.mixed_precision_dtype == 'float32'
  assert s4.task.train_data.parser.aug_type.randaug.magnitude == 15
  assert trainer.build_params('retinanet_resnet50_fpn_coco_s4').task.train_data.parser.aug_type\
      .randaug.magnitude == 10
  assert trainer.build_params('retinanet_resnet50_fpn_coco_s4').runtime.mixed_precision_dtype \
      == 'bfloat16'


def test_segmentation_recipe_numbers():
  for model_id, lr, steps in (('b7', 0.08, 40_000), ('l2', 0.2, 20_000)):
    p = trainer.build_params(f'seg_nasfpn_efficientnet{model_id}_pascal')
    assert p.task.model.backbone.efficientnet.model_id == model_id
    assert p.task.model.decoder.type == 'nasfpn'
    assert p.task.model.decoder.nasfpn.num_repeats == 7
    assert p.task.model.decoder.nasfpn.use_separable_conv
    assert (p.task.model.min_level, p.task.model.max_level) == (3, 7)
    head = p.task.model.head
    assert (head.level, head.num_convs, head.feature_fusion) == (2, 3, 'pyramid_fusion')
    assert head.prediction_kernel_size == 1
    assert p.task.losses.l2_weight_decay == 1e-5
    assert p.task.losses.ignore_label == 255
    assert p.task.train_data.global_batch_size == 256
    assert p.task.model.norm_activation.use_sync_bn
    opt = p.trainer.optimizer_config
    assert opt.learning_rate.type == 'cosine'
    assert opt.learning_rate.cosine.initial_learning_rate == pytest.approx(lr)
    assert opt.warmup.linear.warmup_steps == 500
    assert p.trainer.train_steps == steps


@pytest.mark.slow
def test_efficientnet_l2_backbone_widths_and_depths():
  """EfficientNet-L2 = B0 scaled to width 4.3 and depth 5.3 (Noisy Student, Table 7)."""
  from official.vision.modeling.backbones import efficientnet  # pylint: disable=g-import-not-at-top
  tf_keras.backend.clear_session()
  spec = tf_keras.layers.InputSpec(shape=[None, 64, 64, 3])
  built = {m: efficientnet.EfficientNet(model_id=m, input_specs=spec) for m in ('b7', 'l2')}
  blocks = lambda m: sum(l.name.startswith('inverted_bottleneck_block') for l in m.layers)
  b0_repeats = (1, 2, 2, 3, 3, 4, 1)
  assert blocks(built['l2']) == sum(math.ceil(5.3 * r) for r in b0_repeats) == 88
  assert blocks(built['b7']) == sum(math.ceil(3.1 * r) for r in b0_repeats)
  def width(filters, scale):  # EfficientNet's rounding to multiples of 8
    rounded = max(8, int(filters * scale + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * filters * scale else rounded
  b0_level_filters = {'2': 24, '3': 40, '4': 112, '5': 320}
  widths = {k: v[-1] for k, v in built['l2'].output_specs.items()}
  assert widths == {k: width(f, 4.3) for k, f in b0_level_filters.items()}, widths
  assert widths['5'] == 1376
  counts = {m: b.count_params() for m, b in built.items()}
  print(f'backbone parameters: B7 {counts["b7"] / 1e6:.1f}M, L2 {counts["l2"] / 1e6:.1f}M')
  assert counts['l2'] > 5 * counts['b7']


@pytest.mark.slow
def test_describe_counts_the_papers_parameters_and_flops():
  """SpineNet-143 built at full size: Table 5 prints 67M parameters and 524B FLOPs
  (multiply-adds); a teacher and its student share one build."""
  rows = full_scale.describe(['retinanet_spinenet143_coco', 'retinanet_spinenet143_coco_student'])
  spine, student = rows
  print(full_scale.table(rows))
  assert spine['params'] == pytest.approx(67e6, rel=0.01)
  assert spine['multiply_adds'] == pytest.approx(524e9, rel=0.01)
  assert (student['params'], student['multiply_adds']) == (spine['params'],
                                                             spine['multiply_adds'])
  assert (spine['batch'], student['batch']) == ('128', '128 + 128')
  assert (spine['input_size'], spine['train_steps']) == ('1280x1280', 472_000)
  assert ('| `retinanet_spinenet143_coco` | spinenet-143 | 1280x1280 | 128 |'
          in full_scale.table(rows))


def test_capacity_plan_arithmetic():
  """100B multiply-adds per image: a training image is 600 GFLOPs, so a 123-TFLOPS v3 chip
  at 30% trains 61.5 img/s; 120k steps x 256 images on 16 chips take 31,220 s (8.7 h)."""
  rows = [{'experiment': 'retinanet_efficientnetb7_fpn_coco_s4', 'batch': '256',
           'train_steps': 120_000, 'multiply_adds': 100e9},
          {'experiment': 'retinanet_efficientnetb7_fpn_coco_s4_student', 'batch': '256 + 256',
           'train_steps': 90_000, 'multiply_adds': 100e9}]
  plan = full_scale.capacity_plan(rows, utilization=0.3)
  lines = [l for l in plan.splitlines() if l.startswith('| COCO + ImageNet')]
  assert len(lines) == 3, plan  # teacher, pseudo labels, student; no other run described
  teacher, labels, student = [l.split(' | ') for l in lines]
  assert teacher[1:4] == ['teacher', '30.7M', '62'] and teacher[6] == '8.7 h'
  assert labels[1:4] == ['pseudo labels', '1.3M', '184']  # 1 forward pass: 3x the rate
  assert student[2] == '46.1M'  # 90k x (256 + 256)


# One recipe per family, each one real training step through its task and input pipeline
# (the others, students included, by `./run.sh dryrun NAME`; `./run.sh describe` builds them
# all). The steps run eagerly: the same Python, without the 1-2 minutes of graph building
# each large model takes on this CPU. That the train steps trace is tested at embedded scale
# (every training test), and `./run.sh dryrun NAME` traces by default.
DRYRUN = ('retinanet_resnet101_fpn_coco_s1', 'retinanet_efficientnetb7_fpn_coco_s1',
          'retinanet_spinenet143_coco', 'seg_nasfpn_efficientnetb7_pascal')


@pytest.fixture(scope='module')
def dry_data(tmp_path_factory):
  """A few scenes of each split a dry run reads."""
  out = str(tmp_path_factory.mktemp('dry') / 'scenes')
  emoji_scenes.generate(out, image_size=64, num_train=4, num_val=2, num_voc_train=4,
                        num_voc_aug=4, splits=('train', 'val', 'voc_train', 'voc_aug'),
                        num_workers=1)
  return out


@pytest.mark.parametrize('name', DRYRUN)
@pytest.mark.slow
def test_dryrun_steps_a_full_scale_recipe(name, dry_data):
  tf_keras.backend.clear_session()
  out = full_scale.dryrun(name, image_size=128, batch_size=2, data_dir=dry_data,
                          eager=True)
  print(out)
  assert math.isfinite(out['loss']) and out['loss'] > 0
  assert out['full_input_size'][0] >= 512


def test_dryrun_errors_are_one_line(tmp_path):
  with pytest.raises(full_scale.DryRunError, match='unknown full-scale experiment'):
    full_scale.dryrun('emoji_retinanet', data_dir=str(tmp_path))
  with pytest.raises(full_scale.DryRunError, match='multiple of 128'):
    full_scale.dryrun('retinanet_spinenet143_coco', image_size=100, data_dir=str(tmp_path))
  with pytest.raises(full_scale.DryRunError, match='not a complete emoji-scenes set'):
    full_scale.dryrun('retinanet_spinenet143_coco', data_dir=str(tmp_path))
