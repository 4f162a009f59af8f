"""Atomic files: every stage's metrics, summaries and sidecars (JSON) and generated docs go
through these."""

import json
import os
from typing import Any, Optional

import numpy as np
import tensorflow as tf


def write_json(path: str, payload: Any, indent: Optional[int] = 2) -> None:
  """Writes JSON atomically: a temporary name, then a rename, so no reader sees half a file.

  `indent=None` writes compact JSON with the C encoder (large files: ~10x faster).
  """
  write_text(path, json.dumps(payload, indent=indent, sort_keys=True, default=_to_python) + '\n')


def write_text(path: str, text: str) -> None:
  """Writes `text` atomically: a temporary name, then a rename."""
  tf.io.gfile.makedirs(os.path.dirname(path) or '.')
  tmp = f'{path}.tmp-{os.getpid()}'
  with tf.io.gfile.GFile(tmp, 'w') as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


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
