"""The pre-training vs self-training study: the paper's control tables at embedded scale.

`./run.sh study` trains every cell of Tables 2, 3, 4, 7 and 10 and Appendix B (Figure 2)
on the embedded data and writes `report.md` (our number, its gain or loss against the Rand
Init supervised cell of the same column, and the paper's) with Figure-1 style plots.

What a cell is:
  group         one teacher: an initialization (gin/init) x an augmentation (gin/augment) x
                a labeled fraction (nested subsets of `train`), optionally joint-trained
                with `iconic` classification (Table 7). Every group trains the same number
                of steps from the same seed: one budget and seed policy for every cell.
  supervised    the group's teacher trained further on human labels alone, as many steps
                as a student (the same-compute control of the main job)
  self_training the student: from the teacher, half human and half pseudo-labeled batches,
                the pseudo labels the teacher's on `iconic` (ImageNet's role: the paper's
                tables self-train on the pre-training data, "ImageNet Self-training")
  random_student  Table 10: the student from random weights, trained teacher + student steps
Cells that need the same runs share them (a teacher and its pseudo labels serve every cell
of its group). Each cell writes `cells/<id>.json` last; a re-run skips finished cells, and a
killed run resumes inside a cell from the pipeline's own checkpoints and completion files.

`--size` trades fidelity for time (steps per stage; the default grid is sized for 2 hours
on 2 CPU cores), `--cells` selects cells by id glob ('table2.*', 'appendix_b.*') or `all`.
"""

import dataclasses
import fnmatch
import glob
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags

from projects.self_training.common import cli
from projects.self_training.common import file_io
from projects.self_training.common import paths
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.study import paper_numbers

CELLS_DIR = 'cells'
REPORT = 'report.md'
INIT_NAMES = {'rand': 'Rand Init', 'imagenet': 'ImageNet Init', 'imagenet_plus': 'ImageNet++ Init',
              'simclr': 'SimCLR Init'}
# The gin macro each pre-trained init reads its checkpoint from (gin/init/*.gin).
INIT_MACROS = {'imagenet': 'IMAGENET_CHECKPOINT', 'imagenet_plus': 'IMAGENET_PLUS_CHECKPOINT',
               'simclr': 'SIMCLR_CHECKPOINT'}
AUG_NAMES = {a: f'Augment-S{a[1]}' for a in paper_numbers.AUGS}


@dataclasses.dataclass(frozen=True)
class Size:
  """Steps per stage. `teacher_steps` None: the registered recipe (to its plateau)."""
  teacher_steps: Optional[int]
  finetune_steps: int
  pretrain_steps: Optional[int]
  override: str = ''             # extra params override for every detection stage
  pretrain_override: str = ''    # and for pre-training


SIZES = {
    # Tests: a few steps on 64 px scenes, just enough to exercise every stage.
    'tiny': Size(6, 4, 4,
                 override='task.model.input_size=[64,64,3],task.train_data.global_batch_size=4,'
                          'task.validation_data.global_batch_size=4,trainer.steps_per_loop=2,'
                          'trainer.summary_interval=2',
                 pretrain_override='task.train_data.global_batch_size=8,'
                                   'task.validation_data.global_batch_size=8,'
                                   'trainer.steps_per_loop=2,trainer.summary_interval=2'),
    # The default grid, for 2 hours on 2 CPU cores: a sixth of the main job's teacher steps.
    # Pre-training (None) is the registered recipe, shared with `./run.sh pretrain`.
    'small': Size(500, 150, None),
    'medium': Size(1500, 400, None),
    # The main job's recipe: teachers to their held-out plateau, 800-step students.
    'full': Size(None, 800, None),
}


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
# The default grid (2 hours on 2 cores) leaves out, for time: Augment-S2/S3, the 50%
# fraction, ImageNet++ (3x ImageNet's pre-training) and SimCLR Init, alpha 0.25 and 1, and
# Table 10 beyond Augment-S1. `--cells all` runs them.
DEFAULT_AUGS = ('s1', 's4')
STUDY_FILE = 'study.json'


