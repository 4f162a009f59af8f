"""The self-training pipeline's stages, each reading the files the previous one wrote.

  teacher   train on `train` until held-out AP (on `holdout`) stops improving
  export    the teacher's best checkpoint -> SavedModel (Model Garden serving module)
  pseudo    the SavedModel labels the unlabeled pool (score >= 0.5)
  control   the teacher trained further on human labels alone, as many steps as the student
  student   initialized from the teacher; half human, half pseudo-labeled batches

Every stage writes a completion file last (`teacher_metrics.json`, `saved_model/`,
`summary.json`, `result.json`); a re-run skips complete stages unless they are forced.
Control and student keep their best checkpoint on `holdout` (never `val`), which is then
evaluated once on `val`.
"""

import dataclasses
import os
import time
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence

import tensorflow as tf
import tf_keras

from official.core import exp_factory

from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import beside
from projects.self_training.pseudo_label import schema

STAGES = ('teacher', 'export', 'pseudo', 'control', 'student')
RESULT = 'result.json'
STARTED = 'started_with.json'   # a training stage's settings, written when it starts
# A stage's stopping rule: it decides where a run ends, never what it trained.
STOP_KEYS = ('patience', 'plateau_start', 'plateau_start_step')
# Stages that fine-tune the teacher; a seed's runs of them may sit side by side.
FINETUNE_STAGES = ('control', 'student', 'train_aug')
TEACHER_METRICS = 'teacher_metrics.json'  # the teacher's completion file
# What each stage reads: forcing a stage redoes every stage that depends on it.
DEPENDS_ON = {'teacher': (), 'export': ('teacher',), 'pseudo': ('export',),
              'control': ('teacher',), 'student': ('teacher', 'pseudo')}


DEFAULT_IGNORE_THRESHOLD = 0.3
# The extra view of test-time augmentation, over the teacher's input size (96 -> 128 px),
# rounded to a multiple of 32 (RetinaNet's coarsest feature stride).
TTA_SCALE = 4 / 3


def ignore_threshold_for(threshold: float, asked: Optional[float] = None) -> float:
  """The ignore band's lower edge: `asked` if given, else the default, never above
  `threshold` (a lower --threshold alone then means no band, not an error)."""
  return asked if asked is not None else min(DEFAULT_IGNORE_THRESHOLD, threshold)


