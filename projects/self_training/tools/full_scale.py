r"""The paper's full-scale recipes on a CPU: `describe` builds them, `dryrun` steps one.

  ./run.sh describe [--experiments=glob,...] [--json=out.json]
  ./run.sh describe --recipes=docs/full_scale_recipes.md
  ./run.sh dryrun EXPERIMENT|GLOB|all [--image_size=256] [--batch_size=2] [--jobs=1]

`describe --recipes=PATH` ('-': standard output) writes, from the configs alone (no model
is built), one row per full-scale experiment: the paper's cells it reproduces and their
number, and its steps, alpha, batch and learning rate beside the paper's, augmentation,
initialization and data (tests/test_paper_numbers.py checks each against the paper).

`describe` builds every full-scale model (one build per distinct model: the Augment-S1..S4
variants and a teacher's student share one) without training and prints one row per
experiment: parameters, forward FLOPs per image at the recipe's input size (multiply-adds,
the unit of the paper's Tables 5 and 6; the paper's value beside it where it prints one),
input size, global batch (human + pseudo for students) and train steps.

`dryrun` runs one training step of a full-scale experiment through its real task, model,
optimizer and input pipeline, at a reduced image size and batch, on the embedded data
(detection: `train` scenes, and for a student the same scenes as its pseudo-labeled half,
same schema, and for joint training the `iconic` images as its classification data;
segmentation: `voc_train`, and `voc_aug` as the pseudo half), in float32 (the
recipes' bfloat16 needs a TPU or a recent GPU) and without the recipe's init checkpoint
(a cloud path). It fails unless the loss is finite.
"""

import fnmatch
import functools
import math
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from absl import app
from absl import flags
import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.core import train_utils

from projects.self_training.common import cli
from projects.self_training.common import registry_imports  # pylint: disable=unused-import
from projects.self_training.common import trainer
from projects.self_training.common.file_io import read_json
from projects.self_training.common.file_io import write_json
from projects.self_training.common.file_io import write_text
from projects.self_training.configs import augment
from projects.self_training.configs import paper_cells
from projects.self_training.configs import pretrain as pretrain_cfg
from projects.self_training.configs import retinanet as retinanet_cfg
from projects.self_training.configs import segmentation as segmentation_cfg
from projects.self_training.configs import student as student_cfg
from projects.self_training.data import emoji_scenes
from projects.self_training.study import paper_numbers

# The paper's multiply-adds per image (Tables 5 and 6), keyed by experiment prefix.
PAPER_FLOPS = {
    'retinanet_spinenet143_coco': 524e9,
    'retinanet_spinenet190_coco': 1885e9,
    'seg_nasfpn_efficientnetb7_pascal': 60e9,
    'seg_nasfpn_efficientnetl2_pascal': 229e9,
}
PAPER_PARAMS = {
    'retinanet_spinenet143_coco': 67e6,
    'retinanet_spinenet190_coco': 164e6,
    'seg_nasfpn_efficientnetb7_pascal': 71e6,
    'seg_nasfpn_efficientnetl2_pascal': 485e6,
}


class DryRunError(RuntimeError):
  """A full-scale experiment that does not build or step: reported in one line."""


def full_scale_experiments() -> List[str]:
  """The project's experiments that are not the embedded ones."""
  return [n for n in trainer.project_experiments() if not n.startswith('emoji_')]


def _model_key(params) -> str:
  """Experiments with equal model configs share one build."""
  return repr(sorted(params.task.model.as_dict().items()))


def _paper(table: Dict[str, float], name: str) -> Optional[float]:
  for prefix, value in table.items():
    if name.startswith(prefix):
      return value
  return None


def multiply_adds(model, input_size: Sequence[int]) -> Optional[float]:
  """Forward multiply-adds for one image: TF's profiler on the inference graph, halved
  (it counts a multiply-add as two float operations)."""
  fn = tf.function(lambda x: model(x, training=False))
  graph = fn.get_concrete_function(tf.TensorSpec([1, *input_size], tf.float32)).graph
  opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  opts['output'] = 'none'
  flops = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                        options=opts)
  return flops.total_float_ops / 2 if flops else None


