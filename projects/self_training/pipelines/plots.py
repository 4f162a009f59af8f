"""Figures of a main-job run: held-out AP against training step for every stage."""

import os
from typing import Any, Dict

STAGE_STYLE = {'teacher': ('teacher', 'k'), 'control': ('supervised control', 'tab:blue'),
               'student': ('student (self-training)', 'tab:red')}


def learning_curves(results: Dict[str, Any], path: str) -> str:
  """Held-out AP by step: the teacher, then control and student continuing from it."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
  teacher_end = results['teacher']['best_step'] if 'teacher' in results else 0
  for stage, (label, color) in STAGE_STYLE.items():
    if stage not in results:
      continue
    history = results[stage]['history']
    offset = 0 if stage == 'teacher' else teacher_end  # fine-tuning continues the teacher
    steps = [offset + h['step'] for h in history]
    ap = [100 * h['AP'] for h in history]
    if stage != 'teacher' and 'teacher' in results:
      steps.insert(0, teacher_end)
      ap.insert(0, 100 * results['teacher']['holdout']['AP'])
    ax.plot(steps, ap, marker='o', markersize=3, color=color, label=label)
  ax.set_xlabel('training step (control and student start from the teacher)')
  ax.set_ylabel('held-out COCO AP')
  ax.grid(alpha=0.3)
  ax.legend(loc='lower right')
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path