@dataclasses.dataclass
class Settings:
  """What one pipeline run does; the defaults are the embedded main job's."""
  data_dir: str
  runs_dir: str
  teacher_experiment: str = 'emoji_retinanet'
  student_experiment: str = 'emoji_retinanet_student'
  gin_files: Sequence[str] = ()
  gin_params: Sequence[str] = ()
  teacher_override: str = ''
  student_override: str = ''     # applies to control and student alike
  pseudo_override: str = ''      # the student's alone: alpha, pseudo_background_weight, ...
  plateau_patience: Optional[int] = 3  # None: the whole schedule
  # The plateau rule counts only held-out evals from this share of a stage's steps on:
  # near the cosine schedule's peak learning rate held-out AP dips and recovers
  # (docs/training.md).
  plateau_start: float = 0.5
  # ... and waits at least this share of a stage's steps (more evals than
  # `plateau_patience` on a long schedule): under a cosine schedule held-out AP can sit
  # flat for 2000 steps mid-schedule and rise 2 points as the learning rate decays; 3 evals
  # (1500 steps) stopped 12000-step teachers up to 3 AP short of their whole schedule's
  # best (docs/training.md, 'The plateau rule').
  plateau_window: float = trainer.PLATEAU_WINDOW
  # The paper's student protocol (Section 3.2, Appendix H): control and student start from
  # the teacher and train for a share of its steps (`student_steps` 0: the teacher's steps
  # times `student_steps_fraction`; the paper's students train 0.75-1.0 of their teacher's,
  # the embedded job half, for its time budget), at its learning rate and warm-up (None: the
  # teacher's), each for its whole schedule, as in the paper (the same compute for both;
  # `finetune_patience` N: stopped by the plateau rule after N held-out evals without gain),
  # and kept at its best held-out checkpoint. `eval_interval` None: the teacher's.
  student_steps: int = 0
  student_steps_fraction: float = 0.5
  student_learning_rate: Optional[float] = None
  student_warmup_steps: Optional[int] = None
  finetune_patience: Optional[int] = None
  eval_interval: Optional[int] = None
  threshold: float = 0.5
  # Pseudo boxes scored in [ignore_threshold, threshold) are ignore regions (no loss); None
  # or = threshold: none. Chosen on `holdout`; the measurements: docs/detection_experiments.md,
  # 'Student variants over 3 seeds from the plateaued teacher'.
  ignore_threshold: Optional[float] = DEFAULT_IGNORE_THRESHOLD
  # Test-time augmentation of the pseudo labels: the teacher also exported at these input
  # sizes, and each view also mirrored; the views' detections are fused (fusion.fuse_views).
  # None: one more size, TTA_SCALE times the teacher's (`tta_sizes_of`); (): one view. Four
  # views (96 and 128 px, each mirrored) give more precise and complete labels and a better
  # student than one, on `holdout`; the measurements: docs/detection_experiments.md,
  # 'pseudo-label levers from the plateaued teacher'.
  tta_sizes: Optional[Sequence[int]] = None
  tta_flip: bool = True
  # The student's pseudo half from these TFRecords instead of the teacher's labels: with a
  # human-labeled pool, the ceiling of self-training (perfect pseudo labels) in this budget.
  pseudo_input: str = ''
  pseudo_splits: Sequence[str] = (emoji_scenes.UNLABELED_SPLIT,)
  seed: int = 0
  force: Sequence[str] = ()
  finetune_subdir: str = ''   # e.g. 'seed1': control and student of one seed, side by side
  # The control in a process of its own, on half the cores, beside the export, the pseudo
  # labels and the student (`run`); False: one stage after another, each on every core.
  parallel_control: bool = False
  train_input: str = ''       # the labeled TFRecords (default: data_dir's `train`)

  depends_on: ClassVar[Dict[str, Sequence[str]]] = DEPENDS_ON
  metric: ClassVar[str] = 'AP'          # held-out metric for plateaus and best checkpoints
  metric_name: ClassVar[str] = 'AP'

  def dir(self, stage: str) -> str:
    if stage in FINETUNE_STAGES and self.finetune_subdir:
      return os.path.join(self.runs_dir, self.finetune_subdir, stage)
    return os.path.join(self.runs_dir, stage)

  def data_override(self) -> str:
    """Points the experiments' train and held-out data at this run's splits."""
    return data_override(self.data_dir, train_input=self.train_input)

  def val_metrics(self, params, checkpoint: str) -> Dict[str, float]:
    """The final metrics of one checkpoint on `val` (never used for a choice)."""
    return _val_metrics(params, checkpoint, self.data_dir)


def data_override(data_dir: str, validation_split: str = 'holdout', train_input: str = '') -> str:
  """Points an embedded experiment's train/validation data at `data_dir`."""
  train_input = train_input or emoji_scenes.split_pattern(data_dir, 'train')
  return (f'task.train_data.input_path={train_input},'
          f'task.validation_data.input_path='
          f'{emoji_scenes.split_pattern(data_dir, validation_split)},'
          f'task.annotation_file={emoji_scenes.annotation_file(data_dir, validation_split)}')


def join_overrides(*overrides: str) -> str:
  return ','.join(o for o in overrides if o)


def _forced(settings: Settings, stage: str) -> bool:
  return ('all' in settings.force or stage in settings.force or
          any(_forced(settings, up) for up in settings.depends_on[stage]))


def forced_stages(settings: Settings) -> List[str]:
  """The stages a run redoes: those in `force` and every stage downstream of them."""
  return [stage for stage in settings.depends_on if _forced(settings, stage)]


def fresh(settings: Settings, stage: str) -> bool:
  """True when `stage` must be (re)done from scratch: forced, so delete what it left."""
  if _forced(settings, stage):
    if tf.io.gfile.exists(settings.dir(stage)):
      tf.io.gfile.rmtree(settings.dir(stage))
    return True
  return False


def claim(stage: str, model_dir: str, wanted: Dict[str, Any]) -> None:
  """Records what a training stage starts with (`STARTED` in its directory); a killed run
  resumes from its checkpoint only with those settings (its stopping rule aside: it changes
  nothing trained so far), never silently with others."""
  path = os.path.join(model_dir, STARTED)
  started = trainer.read_json(path)
  if started:
    same_settings(stage, model_dir, started, _without(wanted, STOP_KEYS),
                  what=f'{model_dir} (an interrupted run)')
    return
  tf.io.gfile.makedirs(model_dir)
  trainer.write_json(path, wanted)


