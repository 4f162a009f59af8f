"""Augment-S1..S4 (paper Table 1) as parser settings of Model Garden's input pipelines.

`PRESETS` is the one definition: the registered full-scale experiments use it, and the gin
files in `gin/augment/` name a preset (`augmentation.preset = 'S4'`) rather than repeat its
fields. Both go through `apply_augmentation`, so a gin file and the experiment that name the
same policy give the same parser config.
"""

import dataclasses
import inspect
from typing import Optional, Sequence

import gin

from official.vision.configs import common

# Model Garden's AutoAugment / RandAugment constants are in pixels for its 640 px recipes.
REFERENCE_SIZE = 640
POLICIES = (None, 'autoaugment', 'randaugment')


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """One augmentation policy: flips, scale jitter (crops) and an optional learned policy."""
  name: str
  hflip: bool = True
  scale_jitter: Sequence[float] = (0.8, 1.2)
  policy: Optional[str] = None
  autoaugment_name: str = 'detection_v0'
  randaugment_magnitude: float = 10.0
  randaugment_num_layers: int = 2


PRESETS = {
    'S1': Augmentation('Augment-S1', scale_jitter=(0.8, 1.2)),
    'S2': Augmentation('Augment-S2', scale_jitter=(0.8, 1.2), policy='autoaugment'),
    'S3': Augmentation('Augment-S3', scale_jitter=(0.5, 2.0), policy='autoaugment'),
    'S4': Augmentation('Augment-S4', scale_jitter=(0.5, 2.0), policy='randaugment',
                       randaugment_magnitude=10.0),
}


@gin.configurable
def augmentation(preset: Optional[str] = None,
                 name: Optional[str] = None,
                 hflip: Optional[bool] = None,
                 scale_jitter: Optional[Sequence[float]] = None,
                 policy: Optional[str] = None,
                 autoaugment_name: Optional[str] = None,
                 randaugment_magnitude: Optional[float] = None,
                 randaugment_num_layers: Optional[int] = None) -> Optional[Augmentation]:
  """The augmentation bound in gin, or None when no gin file names one.

  `preset` ('S1'..'S4', what `gin/augment/s*.gin` bind) starts from `PRESETS`, so a gin
  file and the registered experiments cannot describe the same policy differently; any
  other binding changes that field (a field left unbound keeps the preset's value, so a
  preset's policy cannot be unset: start from 'S1' for none). Without a preset, `name`
  starts from `Augmentation`'s defaults.
  """
  if preset is None and name is None:
    return None
  if preset is not None and preset not in PRESETS:
    raise ValueError(f'unknown augmentation preset {preset!r}; expected one of {sorted(PRESETS)}')
  base = PRESETS[preset] if preset is not None else Augmentation(name)
  changes = dict(name=name, hflip=hflip, policy=policy, autoaugment_name=autoaugment_name,
                 randaugment_magnitude=randaugment_magnitude,
                 randaugment_num_layers=randaugment_num_layers,
                 scale_jitter=None if scale_jitter is None else tuple(scale_jitter))
  return dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})


def _check(aug: Augmentation) -> None:
  if aug.policy not in POLICIES:
    raise ValueError(f'unknown augmentation policy {aug.policy!r} in {aug.name}; '
                     f'expected one of {POLICIES}')
  lo, hi = aug.scale_jitter
  if not 0 < lo <= hi:
    raise ValueError(f'bad scale_jitter {aug.scale_jitter!r} in {aug.name}: need 0 < min <= max')
  if aug.policy == 'autoaugment':
    from official.vision.ops import augment  # pylint: disable=g-import-not-at-top
    names = augment.AutoAugment().available_policies
    if aug.autoaugment_name not in names:
      raise ValueError(f'unknown AutoAugment policy {aug.autoaugment_name!r} in {aug.name}; '
                       f'expected one of {sorted(names)}')


def apply_augmentation(parser, aug: Augmentation, image_size: int) -> None:
  """Writes `aug` into a Model Garden parser config (RetinaNet or segmentation).

  AutoAugment/RandAugment pixel constants (cutout size, translation) are scaled from the
  640 px reference to `image_size`, so an op moves an object by the same fraction of the
  image at every input size.
  """
  _check(aug)
  scale = image_size / REFERENCE_SIZE
  parser.aug_rand_hflip = aug.hflip
  parser.aug_scale_min, parser.aug_scale_max = (float(v) for v in aug.scale_jitter)
  if aug.policy is None:
    parser.aug_type = None
  elif aug.policy == 'autoaugment':
    ref = common.AutoAugment()
    parser.aug_type = common.Augmentation(
        type='autoaug',
        autoaug=common.AutoAugment(
            augmentation_name=aug.autoaugment_name,
            cutout_const=ref.cutout_const * scale,
            translate_const=ref.translate_const * scale))
  else:
    # The parser config's RandAugment defaults (cutout 40, translate 10 px) are for 224 px
    # classification; start from the defaults of `RandAugment.build_for_detection` instead.
    ref = _randaugment_detection_defaults()
    parser.aug_type = common.Augmentation(
        type='randaug',
        randaug=common.RandAugment(
            num_layers=aug.randaugment_num_layers,
            magnitude=aug.randaugment_magnitude,
            cutout_const=ref['cutout_const'] * scale,
            translate_const=ref['translate_const'] * scale))


def preset_of(parser) -> Optional[str]:
  """Which of Table 1's policies a parser config applies, 'S1'..'S4', or None for another.

  Table 1's terms: flips and crops at the standard scale jitter (0.8, 1.2) (S1), AutoAugment
  at it (S2), AutoAugment (S3) or RandAugment (S4) with large scale jittering, which is any
  range that holds (0.5, 2.0) (SpineNet's own (0.1, 2.0) does).
  """
  if not parser.aug_rand_hflip:
    return None
  jitter = (parser.aug_scale_min, parser.aug_scale_max)
  standard = jitter == tuple(PRESETS['S1'].scale_jitter)
  low, high = PRESETS['S3'].scale_jitter
  large = jitter[0] <= low and jitter[1] >= high
  policy = parser.aug_type.type if parser.aug_type else None
  if policy is None:
    return 'S1' if standard else None
  if policy == 'autoaug':
    return 'S2' if standard else 'S3' if large else None
  return 'S4' if policy == 'randaug' and large else None


def _randaugment_detection_defaults():
  from official.vision.ops import augment  # pylint: disable=g-import-not-at-top
  params = inspect.signature(augment.RandAugment.build_for_detection).parameters
  return {k: params[k].default for k in ('cutout_const', 'translate_const')}
