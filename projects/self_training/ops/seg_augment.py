"""AutoAugment / RandAugment for semantic segmentation: the label mask moves with the image.

Model Garden's segmentation parser only flips and scales; its AutoAugment / RandAugment
(`official/vision/ops/augment.py`) distort an image and its boxes, never a mask. Augment-S2..S4
(paper Table 1) need the policies on segmentation too, and a geometric op that moves the
pixels but not their labels would teach the model wrong labels. This module runs Model
Garden's own ops, argument tables and policy drivers with the mask in the place of the boxes:

  op class                          image                      mask
  Rotate, ShearX/Y, TranslateX/Y    Model Garden's op          the same op with the same
  and their `_BBox` variants                                   argument draw, nearest-neighbour
  Cutout                            Model Garden's cutout      cut pixels -> ignore label
  color / pixel ops                 Model Garden's op          unchanged
  `*_Only_BBoxes`                   unchanged                  unchanged

Geometric ops: Model Garden samples the sign of an angle / shear / shift while it builds the
arguments (`level_to_arg`), so the arguments are built once and the image and the mask are
both transformed with that same tensor. The mask is tiled to three channels and goes
through the very same function (nearest-neighbour, since Model Garden transforms images
with 'nearest'), so both sample the same source pixels. Where the op fills the image with
its gray replace value, the mask gets the ignore label instead. Note that in
tf-models-official 2.20 these ops use fill mode 'reflect', so no pixel is ever filled with
gray: the image shows a mirror image of the border, and the mask holds the mirrored labels
of exactly those pixels. The `_BBox` ops transform the whole image the same way as their
plain counterparts (only their box bookkeeping differs), so they get the same mask rule.

`*_Only_BBoxes` ops (only `TranslateY_Only_BBoxes` in detection_v0) shift the content of
each box, at a fixed 120 px not scaled to the input size. Without boxes there is no region to
move, and shifting the whole image by up to 120 px would be a different, much stronger op,
so they are no-ops here: the sub-policy's other op still runs.
"""

from typing import Callable, Dict, Tuple

import tensorflow as tf

from official.vision.configs import common
from official.vision.ops import augment

# Everything here is graph-safe as written (tf.cond / tf.switch_case, static Python
# checks), so autograph's conversion of these and Model Garden's ops is pure tracing cost.
_NO_AUTOGRAPH = tf.autograph.experimental.do_not_convert

# Model Garden's AutoAugment and RandAugment fill empty image pixels with this gray.
IMAGE_REPLACE = [128] * 3

_GEOMETRIC = {
    'Rotate': 'Rotate', 'Rotate_BBox': 'Rotate',
    'ShearX': 'ShearX', 'ShearX_BBox': 'ShearX',
    'ShearY': 'ShearY', 'ShearY_BBox': 'ShearY',
    'TranslateX': 'TranslateX', 'TranslateX_BBox': 'TranslateX',
    'TranslateY': 'TranslateY', 'TranslateY_BBox': 'TranslateY',
}
IMAGE_ONLY_OPS = ('AutoContrast', 'Equalize', 'Invert', 'Posterize', 'Solarize', 'SolarizeAdd',
                  'Color', 'Contrast', 'Brightness', 'Sharpness', 'Grayscale', 'Gaussian_Noise')
GEOMETRIC_OPS = tuple(_GEOMETRIC)
BOX_ONLY_OPS = ('TranslateY_Only_BBoxes',)

# A paired op: (image, mask, *Model Garden args) -> (image, mask). The mask parameter is named
# `bboxes` because Model Garden's `_apply_func_with_prob` checks that name; here it always
# carries the uint8 [h, w, 1] mask.
PairedOp = Callable[..., Tuple[tf.Tensor, tf.Tensor]]


def _image_only(func) -> PairedOp:
  def apply(image, bboxes, *args):
    return func(image, *args), bboxes
  return apply