def _batches(task):
  """(human, pseudo) images per step; pseudo 0 for a supervised experiment."""
  human = task.train_data.global_batch_size
  if student_cfg.has_pseudo_data(task):
    return human, task.pseudo_data.global_batch_size or human
  return human, 0


def _batch(task) -> str:
  human, pseudo = _batches(task)
  return f'{human} + {pseudo}' if pseudo else str(human)


def describe(names: Sequence[str]) -> List[Dict[str, Any]]:
  """One row per experiment; models built once per distinct model config."""
  built: Dict[str, Dict[str, Any]] = {}
  rows = []
  for name in names:
    params = trainer.build_params(name)
    key = _model_key(params)
    if key not in built:
      tf_keras.backend.clear_session()
      start = time.time()
      model = task_factory.get_task(params.task).build_model()
      size = list(params.task.model.input_size)
      flops = multiply_adds(model, size)
      built[key] = {'params': train_utils.try_count_params(model), 'multiply_adds': flops,
                    'build_seconds': round(time.time() - start, 1)}
      del model
      print(f'describe: {name}: {built[key]["params"] / 1e6:.1f}M parameters, '
            f'{flops / 1e9:.1f}B multiply-adds ({built[key]["build_seconds"]} s)', flush=True)
    model = params.task.model
    rows.append(dict(
        built[key], experiment=name, kind='segmentation' if name.startswith('seg_') else
        'detection', backbone=f'{model.backbone.type}-{_backbone_id(model.backbone)}',
        input_size=f'{model.input_size[0]}x{model.input_size[1]}', batch=_batch(params.task),
        train_steps=params.trainer.train_steps, dtype=params.runtime.mixed_precision_dtype,
        paper_multiply_adds=_paper(PAPER_FLOPS, name), paper_params=_paper(PAPER_PARAMS, name)))
  return rows


def _backbone_id(backbone) -> str:
  inner = getattr(backbone, backbone.type)
  return str(getattr(inner, 'model_id', ''))


def table(rows: Sequence[Dict[str, Any]]) -> str:
  """Markdown table of `describe`'s rows."""
  def paper(value, unit):
    return f' ({value / unit:.0f})' if value else ''
  lines = ['| experiment | backbone | input | batch | steps | params, M (paper) | '
           'multiply-adds / image, B (paper) |', '|---|---|---|---|---|---|---|']
  for r in rows:
    lines.append(
        f'| `{r["experiment"]}` | {r["backbone"]} | {r["input_size"]} | {r["batch"]} | '
        f'{r["train_steps"]:,} | {r["params"] / 1e6:.1f}{paper(r["paper_params"], 1e6)} | '
        f'{r["multiply_adds"] / 1e9:.1f}{paper(r["paper_multiply_adds"], 1e9)} |')
  return '\n'.join(lines)


# ----------------------------------------------------------------------------------------
# The recipes against the paper's Appendix H.

_PSEUDO_SOURCES = ((retinanet_cfg.IMAGENET_PSEUDO_BASE, 'imagenet'),
                   (retinanet_cfg.OPEN_IMAGES_PSEUDO_BASE, 'open_images'),
                   (segmentation_cfg.PASCAL_INPUT_PATH_BASE, 'pascal_aug'))
_SOURCE_NAMES = {'imagenet': 'ImageNet', 'open_images': 'Open Images',
                 'pascal_aug': 'PASCAL aug'}
def _init_of(task) -> str:
  """'rand', or the init whose `INIT_CHECKPOINTS` entry for this backbone the task loads."""
  if not task.init_checkpoint:
    return 'rand'
  backbone = retinanet_cfg.backbone_name(task.model.backbone)
  for (of, init), name in retinanet_cfg.INIT_CHECKPOINTS.items():
    if of == backbone and task.init_checkpoint == os.path.join(
        retinanet_cfg.INIT_CHECKPOINT_BASE, name) and task.init_checkpoint_modules == 'backbone':
      return init
  return f'{task.init_checkpoint} ({task.init_checkpoint_modules})'


