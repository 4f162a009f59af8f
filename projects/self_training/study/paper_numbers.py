"""The paper's published numbers: its cells (COCO AP / mIoU, percent) and Appendix H's recipes.

Source: Zoph et al., "Rethinking Pre-training and Self-training", arXiv:2006.06882v2, Tables
2-7, 10, 12, 13, Figure 2 (Appendix B; values read off the vector plot, +-0.01 AP),
Appendix H (the steps and alpha at which each cell peaked) and Sections 3.1-3.2 and the
captions (batch sizes, learning rates, RandAugment magnitude), as collected in the project's
reference notes. These are citations, never measurements: the study prints them beside its
own numbers and never uses them for a choice, and `APPENDIX_H` is what the registered
full-scale experiments are checked against (tests/test_paper_numbers.py), never read by them.
"""

import dataclasses
from typing import Dict, Optional, Tuple

AUGS = ('s1', 's2', 's3', 's4')

# (table, row, column) -> COCO AP.
PAPER = {}


def _row(table, row, columns, values):
  for column, value in zip(columns, values):
    if value is not None:
      PAPER[(table, row, column)] = value


_row('table2', 'rand', AUGS, (39.2, 41.5, 43.9, 44.3))
_row('table2', 'imagenet', AUGS, (39.5, 40.7, 43.2, 43.3))
_row('table2', 'rand_st', AUGS, (40.9, 43.0, 45.4, 45.6))
_FRACTIONS = ('f20', 'f50', 'f100')
_row('table3', 'rand', _FRACTIONS, (30.7, 39.6, 44.3))
_row('table3', 'rand_st', _FRACTIONS, (34.1, 41.4, 45.6))
_row('table3', 'imagenet', _FRACTIONS, (33.3, 38.8, 43.3))
_row('table3', 'imagenet_st', _FRACTIONS, (36.0, 40.5, 44.6))
_row('table3', 'imagenet_plus', _FRACTIONS, (35.9, 39.9, 43.8))
_row('table3', 'imagenet_plus_st', _FRACTIONS, (37.2, 41.5, 44.6))
_row('table4', 'rand', ('ap',), (41.1,))
_row('table4', 'imagenet', ('ap',), (40.4,))
_row('table4', 'simclr', ('ap',), (40.4,))
_row('table4', 'rand_st', ('ap',), (41.9,))
_TABLE7 = ('supervised', 'self_training', 'joint', 'joint_self_training')
_row('table7', 'rand', _TABLE7, (30.7, 34.1, 33.6, 35.1))
_row('table7', 'imagenet', _TABLE7, (33.3, 36.0, 34.0, 36.6))
_row('table10', 'rand', AUGS, (39.2, 41.5, 43.9, 44.3))
_row('table10', 'student_from_teacher', AUGS, (40.9, 43.0, 45.4, 45.6))
_row('table10', 'student_from_random', AUGS, (41.0, 42.7, 45.0, 45.2))
# Table 12 (Appendix E): the supervised RetinaNet ResNet-101, Figure 2's baseline model.
_row('table12', 'rand', AUGS, (37.0, 39.5, 41.9, 42.6))
# Figure 2, panel "Augment-S1, 90k steps" (RetinaNet ResNet-101); None: the run got NaNs.
_ALPHAS = ('a0.25', 'a0.5', 'a1', 'a2', 'a3', 'a4')
_row('appendix_b', 'loss_norm', _ALPHAS, (37.88, 38.31, 38.64, 39.93, 39.99, 40.04))
_row('appendix_b', 'standard', _ALPHAS, (38.27, 38.28, 38.73, 39.41, None, None))
DIVERGED = {('appendix_b', 'standard', 'a3'), ('appendix_b', 'standard', 'a4')}
# Table 12 (Appendix E, ResNet-101) and Table 13 (Appendix F, EfficientNet-B7): self-training
# on ImageNet and on Open Images (OID).
_row('table12', 'rand_st', AUGS, (39.0, 41.3, 42.8, 43.6))
_row('table12', 'rand_st_oid', AUGS, (39.5, 41.9, 43.4, 43.9))
_row('table13', 'rand', AUGS, (39.2, 41.5, 43.9, 44.3))
_row('table13', 'rand_st', AUGS, (40.9, 43.0, 45.4, 45.6))
_row('table13', 'rand_st_oid', AUGS, (41.2, 43.6, 45.5, 46.0))
# Table 5 (SpineNet at 1280 px, COCO val; self-training on Open Images) and Table 6 (PASCAL
# VOC 2012 val mIoU, ImageNet++ Init; self-training on the aug set).
_row('table5', 'spinenet143', ('val',), (50.9,))
_row('table5', 'spinenet143_st', ('val',), (52.4,))
_row('table5', 'spinenet190', ('val',), (52.6,))
_row('table5', 'spinenet190_st', ('val',), (54.2,))
_row('table6', 'b7', ('val',), (85.2,))
_row('table6', 'b7_st', ('val',), (86.7,))
_row('table6', 'l2', ('val',), (88.7,))
_row('table6', 'l2_st', ('val',), (90.0,))