def _without(settings: Dict[str, Any], keys: Sequence[str]) -> Dict[str, Any]:
  return {k: v for k, v in settings.items() if k not in keys}


def same_settings(stage: str, where: str, made: Dict[str, Any], wanted: Dict[str, Any],
                  what: Optional[str] = None):
  """A complete stage made with other settings is an error, never silently reused. `where`:
  its directory; `what`: how the message names it (default `where`)."""
  for key, value in wanted.items():
    if key in made and made[key] != value:
      raise trainer.MadeOtherwise(
          f'{what or where} was made with {key}={made[key]!r}, this run asks for {value!r}',
          stage, where)


def same_run(stage: str, where: str, done: Dict[str, Any], wanted: Dict[str, Any],
             rule: Optional[trainer.Plateau] = None):
  """`same_settings` for a finished training stage, its stopping rule aside when the rule
  changed nothing in it: it trained all its steps, or `rule` (this run's) stops its held-out
  history at the step where it stopped. One an earlier rule stopped elsewhere is refused."""
  history = done.get('history') or []
  stopped = done.get('stopped')
  if stopped == 'plateau' and rule is not None and history:
    at = rule.stop_step(history)
    if at != history[-1]['step']:
      raise trainer.MadeOtherwise(
          f'{where} was stopped at step {history[-1]["step"]} by another plateau rule; this '
          f'run\'s rule ({rule.describe()}) '
          + (f'stops it at {at}' if at else 'trains it on'), stage, where)
    stopped = 'train_steps'  # the same run under this rule
  ran_all = stopped == 'train_steps'
  same_settings(stage, where, done.get('settings', {}),
                _without(wanted, STOP_KEYS) if ran_all else wanted)


def _val_metrics(params, checkpoint: str, data_dir: str) -> Dict[str, float]:
  val = trainer.evaluate_checkpoint(params, checkpoint, emoji_scenes.split_pattern(data_dir, 'val'),
                                    emoji_scenes.annotation_file(data_dir, 'val'))
  return {k: max(val[k], 0.0) for k in trainer.COCO_KEYS if k in val}


def _summary(params, result: Dict[str, Any], s: Settings, **extra) -> Dict[str, Any]:
  """A trained stage's record: best held-out step and metrics, val metrics, history."""
  start = time.time()
  return dict(
      extra,
      best_step=result['best']['step'],
      holdout={k: v for k, v in result['best'].items() if k in trainer.METRIC_KEYS},
      val=s.val_metrics(params, result['best_checkpoint']),
      history=result['history'],
      train_seconds=result['train_seconds'],
      checkpoint=result['best_checkpoint'],
      val_eval_seconds=time.time() - start)


def teacher_params(s: Settings):
  """The teacher's experiment config, pointed at this run's data."""
  return trainer.build_params(s.teacher_experiment,
                              params_override=join_overrides(s.data_override(),
                                                             s.teacher_override),
                              gin_files=s.gin_files, gin_params=s.gin_params)


def finished_teacher(s: Settings) -> Optional[Dict[str, Any]]:
  """The summary of the teacher of `s` when it finished (None: not trained yet)."""
  return trainer.read_json(os.path.join(s.dir('teacher'), TEACHER_METRICS))


def teacher(s: Settings, progress: Callable[[str], None] = print) -> Dict[str, Any]:
  """Trains the teacher to its held-out plateau; evaluates its best checkpoint on val."""
  fresh(s, 'teacher')
  model_dir = s.dir('teacher')
  done = finished_teacher(s)
  rule = teacher_rule(s)
  wanted = {'experiment': s.teacher_experiment, 'override': s.teacher_override,
            'gin_files': list(s.gin_files), 'gin_params': list(s.gin_params),
            'train_input': s.train_input, 'plateau_start': s.plateau_start,
            'patience': rule.patience}
  if done:
    same_run('teacher', model_dir, done, wanted, rule)
    progress(f'teacher: complete in {model_dir} (best held-out {s.metric_name} '
             f'{100 * done["holdout"][s.metric]:.1f} at step {done["best_step"]}), skipped')
    return done
  params = teacher_params(s)
  claim('teacher', model_dir, wanted)
  tf_keras.utils.set_random_seed(s.seed)
  progress(f'teacher: {s.teacher_experiment}, up to {params.trainer.train_steps} steps, '
           f'held-out {s.metric_name} every {params.trainer.validation_interval}, '
           f'{rule.describe()}; {model_dir}')
  result = trainer.train_to_plateau(params, model_dir, rule,
                                    progress=lambda line: progress('  ' + line))
  summary = _summary(params, result, s, experiment=s.teacher_experiment,
                     gin_files=list(s.gin_files), stopped=result['stopped'], settings=wanted)
  trainer.write_json(os.path.join(model_dir, TEACHER_METRICS), summary)
  return summary