def _unlabeled_of(task) -> Optional[str]:
  if not student_cfg.has_pseudo_data(task):
    return None
  for base, source in _PSEUDO_SOURCES:
    if task.pseudo_data.input_path.startswith(os.path.join(base, 'pseudo', '')):
      return source
  return task.pseudo_data.input_path


def _fraction_of(task) -> float:
  for fraction in (0.2, 0.5):
    if task.train_data.input_path == retinanet_cfg.coco_train(fraction):
      return fraction
  return 1.0


def _parser(data):
  return getattr(data, 'parser', data)


@functools.lru_cache(maxsize=None)
def _registered(name: str):
  """The registered config, as `trainer.build_params` makes it without overrides (locked)."""
  return trainer.build_params(name)


def _peak_learning_rate(params) -> float:
  schedule = params.trainer.optimizer_config.learning_rate
  return (schedule.stepwise.values[0] if schedule.type == 'stepwise'
          else schedule.cosine.initial_learning_rate)


def recipe_of(name: str) -> paper_numbers.Recipe:
  """What experiment `name`'s config sets, in the terms of Appendix H's recipes; a student's
  init is its teacher's (the student itself starts from the teacher)."""
  params = _registered(name)
  task = params.task
  teacher = paper_cells.TEACHERS.get(name)
  parser = _parser(task.train_data)
  preset = augment.preset_of(parser)
  student = student_cfg.has_pseudo_data(task)
  human, pseudo = _batches(task)
  classification = getattr(task, 'classification_data', None)
  policy = parser.aug_type.type if parser.aug_type else None
  return paper_numbers.Recipe(
      backbone=retinanet_cfg.backbone_name(task.model.backbone),
      augmentation=preset.lower() if preset else None,
      init=recipe_of(teacher).init if teacher else _init_of(task),
      steps=params.trainer.train_steps,
      alpha=task.loss_normalization.alpha if student else None,
      unlabeled=_unlabeled_of(task),
      fraction=_fraction_of(task),
      weight=getattr(task, 'classification_weight', None),
      batch=human,
      pseudo_batch=pseudo,
      classification_batch=classification.global_batch_size if classification else 0,
      learning_rate=_peak_learning_rate(params),
      randaugment_magnitude=parser.aug_type.randaug.magnitude if policy == 'randaug' else None)


def _cell_name(cell) -> str:
  table, row, column = cell
  return (f'Table {table[5:]}: {paper_numbers.ROW_NAMES[(table, row)]}, '
          f'{paper_numbers.COLUMN_NAMES[column]}')


def _steps(steps: int) -> str:
  return f'{steps / 1000:g}k'


def _ours_paper(ours, paper, fmt=str) -> str:
  show = lambda v: '—' if v is None else fmt(v)
  return '—' if ours is None and paper is None else f'{show(ours)} ({show(paper)})'


def _augmentation_text(parser) -> str:
  preset = augment.preset_of(parser)
  jitter = (parser.aug_scale_min, parser.aug_scale_max)
  if preset is None:
    return f'flips, scale jitter {jitter[0]:.1f}-{jitter[1]:.1f}'
  text = f'Augment-{preset}'
  if jitter != tuple(augment.PRESETS[preset].scale_jitter):
    text += f', scale jitter {jitter[0]:.1f}-{jitter[1]:.1f}'
  randaug = parser.aug_type.randaug if parser.aug_type else None
  if preset == 'S4' and randaug.magnitude != augment.PRESETS['S4'].randaugment_magnitude:
    text += f', magnitude {randaug.magnitude:g}'
  return text


def _learning_rate(params) -> str:
  schedule = params.trainer.optimizer_config.learning_rate.type
  return f'{_peak_learning_rate(params):g} {schedule}'


def _data(task, recipe: paper_numbers.Recipe) -> str:
  labeled = 'PASCAL train' if hasattr(task.train_data, 'output_size') else 'COCO'
  parts = [f'{labeled} {recipe.fraction:.0%}']
  if recipe.unlabeled:
    parts.append(f'{_SOURCE_NAMES.get(recipe.unlabeled, recipe.unlabeled)} pseudo labels')
  if recipe.weight is not None:
    parts.append(f'ImageNet classification x {recipe.weight:g}')
  return ' + '.join(parts)


