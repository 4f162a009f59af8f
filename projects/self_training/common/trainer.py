"""Experiment building and the train/eval loops shared by every stage.

Thin layer over Model Garden's `train_lib.OrbitExperimentRunner`: it adds gin-selected
augmentation to `ExperimentParser`, training until held-out AP stops improving (the paper
trains every model to convergence), and evaluation of one checkpoint on any split, with
metrics written as JSON next to the checkpoints.
"""

import contextlib
import dataclasses
import io
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from official.common import distribute_utils
from official.core import exp_factory
from official.core import task_factory
from official.core import train_lib
from official.core import train_utils
from official.modeling import performance
from official.vision import registry_imports  # pylint: disable=unused-import
from official.vision.utils import summary_manager

from projects.self_training.common import cli
from projects.self_training.common import initialization
from projects.self_training.common import registry_imports as _  # pylint: disable=unused-import
from projects.self_training.common.file_io import read_json  # pylint: disable=unused-import
from projects.self_training.common.file_io import write_json  # pylint: disable=unused-import
from projects.self_training.configs import augment

HISTORY_FILE = 'plateau_history.json'
BEST_SUBDIR = 'best_ckpt'
COCO_KEYS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'ARmax100')
# Held-out metrics a plateau run records: COCO's for detection, mean IoU for segmentation,
# top-1 for (pre-training) classification.
METRIC_KEYS = COCO_KEYS + ('mean_iou', 'accuracy', 'top_5_accuracy')


class ConfigError(ValueError):
  """A bad experiment name, config file, override or gin binding: reported in one line."""


class MadeOtherwise(ConfigError):
  """A finished or interrupted stage in directory `where` made otherwise than this run asks
  (`why`): never reused silently. The pipeline's own remedy is `--force=STAGE`; a caller
  with another (the study) words its own from `why`."""

  def __init__(self, why: str, stage: str, where: str):
    super().__init__(f'{why}: redo it (--force={stage}) or write to another directory')
    self.why, self.stage, self.where = why, stage, where


@dataclasses.dataclass
class ExperimentFlags:
  """What Model Garden's `ExperimentParser` reads from absl flags, as a plain object."""
  experiment: str
  config_file: Sequence[str] = ()
  params_override: str = ''
  tpu: str = ''
  tf_data_service: str = ''

  def __contains__(self, name):
    return hasattr(self, name)


class ExperimentParser(train_utils.ExperimentParser):
  """Model Garden's parser, plus the gin-bound Augment-Sk and backbone initialization
  (`gin/augment`, `gin/init`) between config files and overrides.

  The order lets `--params_override` refine a gin augmentation (e.g. a different scale
  jitter) while a gin file still overrides the experiment's defaults.
  """

  def parse_config_file(self, params):
    params = super().parse_config_file(params)
    aug = augment.augmentation()
    if aug is not None:
      # Detection data configs hold a `parser`; segmentation ones are their own parser.
      def parser_of(data):
        if data is None:
          return None
        return data.parser if hasattr(data, 'parser') else (
            data if hasattr(data, 'aug_type') else None)
      train = parser_of(getattr(params.task, 'train_data', None))
      if train is None:
        raise ConfigError(f'{aug.name}: experiment {self._flags_obj.experiment!r} has no '
                          'train_data.parser to augment')
      # A student's pseudo-labeled half is augmented like its human half.
      for parser in (train, parser_of(getattr(params.task, 'pseudo_data', None))):
        if parser is not None:
          augment.apply_augmentation(parser, aug, params.task.model.input_size[0])
    init = initialization.initialization()
    if init is not None:
      initialization.apply_initialization(params.task, init)
    return params

  def parse_data_service(self, params):
    """`--tf_data_service` on every training input (human, pseudo-labeled, classification),
    switched on: Model Garden's parser only writes the address into train and validation
    data, which its input reader ignores without `enable_tf_data_service`. Validation data
    stays as Model Garden leaves it (the service's parallel epochs would repeat eval
    images); `--params_override` still applies after this."""
    params = super().parse_data_service(params)
    address = self._flags_obj.tf_data_service
    if address:
      for name in ('train_data', 'pseudo_data', 'classification_data'):
        data = getattr(params.task, name, None)
        if data is not None:
          data.enable_tf_data_service = True
          data.tf_data_service_address = address
    return params


def quiet_logs():
  """Keeps Model Garden's per-step INFO logs and Keras warnings out of the job's output."""
  import warnings  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)
  tf.get_logger().setLevel('ERROR')
  warnings.filterwarnings('ignore', category=UserWarning)