# Figure 1 (vector plot, +-0.01 AP): supervised COCO AP by augmentation (full COCO) and by
# labeled fraction (Augment-S4), one line per initialization.
FIGURE1_AUG = {
    'rand': (39.15, 41.50, 43.94, 44.25),
    'imagenet': (39.45, 40.70, 43.17, 43.27),
    'imagenet_plus': (40.85, 41.35, 43.37, 43.81),
}
FIGURE1_FRACTION = {
    'rand': (30.73, 39.55, 44.25),
    'imagenet': (33.29, 38.84, 43.27),
    'imagenet_plus': (35.94, 39.88, 43.81),
}


def paper(table: str, row: str, column: str):
  """The paper's number for a cell, or None where the paper has none."""
  return PAPER.get((table, row, column))


# ---------------------------------------------------------------------------------------------
# Appendix H: how each cell was trained.


@dataclasses.dataclass(frozen=True)
class Recipe:
  """One cell's training as the paper gives it: backbone, augmentation, initialization and
  data from its table and caption; steps, alpha and (Table 7) the classification-loss weight
  from Appendix H ("score (steps) (alpha) (weight)"); images per step, peak learning rate
  and RandAugment magnitude from Sections 3.1-3.2 and the captions.

  `augmentation` None: the backbone's own (Table 5's SpineNet baselines, footnote †).
  `init` is the supervised model's, or for a self-training row its teacher's (the student
  starts from the teacher, Section 3.2). `alpha` None: "(—)", no pseudo labels; `unlabeled`
  names the pseudo-labeled source.

  `batch`, `pseudo_batch`, `classification_batch` (human-labeled, pseudo-labeled and, for
  joint training, ImageNet classification images per step; 0: no such half),
  `learning_rate` (peak) and `randaugment_magnitude` (Augment-S4 only): None where the paper
  states no number; such a field is not compared (tests/test_paper_numbers.py).
  """
  backbone: str
  augmentation: Optional[str]
  init: str
  steps: int
  alpha: Optional[float] = None
  unlabeled: Optional[str] = None
  fraction: float = 1.0
  weight: Optional[float] = None
  batch: Optional[int] = None
  pseudo_batch: Optional[int] = None
  classification_batch: Optional[int] = None
  learning_rate: Optional[float] = None
  randaugment_magnitude: Optional[float] = None


# The fields in which None means "the paper states no number", not "none": never compared.
TRAINING_FIELDS = ('batch', 'pseudo_batch', 'classification_batch', 'learning_rate',
                   'randaugment_magnitude')

# (table, row, column) -> Recipe; (table, row) -> the row's name in the paper.
APPENDIX_H: Dict[Tuple[str, str, str], Recipe] = {}
ROW_NAMES: Dict[Tuple[str, str], str] = {}
COLUMN_NAMES = {**{a: f'Augment-S{a[1]}' for a in AUGS}, **{f: f'{f[1:]}%' for f in _FRACTIONS},
                'ap': 'COCO AP', 'val': 'val', 'supervised': 'Sup. Training',
                'self_training': 'w/ Self-training', 'joint': 'w/ Joint Training',
                'joint_self_training': 'w/ Self-training w/ Joint Training'}
_FRACTION_OF = {'f20': 0.2, 'f50': 0.5, 'f100': 1.0}
_B7, _L2, _R50, _R101 = 'efficientnet-b7', 'efficientnet-l2', 'resnet-50', 'resnet-101'


