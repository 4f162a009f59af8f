"""The study's report: `report.md` (each table beside the paper's, gains against the Rand
Init supervised cell of its column, the students' pseudo labels) and `figure1.png`, from the
finished cells of a study directory."""

import glob
import os
from typing import Any, Dict, List, Optional, Tuple

from projects.self_training.common import file_io
from projects.self_training.common import trainer
from projects.self_training.study import grid
from projects.self_training.study import paper_numbers

REPORT = 'report.md'
INIT_NAMES = {'rand': 'Rand Init', 'imagenet': 'ImageNet Init', 'imagenet_plus': 'ImageNet++ Init',
              'simclr': 'SimCLR Init'}


def _fmt(value: Optional[float], base: Optional[float]) -> str:
  if value is None:
    return '—'
  if base is None:
    return f'{value:.1f}'
  return f'({value - base:+.1f}) {value:.1f}'


def load_records(study_dir: str) -> Dict[str, Dict[str, Any]]:
  """Every finished cell of a study directory, by id."""
  import glob  # pylint: disable=g-import-not-at-top
  out = {}
  for path in sorted(glob.glob(os.path.join(study_dir, grid.CELLS_DIR, '*.json'))):
    record = trainer.read_json(path)
    out[record['id']] = record
  return out


def baseline(table: str, column: str, paper: bool = False) -> Tuple[str, str, str]:
  """The (table, row, column) each cell is compared with: the Rand Init supervised cell of
  its column; Table 7's Sup. Training Rand Init; Appendix B's Augment-S1 Rand Init (ours:
  Table 2's cell; the paper's: Table 12's ResNet-101, Figure 2's model)."""
  if table == 'table7':
    return ('table7', 'rand', 'supervised')
  if table == 'appendix_b':
    return ('table12', 'rand', 's1') if paper else ('table2', 'rand', 's1')
  return (table, 'rand', column)


def report_tables(records: Dict[str, Dict[str, Any]]) -> List[str]:
  """Markdown: each table in the paper's layout, ours beside the paper's."""
  lines = []
  for table, (title, rows, columns) in grid.TABLES.items():
    if not any(r['table'] == table for r in records.values()):
      continue
    lines += [f'### {title}', '',
              '| Setup | ' + ' | '.join(f'{label} (ours) | {label} (paper)'
                                         for _, label in columns) + ' |',
              '|---|' + '---|---|' * len(columns)]
    for row, label in rows:
      cells = []
      for column, _ in columns:
        key = (table, row, column)
        base_key = baseline(table, column)
        ours = records.get('.'.join(key))
        base = records.get('.'.join(base_key)) if base_key != key else None
        cells.append(_fmt(100 * ours['val']['AP'] if ours else None,
                          100 * base['val']['AP'] if base else None))
        paper_base = baseline(table, column, paper=True)
        if key in paper_numbers.DIVERGED:
          cells.append('NaN (diverged)')
        else:
          cells.append(_fmt(paper_numbers.paper(*key),
                            paper_numbers.paper(*paper_base) if paper_base != key else None))
      if any(c != '—' for c in cells[::2]):
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    lines.append('')
  return lines