def teacher_rule(s: Settings) -> trainer.Plateau:
  """The teacher's plateau rule: `plateau_patience` evals, at least `plateau_window` of its
  steps, counted from `plateau_start` of them."""
  t = teacher_params(s).trainer
  return trainer.Plateau.for_schedule(t.train_steps, t.validation_interval, s.plateau_patience,
                                      s.plateau_window, s.plateau_start, metric=s.metric)


def tta_sizes_of(s: Settings) -> List[int]:
  """The extra input sizes the teacher labels at: `s.tta_sizes`, or when None one size,
  TTA_SCALE times the teacher's."""
  if s.tta_sizes is not None:
    return [int(x) for x in s.tta_sizes]
  size = teacher_params(s).task.model.input_size[0]
  return [max(32, int(round(size * TTA_SCALE / 32)) * 32)]


EXPORT_SECONDS = 'seconds.json'  # each SavedModel's export time, by its directory's name


def export(s: Settings, teacher_summary: Dict[str, Any],
           progress: Callable[[str], None] = print) -> str:
  """The teacher's SavedModel, and one per `tta_sizes`; returns their paths, comma-joined
  (what the labeler's `saved_model` takes)."""
  from projects.self_training.serving import export as export_lib  # pylint: disable=g-import-not-at-top
  fresh(s, 'export')
  paths = []
  for size in [None] + tta_sizes_of(s):
    path = os.path.join(s.dir('export'), export_lib.sized_name(size))
    paths.append(path)
    if tf.io.gfile.exists(os.path.join(path, 'saved_model.pb')):
      progress(f'export: complete in {path}, skipped')
      continue
    start = time.time()
    export_lib.export_detector(teacher_params(s), teacher_summary['checkpoint'],
                               s.dir('export'), input_size=size)
    times_path = os.path.join(s.dir('export'), EXPORT_SECONDS)
    trainer.write_json(times_path, dict(trainer.read_json(times_path) or {},
                                        **{os.path.basename(path): time.time() - start}))
    progress(f'export: {path} ({time.time() - start:.0f} s)')
  return ','.join(paths)


def pseudo_label(s: Settings, saved_model: str,
                 progress: Callable[[str], None] = print) -> Dict[str, Any]:
  from projects.self_training.pseudo_label import shards  # pylint: disable=g-import-not-at-top
  fresh(s, 'pseudo')
  out = s.dir('pseudo')
  done = trainer.read_json(os.path.join(out, schema.SUMMARY))
  if done:
    same_settings('pseudo', out, done,
                   {'threshold': s.threshold, 'ignore_threshold': s.ignore_threshold,
                    'flip': s.tta_flip, 'tta_sizes': tta_sizes_of(s)})
    progress(f'pseudo: complete in {out} ({done["num_images"]} images, '
             f'{done["boxes_per_image"]:.2f} boxes/image), skipped')
    return done
  source = ','.join(emoji_scenes.split_pattern(s.data_dir, split) for split in s.pseudo_splits)
  summary = shards.run(saved_model, source, out, threshold=s.threshold, num_shards=4,
                       ignore_threshold=s.ignore_threshold, flip=s.tta_flip)
  summary['tta_sizes'] = tta_sizes_of(s)
  trainer.write_json(os.path.join(out, schema.SUMMARY), summary)
  progress(f'pseudo: {summary["num_images"]} images, {summary["num_boxes"]} boxes '
           f'({summary["boxes_per_image"]:.2f}/image, {summary["num_empty_images"]} empty, '
           f'{summary["num_ignore_boxes"]} ignore boxes, {summary["num_skipped"]} skipped) '
           f'in {summary["seconds"]:.0f} s')
  return summary