def grid() -> List[Cell]:
  """Every cell the study can run, in report order."""
  cells = []
  for aug in paper_numbers.AUGS:
    default = aug in DEFAULT_AUGS
    rand, imagenet = Group('rand', aug), Group('imagenet', aug)
    cells += [Cell('table2', 'rand', aug, rand, default=default),
              Cell('table2', 'imagenet', aug, imagenet, default=default),
              Cell('table2', 'rand_st', aug, rand, 'self_training', default=default),
              Cell('table10', 'rand', aug, rand, default=aug == 's1'),
              Cell('table10', 'student_from_teacher', aug, rand, 'self_training',
                   default=aug == 's1'),
              Cell('table10', 'student_from_random', aug, rand, 'random_student',
                   default=aug == 's1')]
  for column, fraction in (('f20', 0.2), ('f50', 0.5), ('f100', 1.0)):
    for init in ('rand', 'imagenet', 'imagenet_plus'):
      group = Group(init, 's4', fraction)
      default = init != 'imagenet_plus' and column != 'f50'
      cells += [Cell('table3', init, column, group, default=default),
                Cell('table3', f'{init}_st', column, group, 'self_training', default=default)]
  cells += [Cell('table4', 'rand', 'ap', Group('rand', 's4')),
            Cell('table4', 'imagenet', 'ap', Group('imagenet', 's4')),
            # SimCLR pre-training is 45 minutes here: outside the default grid.
            Cell('table4', 'simclr', 'ap', Group('simclr', 's4'), default=False),
            Cell('table4', 'rand_st', 'ap', Group('rand', 's4'), 'self_training')]
  for init in ('rand', 'imagenet'):
    group = Group(init, 's4', 0.2)
    joint = dataclasses.replace(group, joint=True)
    cells += [Cell('table7', init, 'supervised', group),
              Cell('table7', init, 'self_training', group, 'self_training'),
              Cell('table7', init, 'joint', joint),
              # The joint teacher's pseudo labels; the student trains jointly too.
              Cell('table7', init, 'joint_self_training', joint, 'self_training')]
  for column, alpha in (('a0.25', 0.25), ('a1', 1.0), ('a3', 3.0)):
    for row, normalize in (('loss_norm', True), ('standard', False)):
      cells.append(Cell('appendix_b', row, column, Group('rand', 's1'), 'self_training',
                        alpha=alpha, normalize=normalize, default=alpha == 3.0))
  # Table order (stable within a table): an interrupted default run has whole tables first.
  return sorted(cells, key=lambda c: list(TABLES).index(c.table))


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