def project_experiments() -> List[str]:
  """Names of the experiments this project registers."""
  registered = exp_factory._REGISTERED_CONFIGS  # pylint: disable=protected-access
  return sorted(n for n, factory in registered.items()
                if factory.__module__.startswith('projects.self_training.'))


def parse_gin(gin_files: Sequence[str] = (), gin_params: Sequence[str] = ()) -> None:
  """Parses gin files and bindings; any error (a misspelled name too) is one ConfigError."""
  for path in gin_files or ():
    if not tf.io.gfile.exists(path):
      raise ConfigError(f'gin file not found: {path}')
  try:
    gin.parse_config_files_and_bindings(list(gin_files or ()), list(gin_params or ()))
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f'gin: {cli.one_line(e)}') from None


def build_params(experiment: str,
                 config_files: Sequence[str] = (),
                 params_override: str = '',
                 gin_files: Sequence[str] = (),
                 gin_params: Sequence[str] = (),
                 tpu: str = '',
                 lock: bool = True,
                 tf_data_service: str = ''):
  """The experiment config as Model Garden's train.py builds it, plus gin augmentation."""
  gin.clear_config()
  parse_gin(gin_files, gin_params)
  flags_obj = ExperimentFlags(experiment, tuple(config_files or ()), params_override or '', tpu,
                              tf_data_service or '')
  try:
    exp_factory.get_exp_config(experiment)
  except (KeyError, LookupError):
    raise ConfigError(f'unknown experiment {experiment!r}; ours: '
                      f'{", ".join(project_experiments())}') from None
  try:
    params = ExperimentParser(flags_obj).parse()
    params.validate()
  except ConfigError:
    raise
  except (KeyError, ValueError, AttributeError, TypeError) as e:
    raise ConfigError(cli.one_line(e)) from None
  if lock:
    params.lock()
  return params


def scalar_metrics(logs: Dict[str, Any]) -> Dict[str, float]:
  """Keeps the scalar entries of Model Garden eval logs, as floats."""
  out = {}
  for k, v in logs.items():
    v = np.asarray(v.numpy() if isinstance(v, tf.Tensor) else v)
    if v.size == 1 and np.issubdtype(v.dtype, np.number):
      out[k] = float(v.reshape(()))
  return out


def _strategy(params):
  return distribute_utils.get_distribution_strategy(
      distribution_strategy=params.runtime.distribution_strategy,
      all_reduce_alg=params.runtime.all_reduce_alg,
      num_gpus=params.runtime.num_gpus,
      tpu_address=params.runtime.tpu)


def _eval_summaries(params, model_dir: str):
  """Model Garden's eval summary manager (images too when the task makes them), as its
  `vision/train.py` builds it."""
  return summary_manager.maybe_build_eval_summary_manager(params=params, model_dir=model_dir)


def build_task(params, model_dir: str):
  """The experiment's Model Garden task, with strict init-checkpoint loading."""
  task = task_factory.get_task(params.task, logging_dir=model_dir)
  initialization.strict_initialize(task)
  return task


def run_experiment(params, model_dir: str, mode: str) -> Dict[str, float]:
  """Model Garden's `train`, `eval`, `train_and_eval`, `continuous_eval` modes.

  Returns the last eval metrics (also written to `model_dir/metrics_{mode}.json`).
  """
  if params.runtime.mixed_precision_dtype:
    performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
  if 'train' in mode:
    train_utils.serialize_config(params, model_dir)
  strategy = _strategy(params)
  with strategy.scope():
    task = build_task(params, model_dir)
  runner = train_lib.OrbitExperimentRunner(
      distribution_strategy=strategy, task=task, mode=mode, params=params, model_dir=model_dir,
      eval_summary_manager=_eval_summaries(params, model_dir))
  logs = None
  with strategy.scope():
    if mode == 'eval':
      logs = runner.controller.evaluate(steps=params.trainer.validation_steps)
    elif mode == 'train_and_eval':
      logs = runner.controller.train_and_evaluate(
          train_steps=params.trainer.train_steps,
          eval_steps=params.trainer.validation_steps,
          eval_interval=params.trainer.validation_interval)
    else:
      runner.run()
  metrics = scalar_metrics(logs or {})
  if metrics:
    metrics['global_step'] = float(runner.trainer.global_step.numpy())
    write_json(os.path.join(model_dir, f'metrics_{mode}.json'), metrics)
  return metrics


