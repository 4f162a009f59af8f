"""The paper's published numbers for the cells the study reproduces (COCO AP / mIoU, percent).

Source: Zoph et al., "Rethinking Pre-training and Self-training", arXiv:2006.06882v2, Tables
2, 3, 4, 7, 10, 12 and Figure 2 (Appendix B; values read off the vector plot, +-0.01 AP), as
collected in the project's reference notes. These are citations, never measurements: the
study prints them beside its own numbers and never uses them for a choice.
"""

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
