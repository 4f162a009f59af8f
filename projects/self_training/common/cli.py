"""What every command line shares: errors in one line (`error: ...`, exit status 2) and no
stray arguments."""

import contextlib
import os
import subprocess
import sys
import threading
from typing import Dict, Iterator, NoReturn, Sequence, Tuple, Type

from absl import app

EXIT_USAGE = 2


def shared_cores_env(processes: int) -> Dict[str, str]:
  """The environment of one of `processes` TensorFlow processes run side by side: the
  cores shared out between them (its `TF_NUM_INTRAOP_THREADS` and `TF_NUM_INTEROP_THREADS`)."""
  threads = str(max(1, (os.cpu_count() or 1) // max(1, processes)))
  return dict(os.environ, TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS=threads)


def start_prefixed(cmd: Sequence[str], prefix: str,
                   env: Dict[str, str]) -> Tuple[subprocess.Popen, threading.Thread]:
  """Starts `cmd` (unbuffered) with its output, standard error included, forwarded line by
  line to this process's standard output as it is now, each line after `prefix`; returns
  the process and the forwarding thread (join it after the process ends). The stream is
  taken now because Model Garden's training loop swaps `sys.stdout` for a buffer while it
  trains (`trainer.train_to_plateau`), process-wide: a `print` from the forwarding thread
  would land there."""
  out = sys.stdout
  proc = subprocess.Popen(list(cmd), env=dict(env, PYTHONUNBUFFERED='1'),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

  def forward():
    for line in proc.stdout:
      print(prefix + line.rstrip('\n'), file=out, flush=True)

  thread = threading.Thread(target=forward, daemon=True)
  thread.start()
  return proc, thread


def duration(seconds: float) -> str:
  """Seconds as a reader takes them in: '40 s', '12 min', '3.5 h', '2.1 d'."""
  if seconds < 60:
    return f'{seconds:.0f} s'
  if seconds < 3600:
    return f'{seconds / 60:.0f} min'
  if seconds < 48 * 3600:
    return f'{seconds / 3600:.1f} h'
  return f'{seconds / 86400:.1f} d'


def one_line(err: BaseException) -> str:
  """The first line of an error's message (its type when it has none)."""
  text = str(err).strip().splitlines()
  return text[0] if text else type(err).__name__


def fail(message: str, prefix: str = 'error') -> NoReturn:
  """Prints `PREFIX: MESSAGE` to stderr and exits with status 2, no traceback."""
  print(f'{prefix}: {message}', file=sys.stderr)
  sys.exit(EXIT_USAGE)


@contextlib.contextmanager
def errors_in_one_line(*errors: Type[BaseException], prefix: str = 'error') -> Iterator[None]:
  """An error of the types `errors` raised in the block ends the program in one line: the
  first line of its message, to stderr, with exit status 2 (`fail`)."""
  try:
    yield
  except errors as e:
    fail(one_line(e), prefix)


def no_arguments(args: Sequence[str]) -> None:
  """Refuses positional arguments left after the flags (e.g. `argv[1:]`: a typo'd flag)."""
  if args:
    raise app.UsageError(f'unexpected arguments: {" ".join(args)}')