QUALITY = 'quality.json'
QUALITY_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def pseudo_quality(s: Settings, saved_model: str,
                   progress: Callable[[str], None] = print) -> Dict[str, Any]:
  """The teacher's pseudo labels on `holdout`, scored against its human labels.

  Precision and recall at each candidate threshold (and the one in use), so a run shows
  what its pseudo labels teach before a student trains on them.
  """
  from projects.self_training.pseudo_label import shards  # pylint: disable=g-import-not-at-top
  from projects.self_training.pseudo_label import quality  # pylint: disable=g-import-not-at-top
  path = os.path.join(s.dir('pseudo'), QUALITY)
  done = trainer.read_json(path)
  if done:
    return done
  start = time.time()
  out = os.path.join(s.dir('pseudo'), 'holdout_check')
  shards.run(saved_model, emoji_scenes.split_pattern(s.data_dir, 'holdout'), out,
             threshold=0.0, progress=False, flip=s.tta_flip)
  thresholds = sorted(set(QUALITY_THRESHOLDS) | {s.threshold})
  rows = quality.precision_recall(trainer.read_json(os.path.join(out, schema.COCO_JSON)),
                                  trainer.read_json(emoji_scenes.annotation_file(
                                      s.data_dir, 'holdout')), thresholds)
  result = {'split': 'holdout', 'threshold': s.threshold, 'rows': rows,
            'at_threshold': next(r for r in rows if r['threshold'] == s.threshold),
            'seconds': round(time.time() - start, 1)}
  trainer.write_json(path, result)
  tf.io.gfile.rmtree(out)
  return result


def finetune_schedule(s: Settings) -> Dict[str, Any]:
  """Steps, learning rate, warm-up, eval interval and patience of control and student: the
  teacher's schedule (its experiment with `teacher_override`) where `s` leaves them unset."""
  t = teacher_params(s).trainer
  opt = t.optimizer_config
  steps = s.student_steps or max(1, round(s.student_steps_fraction * t.train_steps))
  interval = min(steps, s.eval_interval or t.validation_interval)
  return {
      'steps': steps,
      'learning_rate': (opt.learning_rate.cosine.initial_learning_rate
                        if s.student_learning_rate is None else s.student_learning_rate),
      'warmup_steps': (opt.warmup.linear.warmup_steps if s.student_warmup_steps is None
                       else s.student_warmup_steps),
      'eval_interval': interval,
      'rule': trainer.Plateau.for_schedule(steps, interval, s.finetune_patience,
                                           s.plateau_window, s.plateau_start, metric=s.metric),
  }


def _has_loss_normalization(experiment: str) -> bool:
  try:
    return hasattr(exp_factory.get_exp_config(experiment).task, 'loss_normalization')
  except (KeyError, LookupError):
    return False  # build_params reports the unknown name in one line