def _batch_text(recipe: Optional[paper_numbers.Recipe]) -> Optional[str]:
  """'256', '256 + 256', '256 + 256 + 256' (human, pseudo, classification; a 0 half left
  out); '—' for a number the paper does not state."""
  if recipe is None:
    return None
  halves = [recipe.batch] + [b for b in (recipe.pseudo_batch, recipe.classification_batch)
                             if b != 0]
  return ' + '.join('—' if b is None else str(b) for b in halves)


def recipes_markdown(names: Sequence[str]) -> str:
  """The document `describe --recipes` writes: a row per experiment, ours beside the paper."""
  lines = [
      '# The full-scale recipes against the paper', '',
      'Generated from the registered configs by '
      '`./run.sh describe --recipes=docs/full_scale_recipes.md`; do not edit by hand. '
      'tests/test_paper_numbers.py checks every row against the paper '
      '(`projects/self_training/study/paper_numbers.py`): steps, alpha and the classification-loss '
      'weight (Appendix H), batch, peak learning rate and RandAugment magnitude (Sections '
      '3.1-3.2 and the captions), backbone, augmentation, initialization and data. Steps, '
      'alpha, batch and lr: ours, and in parentheses the paper\'s for the first cell (in batch '
      'and lr, — is a number the paper does not state, and is not checked). Batch: human '
      '(+ pseudo-labeled, + classification) images per step. A student starts from its teacher '
      '(`$TEACHERS_DIR/<teacher>`) and reads that teacher\'s pseudo labels; its init column '
      'names the teacher\'s.', '',
      '| experiment | paper cells | paper AP / mIoU | steps (paper) | alpha (paper) | '
      'batch (paper) | lr (paper) | augmentation | init | data |',
      '|---|---|---|---|---|---|---|---|---|---|']
  for name in names:
    params = _registered(name)
    task = params.task
    ours = recipe_of(name)
    cells = paper_cells.CELLS.get(name, ())
    paper = paper_numbers.APPENDIX_H.get(cells[0]) if cells else None
    numbers = sorted({f'{paper_numbers.paper(*c):.1f}' for c in cells
                      if paper_numbers.paper(*c) is not None})
    teacher = paper_cells.TEACHERS.get(name)
    init = paper_cells.INIT_NAMES.get(ours.init, ours.init)
    lines.append(' | '.join([
        f'| `{name}`', '<br>'.join(_cell_name(c) for c in cells) or 'not in the paper',
        ' / '.join(numbers) or '—',
        _ours_paper(ours.steps, paper.steps if paper else None, _steps),
        _ours_paper(ours.alpha, paper.alpha if paper else None),
        f'{_batch_text(ours)} ({_batch_text(paper) or "—"})',
        _ours_paper(_learning_rate(params), paper.learning_rate if paper else None),
        _augmentation_text(_parser(task.train_data)),
        f'{init}, student of `{teacher}`' if teacher else init,
        _data(task, ours)]) + ' |')
  return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------------------
# Capacity plan.

# Dense bfloat16 peak per chip, from the vendors' data sheets (assumptions, not measured).
ACCELERATORS = {
    'TPU v3-32 (16 chips x 123 TFLOPS)': (16, 123e12),
    'TPU v4-32 (16 chips x 275 TFLOPS)': (16, 275e12),
    '8 x A100 (312 TFLOPS)': (8, 312e12),
}
# Segmentation pseudo labels average the export's six scales (0.5-1.75) and their flips.
SEGMENTATION_VIEWS = 2 * sum(s * s for s in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75))
# The paper's runs: (name, teacher, student, unlabeled images, label views per image).
PAPER_RUNS = (
    ('COCO + ImageNet (Tables 2, 3, 13), B7 Augment-S4', 'retinanet_efficientnetb7_fpn_coco_s4',
     'retinanet_efficientnetb7_fpn_coco_s4_student', 1_281_167, 1.0),
    ('COCO + Open Images (Table 5), SpineNet-190', 'retinanet_spinenet190_coco',
     'retinanet_spinenet190_coco_student', 1_700_000, 1.0),
    ('PASCAL + aug set (Table 6), NAS-FPN B7', 'seg_nasfpn_efficientnetb7_pascal',
     'seg_nasfpn_efficientnetb7_pascal_student', 10_582, SEGMENTATION_VIEWS),
    ('PASCAL + aug set (Table 6), NAS-FPN L2', 'seg_nasfpn_efficientnetl2_pascal',
     'seg_nasfpn_efficientnetl2_pascal_student', 10_582, SEGMENTATION_VIEWS),
)