# The plateau rule's shortest window, as a share of the schedule (`patience_for`): replayed
# on four whole-schedule Augment-S1 teachers (`./run.sh bench_plateau`, docs/training.md),
# a quarter lost at most 0.17 held-out AP against each one's best; a sixth lost 2.26.
PLATEAU_WINDOW = 1 / 4


@dataclasses.dataclass
class Plateau:
  """Stop when the held-out metric has not improved by `min_delta` for `patience` evals,
  all of them at or after step `start_step`: while a cosine schedule's learning rate is near
  its peak the held-out metric dips by points and recovers (docs/training.md). `patience`
  None: never stop (the whole schedule, best checkpoint kept)."""
  metric: str = 'AP'
  patience: Optional[int] = 3
  min_delta: float = 0.005  # COCO AP is in [0, 1] in Model Garden's logs.
  start_step: int = 0

  def reached(self, history: List[Dict[str, float]]) -> bool:
    values = [h[self.metric] for h in history]
    if self.patience is None or len(values) <= self.patience:
      return False
    if history[-self.patience].get('step', 0) < self.start_step:
      return False
    best_before = max(values[:-self.patience])
    return max(values[-self.patience:]) < best_before + self.min_delta

  @classmethod
  def for_schedule(cls, steps: int, interval: int, patience: Optional[int],
                   window: float = PLATEAU_WINDOW, start: float = 0.0,
                   **kwargs) -> 'Plateau':
    """The rule of a `steps`-step schedule with an eval every `interval` steps: patience
    `patience_for(steps, interval, patience, window)` evals, counted from `start` of the
    steps (`metric`, `min_delta` in `kwargs`)."""
    return cls(patience=patience_for(steps, interval, patience, window),
               start_step=round(start * steps), **kwargs)

  def describe(self) -> str:
    """The rule in a progress line's words."""
    if self.patience is None:
      return 'its whole schedule'
    return (f'plateau after {self.patience} evals without gain, counted from step '
            f'{self.start_step}')

  def stop_step(self, history: List[Dict[str, float]]) -> Optional[int]:
    """The step of the first eval in `history` at which this rule stops (None: none)."""
    for i in range(1, len(history) + 1):
      if self.reached(history[:i]):
        return history[i - 1]['step']
    return None


def patience_for(steps: int, interval: int, patience: Optional[int],
                 window: float) -> Optional[int]:
  """The plateau rule's patience in evals: at least `patience`, and enough evals every
  `interval` steps to span `window` of a `steps`-step schedule (None stays None: no stop)."""
  if patience is None:
    return None
  return max(patience, math.ceil(window * steps / max(interval, 1) - 1e-9))