def _geometric(func, ignore_label: int) -> PairedOp:
  """`func(image, arg, replace)` applied to the image and, with the same arg, to the mask."""
  def apply(image, bboxes, *args):
    *op_args, replace = args  # Model Garden appends the replace value to the op's args.
    mask3 = func(tf.tile(bboxes, [1, 1, 3]), *op_args, [ignore_label] * 3)
    return func(image, *op_args, replace), mask3[..., :1]
  return apply


def _cutout(ignore_label: int) -> PairedOp:
  """Model Garden's cutout on the image; the same square of the mask becomes ignore."""
  def apply(image, bboxes, pad_size, replace):
    # Model Garden's cutout draws the square's center inside and does not return it, so it
    # is run once on a blank canvas (fill 1) and the square it marks is cut from both.
    hole = augment.cutout(tf.zeros_like(image), pad_size, replace=1)[..., :1] > 0
    image = tf.where(hole, tf.constant(replace, image.dtype), image)
    # The mask under the patch is ignored, not kept: the object there is no longer visible,
    # and its label would ask the model to find it in gray pixels.
    mask = tf.where(hole, tf.constant(ignore_label, bboxes.dtype), bboxes)
    return image, mask
  return apply


def _identity(image, bboxes, *unused_args):
  return image, bboxes


def mask_rules(ignore_label: int = 255) -> Dict[str, PairedOp]:
  """Every Model Garden op name this module knows -> its paired (image, mask) op."""
  rules = {name: _image_only(augment.NAME_TO_FUNC[name]) for name in IMAGE_ONLY_OPS}
  rules.update({name: _geometric(augment.NAME_TO_FUNC[base], ignore_label)
                for name, base in _GEOMETRIC.items()})
  rules['Cutout'] = _cutout(ignore_label)
  rules.update({name: _identity for name in BOX_ONLY_OPS})
  return rules


def _paired_op(rules, name, prob, level, cutout_const, translate_const, level_std=0.0):
  """Model Garden's (prob, args) for `name`, drawn once, with this module's paired op."""
  if name not in rules:
    raise ValueError(f'no mask rule for augmentation op {name!r}; known: {sorted(rules)}')
  _, prob, args = augment._parse_policy_info(  # pylint: disable=protected-access
      name, prob, level, IMAGE_REPLACE, cutout_const, translate_const, level_std)
  return rules[name], prob, args


def _to_uint8(image, mask):
  image = tf.convert_to_tensor(image)
  mask = tf.convert_to_tensor(mask)
  if image.dtype != tf.uint8:  # as Model Garden's augmenters do
    image = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
  return image, tf.cast(mask, tf.uint8)


def _restore(image, mask, like_image, like_mask):
  image = tf.ensure_shape(tf.cast(image, like_image.dtype), like_image.shape)
  mask = tf.ensure_shape(tf.cast(mask, like_mask.dtype), like_mask.shape)
  return image, mask


def _check_ignore(ignore_label):
  if not 0 <= int(ignore_label) <= 255 or int(ignore_label) != ignore_label:
    raise ValueError(f'ignore_label must be an integer in [0, 255], got {ignore_label!r}')
  return int(ignore_label)


@_NO_AUTOGRAPH
def distort_with_autoaugment(image, mask, augmenter: augment.AutoAugment,
                             ignore_label: int = 255) -> Tuple[tf.Tensor, tf.Tensor]:
  """One random sub-policy of Model Garden's `augmenter` on `image` and `mask` together.

  Mirrors `AutoAugment.distort_with_boxes`: the sub-policy is chosen by
  `select_and_apply_random_policy` and each op runs with its probability through
  `_apply_func_with_prob`, the mask travelling where the boxes would.
  """
  rules = mask_rules(_check_ignore(ignore_label))
  policies = []
  for policy in augmenter.policies:
    ops = [_paired_op(rules, name, prob, level, augmenter.cutout_const,
                      augmenter.translate_const) for name, prob, level in policy]

    def final_policy(image_, mask_, ops_=ops):
      for func, prob, args in ops_:
        image_, mask_ = augment._apply_func_with_prob(  # pylint: disable=protected-access
            func, image_, mask_, args, prob)
      return image_, mask_

    policies.append(final_policy)
  in_image, in_mask = tf.convert_to_tensor(image), tf.convert_to_tensor(mask)
  out = augment.select_and_apply_random_policy(policies, *_to_uint8(in_image, in_mask))
  return _restore(*out, in_image, in_mask)


