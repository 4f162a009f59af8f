"""Which cells of the paper each registered full-scale experiment reproduces.

A full-scale recipe is registered through `register`, which records its cells as
(table, row, column) keys of `paper_numbers.APPENDIX_H` and, for a student, its teacher.
`full_scale.py describe --recipes` tabulates them and tests/test_paper_numbers.py checks
every config against Appendix H's recipe of each of its cells.
"""

from typing import Callable, Dict, Optional, Sequence, Tuple

from official.core import exp_factory

Cell = Tuple[str, str, str]

CELLS: Dict[str, Tuple[Cell, ...]] = {}
TEACHERS: Dict[str, str] = {}
# The paper's names of the initializations (gin/init/*.gin), as its tables print them.
INIT_NAMES = {'rand': 'Rand Init', 'imagenet': 'ImageNet Init', 'imagenet_plus': 'ImageNet++ Init',
              'simclr': 'ImageNet Init (SimCLR)'}


def register(name: str, factory: Callable, cells: Sequence[Cell],
             teacher: Optional[str] = None) -> Callable:
  """Registers `factory` as experiment `name` with Model Garden's factory."""
  factory.__name__ = name
  CELLS[name] = tuple(cells)
  if teacher:
    TEACHERS[name] = teacher
  return exp_factory.register_config_factory(name)(factory)
