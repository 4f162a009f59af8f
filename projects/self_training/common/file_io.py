"""Files every stage writes: one atomic-write helper (a temporary name, then a rename) and
JSON (metrics, summaries, sidecars) and text (generated docs) written through it."""

import contextlib
import json
import os
from typing import Any, Dict, Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf


def temporary_name(path: str, pid: Optional[int] = None) -> str:
  """The hidden name beside `path` that process `pid` (default: this one) writes it under:
  `.NAME.tmp-PID`, which a reader's pattern of final names (`NAME-*.tfrecord`) never matches."""
  directory, name = os.path.split(path)
  return os.path.join(directory, f'.{name}.tmp-{os.getpid() if pid is None else pid}')


def temporaries(path: str) -> Dict[int, str]:
  """Every process's temporary of `path` that exists, by process id (e.g. of killed runs)."""
  directory, name = os.path.split(path)
  found = {}
  for tmp in tf.io.gfile.glob(os.path.join(directory, f'.{name}.tmp-*')):
    pid = tmp.rsplit('.tmp-', 1)[-1]
    if pid.isdigit():
      found[int(pid)] = tmp
  return found


@contextlib.contextmanager
def atomic_write(path: str, suffixes: Sequence[str] = ('',)) -> Iterator[str]:
  """Yields the temporary name the block writes `path` under (a file or a directory).

  When the block completes, the temporary is renamed to `path` (replacing it); when it
  raises, the temporary is removed. So no reader ever sees half an output under its final
  name, and a killed writer leaves at most a hidden temporary. With `suffixes`, the block
  writes the files `tmp + suffix` (e.g. the shards of a prefix), each published as
  `path + suffix`.
  """
  tf.io.gfile.makedirs(os.path.dirname(path) or '.')
  tmp = temporary_name(path)
  try:
    yield tmp
  except BaseException:
    for suffix in suffixes:
      _remove(tmp + suffix)
    raise
  for suffix in suffixes:
    _replace(tmp + suffix, path + suffix)


def _remove(path: str) -> None:
  if tf.io.gfile.isdir(path):
    tf.io.gfile.rmtree(path)
  elif tf.io.gfile.exists(path):
    tf.io.gfile.remove(path)


def _replace(tmp: str, path: str) -> None:
  """Renames `tmp` to `path`; a directory already at `path` is moved aside, then deleted."""
  if tf.io.gfile.isdir(tmp) and tf.io.gfile.exists(path):
    directory, name = os.path.split(path)
    old = os.path.join(directory, f'.old-{os.getpid()}.{name}')
    tf.io.gfile.rename(path, old)
    tf.io.gfile.rename(tmp, path)
    tf.io.gfile.rmtree(old)
  else:
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json(path: str, payload: Any, indent: Optional[int] = 2) -> None:
  """Writes JSON atomically, so no reader sees half a file.

  `indent=None` writes compact JSON with the C encoder (for large files: much faster).
  """
  write_text(path, json.dumps(payload, indent=indent, sort_keys=True, default=_to_python) + '\n')


def write_text(path: str, text: str) -> None:
  """Writes `text` atomically."""
  with atomic_write(path) as tmp:
    with tf.io.gfile.GFile(tmp, 'w') as f:
      f.write(text)


def read_json(path: str) -> Optional[Any]:
  """The parsed file, or None when it does not exist."""
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _to_python(v):
  if isinstance(v, (np.generic, np.ndarray)):
    return v.tolist()
  if isinstance(v, tf.Tensor):
    return v.numpy().tolist()
  raise TypeError(f'not JSON serializable: {type(v)}')