def finetune(s: Settings, stage: str, experiment: str, init_checkpoint: Optional[str],
             extra_override: str = '', progress: Callable[[str], None] = print) -> Dict[str, Any]:
  """Trains `experiment` from `init_checkpoint` (control/student): the teacher's schedule
  unless `s` says otherwise (`finetune_schedule`), all of it unless `finetune_patience` asks
  for the plateau rule, best held-out checkpoint kept.

  A student's loss-normalization EMA decay follows its length (`student_cfg.ema_decay_for`)
  unless an override sets it. With `init_checkpoint` None the model starts as the
  experiment (and its gin init) says: random weights for Rand Init, the paper's Table 10
  "student from random".
  """
  from projects.self_training.configs import student as student_cfg  # pylint: disable=g-import-not-at-top
  fresh(s, stage)
  model_dir = s.dir(stage)
  plan = finetune_schedule(s)
  steps, lr, warmup = plan['steps'], plan['learning_rate'], plan['warmup_steps']
  rule = plan['rule']
  wanted = {'experiment': experiment, 'steps': steps, 'learning_rate': lr,
            'warmup_steps': warmup, 'eval_interval': plan['eval_interval'],
            'patience': rule.patience, 'plateau_start_step': rule.start_step,
            'seed': s.seed, 'override': s.student_override,
            'gin_files': list(s.gin_files), 'gin_params': list(s.gin_params),
            'init': init_checkpoint}
  if stage == 'student':
    wanted.update(threshold=s.threshold, ignore_threshold=s.ignore_threshold,
                  pseudo_override=s.pseudo_override, tta_flip=s.tta_flip,
                  tta_sizes=tta_sizes_of(s), pseudo_input=s.pseudo_input)
  done = trainer.read_json(os.path.join(model_dir, RESULT))
  if done:
    same_run(stage, model_dir, done, wanted, rule)
    progress(f'{stage}: complete in {model_dir} (val {s.metric_name} '
             f'{100 * done["val"][s.metric]:.1f}), skipped')
    return done
  schedule = (f'trainer.train_steps={steps},'
              f'trainer.validation_interval={plan["eval_interval"]},'
              f'trainer.optimizer_config.learning_rate.cosine.decay_steps={steps},'
              f'trainer.optimizer_config.learning_rate.cosine.initial_learning_rate={lr},'
              f'trainer.optimizer_config.warmup.linear.warmup_steps={warmup},'
              f'trainer.optimizer_config.warmup.linear.warmup_learning_rate={lr / 10},'
              f'task.train_data.seed={s.seed}')
  if init_checkpoint is not None:
    schedule += f',task.init_checkpoint={init_checkpoint},task.init_checkpoint_modules=all'
  if _has_loss_normalization(experiment):
    schedule += f',task.loss_normalization.ema_decay={student_cfg.ema_decay_for(steps)}'
  params = trainer.build_params(
      experiment, params_override=join_overrides(s.data_override(), schedule, extra_override,
                                                 s.student_override),
      gin_files=s.gin_files, gin_params=s.gin_params)
  claim(stage, model_dir, wanted)
  tf_keras.utils.set_random_seed(s.seed)
  start = 'from the teacher' if init_checkpoint is not None else 'from its initialization'
  progress(f'{stage}: {experiment}, up to {steps} steps {start} (lr {lr:g}, '
           f'{rule.describe()}); {model_dir}')
  result = trainer.train_to_plateau(params, model_dir, rule,
                                    progress=lambda line: progress('  ' + line))
  summary = _summary(params, result, s, experiment=experiment, steps=steps,
                     stopped=result['stopped'], seed=s.seed, settings=wanted)
  trainer.write_json(os.path.join(model_dir, RESULT), summary)
  return summary


def check_stages(s: Settings, stages: Sequence[str]) -> None:
  """A one-line error for a stage name (in `stages` or `--force`) the pipeline lacks."""
  known = tuple(s.depends_on)
  unknown = [x for x in list(stages) + list(s.force) if x not in known + ('all',)]
  if unknown:
    raise trainer.ConfigError(f'unknown stage {unknown[0]!r}; stages: {", ".join(known)}')


def with_prerequisites(s: Settings, stages: Sequence[str]) -> List[str]:
  """`stages` and every stage they read (`depends_on`), in pipeline order: asking for
  `control` alone runs (or finds complete) the teacher too, never silently nothing; `all`
  is every stage."""
  wanted = set()
  todo = list(s.depends_on) if 'all' in stages else list(stages)
  while todo:
    stage = todo.pop()
    if stage not in wanted:
      wanted.add(stage)
      todo.extend(s.depends_on.get(stage, ()))
  return [stage for stage in s.depends_on if stage in wanted]


def export_and_label(s: Settings, stages: Sequence[str], out: Dict[str, Any],
                     export_fn: Callable[..., str], label_fn: Callable[..., Dict[str, Any]],
                     progress: Callable[[str], None]) -> Optional[str]:
  """The export and pseudo stages, as far as `stages` ask, their summaries into `out`;
  returns the SavedModel once the pseudo labels exist (None when the job stops before)."""
  if 'export' not in stages:
    return None
  saved_model = export_fn(s, out['teacher'], progress)
  if 'pseudo' not in stages:
    return None
  out['pseudo'] = label_fn(s, saved_model, progress)
  return saved_model


def run(s: Settings, stages: Sequence[str] = STAGES,
        progress: Callable[[str], None] = print) -> Dict[str, Any]:
  """Runs `stages` and what they read, in order (each skipped when complete); returns every
  stage's summary. With `s.parallel_control` the control trains in a process of its own
  beside the export, the pseudo labels and the student (`beside`), when both have work to do."""
  check_stages(s, stages)
  stages = with_prerequisites(s, stages)
  out: Dict[str, Any] = {}
  out['teacher'] = teacher(s, progress)
  init = out['teacher']['checkpoint']
  control = None
  if 'control' in stages:  # reads the teacher alone
    if (s.parallel_control and 'student' in stages and _pending(s, 'control')
        and _pending(s, 'student')):
      control = beside.start(s, 'control', s.teacher_experiment, init,
                             os.path.join(s.dir('control'), RESULT))
      progress('control: in a process of its own on half the cores, beside the export, the '
               'pseudo labels and the student (lines prefixed [control])')
    else:
      out['control'] = finetune(s, 'control', s.teacher_experiment, init, progress=progress)
  try:
    _label_and_student(s, stages, out, init, progress)
  except BaseException:
    if control is not None:
      control.stop()
    raise
  if control is not None:
    out['control'] = control.result()
  return out