def _h(table, row, name, columns, printed, backbone, init, augmentation=None, unlabeled=None,
       fraction=1.0, batch=256, pseudo_batch=256, classification_batch=0, learning_rate=0.32,
       randaugment_magnitude=10.0):
  """One row of an Appendix H block: `printed` holds (steps,) or (steps, alpha) or
  (steps, alpha, weight) per column; an Augment-Sk or labeled-fraction column sets those.

  The defaults are Section 3.2's detection recipe: batch 256, learning rate 0.32, and for
  self-training "256 from COCO and 256 from pseudo dataset" with "the other training
  hyper-parameters ... the same as those in supervised training"; Section 3.1: "For
  RandAugment we use a magnitude of 10 for all models". A row without pseudo labels has no
  pseudo half, one without Augment-S4 no RandAugment."""
  ROW_NAMES[(table, row)] = name
  for column, values in zip(columns, printed):
    aug = column if column in AUGS else augmentation
    APPENDIX_H[(table, row, column)] = Recipe(
        backbone, aug, init, *values[:2],
        unlabeled=unlabeled, fraction=_FRACTION_OF.get(column, fraction),
        weight=values[2] if len(values) > 2 else None, batch=batch,
        pseudo_batch=pseudo_batch if unlabeled else 0,
        classification_batch=classification_batch, learning_rate=learning_rate,
        randaugment_magnitude=randaugment_magnitude if aug == 's4' else None)


_h('table2', 'rand', 'Rand Init', AUGS,
   [(45_000,), (90_000,), (90_000,), (120_000,)], _B7, 'rand')
_h('table2', 'imagenet', 'ImageNet Init', AUGS,
   [(22_500,), (45_000,), (90_000,), (90_000,)], _B7, 'imagenet')
_h('table2', 'rand_st', 'Rand Init w/ ImageNet Self-training', AUGS,
   [(45_000, 1.0), (90_000, 1.0), (90_000, 0.5), (90_000, 0.5)], _B7, 'rand',
   unlabeled='imagenet')
# Table 3: all Augment-S4.
_h('table3', 'rand', 'Rand Init', _FRACTIONS,
   [(45_000,), (90_000,), (120_000,)], _B7, 'rand', 's4')
_h('table3', 'rand_st', 'Rand Init w/ ImageNet Self-training', _FRACTIONS,
   [(90_000, 3.0), (90_000, 1.0), (90_000, 0.5)], _B7, 'rand', 's4', 'imagenet')
_h('table3', 'imagenet', 'ImageNet Init', _FRACTIONS,
   [(5_625,), (22_500,), (90_000,)], _B7, 'imagenet', 's4')
_h('table3', 'imagenet_st', 'ImageNet Init w/ ImageNet Self-training', _FRACTIONS,
   [(90_000, 3.0), (45_000, 1.0), (90_000, 1.0)], _B7, 'imagenet', 's4', 'imagenet')
_h('table3', 'imagenet_plus', 'ImageNet++ Init', _FRACTIONS,
   [(5_625,), (11_250,), (45_000,)], _B7, 'imagenet_plus', 's4')
_h('table3', 'imagenet_plus_st', 'ImageNet++ Init w/ ImageNet Self-training', _FRACTIONS,
   [(90_000, 3.0), (45_000, 1.0), (45_000, 0.25)], _B7, 'imagenet_plus', 's4', 'imagenet')
# Table 4: ResNet-50, full COCO, Augment-S4. The paper states no batch size or learning rate
# for ResNet-50: Section 3.2 gives them for the EfficientNet-B7 detector, and only Table 12's
# caption carries that protocol over to a ResNet (ResNet-101). RandAugment: "10 for all models".
_R50_UNSTATED = dict(batch=None, pseudo_batch=None, learning_rate=None)
_h('table4', 'rand', 'Rand Init', ('ap',), [(200_000,)], _R50, 'rand', 's4', **_R50_UNSTATED)
_h('table4', 'imagenet', 'ImageNet Init (Supervised)', ('ap',), [(160_000,)], _R50,
   'imagenet', 's4', **_R50_UNSTATED)
_h('table4', 'simclr', 'ImageNet Init (SimCLR)', ('ap',), [(160_000,)], _R50, 'simclr', 's4',
   **_R50_UNSTATED)
_h('table4', 'rand_st', 'Rand Init w/ Self-training', ('ap',), [(120_000, 0.25)], _R50,
   'rand', 's4', 'imagenet', **_R50_UNSTATED)
# Table 5: SpineNet on Open Images; the baselines keep SpineNet's own augmentation (†), the
# self-training runs use Augment-S3 (the caption). Section 3.2: "When we use SpineNet ... we
# reduce the batch size from 256 to 128 and scale the learning rate by half": half of
# SpineNet's own, a number the paper does not print (learning rate None). Nor does it give a
# SpineNet student's pseudo half: its "256 from pseudo" goes with the 256-image recipe.
_SPINENET = dict(batch=128, pseudo_batch=None, learning_rate=None)
_h('table5', 'spinenet143', 'SpineNet-143† (1280)', ('val',), [(472_000,)], 'spinenet-143',
   'rand', **_SPINENET)