def figure1(records: Dict[str, Dict[str, Any]], path: str) -> Optional[str]:
  """Figure 1's two panels from our supervised cells: AP against augmentation strength and
  against labeled fraction, one line per initialization; the paper's as dashed lines."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = [('table2', list(paper_numbers.AUGS), [grid.AUG_NAMES[a] for a in paper_numbers.AUGS],
             paper_numbers.FIGURE1_AUG, 'augmentation (100% labeled)'),
            ('table3', ['f20', 'f50', 'f100'], ['0.2', '0.5', '1.0'],
             paper_numbers.FIGURE1_FRACTION, 'labeled fraction (Augment-S4)')]
  if not any(r['table'] in ('table2', 'table3') and r['kind'] == 'supervised'
             for r in records.values()):
    return None
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
  colors = {'rand': 'tab:blue', 'imagenet': 'tab:orange', 'imagenet_plus': 'tab:green'}
  for ax, (table, columns, ticks, paper_lines, xlabel) in zip(axes, panels):
    twin = ax.twinx()
    for init, color in colors.items():
      xs, ys = [], []
      for x, column in enumerate(columns):
        r = records.get(f'{table}.{init}.{column}')
        if r:
          xs.append(x)
          ys.append(100 * r['val']['AP'])
      if xs:
        ax.plot(xs, ys, marker='o', color=color, label=f'{INIT_NAMES[init]} (ours)')
        twin.plot(range(len(columns)), paper_lines[init], linestyle='--', color=color,
                  alpha=0.5, label=f'{INIT_NAMES[init]} (paper)')
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(ticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel('ours: val COCO AP (solid)')
    twin.set_ylabel('paper: COCO AP (dashed)')
    ax.grid(alpha=0.3)
    if ax.get_lines():
      ax.legend(loc='upper left', fontsize=7)
    else:
      ax.text(0.5, 0.5, 'no supervised cells yet', ha='center', transform=ax.transAxes)
  fig.suptitle('Figure 1: supervised AP by augmentation and by labeled fraction')
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return path


def pseudo_label_section(study_dir: str) -> List[str]:
  """What each teacher's pseudo labels on `iconic` held, with the collapse warnings of
  `./run.sh report`: a self-training cell is only as good as what its students read.
  (Iconic images hold one object each, of a wider class set than COCO's, so their
  count is not compared with the scenes' human labels.)"""
  from projects.self_training.pseudo_label import report  # pylint: disable=g-import-not-at-top
  summaries = sorted(glob.glob(os.path.join(study_dir, 'groups', '*', 'pseudo', 'summary.json')))
  if not summaries:
    return []
  lines = ['### Pseudo labels the students read (`iconic`, threshold '
           f'{trainer.read_json(summaries[0])["threshold"]})', '',
           '| teachers\' group | images | boxes | boxes / image | images with no box | warning |',
           '|---|---|---|---|---|---|']
  for path in summaries:
    summary = trainer.read_json(path)
    warnings = report.warnings_for(summary, summary['boxes_per_class'], None, {})
    lines.append(
        f'| {path.split(os.sep)[-3]} | {summary["num_images"]} | {summary["num_boxes"]} | '
        f'{summary["boxes_per_image"]:.3f} | '
        f'{100 * summary["num_empty_images"] / max(summary["num_images"], 1):.1f}% | '
        f'{"; ".join(warnings) or "—"} |')
  return lines + ['']


def write_report(study_dir: str) -> str:
  """`report.md` (and `figure1.png`) from every finished cell of the study directory."""
  identity = trainer.read_json(os.path.join(study_dir, grid.STUDY_FILE))
  records = load_records(study_dir)
  if identity is None or not records:
    raise trainer.ConfigError(f'{study_dir} holds no finished study cell (no '
                              f'{grid.STUDY_FILE} or {grid.CELLS_DIR}/*.json): run ./run.sh study')
  plot = figure1(records, os.path.join(study_dir, 'figure1.png'))
  seconds = sum(r['seconds'] for r in records.values())
  pretrain = []
  for kind in grid.INIT_MACROS:
    result = trainer.read_json(os.path.join(identity['pretrain_root'], 'pretrain', kind,
                                            'result.json'))
    if result and any(r['group']['init'] == kind for r in records.values()):
      top1 = (f'{100 * result["top1"]:.1f}% top-1' if 'top1' in result else
              f'{100 * result["contrastive_top1"]:.1f}% contrastive top-1')
      pretrain.append(f'{kind} {top1} / linear probe '
                      f'{100 * result["linear_probe_top1"]:.1f}% ({result["wall_seconds"]:.0f} s)')
  steps = identity['steps']
  lines = [
      '# Pre-training vs self-training: the study', '',
      f'{len(records)} cells at size `{identity["size"]}` '
      f'(teacher {steps["teacher"] or "to its plateau"} '
      f'steps, control and student {steps["finetune"]}), seed {identity["seed"]}, each '
      'trained once: COCO AP on `val` of the embedded emoji scenes. In parentheses: the gain '
      'or loss against the Rand Init supervised cell of the same column (Table 7: its Rand '
      'Init Sup. Training cell; Appendix B: Table 2\'s Rand Init Augment-S1). The paper\'s '
      'numbers (EfficientNet-B7 RetinaNet on COCO; Table 4 ResNet-50, Figure 2 ResNet-101) '
      'have their gains recomputed the same way, so they differ from the paper\'s printed '
      'ones where it compares with another row (Tables 3 and 7: ImageNet rows against ImageNet '
      'Init). Self-training pseudo-labels `iconic` (ImageNet\'s role).', '',
      f'Compute: {seconds:.0f} s of wall time on this machine, summed over cells (a cell '
      'resumed after a kill counts its last run only; pre-training not included).' +
      (f' Pre-training: {"; ".join(pretrain)}.' if pretrain else ''), '']
  lines += report_tables(records)
  lines += pseudo_label_section(study_dir)
  if plot:
    lines += [f'![Figure 1]({os.path.basename(plot)})', '']
  path = os.path.join(study_dir, REPORT)
  file_io.write_text(path, '\n'.join(lines) + '\n')
  return path