def _pending(s: Settings, stage: str) -> bool:
  """True when a fine-tuning stage will train (forced, or without its result yet)."""
  return _forced(s, stage) or trainer.read_json(os.path.join(s.dir(stage), RESULT)) is None


def _label_and_student(s: Settings, stages: Sequence[str], out: Dict[str, Any],
                       init: str, progress: Callable[[str], None]) -> None:
  """The export, the pseudo labels, their check on `holdout` and the student, as far as
  `stages` ask; their summaries into `out`."""
  saved_model = export_and_label(s, stages, out, export, pseudo_label, progress)
  if 'export' in stages:
    out['export_seconds'] = sum(
        (trainer.read_json(os.path.join(s.dir('export'), EXPORT_SECONDS)) or {}).values())
  if saved_model is None:
    return
  out['pseudo_quality'] = q = pseudo_quality(s, saved_model)
  r = q['at_threshold']
  precision = 'n/a' if r['precision'] is None else f'{100 * r["precision"]:.0f}%'
  progress(f'pseudo: on holdout at {r["threshold"]}: precision {precision}, '
           f'recall {100 * r["recall"]:.0f}%, {r["boxes_per_image"]:.2f} boxes/image '
           f'({r["human_boxes_per_image"]:.2f} human)')
  if 'student' in stages:
    out['student'] = student(s, init, progress)


def round_settings(s: Settings, k: int) -> Settings:
  """Round `k` >= 2 of multi-round self-training writes under `runs_dir/round_k/`: its
  export, pseudo labels and student (round 1 is the pipeline's own directories)."""
  return dataclasses.replace(s, runs_dir=os.path.join(s.runs_dir, f'round_{k}'))


def rounds(s: Settings, first: Dict[str, Any], num_rounds: int,
           progress: Callable[[str], None] = print) -> List[Dict[str, Any]]:
  """Multi-round self-training: the student of round k is the teacher of round k + 1.

  `first` is `run`'s output (round 1). Each later round exports the previous student,
  pseudo-labels the same pool into its own `round_k/pseudo/` (nothing is overwritten),
  scores those labels on `holdout`, and trains a new student from the previous one. Every
  stage is skipped when complete, so a re-run resumes. Returns one entry per round.
  """
  out = [{'round': 1, 'teacher': 'teacher', 'pseudo': first['pseudo'],
          'pseudo_quality': first['pseudo_quality'], 'student': first['student']}]
  for k in range(2, num_rounds + 1):
    sk = round_settings(s, k)
    previous = out[-1]['student']
    progress(f'round {k}: the round-{k - 1} student is the teacher; {sk.runs_dir}')
    saved_model = export(sk, previous, progress)
    pseudo = pseudo_label(sk, saved_model, progress)
    quality = pseudo_quality(sk, saved_model)
    out.append({'round': k, 'teacher': f'round-{k - 1} student', 'pseudo': pseudo,
                'pseudo_quality': quality,
                'student': student(sk, previous['checkpoint'], progress)})
  return out


def rounds_table(per_round: Sequence[Dict[str, Any]], split: str = 'val') -> List[str]:
  """Markdown: one row per round, the pseudo labels' headline numbers beside the AP."""
  rows = ['| round | teacher | pseudo boxes / image | holdout precision | holdout recall | '
          f'student AP ({split}) | AP50 | AP75 |', '|---|---|---|---|---|---|---|---|']
  for r in per_round:
    q = r['pseudo_quality']['at_threshold']
    precision = '—' if q['precision'] is None else f'{100 * q["precision"]:.0f}%'
    m = r['student'][split]
    rows.append(f'| {r["round"]} | {r["teacher"]} | {r["pseudo"]["boxes_per_image"]:.2f} | '
                f'{precision} | {100 * q["recall"]:.0f}% | {100 * m["AP"]:.1f} | '
                f'{100 * m["AP50"]:.1f} | {100 * m["AP75"]:.1f} |')
  return rows


