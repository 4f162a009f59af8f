"""Backbone initialization: the paper's Rand Init, ImageNet Init, ImageNet++ Init, SimCLR Init.

`gin/init/*.gin` bind `initialization.*`; the experiment parser (trainer.py) writes the
binding into Model Garden's `task.init_checkpoint` / `task.init_checkpoint_modules`, so a
gin file composes with `--params_override` like the augmentation files do.

Loading is strict. Model Garden reads a backbone checkpoint with `expect_partial()`: a
checkpoint of another architecture can leave most of the backbone at its random
initialization, and the error (if any) is a multi-line object-graph dump. Here every
variable of the loaded modules is looked up in the checkpoint by its object path before
anything is read; the first one that is missing or has another shape (or a checkpoint
variable under those modules that the model lacks) is a one-line `CheckpointMismatch`.
A public checkpoint whose variable names are not Model Garden's goes through
`tools/convert_checkpoint.py` first.
"""

import collections
import dataclasses
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from absl import logging
import gin
import tensorflow as tf

# Modules `init_checkpoint_modules` may name (comma-separated), as Model Garden's models
# expose them; 'all' keeps Model Garden's own whole-model restore (the student's init).
MODULES = ('backbone', 'decoder', 'head')
VARIABLE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'
OPTIMIZER_SLOT = '/.OPTIMIZER_SLOT/'  # a trainer's checkpoint keeps momentum beside each weight


class CheckpointMismatch(ValueError):
  """An init checkpoint that does not fit the model: named in one line, nothing loaded."""


@dataclasses.dataclass(frozen=True)
class Init:
  name: str
  checkpoint: str = ''
  modules: str = 'backbone'


@gin.configurable
def initialization(name: Optional[str] = None, checkpoint: str = '',
                   modules: str = 'backbone') -> Optional[Init]:
  """The initialization bound in gin, or None when no gin file names one."""
  if name is None:
    return None
  return Init(name, checkpoint, modules)


def apply_initialization(task_config, init: Init) -> None:
  """Writes `init` into a Model Garden task config. Rand Init clears any init checkpoint."""
  parse_modules(init.modules)
  task_config.init_checkpoint = init.checkpoint
  task_config.init_checkpoint_modules = init.modules if init.checkpoint else ''


def parse_modules(modules) -> List[str]:
  """'backbone', 'backbone,decoder' or a list of names (Model Garden accepts both)."""
  if isinstance(modules, str):
    modules = modules.split(',')
  names = [m.strip() for m in modules if m.strip()]
  for name in names:
    if name not in MODULES:
      raise ValueError(f'unknown init_checkpoint_modules entry {name!r}; expected a '
                       f'comma-separated subset of {", ".join(MODULES)}, or all')
  return names


def _escape(name: str) -> str:
  """Object names as TF writes them into checkpoint keys."""
  return name.replace('.', '..').replace('/', './')


def variable_paths(root: tf.Module) -> Dict[str, tf.Variable]:
  """Checkpoint key -> variable for everything `root` saves, in breadth-first order.

  The key of a variable is the shortest object path to it, found breadth first, which is
  how `tf.train.Checkpoint` names it (tests/test_init.py checks against a written one).
  """
  paths: Dict[str, tf.Variable] = {}
  seen = {id(root)}
  queue = collections.deque([(root, '')])
  while queue:
    obj, prefix = queue.popleft()
    for name, child in tf.train.TrackableView(obj).children(obj).items():
      if id(child) in seen:
        continue
      seen.add(id(child))
      path = f'{prefix}{_escape(name)}'
      if isinstance(child, tf.Variable):
        paths[path + VARIABLE_SUFFIX] = child
      else:
        queue.append((child, path + '/'))
  return paths


def resolve(checkpoint: str) -> str:
  """A checkpoint prefix from a prefix or a directory; a missing one is a one-line error."""
  if tf.io.gfile.isdir(checkpoint):
    latest = tf.train.latest_checkpoint(checkpoint)
    if latest is None:
      raise CheckpointMismatch(f'init checkpoint directory {checkpoint} holds no checkpoint')
    return latest
  if not tf.io.gfile.exists(checkpoint + '.index'):
    raise CheckpointMismatch(f'init checkpoint not found: {checkpoint}')
  return checkpoint


def _shape(variable: tf.Variable) -> Tuple[int, ...]:
  return tuple(variable.shape.as_list())


def check_fits(checkpoint: str, items: Mapping[str, tf.Module]) -> int:
  """Raises CheckpointMismatch unless every variable of `items` is in `checkpoint` with its
  shape and the checkpoint has no other variable under them; returns the variable count."""
  ours = variable_paths(tf.train.Checkpoint(**items))
  theirs = dict(tf.train.list_variables(checkpoint))
  for key, variable in ours.items():
    name = key[:-len(VARIABLE_SUFFIX)]
    if key not in theirs:
      raise CheckpointMismatch(
          f'init checkpoint {checkpoint} does not fit the model: it has no {name} '
          f'(shape {list(_shape(variable))}); is it a checkpoint of another architecture, '
          'or one that needs projects/self_training/tools/convert_checkpoint.py?')
    if tuple(theirs[key]) != _shape(variable):
      raise CheckpointMismatch(
          f'init checkpoint {checkpoint} does not fit the model: {name} has shape '
          f'{list(theirs[key])} there and {list(_shape(variable))} here')
  for key in sorted(theirs):
    if (key.split('/', 1)[0] in items and key.endswith(VARIABLE_SUFFIX) and
        OPTIMIZER_SLOT not in key and key not in ours):
      raise CheckpointMismatch(
          f'init checkpoint {checkpoint} does not fit the model: its '
          f'{key[:-len(VARIABLE_SUFFIX)]} has no counterpart here')
  return len(ours)


def load(checkpoint: str, items: Mapping[str, tf.Module]) -> int:
  """Checks, then restores `items` (module name -> module) from `checkpoint`; returns the
  number of variables loaded, which is every variable the modules have."""
  checkpoint = resolve(checkpoint)
  count = check_fits(checkpoint, items)
  status = tf.train.Checkpoint(**items).read(checkpoint)
  status.expect_partial().assert_existing_objects_matched()
  logging.info('init: loaded %d variables (%s) from %s', count, ', '.join(items), checkpoint)
  return count


def strict_initialize(task) -> Callable[[tf.Module], None]:
  """Makes `task.initialize` load module checkpoints strictly (see the module docstring).

  `init_checkpoint_modules='all'` (a student from its teacher) keeps the task's own
  whole-model restore, which already requires every checkpointed object to match; only a
  missing checkpoint is caught first, so it is one line too.
  """
  original = task.initialize

  def initialize(model):
    config = task.task_config
    modules = config.init_checkpoint_modules or ''
    if not config.init_checkpoint:
      return original(model)
    if modules == 'all':
      resolve(config.init_checkpoint)  # a missing one: one line, not a reader's traceback
      return original(model)
    items = {name: getattr(model, name) for name in parse_modules(modules)}
    missing = [name for name, module in items.items() if module is None]
    if missing:
      raise CheckpointMismatch(f'the model has no {missing[0]} to initialize')
    task.init_variable_count = load(config.init_checkpoint, items)

  task.initialize = initialize
  return initialize
