"""The study's runner: trains the cells of the grid (a teacher group's runs shared by its
cells), writes one `cells/<id>.json` per finished cell, and resumes a killed run."""

import dataclasses
import os
import re
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from projects.self_training.common import cli
from projects.self_training.common import paths
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.pseudo_label import schema
from projects.self_training.study import findings
from projects.self_training.study import grid


def _last_checkpoint(model_dir: str) -> int:
  """The step of the newest `ckpt-N` in `model_dir` (0 when there is none yet)."""
  steps = [int(m.group(1)) for m in (re.match(r'ckpt-(\d+)\.index$', f)
                                     for f in os.listdir(model_dir)) if m]
  return max(steps, default=0)


def _time_left(model_dir: str, budget: int) -> str:
  """', about T to its budget' at the median rate of a training stage's last 5 intervals
  (training and held-out eval) in its held-out history; '' before it has two. Its plateau
  rule may stop it sooner; a paused interval does not move the median."""
  state = trainer.read_json(os.path.join(model_dir, trainer.HISTORY_FILE)) or {}
  history = state.get('history') or []
  rates = sorted((b.get('train_seconds', 0.0) + b.get('eval_seconds', 0.0)) /
                 (b['step'] - a['step'])
                 for a, b in list(zip(history, history[1:]))[-5:] if b['step'] > a['step'])
  if not rates:
    return ''
  left = (budget - history[-1]['step']) * rates[len(rates) // 2]
  return f', about {cli.duration(left)} to its budget'


# An interval whose images per second fell below 1 / SLOW_INTERVAL of its stage's median
# was paused, or shared the machine with more than the rest of the stage did: counted, and
# said, in `stage_time`.
SLOW_INTERVAL = 2.0


def stage_time(summary: Dict[str, Any]) -> Dict[str, Any]:
  """A finished training stage's seconds, from its own record: its training intervals,
  their held-out evals and its `val` eval, summed over every session that trained it (a
  run killed and resumed counts each interval once: the one a kill cut short trains again
  and counts then). `untimed_evals`: held-out evals of a history written before they were
  timed (not counted); `slow_intervals` (see SLOW_INTERVAL) and `slow_excess_seconds`, the
  seconds they took beyond what the stage's median rate would have."""
  history = summary.get('history') or []
  rates = sorted(h['images_per_second'] for h in history if h.get('images_per_second'))
  median = rates[len(rates) // 2] if rates else 0.0
  slow = [h for h in history if h.get('images_per_second', median) < median / SLOW_INTERVAL]
  return {
      'seconds': round(sum(h.get('train_seconds', 0.0) + h.get('eval_seconds', 0.0)
                           for h in history) + summary.get('val_eval_seconds', 0.0), 1),
      'untimed_evals': sum('eval_seconds' not in h for h in history),
      'slow_intervals': len(slow),
      'slow_excess_seconds': round(sum(
          h['train_seconds'] * (1 - h['images_per_second'] / median) for h in slow), 1)}


@dataclasses.dataclass
class Study:
  """Where the study writes, what it reads, and how big its runs are."""
  study_dir: str
  data_dir: str
  size: grid.Size
  size_name: str
  seed: int = 0
  progress: Callable[[str], None] = print
  # Where registered-recipe pre-training lives (default: the study's parent, i.e. `runs/`,
  # where `./run.sh pretrain` and gin/init look); step-scaled pre-training stays in the study.
  pretrain_dir: Optional[str] = None
  # How many study processes share this machine (`--jobs`): recorded with each cell's time.
  side_by_side: int = 1

  def pretrain_root(self) -> str:
    """Where `pretrain/KIND` lives: the study's own when its size scales pre-training."""
    if self.size.pretrain_steps is None:
      return self.pretrain_dir or os.path.dirname(os.path.abspath(self.study_dir))
    return self.study_dir

  def cell_path(self, cell: grid.Cell) -> str:
    return os.path.join(self.study_dir, grid.CELLS_DIR, f'{cell.id}.json')

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

  def pretrained(self, init: str,
                 progress: Optional[Callable[[str], None]] = None) -> Optional[str]:
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
      override = pipeline.join_overrides(grid.fixed_schedule(steps, max_warmup=100), override)
    trainer.quiet_logs()  # importing the classification stack turns TensorFlow's INFO back on
    result = pretrain.run(init, self.pretrain_root(), self.data_dir, params_override=override,
                          progress=progress or self.progress)
    return result['best_checkpoint']

  def group_dir(self, group: grid.Group) -> str:
    return os.path.join(self.study_dir, 'groups', group.name)

  def settings(self, group: grid.Group, progress: Optional[Callable[[str], None]] = None,
               **replace) -> pipeline.Settings:
    """The pipeline settings of a group's teacher and its fine-tuning stages."""
    gin_params = []
    checkpoint = self.pretrained(group.init, progress)
    if checkpoint:
      gin_params.append(f"{grid.INIT_MACROS[group.init]} = '{checkpoint}'")
    size = self.size
    joint = '_joint' if group.joint else ''
    s = pipeline.Settings(
        data_dir=self.data_dir, runs_dir=self.group_dir(group),
        teacher_experiment=f'emoji_retinanet{joint}',
        student_experiment=f'emoji_retinanet{joint}_student',
        gin_files=[os.path.join(paths.GIN_DIR, 'augment', f'{group.aug}.gin'),
                   os.path.join(paths.GIN_DIR, 'init', f'{group.init}.gin')],
        gin_params=gin_params,
        teacher_override=pipeline.join_overrides(self.teacher_schedule(group), size.override),
        student_override=size.override,
        plateau_patience=3 if size.teacher_steps is None else None,
        # The main job's pool and pseudo labels (4 views). Not `iconic`: the plateaued main
        # job teacher keeps 0.03 boxes per iconic image (docs/study.md, 'Is `iconic` a pool').
        pseudo_splits=(emoji_scenes.UNLABELED_SPLIT,),
        seed=self.seed,
        train_input=self.train_input(group.fraction))
    if size.finetune_steps is not None:
      s = dataclasses.replace(
          s, student_steps=size.finetune_steps,
          student_warmup_steps=max(1, min(50, size.finetune_steps // 10)),
          eval_interval=size.finetune_steps if size.teacher_steps is not None else 200)
    return dataclasses.replace(s, **replace)

  def teacher_schedule(self, group: grid.Group, longer: float = 1.0) -> str:
    """Params override of the group's teacher schedule, `longer` times its steps: the
    size's fixed steps, or the registered teacher's steps (and cosine decay) times the
    size's `teacher_budget` and `grid.teacher_budget_factor` of the group's augmentation
    and labeled fraction, its evals and warm-up kept."""
    if self.size.teacher_steps is not None:
      return grid.fixed_schedule(self.teacher_steps(group, longer), max_warmup=150)
    if self._teacher_factor(group, longer) == 1.0:
      return ''
    steps = self.teacher_steps(group, longer)
    return (f'trainer.train_steps={steps},'
            f'trainer.optimizer_config.learning_rate.cosine.decay_steps={steps}')

  def _teacher_factor(self, group: grid.Group, longer: float = 1.0) -> float:
    return longer * self.size.teacher_budget * (
        grid.teacher_budget_factor(group.aug, group.fraction)
        if self.size.scale_by_augmentation else 1.0)

  def teacher_steps(self, group: grid.Group, longer: float = 1.0) -> int:
    """The group's teacher budget in steps (`teacher_schedule`'s)."""
    if self.size.teacher_steps is not None:
      return round(self.size.teacher_steps * longer)
    joint = '_joint' if group.joint else ''
    registered = trainer.build_params(f'emoji_retinanet{joint}').trainer.train_steps
    return round(registered * self._teacher_factor(group, longer))

  def status(self, cell: grid.Cell) -> str:
    """Where the cell stands, from its files alone (nothing is trained or pre-trained):
    done (its `val` AP and validity), its teachers' progress and its own stage's, or not
    started."""
    done = trainer.read_json(self.cell_path(cell))
    if done:
      validity = done.get('validity') or {'valid': True, 'reasons': []}
      return (f'done: val AP {100 * done["val"]["AP"]:.1f}, ' +
              ('valid' if validity['valid'] else 'invalid: ' + '; '.join(validity['reasons'])))
    where = self.group_dir(cell.group)
    stage, subdir = self.stage_of(cell)
    parts = []
    for rounds in range(findings.LONGER_ROUNDS + 1):
      round_dir = grid.round_dir(where, rounds)
      teacher_dir = os.path.join(round_dir, 'teacher')
      if not os.path.isdir(teacher_dir):
        break
      name = 'teacher' if not rounds else f'convergence test {rounds}'
      finished = trainer.read_json(os.path.join(teacher_dir, pipeline.TEACHER_METRICS))
      if not finished:
        budget = self.teacher_steps(cell.group, (self.size.longer_factor or 1.0) ** rounds)
        parts.append(f'{name} at step {_last_checkpoint(teacher_dir)} of {budget}'
                     + _time_left(teacher_dir, budget))
        continue
      parts.append(f'{name} done (held-out AP {100 * finished["holdout"]["AP"]:.1f} at '
                   f'step {finished.get("best_step")})')
      stage_dir = os.path.join(round_dir, subdir, stage)
      started = trainer.read_json(os.path.join(stage_dir, pipeline.STARTED))
      if started:
        parts.append(f'its {stage} done' if os.path.exists(
            os.path.join(stage_dir, pipeline.RESULT)) else
                     f'its {stage} at step {_last_checkpoint(stage_dir)} of {started["steps"]}'
                     + _time_left(stage_dir, started['steps']))
    return '; '.join(parts) or (f'not started (teacher: '
                                f'{self.teacher_steps(cell.group)} steps)')

  @staticmethod
  def stage_of(cell: grid.Cell) -> Tuple[str, str]:
    """The stage the cell trains itself ('control' or 'student') and the subdirectory of
    its group's (or convergence test's) directory it trains in ('': the group's own)."""
    if cell.kind == 'supervised':
      return 'control', ''
    if cell.kind == 'random_student':
      return 'student', 'from_random'
    if cell.alpha is not None:
      return 'student', f'alpha{cell.alpha:g}_{"norm" if cell.normalize else "standard"}'
    return 'student', ''

  def stage_times(self, cell: grid.Cell,
                  validity: Optional[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """The time of every stage the cell needed, by its directory under the study's (the
    cells that share a stage name the same directory, so a grid's total counts it once):
    the teacher of each convergence round run, for a student the pseudo labels it read
    (the teacher's SavedModels, labeling the pool, then scoring `holdout`: an eval) and its
    own stage. From the stages' records (`stage_time`), so a cell trained over several
    sessions counts all of them."""
    where, out = self.group_dir(cell.group), {}
    for rounds in range(len(findings.convergence_tests(validity)) + 1):
      teacher_dir = os.path.join(grid.round_dir(where, rounds), 'teacher')
      summary = trainer.read_json(os.path.join(teacher_dir, pipeline.TEACHER_METRICS))
      if summary:
        out[os.path.relpath(teacher_dir, self.study_dir)] = stage_time(summary)
    base = grid.round_dir(where, (validity or {}).get('teacher_round', 0))
    stage, subdir = self.stage_of(cell)
    labels_dir = os.path.join(base, 'pseudo')
    labels = stage == 'student' and trainer.read_json(os.path.join(labels_dir, schema.SUMMARY))
    if labels:
      check = trainer.read_json(os.path.join(labels_dir, pipeline.QUALITY)) or {}
      exports = trainer.read_json(os.path.join(base, 'export', pipeline.EXPORT_SECONDS)) or {}
      out[os.path.relpath(labels_dir, self.study_dir)] = {
          'seconds': round(sum(exports.values()) + labels['seconds'] +
                           check.get('seconds', 0.0), 1),
          'untimed_evals': int('seconds' not in check), 'untimed_exports': int(not exports),
          'slow_intervals': 0, 'slow_excess_seconds': 0.0}
    stage_dir = os.path.join(base, subdir, stage)
    summary = trainer.read_json(os.path.join(stage_dir, pipeline.RESULT))
    if summary:
      out[os.path.relpath(stage_dir, self.study_dir)] = stage_time(summary)
    return out

  def with_stage_times(self, cell: grid.Cell, done: Dict[str, Any],
                       path: str) -> Dict[str, Any]:
    """A finished cell's record with its `stage_times`, added (and written) to one recorded
    before they were kept, when its stages' directories are here."""
    if 'stage_times' in done:
      return done
    times = self.stage_times(cell, done.get('validity'))
    if not times:  # e.g. only `cells/` copied
      return done
    done = dict(done, stage_times=times)
    trainer.write_json(path, done)
    return done

  # -- runs ------------------------------------------------------------------------------

  def run_cell(self, cell: grid.Cell) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Trains what the cell needs (or finds it done); returns its stage summary and its
    validity (`judge`). The stage starts from the teacher the convergence test settles on."""
    s = self.settings(cell.group)
    teacher = pipeline.teacher(s, self.progress)
    validity, s, teacher = self._judged(cell, s, teacher, self.progress)
    return self._run_stage(cell, s, teacher), validity

  def judge(self, cell: grid.Cell, quiet: bool = False,
            made: Optional[Tuple[int, str]] = None) -> Dict[str, Any]:
    """The cell's validity: `findings.teacher_reasons` of the teacher the convergence test
    settles on (`converged_teacher`), and for a student `findings.pseudo_reasons` of the
    pseudo labels it reads (made here when missing). `quiet`: finding completed stages says
    nothing. `made`: a finished cell's (teacher round, JSON path); made from another
    teacher than the test settles on, it is invalid (its stage is elsewhere)."""
    look = (lambda _: None) if quiet else self.progress
    s = self.settings(cell.group, look)
    return self._judged(cell, s, pipeline.teacher(s, look), look, made)[0]

  def _judged(self, cell: grid.Cell, s: pipeline.Settings, teacher: Dict[str, Any],
              look: Callable[[str], None], made: Optional[Tuple[int, str]] = None
              ) -> Tuple[Dict[str, Any], pipeline.Settings, Dict[str, Any]]:
    """`judge`, with the settings and summary of the teacher the cell's stage starts from."""
    rounds, s, teacher, tests, reasons = self.converged_teacher(cell.group, s, teacher, look)
    if made and made[0] != rounds:
      return {'valid': False, 'reasons': [
          f'made from {self.teacher_name(made[0])}, but the convergence test now settles on '
          f'{self.teacher_name(rounds)}: to re-run the cell, remove {made[1]}'],
              'longer': tests, 'teacher_round': made[0]}, s, teacher
    if cell.kind != 'supervised':
      reasons = reasons + self._pseudo(s, teacher, look)
    validity = {'valid': not reasons, 'reasons': reasons}
    if tests:  # a cell whose teacher needed no test keeps the record it always had
      validity['longer'] = tests
      validity['teacher_round'] = rounds
    return validity, s, teacher

  def converged_teacher(self, group: grid.Group, s: pipeline.Settings,
                        teacher: Dict[str, Any], look: Callable[[str], None]
                        ) -> Tuple[int, pipeline.Settings, Dict[str, Any],
                                   List[Dict[str, Any]], List[str]]:
    """The paper's convergence test, run to its end: a teacher its budget cut off at its
    best is trained `size.longer_factor` times longer (once per group); if that gains at
    most `findings.LONGER_TOLERANCE` held-out AP, the teacher converged; if it gains more,
    the longer teacher takes its place (it is the better-trained one, as Appendix H picks
    each cell's best length) and, if it too ended at its best, is tested the same way, up
    to `findings.LONGER_ROUNDS` tests. Returns the chosen teacher's round (0: the budget's),
    settings and summary, each test's record, and why it cannot stand (empty: it can)."""
    base, chosen = s, s
    tests, rounds, previous = [], 0, None
    while (findings.cut_off(teacher) and self.size.longer_factor and
           rounds < findings.LONGER_ROUNDS):
      longer_s = self.longer_settings(base, group, rounds + 1)
      trained = pipeline.finished_teacher(longer_s)
      if not trained:
        self.progress(
            ('teacher: its budget ended at its best held-out AP; the convergence test trains '
             f'it {self.size.longer_factor:g}x longer') if not rounds else
            (f'teacher: trained {self.size.longer_factor ** rounds:g}x its budget it gained '
             f'{tests[-1]["gain"]:+.2f} held-out AP and ended at its best again; the '
             f'convergence test trains it {self.size.longer_factor:g}x longer still'))
      longer = pipeline.teacher(longer_s, look if trained else self.progress)
      gain = findings.longer_gain(teacher, longer)
      tests.append({'steps': longer['history'][-1]['step'],
                    'holdout_AP': longer['holdout']['AP'], 'gain': round(gain, 2),
                    'train_seconds': round(longer['train_seconds'])})
      if gain <= findings.LONGER_TOLERANCE:
        return rounds, chosen, teacher, tests, []
      previous, chosen, teacher, rounds = teacher, longer_s, longer, rounds + 1
    return rounds, chosen, teacher, tests, findings.last_test_reasons(teacher, previous)

  def teacher_name(self, rounds: int) -> str:
    """A convergence round's teacher, in the study's words."""
    if not rounds:
      return "the budget's teacher"
    return f'the teacher trained {self.size.longer_factor ** rounds:g}x its budget'

  def longer_settings(self, s: pipeline.Settings, group: grid.Group,
                      rounds: int = 1) -> pipeline.Settings:
    """The group's teacher `size.longer_factor` ** `rounds` times longer, under
    `longer/` once per round (`s`: the group's own settings; a later round nests in the
    earlier one's directory)."""
    return dataclasses.replace(
        s, runs_dir=grid.round_dir(s.runs_dir, rounds),
        teacher_override=pipeline.join_overrides(
            self.teacher_schedule(group, self.size.longer_factor ** rounds),
            self.size.override))

  def _run_stage(self, cell: grid.Cell, s: pipeline.Settings,
                 teacher: Dict[str, Any]) -> Dict[str, Any]:
    """The cell's own stage (a student's pseudo labels were made by `judge`)."""
    if cell.kind == 'supervised':
      return pipeline.finetune(s, 'control', s.teacher_experiment, teacher['checkpoint'],
                               progress=self.progress)
    if cell.kind == 'random_student':
      # Table 10: as many steps as teacher + student, at the teacher's learning rate.
      steps = teacher['best_step'] + pipeline.finetune_schedule(s)['steps']
      params = pipeline.teacher_params(s)
      lr = params.trainer.optimizer_config.learning_rate.cosine.initial_learning_rate
      warmup = params.trainer.optimizer_config.warmup.linear.warmup_steps
      # The same held-out eval policy as the student from the teacher: once at the end,
      # or every `eval_interval` steps (keeping the best) at full size.
      every = steps if self.size.teacher_steps is not None else s.eval_interval
      s = dataclasses.replace(s, student_steps=steps, student_learning_rate=lr,
                              student_warmup_steps=warmup, eval_interval=every,
                              finetune_subdir=self.stage_of(cell)[1])
      return pipeline.student(s, None, self.progress)
    if cell.alpha is not None:
      s = dataclasses.replace(
          s, finetune_subdir=self.stage_of(cell)[1],
          student_override=pipeline.join_overrides(
              s.student_override, f'task.loss_normalization.alpha={cell.alpha},'
              f'task.loss_normalization.normalize={str(cell.normalize).lower()}'))
    return pipeline.student(s, teacher['checkpoint'], self.progress)

  def _pseudo(self, s: pipeline.Settings, teacher: Dict[str, Any],
              progress: Callable[[str], None]) -> List[str]:
    """Exports and pseudo-labels (or finds them done); why the labels are collapsed."""
    saved_model = pipeline.export(s, teacher, progress)
    summary = pipeline.pseudo_label(s, saved_model, progress)
    return findings.pseudo_reasons(summary, pipeline.pseudo_quality(s, saved_model))

  def rejudge(self, cell: grid.Cell, done: Dict[str, Any], path: str) -> Dict[str, Any]:
    """A finished cell judged again by today's rules (`judge`, which may run the convergence
    test it lacks), its JSON rewritten when the verdict changed. Without its teacher's
    directory (e.g. only `cells/` copied) its stored verdict stands."""
    if not trainer.read_json(os.path.join(self.group_dir(cell.group), 'teacher',
                                          pipeline.TEACHER_METRICS)):
      return done
    made = (done.get('validity') or {}).get('teacher_round', 0)
    try:
      validity = self.judge(cell, quiet=True, made=(made, path))
    except trainer.ConfigError as e:  # e.g. its teacher stopped by an earlier plateau rule
      validity = {'valid': False, 'reasons': [self.redo_hint(e, cell, path)]}
    if validity == done.get('validity'):
      return done
    done = dict(done, validity=validity)
    trainer.write_json(path, done)
    self.progress(f'  re-judged: {"valid" if validity["valid"] else "invalid"}'
                  + ''.join(f'; {r}' for r in validity['reasons']))
    return done

  def redo_hint(self, error: Exception, cell: grid.Cell, path: Optional[str] = None) -> str:
    """A stage's refusal to reuse a run made otherwise (`trainer.MadeOtherwise`), in the
    study's terms: the study has no --force, so what to remove to re-run the cell. A control
    or student is the end of its chain (`pipeline.DEPENDS_ON`): its own directory; any other
    stage feeds the other stages of its teacher: the directory they share (the group's, or
    a convergence test's `longer/`, which holds any later test's too)."""
    if not isinstance(error, trainer.MadeOtherwise):
      return cli.one_line(error)
    last = not any(error.stage in up for up in pipeline.DEPENDS_ON.values())
    remove = (error.where if last else os.path.dirname(error.where.rstrip(os.sep))) + (
        f' and {path}' if path else '')
    return f'{error.why}: to re-run the cell, remove {remove}'

  def steps(self) -> Dict[str, Optional[int]]:
    return {'teacher': self.size.teacher_steps, 'finetune': self.size.finetune_steps,
            'pretrain': self.size.pretrain_steps}

  def identity(self) -> Dict[str, Any]:
    """What every cell of one study directory shares; a re-run must ask for the same."""
    return {'steps': self.steps(), 'teacher_budget': self.size.teacher_budget,
            'size': self.size_name, 'seed': self.seed,
            'data_dir': os.path.abspath(self.data_dir), 'override': self.size.override,
            'pretrain_root': os.path.abspath(self.pretrain_root())}

  def check_identity(self) -> None:
    """Writes `study.json` on the first run; refuses a run that would mix settings."""
    path = os.path.join(self.study_dir, grid.STUDY_FILE)
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

  def run(self, cells: Sequence[grid.Cell]) -> List[Dict[str, Any]]:
    """Runs the cells (finished ones skipped); returns every selected cell's record. A cell
    whose stage is refused (`redo_hint`: made with other settings, or by another rule) is
    said in one line and the others run on; then the first refusal is raised (a grid runs
    for hours unattended: one cell's directory to remove must not idle the rest)."""
    self.check_identity()
    records, refused = [], []
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
        records.append(self.with_stage_times(cell, self.rejudge(cell, done, path), path))
        continue
      self.progress(f'[{i}/{len(cells)}] {cell.id}: {cell.group.name}, {cell.kind}')
      self.pretrained(cell.group.init)  # outside the cell's time: it serves every cell
      start = time.time()
      try:
        summary, validity = by_run.get(cell.run_key) or self.run_cell(cell)
      except trainer.ConfigError as e:
        refused.append(self.redo_hint(e, cell))
        self.progress(f'[{i}/{len(cells)}] {cell.id}: refused: {refused[-1]}')
        continue
      by_run[cell.run_key] = summary, validity
      record = {
          'id': cell.id, 'table': cell.table, 'row': cell.row, 'column': cell.column,
          'group': dataclasses.asdict(cell.group), 'kind': cell.kind, 'alpha': cell.alpha,
          'normalize': cell.normalize, 'size': self.size_name, 'seed': self.seed,
          'steps': self.steps(),
          'val': summary['val'], 'holdout': summary['holdout'], 'best_step': summary['best_step'],
          'experiment': summary.get('experiment'), 'run_dir': os.path.dirname(
              summary['checkpoint'].rstrip('/')) if summary.get('checkpoint') else None,
          'seconds': round(time.time() - start, 1), 'side_by_side': self.side_by_side,
          'stage_times': self.stage_times(cell, validity),
          'paper_AP': cell.paper,
          'validity': validity,
      }
      trainer.write_json(path, record)
      self.progress(f'[{i}/{len(cells)}] {cell.id}: val AP {100 * record["val"]["AP"]:.1f} '
                    f'({record["seconds"]:.0f} s this run; its stages '
                    f'{sum(t["seconds"] for t in record["stage_times"].values()):.0f} s)'
                    + ('' if validity['valid'] else
                       f'; invalid: {"; ".join(validity["reasons"])}'))
      records.append(record)
    if refused:
      raise trainer.ConfigError(refused[0] if len(refused) == 1 else
                                f'{len(refused)} cells refused (each said above); the first: '
                                f'{refused[0]}')
    return records