_h('table5', 'spinenet143_st', 'SpineNet-143 (1280) w/ Self-training', ('val',),
   [(472_000, 0.25)], 'spinenet-143', 'rand', 's3', 'open_images', **_SPINENET)
_h('table5', 'spinenet190', 'SpineNet-190† (1280)', ('val',), [(370_000,)], 'spinenet-190',
   'rand', **_SPINENET)
_h('table5', 'spinenet190_st', 'SpineNet-190 (1280) w/ Self-training', ('val',),
   [(370_000, 0.5)], 'spinenet-190', 'rand', 's3', 'open_images', **_SPINENET)
# Table 6: PASCAL, ImageNet++ Init; 85.2 / 88.7 are Augment-S4 (Tables 11 and 14 give the
# same numbers for Augment-S4). The block prints alpha (1.0) for the supervised rows too,
# which no loss of theirs uses. Section 3.2: learning rate 0.08 (B7) / 0.2 (L2), batch 256;
# self-training batch 512 (B7) / 256 (L2), "Half of the batch ... supervised data and the other
# half pseudo data".
_h('table6', 'b7', 'Eff-B7', ('val',), [(40_000,)], _B7, 'imagenet_plus', 's4',
   learning_rate=0.08)
_h('table6', 'b7_st', 'Eff-B7 w/ Self-training', ('val',), [(40_000, 1.0)], _B7,
   'imagenet_plus', 's4', 'pascal_aug', learning_rate=0.08)
_h('table6', 'l2', 'Eff-L2', ('val',), [(20_000,)], _L2, 'imagenet_plus', 's4',
   learning_rate=0.2)
_h('table6', 'l2_st', 'Eff-L2 w/ Self-training', ('val',), [(20_000, 1.0)], _L2,
   'imagenet_plus', 's4', 'pascal_aug', batch=128, pseudo_batch=128, learning_rate=0.2)
# Table 7: 20% of COCO, Augment-S4; "(weight)" is the ImageNet classification loss's:
# 0.5 with joint training alone, 0.2 with self-training. Joint training uses "the exact
# setup as self-training" (Section 5): 256 ImageNet images in the pseudo half's place; how
# many it adds beside a student's two halves the paper does not say (None).
_CLASSIFICATION_BATCH = {'joint': 256, 'joint_self_training': None}
for _init, _name, _printed in (
    ('rand', 'Rand Init', [(45_000,), (90_000, 3.0), (45_000, None, 0.5), (90_000, 2.0, 0.2)]),
    ('imagenet', 'ImageNet Init',
     [(5_625,), (90_000, 3.0), (90_000, None, 0.5), (90_000, 2.0, 0.2)])):
  for _column, _values in zip(_TABLE7, _printed):
    _h('table7', _init, _name, (_column,), [_values], _B7, _init, 's4',
       'imagenet' if 'self_training' in _column else None, fraction=0.2,
       classification_batch=_CLASSIFICATION_BATCH.get(_column, 0))
# Table 12 (Appendix E): ResNet-101, Rand Init, full COCO; "the same training protocol as
# EfficientNet", except that "the RandAugment magntiude was increased from 10 to 15".
_h('table12', 'rand', 'Supervised', AUGS,
   [(45_000,), (90_000,), (90_000,), (180_000,)], _R101, 'rand', randaugment_magnitude=15.0)
_h('table12', 'rand_st', 'Self-training w/ ImageNet', AUGS,
   [(90_000, 1.0), (90_000, 1.0), (90_000, 0.5), (180_000, 0.25)], _R101, 'rand',
   unlabeled='imagenet', randaugment_magnitude=15.0)
_h('table12', 'rand_st_oid', 'Self-training w/ OID', AUGS,
   [(90_000, 2.0), (90_000, 2.0), (90_000, 0.5), (180_000, 0.5)], _R101, 'rand',
   unlabeled='open_images', randaugment_magnitude=15.0)
# Table 13 (Appendix F): EfficientNet-B7, Rand Init, full COCO.
_h('table13', 'rand', 'Supervised', AUGS,
   [(45_000,), (90_000,), (90_000,), (120_000,)], _B7, 'rand')
_h('table13', 'rand_st', 'Self-training w/ ImageNet', AUGS,
   [(45_000, 1.0), (90_000, 1.0), (90_000, 0.5), (90_000, 0.5)], _B7, 'rand',
   unlabeled='imagenet')
_h('table13', 'rand_st_oid', 'Self-training w/ OID', AUGS,
   [(90_000, 3.0), (90_000, 2.0), (90_000, 0.5), (120_000, 0.5)], _B7, 'rand',
   unlabeled='open_images')