@_NO_AUTOGRAPH
def distort_with_randaugment(image, mask, augmenter: augment.RandAugment,
                             ignore_label: int = 255) -> Tuple[tf.Tensor, tf.Tensor]:
  """Model Garden's `augmenter` (RandAugment) on `image` and `mask` together.

  Mirrors `RandAugment._distort_common`: per layer one of `available_ops` or identity, drawn
  uniformly, at the shared magnitude; then, if set, kept with probability `prob_to_apply`.
  """
  rules = mask_rules(_check_ignore(ignore_label))
  in_image, in_mask = tf.convert_to_tensor(image), tf.convert_to_tensor(mask)
  image, mask = _to_uint8(in_image, in_mask)
  for _ in range(augmenter.num_layers):
    selected = tf.random.uniform([], maxval=len(augmenter.available_ops) + 1, dtype=tf.int32)
    branches = []
    for name in augmenter.available_ops:
      # Model Garden passes a random prob that only `PROB_FUNCS` (box-only ops) read.
      func, _, args = _paired_op(rules, name, 1.0, augmenter.magnitude,
                                 augmenter.cutout_const, augmenter.translate_const,
                                 augmenter.magnitude_std)
      branches.append(lambda f=func, a=args, i=image, m=mask: f(i, m, *a))
    aug_image, aug_mask = tf.switch_case(
        selected, branches, default=lambda i=image, m=mask: (tf.identity(i), tf.identity(m)))
    if augmenter.prob_to_apply is not None:
      aug_image, aug_mask = tf.cond(
          tf.random.uniform([]) < augmenter.prob_to_apply,
          lambda i=aug_image, m=aug_mask: (tf.identity(i), tf.identity(m)),
          lambda i=image, m=mask: (tf.identity(i), tf.identity(m)))
    image, mask = aug_image, aug_mask
  return _restore(image, mask, in_image, in_mask)


@_NO_AUTOGRAPH
def distort_image_and_mask(image, mask, aug_type: common.Augmentation,
                           ignore_label: int = 255) -> Tuple[tf.Tensor, tf.Tensor]:
  """Applies the policy of a parser's `aug_type` to an image and its label mask.

  Args:
    image: uint8 [h, w, 3] (other dtypes are clipped to [0, 255], as Model Garden does).
    mask: [h, w, 1] labels in [0, 255], any integer or float dtype.
    aug_type: Model Garden's `common.Augmentation` with type 'autoaug' or 'randaug', as
      `configs/augment.apply_augmentation` writes it into `parser.aug_type`.
    ignore_label: the label for mask pixels whose content is gone (cutout, gray fill).

  Returns:
    (image, mask) with the input dtypes and shapes. Works eagerly and inside tf.data.
  """
  kind = getattr(aug_type, 'type', None)
  if kind == 'autoaug':
    cfg = aug_type.autoaug
    augmenter = augment.AutoAugment(augmentation_name=cfg.augmentation_name,
                                    cutout_const=cfg.cutout_const,
                                    translate_const=cfg.translate_const)
    return distort_with_autoaugment(image, mask, augmenter, ignore_label)
  if kind == 'randaug':
    # The box-aware op names, as Model Garden's detection parser builds it; the mask rules
    # treat `_BBox` ops and their plain versions alike.
    cfg = aug_type.randaug
    augmenter = augment.RandAugment.build_for_detection(
        num_layers=cfg.num_layers, magnitude=cfg.magnitude, cutout_const=cfg.cutout_const,
        translate_const=cfg.translate_const, magnitude_std=cfg.magnitude_std,
        prob_to_apply=cfg.prob_to_apply, exclude_ops=cfg.exclude_ops)
    return distort_with_randaugment(image, mask, augmenter, ignore_label)
  raise ValueError(f"segmentation augmentation needs aug_type.type 'autoaug' or 'randaug', "
                   f'got {kind!r}')