def capacity_plan(rows: Sequence[Dict[str, Any]], utilization: float = 0.3) -> str:
  """Markdown: images/s per chip and wall-clock per stage of the paper's runs, from the
  measured multiply-adds, at `utilization` of the chips' peak.

  A training image costs 3 forward passes (forward, and backward at twice the forward),
  a multiply-add 2 FLOPs; a pseudo label one forward pass per view.
  """
  by_name = {r['experiment']: r for r in rows}
  lines = [f'Assumed utilization: {utilization:.0%} of dense bf16 peak; a training image = '
           '3 forward passes, a pseudo label = 1 forward pass per view '
           f'(segmentation: 6 scales x flip = {SEGMENTATION_VIEWS:.1f} image-equivalents).', '',
           '| run | stage | images | per chip img/s: ' +
           ' | '.join(a.split(' (')[0] for a in ACCELERATORS) + ' | wall-clock: ' +
           ' | '.join(a.split(' (')[0] for a in ACCELERATORS) + ' |',
           '|---|---|---|' + '---|' * (2 * len(ACCELERATORS))]
  for name, teacher, student, unlabeled, views in PAPER_RUNS:
    if teacher not in by_name or student not in by_name:
      continue
    t, st = by_name[teacher], by_name[student]
    stages = (
        ('teacher', t['train_steps'] * _images_per_step(t), 6 * t['multiply_adds']),
        ('pseudo labels', unlabeled, 2 * t['multiply_adds'] * views),
        ('student', st['train_steps'] * _images_per_step(st), 6 * st['multiply_adds']),
    )
    for stage, images, flops_per_image in stages:
      rates, walls = [], []
      for chips, peak in ACCELERATORS.values():
        per_chip = peak * utilization / flops_per_image
        rates.append(f'{per_chip:,.0f}')
        walls.append(cli.duration(images / (per_chip * chips)))
      count = f'{images / 1e6:,.1f}M' if images >= 1e6 else f'{images / 1e3:,.1f}k'
      lines.append(f'| {name} | {stage} | {count} | ' + ' | '.join(rates) + ' | ' +
                   ' | '.join(walls) + ' |')
  return '\n'.join(lines)


def _images_per_step(row: Dict[str, Any]) -> int:
  return sum(int(part) for part in row['batch'].split('+'))


# ----------------------------------------------------------------------------------------
# Dry run.


def _check_image_size(params, image_size: int) -> None:
  level = 2 ** params.task.model.max_level
  if image_size <= 0 or image_size % level:
    raise DryRunError(f'--image_size must be a multiple of {level} (2^max_level of the '
                      f'model), got {image_size}')


def dryrun_override(params, image_size: int, batch_size: int, data_dir: str) -> str:
  """The override that points a full-scale experiment at embedded data, small and float32."""
  segmentation = hasattr(params.task.train_data, 'output_size')
  _check_image_size(params, image_size)
  human, pseudo = (('voc_train', 'voc_aug') if segmentation else ('train', 'train'))
  parts = [f'task.model.input_size=[{image_size},{image_size},3]',
           'runtime.mixed_precision_dtype=float32', 'task.init_checkpoint=""',
           f'task.train_data.input_path={emoji_scenes.split_pattern(data_dir, human)}',
           f'task.train_data.global_batch_size={batch_size}',
           'task.train_data.dtype=float32', 'task.train_data.shuffle_buffer_size=8']
  if segmentation:
    parts.append(f'task.train_data.output_size=[{image_size},{image_size}]')
  else:
    parts.append(f'task.annotation_file={emoji_scenes.annotation_file(data_dir, "val")}')
  if student_cfg.has_pseudo_data(params.task):
    parts += [f'task.pseudo_data.input_path={emoji_scenes.split_pattern(data_dir, pseudo)}',
              f'task.pseudo_data.global_batch_size={batch_size}',
              'task.pseudo_data.dtype=float32', 'task.pseudo_data.shuffle_buffer_size=8']
    if segmentation:
      parts.append(f'task.pseudo_data.output_size=[{image_size},{image_size}]')
  if hasattr(params.task, 'classification_data'):
    iconic = pretrain_cfg.iconic_pattern(data_dir, False).replace(',', "','")
    parts += [f"task.classification_data.input_path=['{iconic}']",
              f'task.classification_data.global_batch_size={batch_size}']
  return ','.join(parts)