@dataclasses.dataclass
class Study:
  """Where the study writes, what it reads, and how big its runs are."""
  study_dir: str
  data_dir: str
  size: Size
  size_name: str
  seed: int = 0
  progress: Callable[[str], None] = print
  # Where registered-recipe pre-training lives (default: the study's parent, i.e. `runs/`,
  # where `./run.sh pretrain` and gin/init look); step-scaled pre-training stays in the study.
  pretrain_dir: Optional[str] = None

  def pretrain_root(self) -> str:
    """Where `pretrain/KIND` lives: the study's own when its size scales pre-training."""
    if self.size.pretrain_steps is None:
      return self.pretrain_dir or os.path.dirname(os.path.abspath(self.study_dir))
    return self.study_dir

  def cell_path(self, cell: Cell) -> str:
    return os.path.join(self.study_dir, CELLS_DIR, f'{cell.id}.json')

  # -- inputs ----------------------------------------------------------------------------

  def train_input(self, fraction: float) -> str:
    """The labeled split, or its nested subset (made once, under the study dir)."""
    full = emoji_scenes.split_pattern(self.data_dir, 'train')
    if fraction >= 1.0:
      return full
    from projects.self_training.data import convert  # pylint: disable=g-import-not-at-top
    prefix = os.path.join(self.study_dir, 'data', f'train_f{round(100 * fraction)}')
    if not trainer.read_json(f'{prefix}.summary.json'):
      summary = convert.subset_split(full, fraction, prefix)
      self.progress(f'data: {summary["num_written"]} of {summary["num_input"]} labeled scenes '
                    f'({fraction:.0%}, nested) -> {summary["output_pattern"]}')
    return f'{prefix}-*.tfrecord'

  def pretrained(self, init: str) -> Optional[str]:
    """The checkpoint of a pre-trained init (pre-trained once per study, at its size)."""
    if init == 'rand':
      return None
    from projects.self_training.pipelines import pretrain  # pylint: disable=g-import-not-at-top
    override = self.size.pretrain_override
    if self.size.pretrain_steps is not None:
      from projects.self_training.configs import pretrain as pretrain_cfg  # pylint: disable=g-import-not-at-top
      steps = self.size.pretrain_steps
      if init == 'imagenet_plus':  # the registered recipes' ratio
        steps *= pretrain_cfg.PLUS_STEPS_FACTOR
      override = pipeline.join_overrides(fixed_schedule(steps, max_warmup=100), override)
    trainer.quiet_logs()  # importing the classification stack turns TensorFlow's INFO back on
    result = pretrain.run(init, self.pretrain_root(), self.data_dir, params_override=override,
                          progress=self.progress)
    return result['best_checkpoint']

  def settings(self, group: Group, **replace) -> pipeline.Settings:
    """The pipeline settings of a group's teacher and its fine-tuning stages."""
    gin_params = []
    checkpoint = self.pretrained(group.init)
    if checkpoint:
      gin_params.append(f"{INIT_MACROS[group.init]} = '{checkpoint}'")
    schedule = ''
    size = self.size
    if size.teacher_steps is not None:
      schedule = fixed_schedule(size.teacher_steps, max_warmup=150)
    joint = '_joint' if group.joint else ''
    s = pipeline.Settings(
        data_dir=self.data_dir, runs_dir=os.path.join(self.study_dir, 'groups', group.name),
        teacher_experiment=f'emoji_retinanet{joint}',
        student_experiment=f'emoji_retinanet{joint}_student',
        gin_files=[os.path.join(paths.GIN_DIR, 'augment', f'{group.aug}.gin'),
                   os.path.join(paths.GIN_DIR, 'init', f'{group.init}.gin')],
        gin_params=gin_params,
        teacher_override=pipeline.join_overrides(schedule, size.override),
        student_override=size.override,
        plateau_patience=3 if size.teacher_steps is None else 10 ** 6,
        student_steps=size.finetune_steps,
        student_warmup_steps=max(1, min(50, size.finetune_steps // 10)),
        eval_interval=size.finetune_steps if size.teacher_steps is not None else 200,
        pseudo_splits=(emoji_scenes.ICONIC_SPLIT,),
        # One view, as the study's cells were measured; the main job's test-time
        # augmentation is for the issue that brings the study into its regime.
        tta_sizes=(), tta_flip=False,
        seed=self.seed,
        train_input=self.train_input(group.fraction))
    return dataclasses.replace(s, **replace)

  # -- runs ------------------------------------------------------------------------------

  def run_cell(self, cell: Cell) -> Dict[str, Any]:
    """Trains what the cell needs (or finds it done) and returns its stage summary."""
    s = self.settings(cell.group)
    teacher = pipeline.teacher(s, self.progress)
    if cell.kind == 'supervised':
      return pipeline.finetune(s, 'control', s.teacher_experiment, teacher['checkpoint'],
                               progress=self.progress)
    if cell.kind == 'random_student':
      # Table 10: as many steps as teacher + student, at the teacher's learning rate.
      steps = teacher['best_step'] + s.student_steps
      params = pipeline.teacher_params(s)
      lr = params.trainer.optimizer_config.learning_rate.cosine.initial_learning_rate
      warmup = params.trainer.optimizer_config.warmup.linear.warmup_steps
      # The same held-out eval policy as the student from the teacher: once at the end,
      # or every `eval_interval` steps (keeping the best) at full size.
      every = steps if self.size.teacher_steps is not None else s.eval_interval
      s = dataclasses.replace(s, student_steps=steps, student_learning_rate=lr,
                              student_warmup_steps=warmup, eval_interval=every,
                              finetune_subdir='from_random')
      self._pseudo(s, teacher)
      return pipeline.student(s, None, self.progress)
    if cell.alpha is not None:
      norm = 'norm' if cell.normalize else 'standard'
      s = dataclasses.replace(
          s, finetune_subdir=f'alpha{cell.alpha:g}_{norm}',
          student_override=pipeline.join_overrides(
              s.student_override, f'task.loss_normalization.alpha={cell.alpha},'
              f'task.loss_normalization.normalize={str(cell.normalize).lower()}'))
    self._pseudo(s, teacher)
    return pipeline.student(s, teacher['checkpoint'], self.progress)

  def _pseudo(self, s: pipeline.Settings, teacher: Dict[str, Any]) -> None:
    saved_model = pipeline.export(s, teacher, self.progress)
    pipeline.pseudo_label(s, saved_model, self.progress)

  def steps(self) -> Dict[str, Optional[int]]:
    return {'teacher': self.size.teacher_steps, 'finetune': self.size.finetune_steps,
            'pretrain': self.size.pretrain_steps}

  def identity(self) -> Dict[str, Any]:
    """What every cell of one study directory shares; a re-run must ask for the same."""
    return {'steps': self.steps(),
            'size': self.size_name, 'seed': self.seed,
            'data_dir': os.path.abspath(self.data_dir), 'override': self.size.override,
            'pretrain_root': os.path.abspath(self.pretrain_root())}

  def check_identity(self) -> None:
    """Writes `study.json` on the first run; refuses a run that would mix settings."""
    path = os.path.join(self.study_dir, STUDY_FILE)
    made = trainer.read_json(path)
    wanted = self.identity()
    if made is None:
      trainer.write_json(path, wanted)
      return
    for key, value in wanted.items():
      if made.get(key) != value:
        raise trainer.ConfigError(
            f'{self.study_dir} was made with {key}={made.get(key)!r}, this run asks for '
            f'{value!r}: use another --study_dir')

  def run(self, cells: Sequence[Cell]) -> List[Dict[str, Any]]:
    """Runs the cells (finished ones skipped); returns every selected cell's record."""
    self.check_identity()
    records = []
    by_run: Dict[Tuple[Any, ...], Dict[str, Any]] = {}
    for i, cell in enumerate(cells, 1):
      path = self.cell_path(cell)
      done = trainer.read_json(path)
      if done and (done.get('group') != dataclasses.asdict(cell.group) or
                   done.get('kind') != cell.kind or done.get('alpha') != cell.alpha):
        raise trainer.ConfigError(f'{path} records another run than cell {cell.id}: '
                                  'remove it, or use another --study_dir')
      if done:
        self.progress(f'[{i}/{len(cells)}] {cell.id}: done (AP {100 * done["val"]["AP"]:.1f}), '
                      'skipped')
        records.append(done)
        continue
      self.progress(f'[{i}/{len(cells)}] {cell.id}: {cell.group.name}, {cell.kind}')
      self.pretrained(cell.group.init)  # outside the cell's time: it serves every cell
      start = time.time()
      summary = by_run.get(cell.run_key) or self.run_cell(cell)
      by_run[cell.run_key] = summary
      record = {
          'id': cell.id, 'table': cell.table, 'row': cell.row, 'column': cell.column,
          'group': dataclasses.asdict(cell.group), 'kind': cell.kind, 'alpha': cell.alpha,
          'normalize': cell.normalize, 'size': self.size_name, 'seed': self.seed,
          'steps': self.steps(),
          'val': summary['val'], 'holdout': summary['holdout'], 'best_step': summary['best_step'],
          'experiment': summary.get('experiment'), 'run_dir': os.path.dirname(
              summary['checkpoint'].rstrip('/')) if summary.get('checkpoint') else None,
          'seconds': round(time.time() - start, 1), 'paper_AP': cell.paper,
      }
      trainer.write_json(path, record)
      self.progress(f'[{i}/{len(cells)}] {cell.id}: val AP {100 * record["val"]["AP"]:.1f} '
                    f'({record["seconds"]:.0f} s)')
      records.append(record)
    return records


# ----------------------------------------------------------------------------------------
# Report.

def _fmt(value: Optional[float], base: Optional[float]) -> str:
  if value is None:
    return '—'
  if base is None:
    return f'{value:.1f}'
  return f'({value - base:+.1f}) {value:.1f}'


def load_records(study_dir: str) -> Dict[str, Dict[str, Any]]:
  """Every finished cell of a study directory, by id."""
  import glob  # pylint: disable=g-import-not-at-top
  out = {}
  for path in sorted(glob.glob(os.path.join(study_dir, CELLS_DIR, '*.json'))):
    record = trainer.read_json(path)
    out[record['id']] = record
  return out


def baseline(table: str, column: str, paper: bool = False) -> Tuple[str, str, str]:
  """The (table, row, column) each cell is compared with: the Rand Init supervised cell of
  its column; Table 7's Sup. Training Rand Init; Appendix B's Augment-S1 Rand Init (ours:
  Table 2's cell; the paper's: Table 12's ResNet-101, Figure 2's model)."""
  if table == 'table7':
    return ('table7', 'rand', 'supervised')
  if table == 'appendix_b':
    return ('table12', 'rand', 's1') if paper else ('table2', 'rand', 's1')
  return (table, 'rand', column)


def report_tables(records: Dict[str, Dict[str, Any]]) -> List[str]:
  """Markdown: each table in the paper's layout, ours beside the paper's."""
  lines = []
  for table, (title, rows, columns) in TABLES.items():
    if not any(r['table'] == table for r in records.values()):
      continue
    lines += [f'### {title}', '',
              '| Setup | ' + ' | '.join(f'{label} (ours) | {label} (paper)'
                                         for _, label in columns) + ' |',
              '|---|' + '---|---|' * len(columns)]
    for row, label in rows:
      cells = []
      for column, _ in columns:
        key = (table, row, column)
        base_key = baseline(table, column)
        ours = records.get('.'.join(key))
        base = records.get('.'.join(base_key)) if base_key != key else None
        cells.append(_fmt(100 * ours['val']['AP'] if ours else None,
                          100 * base['val']['AP'] if base else None))
        paper_base = baseline(table, column, paper=True)
        if key in paper_numbers.DIVERGED:
          cells.append('NaN (diverged)')
        else:
          cells.append(_fmt(paper_numbers.paper(*key),
                            paper_numbers.paper(*paper_base) if paper_base != key else None))
      if any(c != '—' for c in cells[::2]):
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    lines.append('')
  return lines


def figure1(records: Dict[str, Dict[str, Any]], path: str) -> Optional[str]:
  """Figure 1's two panels from our supervised cells: AP against augmentation strength and
  against labeled fraction, one line per initialization; the paper's as dashed lines."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = [('table2', list(paper_numbers.AUGS), [AUG_NAMES[a] for a in paper_numbers.AUGS],
             paper_numbers.FIGURE1_AUG, 'augmentation (100% labeled)'),
            ('table3', ['f20', 'f50', 'f100'], ['0.2', '0.5', '1.0'],
             paper_numbers.FIGURE1_FRACTION, 'labeled fraction (Augment-S4)')]
  if not any(r['table'] in ('table2', 'table3') and r['kind'] == 'supervised'
             for r in records.values()):
    return None
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
  colors = {'rand': 'tab:blue', 'imagenet': 'tab:orange', 'imagenet_plus': 'tab:green'}
  for ax, (table, columns, ticks, paper_lines, xlabel) in zip(axes, panels):
    twin = ax.twinx()
    for init, color in colors.items():
      xs, ys = [], []
      for x, column in enumerate(columns):
        r = records.get(f'{table}.{init}.{column}')
        if r:
          xs.append(x)
          ys.append(100 * r['val']['AP'])
      if xs:
        ax.plot(xs, ys, marker='o', color=color, label=f'{INIT_NAMES[init]} (ours)')
        twin.plot(range(len(columns)), paper_lines[init], linestyle='--', color=color,
                  alpha=0.5, label=f'{INIT_NAMES[init]} (paper)')
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(ticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel('ours: val COCO AP (solid)')
    twin.set_ylabel('paper: COCO AP (dashed)')
    ax.grid(alpha=0.3)
    if ax.get_lines():
      ax.legend(loc='upper left', fontsize=7)
    else:
      ax.text(0.5, 0.5, 'no supervised cells yet', ha='center', transform=ax.transAxes)
  fig.suptitle('Figure 1: supervised AP by augmentation and by labeled fraction')
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return path


def pseudo_label_section(study_dir: str) -> List[str]:
  """What each teacher's pseudo labels on `iconic` held, with the collapse warnings of
  `./run.sh report`: a self-training cell is only as good as what its students read.
  (Iconic images hold one object each, of a wider class set than COCO's, so their
  count is not compared with the scenes' human labels.)"""
  from projects.self_training.pseudo_label import report  # pylint: disable=g-import-not-at-top
  summaries = sorted(glob.glob(os.path.join(study_dir, 'groups', '*', 'pseudo', 'summary.json')))
  if not summaries:
    return []
  lines = ['### Pseudo labels the students read (`iconic`, threshold '
           f'{trainer.read_json(summaries[0])["threshold"]})', '',
           '| teachers\' group | images | boxes | boxes / image | images with no box | warning |',
           '|---|---|---|---|---|---|']
  for path in summaries:
    summary = trainer.read_json(path)
    warnings = report.warnings_for(summary, summary['boxes_per_class'], None, {})
    lines.append(
        f'| {path.split(os.sep)[-3]} | {summary["num_images"]} | {summary["num_boxes"]} | '
        f'{summary["boxes_per_image"]:.3f} | '
        f'{100 * summary["num_empty_images"] / max(summary["num_images"], 1):.1f}% | '
        f'{"; ".join(warnings) or "—"} |')
  return lines + ['']


def write_report(study_dir: str) -> str:
  """`report.md` (and `figure1.png`) from every finished cell of the study directory."""
  identity = trainer.read_json(os.path.join(study_dir, STUDY_FILE))
  records = load_records(study_dir)
  if identity is None or not records:
    raise trainer.ConfigError(f'{study_dir} holds no finished study cell '
                              f'(no {STUDY_FILE} or {CELLS_DIR}/*.json): run ./run.sh study')
  plot = figure1(records, os.path.join(study_dir, 'figure1.png'))
  seconds = sum(r['seconds'] for r in records.values())
  pretrain = []
  for kind in INIT_MACROS:
    result = trainer.read_json(os.path.join(identity['pretrain_root'], 'pretrain', kind,
                                            'result.json'))
    if result and any(r['group']['init'] == kind for r in records.values()):
      top1 = (f'{100 * result["top1"]:.1f}% top-1' if 'top1' in result else
              f'{100 * result["contrastive_top1"]:.1f}% contrastive top-1')
      pretrain.append(f'{kind} {top1} / linear probe '
                      f'{100 * result["linear_probe_top1"]:.1f}% ({result["wall_seconds"]:.0f} s)')
  steps = identity['steps']
  lines = [
      '# Pre-training vs self-training: the study', '',
      f'{len(records)} cells at size `{identity["size"]}` '
      f'(teacher {steps["teacher"] or "to its plateau"} '
      f'steps, control and student {steps["finetune"]}), seed {identity["seed"]}, each '
      'trained once: COCO AP on `val` of the embedded emoji scenes. In parentheses: the gain '
      'or loss against the Rand Init supervised cell of the same column (Table 7: its Rand '
      'Init Sup. Training cell; Appendix B: Table 2\'s Rand Init Augment-S1). The paper\'s '
      'numbers (EfficientNet-B7 RetinaNet on COCO; Table 4 ResNet-50, Figure 2 ResNet-101) '
      'have their gains recomputed the same way, so they differ from the paper\'s printed '
      'ones where it compares with another row (Tables 3 and 7: ImageNet rows against ImageNet '
      'Init). Self-training pseudo-labels `iconic` (ImageNet\'s role).', '',
      f'Compute: {seconds:.0f} s of wall time on this machine, summed over cells (a cell '
      'resumed after a kill counts its last run only; pre-training not included).' +
      (f' Pre-training: {"; ".join(pretrain)}.' if pretrain else ''), '']
  lines += report_tables(records)
  lines += pseudo_label_section(study_dir)
  if plot:
    lines += [f'![Figure 1]({os.path.basename(plot)})', '']
  path = os.path.join(study_dir, REPORT)
  file_io.write_text(path, '\n'.join(lines) + '\n')
  return path


# ----------------------------------------------------------------------------------------
# Command line.

FLAGS = flags.FLAGS
flags.DEFINE_string('study_dir', os.path.join(paths.RUNS_DIR, 'study'), 'Where the study writes.')
flags.DEFINE_string('data_dir', None, 'An emoji-scenes set (default: the embedded one).')
flags.DEFINE_enum('size', 'small', list(SIZES), 'Steps per stage (fidelity against time).')
flags.DEFINE_list('cells', ['default'], 'Cell ids or globs (table2.*, table3.rand_st.f20), '
                  '"default" (the default grid) or "all".')
flags.DEFINE_integer('seed', 0, 'Seed of every cell.')
flags.DEFINE_bool('list', False, 'List the cells and exit.')
flags.DEFINE_bool('report_only', False, 'Rewrite the report from finished cells and exit.')


def main(argv):
  cli.no_arguments(argv[1:])
  trainer.quiet_logs()
  with cli.errors_in_one_line(trainer.ConfigError, ValueError):
    cells = select(grid(), FLAGS.cells)
    if FLAGS.list:
      for c in cells:
        print(f'{c.id:40s} {c.group.name:22s} {c.kind}')
      return
    if not FLAGS.report_only:
      data_dir = emoji_scenes.resolve_data_dir(FLAGS.data_dir)
      # The joint experiment reads `iconic` from the embedded data's directory.
      os.environ['EMOJI_SCENES_DIR'] = data_dir
      study = Study(FLAGS.study_dir, data_dir, SIZES[FLAGS.size], FLAGS.size, FLAGS.seed,
                    progress=lambda line: print(line, flush=True))
      start = time.time()
      study.run(cells)
      print(f'study: {len(cells)} cells in {time.time() - start:.0f} s')
    path = write_report(FLAGS.study_dir)
  with open(path) as f:
    print(f.read())
  print(f'Report: {path}')


if __name__ == '__main__':
  app.run(main)