def train_to_plateau(params, model_dir: str, plateau: Plateau = Plateau(),
                     progress=print) -> Dict[str, Any]:
  """Trains with an eval on `validation_data` every `validation_interval` steps.

  Stops at `train_steps` or when the metric stops improving; keeps the best checkpoint in
  `model_dir/best_ckpt` (Model Garden's BestCheckpointExporter). Resumable: a re-run restores
  the latest checkpoint and the eval history.
  """
  params = params.replace(trainer={
      'best_checkpoint_export_subdir': BEST_SUBDIR,
      'best_checkpoint_eval_metric': plateau.metric,
      'best_checkpoint_metric_comp': 'higher',
      'checkpoint_interval': params.trainer.validation_interval,
  })
  if params.runtime.mixed_precision_dtype:
    performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
  train_utils.serialize_config(params, model_dir)
  history_path = os.path.join(model_dir, HISTORY_FILE)
  state = read_json(history_path) or {'history': [], 'stopped': None}
  history = state['history']
  strategy = _strategy(params)
  with strategy.scope():
    task = build_task(params, model_dir)
  runner = train_lib.OrbitExperimentRunner(
      distribution_strategy=strategy, task=task, mode='train_and_eval', params=params,
      model_dir=model_dir, eval_summary_manager=_eval_summaries(params, model_dir))
  controller, trainer = runner.controller, runner.trainer
  total = params.trainer.train_steps
  interval = params.trainer.validation_interval
  batch = params.task.train_data.global_batch_size
  from projects.self_training.configs import student  # pylint: disable=g-import-not-at-top
  if student.has_pseudo_data(params.task):  # a student step reads both
    batch += student.pseudo_batch_size(params.task)
  step = int(trainer.global_step.numpy())
  history = [h for h in history if h['step'] <= step]
  train_seconds = sum(h.get('train_seconds', 0.0) for h in history)
  with strategy.scope():
    while state['stopped'] is None and step < total:
      target = min(step + interval, total)
      start = time.time()
      # Orbit prints every loop's full log dict, pycocotools every eval: the progress
      # line below says what matters; the full logs stay in TensorBoard and absl logs.
      with contextlib.redirect_stdout(io.StringIO()):
        controller.train(steps=target)
        seconds = time.time() - start
        logs = scalar_metrics(controller.evaluate(steps=params.trainer.validation_steps))
      train_seconds += seconds
      entry = {'step': target, 'train_seconds': seconds,
               'eval_seconds': time.time() - start - seconds,
               'images_per_second': (target - step) * batch / max(seconds, 1e-9),
               # pycocotools reports -1 when there is no detection at all: that is AP 0.
               **{k: max(logs[k], 0.0) for k in METRIC_KEYS if k in logs}}
      history.append(entry)
      step = target
      if student.has_pseudo_data(params.task):
        _draw_inputs(params, model_dir, step, len(history) - 1, progress)
      name = {'mean_iou': 'mIoU', 'accuracy': 'top-1'}.get(plateau.metric, plateau.metric)
      progress(f'step {step:>6d}/{total}  held-out {name} '
               f'{entry.get(plateau.metric, float("nan")):.4f}'
               f'  ({entry["images_per_second"]:.0f} img/s)')
      if plateau.reached(history):
        state['stopped'] = 'plateau'
      elif step >= total:
        state['stopped'] = 'train_steps'
      state['history'] = history
      write_json(history_path, state)
  best = max(history, key=lambda h: h[plateau.metric]) if history else None
  return {'history': history, 'stopped': state['stopped'], 'best': best,
          'train_seconds': train_seconds,
          'best_checkpoint': tf.train.latest_checkpoint(os.path.join(model_dir, BEST_SUBDIR))}


def _draw_inputs(params, model_dir: str, step: int, index: int, progress) -> None:
  """A student's human and pseudo inputs, drawn, in TensorBoard; never stops training."""
  from projects.self_training.common import input_images  # pylint: disable=g-import-not-at-top
  try:
    input_images.write(params, model_dir, step, index)
  except (ValueError, OSError, tf.errors.OpError) as e:
    progress(f'  (input images not drawn: {cli.one_line(e)})')


def restore_model(task, checkpoint: str):
  """The task's model, built (called once, so every variable exists) and restored from
  `checkpoint`; ConfigError unless every model variable was in it, with its shape."""
  model = task.build_model()
  model(tf.zeros([1, *task.task_config.model.input_size]), training=False)
  try:
    status = tf.train.Checkpoint(model=model).read(checkpoint)
    status.expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise ConfigError(f'checkpoint {checkpoint} does not restore the whole model: '
                      f'{cli.one_line(e)}') from None
  return model


def evaluate_checkpoint(params, checkpoint: str, input_path: str,
                        annotation_file: Optional[str]) -> Dict[str, float]:
  """The eval metrics of one checkpoint on one split, through the task's own eval step.

  COCO metrics for detection (`annotation_file` is the split's COCO JSON), mean IoU for
  segmentation (`annotation_file` None). A checkpoint that leaves any variable of the
  model unrestored (another architecture, a backbone-only checkpoint) is a one-line
  ConfigError; what the checkpoint holds beyond the model (optimizer state, a joint
  model's classifier) is not read.
  """
  override = {'validation_data': {'input_path': input_path}}
  if annotation_file is not None:
    override['annotation_file'] = annotation_file
  params = params.replace(task=override)
  task = task_factory.get_task(params.task)
  model = restore_model(task, checkpoint)
  metrics = task.build_metrics(training=False)
  dataset = task.build_inputs(params.task.validation_data)
  # One trace for every batch, the last (smaller) one too: the batch dimension left open.
  any_batch = tf.nest.map_structure(
      lambda spec: tf.TensorSpec([None] + spec.shape[1:], spec.dtype), dataset.element_spec)
  step_fn = tf.function(lambda inputs: task.validation_step(inputs, model, metrics=metrics),
                        input_signature=[any_batch])
  state = None
  for inputs in dataset:
    logs = step_fn(inputs)
    state = task.aggregate_logs(state=state, step_outputs=logs)
  with contextlib.redirect_stdout(io.StringIO()):
    return scalar_metrics(task.reduce_aggregated_logs(state))