def dryrun(name: str, image_size: int = 256, batch_size: int = 2,
           data_dir: Optional[str] = None, eager: bool = False) -> Dict[str, Any]:
  """One training step of `name` on embedded data; returns its loss and timings.

  `eager` runs the step op by op instead of as a traced `tf.function` (the input pipeline
  stays a graph): the same Python, without the minutes of graph building a large model
  takes on CPU, and without checking that the step traces.
  """
  if name not in full_scale_experiments():
    raise DryRunError(f'unknown full-scale experiment {name!r}; ours: '
                      f'{", ".join(full_scale_experiments())}')
  full = trainer.build_params(name)
  _check_image_size(full, image_size)
  try:
    data_dir = emoji_scenes.resolve_data_dir(data_dir)
  except ValueError as e:
    raise DryRunError(str(e)) from None
  params = trainer.build_params(
      name, params_override=dryrun_override(full, image_size, batch_size, data_dir))
  start = time.time()
  task = trainer.build_task(params, model_dir='')
  model = task.build_model()
  optimizer = task.create_optimizer(params.trainer.optimizer_config, params.runtime)
  metrics = task.build_metrics(training=True)
  inputs = next(iter(task.build_inputs(params.task.train_data)))
  built = time.time() - start
  step = lambda x: task.train_step(x, model, optimizer, metrics)
  if not eager:
    step = tf.function(step)
  start = time.time()
  logs = step(inputs)
  loss = float(logs[task.loss])
  seconds = time.time() - start
  if not math.isfinite(loss):
    raise DryRunError(f'{name}: loss is {loss} after one step')
  return {'experiment': name, 'loss': loss, 'image_size': image_size, 'batch_size': batch_size,
          'params': model.count_params(), 'build_seconds': round(built, 1),
          'step_seconds': round(seconds, 1), 'eager': eager,
          'full_input_size': list(full.task.model.input_size),
          'full_batch': _batch(full.task), 'full_train_steps': full.trainer.train_steps}


# ----------------------------------------------------------------------------------------
# Command line.

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_list('experiments', ['*'], 'describe: experiment names or globs.')
  flags.DEFINE_string('json', None, 'describe: also write the rows as JSON here.')
  flags.DEFINE_string('recipes', None, 'describe: write the table of the recipes against the '
                      "paper's Appendix H here ('-': print it), from the configs alone.")
  flags.DEFINE_string('from_json', None, 'describe: print the tables from a JSON written by '
                      '--json instead of building the models.')
  flags.DEFINE_float('utilization', 0.3, 'describe: assumed fraction of peak FLOPs for the '
                     'capacity plan.')
  flags.DEFINE_integer('image_size', 256, 'dryrun: image side (a multiple of 2^max_level).')
  flags.DEFINE_integer('batch_size', 2, 'dryrun: images per half-batch.')
  flags.DEFINE_string('data_dir', None, 'dryrun: embedded data (default: the cached set).')
  flags.DEFINE_integer('jobs', 1, 'dryrun of several recipes: how many run at once (each '
                       'in its own process, one thread).')
  flags.DEFINE_bool('eager', False, 'dryrun: run the step eagerly (faster on CPU for large '
                    'models; does not check that the step traces).')


def main(argv):
  if argv[1:2] == ['describe']:
    main_describe(argv[2:])
  elif argv[1:2] == ['dryrun']:
    main_dryrun(argv[2:])
  else:
    raise app.UsageError('usage: describe [--experiments=...] | dryrun EXPERIMENT')


