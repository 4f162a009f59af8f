"""The study's grid: its cells (one number of one paper table each), their teacher groups,
the step sizes, and the cell selection of `--cells`."""

import dataclasses
import fnmatch
import os
from typing import Any, List, Optional, Sequence, Tuple

from projects.self_training.common import trainer
from projects.self_training.study import findings
from projects.self_training.study import paper_numbers

CELLS_DIR = 'cells'
LONGER_DIR = 'longer'  # a convergence test's teacher and its stages, one level per test
STUDY_FILE = 'study.json'
# The gin macro each pre-trained init reads its checkpoint from (gin/init/*.gin).
INIT_MACROS = {'imagenet': 'IMAGENET_CHECKPOINT', 'imagenet_plus': 'IMAGENET_PLUS_CHECKPOINT',
               'simclr': 'SIMCLR_CHECKPOINT'}
AUG_NAMES = {a: f'Augment-S{a[1]}' for a in paper_numbers.AUGS}


@dataclasses.dataclass(frozen=True)
class Size:
  """Steps per stage. `teacher_steps` None: the registered recipe's budget times
  `teacher_budget`, stopped by the plateau rule (with `scale_by_augmentation`, also times
  Appendix H's ratio of the Rand Init steps at the group's augmentation and labeled fraction
  to those at Augment-S1 on every label: `teacher_budget_factor`).
  `finetune_steps` None: the main job's protocol for control and student
  (`pipelines/detection.Settings`). `longer_factor`: a teacher its budget cut off is trained
  this many times longer, the convergence test of `findings.teacher_reasons` (None: such a
  teacher is invalid)."""
  teacher_steps: Optional[int]
  finetune_steps: Optional[int]
  pretrain_steps: Optional[int]
  override: str = ''             # extra params override for every detection stage
  pretrain_override: str = ''    # and for pre-training
  scale_by_augmentation: bool = False
  longer_factor: Optional[float] = None
  teacher_budget: float = 1.0


def round_dir(group_dir: str, rounds: int) -> str:
  """Where the teacher of a convergence round (0: the budget's) and its stages live."""
  return os.path.join(group_dir, *[LONGER_DIR] * rounds)


def teacher_budget_factor(aug: str, fraction: float = 1.0) -> float:
  """Appendix H's Rand Init B7 steps at `aug` and `fraction` of the labels over those at
  Augment-S1 on all of them: stronger augmentation needs longer to plateau (Table 2, S4:
  120k / 45k), fewer labels less long (Table 3 at S4, 20%: 45k / 120k). The paper gives
  fractions at S4 only; at another augmentation a fraction scales the steps as it does
  there."""
  table2 = lambda a: paper_numbers.APPENDIX_H[('table2', 'rand', a)].steps
  column = f'f{round(100 * fraction)}'
  table3 = paper_numbers.APPENDIX_H.get(('table3', 'rand', column))
  if table3 is None:
    raise trainer.ConfigError(
        f'Appendix H gives no steps for {100 * fraction:g}% of the labels (it has 20%, 50% '
        f'and 100%): the study cannot scale that teacher\'s budget')
  by_fraction = table3.steps / paper_numbers.APPENDIX_H[('table3', 'rand', 'f100')].steps
  return table2(aug) / table2('s1') * by_fraction


SIZES = {
    # Tests: a few steps on 64 px scenes, just enough to exercise every stage.
    'tiny': Size(6, 4, 4,
                 override='task.model.input_size=[64,64,3],task.train_data.global_batch_size=4,'
                          'task.validation_data.global_batch_size=4,trainer.steps_per_loop=2,'
                          'trainer.summary_interval=2',
                 pretrain_override='task.train_data.global_batch_size=8,'
                                   'task.validation_data.global_batch_size=8,'
                                   'trainer.steps_per_loop=2,trainer.summary_interval=2'),
    # A sixth of the main job's teacher steps: quick, but its teachers never plateau, so
    # every cell is invalid. Pre-training (None) is the registered recipe at every size but
    # `tiny`, shared with `./run.sh pretrain`.
    'small': Size(500, 150, None),
    'medium': Size(1500, 400, None),
    # The main job's recipe: teachers to their held-out plateau, 800-step students.
    'full': Size(None, 800, None, longer_factor=findings.LONGER_FACTOR),
    # The main job's regime (the default): teachers to their held-out plateau within 1.5x
    # the registered budget scaled by augmentation and labeled fraction (9000 steps at
    # Augment-S1, 8/3 of it at S4, as much as S1 at S4 on 20%), control and student by the
    # main job's protocol (half the teacher's budget). At the then registered 8000 steps
    # (the previous head) one Augment-S1 Rand Init teacher in 3 was cut off at its best, and
    # trained 12000 steps it gained 4.6 held-out AP (docs/study.md). The plateau must last a
    # quarter of the schedule, so teachers train nearly all of it, and one still at its best
    # at the end takes the convergence test.
    'main': Size(None, None, None, scale_by_augmentation=True,
                 longer_factor=findings.LONGER_FACTOR, teacher_budget=1.5),
}
DEFAULT_SIZE = 'main'


