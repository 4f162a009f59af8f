"""What machine a timing was measured on: every figure of seconds names its CPU, since runs
are bit-identical and comparable only within one CPU family."""

import functools
import os
import platform


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
  """The CPU's model name as the kernel reports it (`lscpu`'s "Model name"), with its core
  count, e.g. 'Intel(R) Xeon(R) Processor, 2 cores'; the platform's word where there is no
  /proc/cpuinfo."""
  name = ''
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:  # a local file, never a user path
      name = next((line.split(':', 1)[1].strip() for line in f
                   if line.lower().startswith('model name')), '')
  except OSError:
    pass
  return f'{name or platform.processor() or platform.machine()}, {os.cpu_count()} cores'