def main_describe(args):
  cli.no_arguments(args)
  trainer.quiet_logs()
  names = [n for n in full_scale_experiments()
           if any(fnmatch.fnmatchcase(n, p) for p in FLAGS.experiments)]
  if not names:
    cli.fail(f'no full-scale experiment matches {",".join(FLAGS.experiments)}; ours: '
             f'{", ".join(full_scale_experiments())}')
  if FLAGS.recipes:
    text = recipes_markdown(names)
    if FLAGS.recipes == '-':
      print(text, end='')
    else:
      write_text(FLAGS.recipes, text)
      print(f'describe: {len(names)} recipes against Appendix H -> {FLAGS.recipes}')
    return
  if FLAGS.from_json:
    rows = [r for r in read_json(FLAGS.from_json) if r['experiment'] in names]
  else:
    rows = describe(names)
  print(table(rows))
  print()
  print(capacity_plan(rows, FLAGS.utilization))
  if FLAGS.json:
    write_json(FLAGS.json, rows)


def dryrun_each(names: Sequence[str]) -> None:
  """`dryrun` of each recipe in a process of its own, `--jobs` at a time.

  One process per recipe: TensorFlow keeps much of a built model's memory after
  `clear_session`, so the recipes in one process filled 21 GB by the eleventh (B7 at 256
  px), near this machine's 24 GB. A failed recipe is reported and the others still run;
  the exit status is 1 if any failed.
  """
  flag_args = [f'--image_size={FLAGS.image_size}', f'--batch_size={FLAGS.batch_size}',
               f'--eager={FLAGS.eager}'] + ([f'--data_dir={FLAGS.data_dir}'] if FLAGS.data_dir
                                            else [])
  env = cli.shared_cores_env(FLAGS.jobs) if FLAGS.jobs > 1 else dict(os.environ)
  pending, running, failed = list(names), [], []
  while pending or running:
    while pending and len(running) < max(1, FLAGS.jobs):
      name = pending.pop(0)
      cmd = [sys.executable, '-m', 'projects.self_training.tools.full_scale', 'dryrun', name]
      running.append((name, subprocess.Popen(cmd + flag_args, env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, text=True)))
    name, proc = running.pop(0)
    output = proc.communicate()[0]
    lines = [l for l in output.splitlines() if l.startswith(('dryrun ', 'error:'))]
    print('\n'.join(lines) if lines else f'dryrun {name}: no result line', flush=True)
    if proc.returncode or not any(l.startswith(f'dryrun {name}:') for l in lines):
      failed.append(name)
  if failed:
    print(f'\n{len(failed)} of {len(names)} recipes failed: {", ".join(failed)}')
    sys.exit(1)
  print(f'\n{len(names)} recipes built and stepped, every loss finite.')


def main_dryrun(args):
  if len(args) != 1:
    raise app.UsageError('usage: dryrun EXPERIMENT|GLOB|all [--image_size=256] [--batch_size=2] '
                         '[--jobs=1]')
  trainer.quiet_logs()
  pattern = '*' if args[0] == 'all' else args[0]
  names = [n for n in full_scale_experiments() if fnmatch.fnmatchcase(n, pattern)] or [args[0]]
  if len(names) > 1:
    dryrun_each(names)
    return
  with cli.errors_in_one_line(DryRunError, trainer.ConfigError):
    out = dryrun(names[0], FLAGS.image_size, FLAGS.batch_size, FLAGS.data_dir, FLAGS.eager)
  print(f'dryrun {out["experiment"]}: one {"eager" if out["eager"] else "traced"} step at '
        f'{out["image_size"]} px, batch '
        f'{out["batch_size"]}: loss {out["loss"]:.4f} (finite); {out["params"] / 1e6:.1f}M '
        f'parameters; built in {out["build_seconds"]} s, stepped in {out["step_seconds"]} s. '
        f'Full scale: {out["full_input_size"][0]} px, batch {out["full_batch"]}, '
        f'{out["full_train_steps"]:,} steps.', flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