def fixed_schedule(steps: int, max_warmup: int) -> str:
  """Params override: `steps` cosine steps, one held-out eval at the end, a warm-up of a
  tenth of the steps (at most `max_warmup`, the registered recipe's)."""
  return (f'trainer.train_steps={steps},trainer.validation_interval={steps},'
          f'trainer.optimizer_config.learning_rate.cosine.decay_steps={steps},'
          f'trainer.optimizer_config.warmup.linear.warmup_steps='
          f'{max(1, min(max_warmup, steps // 10))}')


@dataclasses.dataclass(frozen=True)
class Group:
  """One teacher: what it starts from, how its data is augmented, how much it sees."""
  init: str = 'rand'
  aug: str = 's4'
  fraction: float = 1.0
  joint: bool = False

  @property
  def name(self) -> str:
    return (f'{self.init}_{self.aug}_f{round(100 * self.fraction)}' +
            ('_joint' if self.joint else ''))


@dataclasses.dataclass(frozen=True)
class Cell:
  """One number of one table."""
  table: str
  row: str
  column: str
  group: Group
  kind: str = 'supervised'       # supervised | self_training | random_student
  alpha: Optional[float] = None  # None: the student experiment's own
  normalize: bool = True
  default: bool = True           # in the default grid (the rest run with --cells)
  # Seeds it runs without `--seeds`: enough for the findings it enters to be judged (2;
  # 3 for Table 2's headline rows, Rand Init with and without self-training).
  seeds: int = findings.MIN_SEEDS

  @property
  def id(self) -> str:
    return f'{self.table}.{self.row}.{self.column}'

  @property
  def run_key(self) -> Tuple[Any, ...]:
    """Cells with the same key are the same run (e.g. Table 4's Rand Init is Table 2's)."""
    return (self.group, self.kind, self.alpha, self.normalize)

  @property
  def paper(self) -> Optional[float]:
    return paper_numbers.paper(self.table, self.row, self.column)


# Rows of each table: (row id, label, init, kind). The baseline row (for the parentheses)
# is the Rand Init supervised cell of the same column.
TABLES = {
    'table2': ('Table 2: augmentation strength x initialization (100% labeled)',
               [('rand', 'Rand Init'), ('imagenet', 'ImageNet Init'),
                ('rand_st', 'Rand Init w/ Self-training')],
               [(a, AUG_NAMES[a]) for a in paper_numbers.AUGS]),
    'table3': ('Table 3: labeled fraction x initialization (Augment-S4)',
               [('rand', 'Rand Init'), ('rand_st', 'Rand Init w/ Self-training'),
                ('imagenet', 'ImageNet Init'), ('imagenet_st', 'ImageNet Init w/ Self-training'),
                ('imagenet_plus', 'ImageNet++ Init'),
                ('imagenet_plus_st', 'ImageNet++ Init w/ Self-training')],
               [('f20', '20% labeled'), ('f50', '50% labeled'), ('f100', '100% labeled')]),
    'table4': ('Table 4: self-supervised (SimCLR) vs supervised pre-training vs self-training '
               '(Augment-S4, 100% labeled)',
               [('rand', 'Rand Init'), ('imagenet', 'ImageNet Init (Supervised)'),
                ('simclr', 'ImageNet Init (SimCLR)'), ('rand_st', 'Rand Init w/ Self-training')],
               [('ap', 'COCO AP')]),
    'table7': ('Table 7: pre-training vs self-training vs joint training (20% labeled, '
               'Augment-S4)',
               [('rand', 'Rand Init'), ('imagenet', 'ImageNet Init')],
               [('supervised', 'Sup. Training'), ('self_training', 'w/ Self-training'),
                ('joint', 'w/ Joint Training'),
                ('joint_self_training', 'w/ Self-training w/ Joint Training')]),
    'appendix_b': ('Appendix B (Figure 2): loss normalization vs the standard loss across '
                   'alpha (Rand Init, Augment-S1, 100% labeled; the paper\'s column is '
                   'RetinaNet ResNet-101, its gains against Table 12\'s 37.0)',
                   [('loss_norm', 'Loss Norm'), ('standard', 'Standard loss L_h + a L_p')],
                   [('a0.25', 'alpha 0.25'), ('a1', 'alpha 1'), ('a3', 'alpha 3')]),
    'table10': ('Table 10: the student initialized from the teacher vs from random weights '
                '(Rand Init, 100% labeled)',
                [('rand', 'Rand Init (supervised)'),
                 ('student_from_teacher', 'w/ Self-training, student from the teacher'),
                 ('student_from_random', 'w/ Self-training, student from random')],
                [(a, AUG_NAMES[a]) for a in paper_numbers.AUGS]),
}
# The default grid is the cells that decide the paper's findings (`findings.FINDINGS`) and
# the ones that share their runs: Table 2 at Augment-S1 and S4, Table 3 at 20% and 100%
# (Rand and ImageNet Init, Rand Init with self-training), Table 4 but SimCLR, Table 7's
# joint row against its supervised one, and Appendix B at alpha 3. It leaves out, for
# time: Augment-S2/S3, the 50% fraction, ImageNet++ and SimCLR Init, ImageNet Init with
# self-training, Table 7's other cells, alpha 0.25 and 1, and Table 10 (a student from
# random weights trains teacher + student steps). `--cells all` runs them.
DEFAULT_AUGS = ('s1', 's4')
HEADLINE_SEEDS = findings.HEADLINE_SEEDS