def student(s: Settings, init_checkpoint: Optional[str],
            progress: Callable[[str], None] = print) -> Dict[str, Any]:
  """Trains the student on human + `pseudo` batches from `init_checkpoint` (the teacher's)."""
  pseudo = s.pseudo_input or schema.record_pattern(s.dir('pseudo'))
  if s.pseudo_input and not tf.io.gfile.glob(s.pseudo_input):
    raise trainer.ConfigError(f'--pseudo_input {s.pseudo_input}: no such files')
  return finetune(
      s, 'student', s.student_experiment, init_checkpoint,
      join_overrides(f'task.pseudo_data.input_path={pseudo},'
                     f'task.pseudo_data.seed={s.seed}', s.pseudo_override), progress)


def table(results: Dict[str, Any], split: str = 'val') -> List[str]:
  """Markdown rows: model, COCO AP, AP50, AP75 on `split` (percent)."""
  rows = ['| model | COCO AP | AP50 | AP75 |', '|---|---|---|---|']
  names = {'teacher': 'teacher', 'control': 'supervised control (same steps)',
           'student': 'student (self-training)'}
  for key, name in names.items():
    if key in results:
      m = results[key][split]
      rows.append(f'| {name} | {100 * m["AP"]:.1f} | {100 * m["AP50"]:.1f} | '
                  f'{100 * m["AP75"]:.1f} |')
  return rows


TRAINED = {'teacher': 'teacher', 'control': 'supervised control', 'student': 'student'}


def stage_times(results: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Seconds of each part of a finished run, from its summaries (`results.json`): each
  trained model's training, its held-out evals and its `val` eval; the export; the pseudo
  labels and their check on `holdout`; and the rest of the wall time (data, start-up,
  building models, loading checkpoints), each with its share of the wall time. A stage
  skipped as complete counts the seconds it took when it ran. A control trained in its own
  process (`beside`) overlapped the rest: its rows are marked `beside` and left out of the
  sum that makes up the wall time."""
  rows = []
  for key, name in TRAINED.items():
    if key in results:
      r = results[key]
      where = {'beside': True} if r.get('beside') else {}
      name += ' (own process, beside the rest)' if where else ''
      rows.append({'stage': f'{name}: training', 'seconds': r['train_seconds'], **where})
      rows.append({'stage': f'{name}: held-out evals',
                   'seconds': sum(h.get('eval_seconds', 0.0) for h in r['history']), **where})
      rows.append({'stage': f'{name}: val eval', 'seconds': r.get('val_eval_seconds', 0.0),
                   **where})
  if 'export_seconds' in results:
    rows.append({'stage': 'export (SavedModels)', 'seconds': results['export_seconds']})
  if 'pseudo' in results:
    rows.append({'stage': 'pseudo labels', 'seconds': results['pseudo'].get('seconds', 0.0)})
  if 'pseudo_quality' in results:
    rows.append({'stage': 'pseudo labels checked on holdout',
                 'seconds': results['pseudo_quality'].get('seconds', 0.0)})
  wall = results.get('wall_seconds')
  if wall is not None:
    rows.append({'stage': 'other (data, start-up, model building)',
                 'seconds': max(0.0, wall - _in_line(rows))})
    for r in rows:
      r['share'] = r['seconds'] / wall if wall else 0.0
  return rows


def stage_table(rows: Sequence[Dict[str, Any]]) -> List[str]:
  """Markdown: `stage_times`' rows, seconds and share of the wall time, and their sum."""
  lines = ['| stage | seconds | share of the wall time |', '|---|---|---|']
  for r in rows:
    share = f'{100 * r["share"]:.0f}%' if 'share' in r else ''
    lines.append(f'| {r["stage"]} | {r["seconds"]:.0f} | {share} |')
  label = 'all but the stages beside' if any(r.get('beside') for r in rows) else 'all'
  lines.append(f'| {label} | {_in_line(rows):.0f} | |')
  return lines


def _in_line(rows: Sequence[Dict[str, Any]]) -> float:
  """Seconds of the rows that ran one after another (not beside the rest): the wall time's."""
  return sum(r['seconds'] for r in rows if not r.get('beside'))