def grid() -> List[Cell]:
  """Every cell the study can run, in report order."""
  cells = []
  for aug in paper_numbers.AUGS:
    default = aug in DEFAULT_AUGS
    rand, imagenet = Group('rand', aug), Group('imagenet', aug)
    cells += [Cell('table2', 'rand', aug, rand, default=default, seeds=HEADLINE_SEEDS),
              Cell('table2', 'imagenet', aug, imagenet, default=default),
              Cell('table2', 'rand_st', aug, rand, 'self_training', default=default,
                   seeds=HEADLINE_SEEDS),
              Cell('table10', 'rand', aug, rand, default=False),
              Cell('table10', 'student_from_teacher', aug, rand, 'self_training', default=False),
              Cell('table10', 'student_from_random', aug, rand, 'random_student',
                   default=False)]
  for column, fraction in (('f20', 0.2), ('f50', 0.5), ('f100', 1.0)):
    for init in ('rand', 'imagenet', 'imagenet_plus'):
      group = Group(init, 's4', fraction)
      default = init != 'imagenet_plus' and column != 'f50'
      cells += [Cell('table3', init, column, group, default=default),
                Cell('table3', f'{init}_st', column, group, 'self_training',
                     default=default and init == 'rand')]
  cells += [Cell('table4', 'rand', 'ap', Group('rand', 's4')),
            Cell('table4', 'imagenet', 'ap', Group('imagenet', 's4')),
            # SimCLR pre-training is 45 minutes here: outside the default grid.
            Cell('table4', 'simclr', 'ap', Group('simclr', 's4'), default=False),
            Cell('table4', 'rand_st', 'ap', Group('rand', 's4'), 'self_training')]
  for init in ('rand', 'imagenet'):
    group = Group(init, 's4', 0.2)
    joint = dataclasses.replace(group, joint=True)
    cells += [Cell('table7', init, 'supervised', group, default=init == 'rand'),
              Cell('table7', init, 'self_training', group, 'self_training', default=False),
              Cell('table7', init, 'joint', joint, default=init == 'rand'),
              # The joint teacher's pseudo labels; the student trains jointly too.
              Cell('table7', init, 'joint_self_training', joint, 'self_training',
                   default=False)]
  for column, alpha in (('a0.25', 0.25), ('a1', 1.0), ('a3', 3.0)):
    for row, normalize in (('loss_norm', True), ('standard', False)):
      cells.append(Cell('appendix_b', row, column, Group('rand', 's1'), 'self_training',
                        alpha=alpha, normalize=normalize, default=alpha == 3.0))
  # Table order (stable within a table): an interrupted default run has whole tables first.
  return sorted(cells, key=lambda c: list(TABLES).index(c.table))


def seed_plan(cells: Sequence[Cell], seeds: Optional[Sequence[int]] = None
              ) -> List[Tuple[int, List[Cell]]]:
  """(seed, its cells) in seed order. `seeds` given: every cell at each of them. Not given:
  each cell at seeds 0 .. `Cell.seeds` - 1, where a cell that shares its run with another
  selected cell (`run_key`) runs as often as that one: it costs nothing more."""
  if seeds:
    return [(seed, list(cells)) for seed in seeds]
  count = {}
  for c in cells:
    count[c.run_key] = max(count.get(c.run_key, 0), c.seeds)
  most = max((count[c.run_key] for c in cells), default=0)
  return [(seed, [c for c in cells if seed < count[c.run_key]]) for seed in range(most)]


def select(cells: Sequence[Cell], patterns: Sequence[str]) -> List[Cell]:
  """`default` (the default grid), `all`, or cell-id globs; an unmatched pattern is an error."""
  if not patterns:
    patterns = ['default']
  if 'all' in patterns:
    return list(cells)
  chosen = []
  for pattern in patterns:
    if pattern == 'default':
      matched = [c for c in cells if c.default]
    else:
      matched = [c for c in cells if fnmatch.fnmatchcase(c.id, pattern)]
    if not matched:
      raise trainer.ConfigError(f'--cells {pattern!r} matches no cell; e.g. table2.rand.s1, '
                                f'table3.*, appendix_b.*, all (tables: {", ".join(TABLES)})')
    chosen += [c for c in matched if c not in chosen]
  return chosen
