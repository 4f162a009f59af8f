"""The study's report: `report.md` (each table beside the paper's, gains against the Rand
Init supervised cell of its column, the students' pseudo labels) and `figure1.png`, from the
finished cells of a study directory."""

import glob
import os
from typing import Any, Dict, List, Optional, Tuple

from projects.self_training.common import file_io
from projects.self_training.common import trainer
from projects.self_training.configs import paper_cells
from projects.self_training.study import findings
from projects.self_training.study import grid
from projects.self_training.study import paper_numbers

REPORT = 'report.md'


def _fmt(value: Optional[float], base: Optional[float], spread: str = '') -> str:
  if value is None:
    return '—'
  if base is None:
    return f'{value:.1f}{spread}'
  return f'({value - base:+.1f}) {value:.1f}{spread}'


Runs = Dict[str, Dict[int, Dict[str, Any]]]  # cell id -> seed -> record


def seed_dirs(study_dir: str) -> List[str]:
  """The study's directory per seed: `seed<k>/` (`--seeds`), or the study's own."""
  dirs = sorted(glob.glob(os.path.join(study_dir, 'seed[0-9]*')),
                key=lambda d: int(os.path.basename(d)[4:]))
  return dirs or [study_dir]


def load_runs(study_dir: str) -> Runs:
  """Every finished cell of a study directory, by id and seed."""
  out: Runs = {}
  for directory in seed_dirs(study_dir):
    for path in sorted(glob.glob(os.path.join(directory, grid.CELLS_DIR, '*.json'))):
      record = trainer.read_json(path)
      out.setdefault(record['id'], {})[int(record.get('seed', 0))] = record
  return out


def _ours(runs: Optional[Dict[int, Dict[str, Any]]]) -> Tuple[Optional[float], str]:
  """A cell's mean `val` AP over its valid seeds and its spread text ('' for one seed)."""
  estimate = findings.cell_estimate(runs or {})
  if not estimate.values:
    return None, ''
  return estimate.mean, (f' ± {estimate.spread:.1f} ×{estimate.n}' if estimate.n > 1 else '')


def baseline(table: str, column: str, paper: bool = False) -> Tuple[str, str, str]:
  """The (table, row, column) each cell is compared with: the Rand Init supervised cell of
  its column; Table 7's Sup. Training Rand Init; Appendix B's Augment-S1 Rand Init (ours:
  Table 2's cell; the paper's: Table 12's ResNet-101, Figure 2's model)."""
  if table == 'table7':
    return ('table7', 'rand', 'supervised')
  if table == 'appendix_b':
    return ('table12', 'rand', 's1') if paper else ('table2', 'rand', 's1')
  return (table, 'rand', column)


def report_tables(runs: Runs) -> List[str]:
  """Markdown: each table in the paper's layout, ours (mean ± spread over seeds, valid
  runs only; 'invalid' when none is) beside the paper's."""
  lines = []
  for table, (title, rows, columns) in grid.TABLES.items():
    if not any(i.startswith(f'{table}.') for i in runs):
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
        ours, spread = _ours(runs.get('.'.join(key)))
        base = _ours(runs.get('.'.join(base_key)))[0] if base_key != key else None
        if ours is None and runs.get('.'.join(key)):
          cells.append('invalid')
        else:
          cells.append(_fmt(ours, base, spread))
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


def figure1(runs: Runs, path: str) -> Optional[str]:
  """Figure 1's two panels from our supervised cells (valid seeds: mean, the spread as error
  bars): AP against augmentation strength and against labeled fraction, one line per
  initialization; the paper's as dashed lines."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = [('table2', list(paper_numbers.AUGS), [grid.AUG_NAMES[a] for a in paper_numbers.AUGS],
             paper_numbers.FIGURE1_AUG, 'augmentation (100% labeled)'),
            ('table3', ['f20', 'f50', 'f100'], ['0.2', '0.5', '1.0'],
             paper_numbers.FIGURE1_FRACTION, 'labeled fraction (Augment-S4)')]
  if not any(i.split('.')[0] in ('table2', 'table3') for i in runs):
    return None
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
  colors = {'rand': 'tab:blue', 'imagenet': 'tab:orange', 'imagenet_plus': 'tab:green'}
  for ax, (table, columns, ticks, paper_lines, xlabel) in zip(axes, panels):
    twin = ax.twinx()
    for init, color in colors.items():
      xs, ys, errors = [], [], []
      for x, column in enumerate(columns):
        estimate = findings.cell_estimate(runs.get(f'{table}.{init}.{column}', {}))
        if estimate.values:
          xs.append(x)
          ys.append(estimate.mean)
          errors.append(estimate.spread or 0.0)
      if xs:
        ax.errorbar(xs, ys, yerr=errors, marker='o', color=color, capsize=3,
                    label=f'{paper_cells.INIT_NAMES[init]} (ours)')
        twin.plot(range(len(columns)), paper_lines[init], linestyle='--', color=color,
                  alpha=0.5, label=f'{paper_cells.INIT_NAMES[init]} (paper)')
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


def pseudo_dirs(study_dir: str) -> List[str]:
  """The pseudo labels the study's finished self-training cells read: their group's, or,
  where the convergence test adopted a longer teacher, that teacher's (`longer/` per
  round)."""
  dirs = set()
  for directory in seed_dirs(study_dir):
    for path in glob.glob(os.path.join(directory, grid.CELLS_DIR, '*.json')):
      record = trainer.read_json(path)
      if record.get('kind', 'supervised') == 'supervised':
        continue
      rounds = (record.get('validity') or {}).get('teacher_round', 0)
      group_dir = os.path.join(directory, 'groups', grid.Group(**record['group']).name)
      dirs.add(os.path.join(grid.round_dir(group_dir, rounds), 'pseudo'))
  return sorted(dirs)


def pseudo_label_section(study_dir: str) -> List[str]:
  """What the pseudo labels the students read held (per seed and teacher), with the
  collapse warnings of `./run.sh report` and their precision and recall on `holdout`: a
  self-training cell is only as good as what its students read."""
  from projects.self_training.pseudo_label import report  # pylint: disable=g-import-not-at-top
  summaries = [path for path in (os.path.join(d, 'summary.json') for d in pseudo_dirs(study_dir))
               if os.path.exists(path)]
  if not summaries:
    return []
  lines = ['### Pseudo labels the students read (`unlabeled_scenes`, threshold '
           f'{trainer.read_json(summaries[0])["threshold"]})', '',
           '| teacher\'s group | images | boxes / image | images with no box | precision / '
           'recall on holdout | warning |', '|---|---|---|---|---|---|']
  for path in summaries:
    summary = trainer.read_json(path)
    quality = trainer.read_json(os.path.join(os.path.dirname(path), 'quality.json')) or {}
    at = quality.get('at_threshold') or {}
    pr = '—'
    if at:
      precision = '—' if at['precision'] is None else f'{100 * at["precision"]:.0f}%'
      pr = f'{precision} / {100 * at["recall"]:.0f}%'

    warnings = report.warnings_for(summary, summary['boxes_per_class'], None, {})
    group = os.path.relpath(os.path.dirname(os.path.dirname(path)), study_dir)
    lines.append(
        f'| {group} | {summary["num_images"]} | {summary["boxes_per_image"]:.2f} | '
        f'{100 * summary["num_empty_images"] / max(summary["num_images"], 1):.1f}% | {pr} | '
        f'{"; ".join(warnings) or "—"} |')
  return lines + ['']


def _caveats(times: List[Dict[str, Any]]) -> str:
  """What the stage times `times` leave out or may overstate, in words ('' when nothing)."""
  untimed = sum(t.get('untimed_evals', 0) for t in times)
  exports = sum(t.get('untimed_exports', 0) for t in times)
  slow = sum(t.get('slow_intervals', 0) for t in times)
  excess = sum(t.get('slow_excess_seconds', 0.0) for t in times)
  plural = lambda n, word: f'{n} {word}' + ('s' if n != 1 else '')
  return '; '.join(([f'{plural(untimed, "eval")} untimed'] if untimed else []) + (
      [f'the exports of {plural(exports, "teacher")} untimed'] if exports else []) + (
      [f'{plural(slow, "slow interval")}, {excess:.0f} s over their stage\'s median rate']
      if slow else []))


def cell_seconds(r: Dict[str, Any]) -> str:
  """A run's time: the seconds of the stages it needed (`runner.Study.stage_times`: shared
  ones included, every session counted), or for a record written before those were kept
  its wall time, which counts only the session that finished it."""
  shared = r.get('side_by_side', 1)
  notes = [f'{shared} side by side'] if shared > 1 else []
  if 'stage_times' not in r:
    return f'{r["seconds"]:.0f} (wall, last session only' + ''.join(
        f'; {n}' for n in notes) + ')'
  times = list(r['stage_times'].values())
  caveats = _caveats(times)
  notes += [caveats] if caveats else []
  return f'{sum(t["seconds"] for t in times):.0f}' + (f' ({"; ".join(notes)})'
                                                      if notes else '')


def compute_line(records: List[Dict[str, Any]]) -> str:
  """The study's compute: each stage once (a teacher serves several cells), per seed."""
  stages = {(r.get('seed', 0), where): t for r in records
            for where, t in (r.get('stage_times') or {}).items()}
  walled = [r for r in records if 'stage_times' not in r]
  caveats = _caveats(list(stages.values()))
  return (f'Compute: {sum(t["seconds"] for t in stages.values()):.0f} s on this machine for '
          f'the {len(stages)} stages the runs needed, each counted once and summed over '
          'every session that trained it' + (f' ({caveats})' if caveats else '') + '; '
          + (f'{len(walled)} runs recorded before stage times were kept (or without their '
             f'stages\' directories): {sum(r["seconds"] for r in walled):.0f} s of wall '
             'time, the session that finished each only; ' if walled else '')
          + 'not counted: pre-training. A slow interval '
          'trained at under half its stage\'s median images per second: it was paused, or '
          'shared the machine with more than the rest of its stage did. Seeds run side by '
          'side (`--jobs`) each count their own time.')


def cells_section(runs: Runs) -> List[str]:
  """Markdown: every run of every cell: its seed, `val` AP, time and validity."""
  lines = ['### Every cell\'s runs', '',
           '| cell | seed | val AP | seconds (the stages it needed) | valid |',
           '|---|---|---|---|---|']
  for cell_id in sorted(runs):
    for seed, r in sorted(runs[cell_id].items()):
      validity = r.get('validity') or {'valid': True, 'reasons': []}
      seconds = cell_seconds(r)
      verdict = 'yes' if validity['valid'] else 'no: ' + '; '.join(validity['reasons'])
      tests = findings.convergence_tests(validity)
      if tests and validity['valid']:
        adopted = validity.get('teacher_round')
        verdict += ' (convergence test: ' + '; '.join(
            f'{t["steps"]} steps gave {t["gain"]:+.2f} held-out AP, {t["train_seconds"]} s'
            for t in tests) + (
                f'; its teacher: the {tests[adopted - 1]["steps"]}-step one' if adopted
                else '') + ')'
      lines.append(f'| {cell_id} | {seed} | {100 * r["val"]["AP"]:.1f} | {seconds} | '
                   f'{verdict} |')
  return lines + ['']


def write_report(study_dir: str) -> str:
  """`report.md` (and `figure1.png`) from every finished cell of the study directory."""
  identity = trainer.read_json(os.path.join(seed_dirs(study_dir)[0], grid.STUDY_FILE))
  runs = load_runs(study_dir)
  if identity is None or not runs:
    raise trainer.ConfigError(f'{study_dir} holds no finished study cell (no '
                              f'{grid.STUDY_FILE} or {grid.CELLS_DIR}/*.json): run ./run.sh study')
  plot = figure1(runs, os.path.join(study_dir, 'figure1.png'))
  records = [r for by_seed in runs.values() for r in by_seed.values()]
  seeds = sorted({int(r.get('seed', 0)) for r in records})
  pretrain = []
  for kind in grid.INIT_MACROS:
    result = trainer.read_json(os.path.join(identity['pretrain_root'], 'pretrain', kind,
                                            'result.json'))
    if result and any(r['group']['init'] == kind for r in records):
      top1 = (f'{100 * result["top1"]:.1f}% top-1' if 'top1' in result else
              f'{100 * result["contrastive_top1"]:.1f}% contrastive top-1')
      pretrain.append(f'{kind} {top1} / linear probe '
                      f'{100 * result["linear_probe_top1"]:.1f}% ({result["wall_seconds"]:.0f} s)')
  tests = {(r.get('seed', 0), grid.Group(**r['group']).name):
           findings.convergence_tests(r['validity'])
           for r in records if findings.convergence_tests(r.get('validity'))}
  steps = identity['steps']
  invalid = sum(not (r.get('validity') or {'valid': True})['valid'] for r in records)
  lines = [
      '# Pre-training vs self-training: the study', '',
      f'{len(runs)} cells at size `{identity["size"]}` (teachers: '
      + (f'{steps["teacher"]} steps' if steps['teacher'] else 'to convergence on `holdout`')
      + '; control and student: '
      + (f'{steps["finetune"]} steps' if steps['finetune'] else "the main job's protocol")
      + f'), seeds {", ".join(map(str, seeds))}: '
      'COCO AP on `val` of the embedded emoji scenes, the mean over a cell\'s valid seeds '
      '(± their standard deviation, ×seeds). In parentheses: the gain '
      'or loss against the Rand Init supervised cell of the same column (Table 7: its Rand '
      'Init Sup. Training cell; Appendix B: Table 2\'s Rand Init Augment-S1). The paper\'s '
      'numbers (EfficientNet-B7 RetinaNet on COCO; Table 4 ResNet-50, Figure 2 ResNet-101) '
      'have their gains recomputed the same way, so they differ from the paper\'s printed '
      'ones where it compares with another row (Tables 3 and 7: ImageNet rows against ImageNet '
      'Init). Self-training pseudo-labels `unlabeled_scenes` with the main job\'s labels '
      '(`iconic` cannot be the pool here: docs/study.md).', '',
      compute_line(records) +
      (f' Convergence tests (a teacher trained longer): '
       f'{sum(len(t) for t in tests.values())}, '
       f'{sum(t["train_seconds"] for ts in tests.values() for t in ts)} s of training.'
       if tests else '') +
      (f' Pre-training: {"; ".join(pretrain)}.' if pretrain else ''),
      f'Invalid runs (teacher not converged, or collapsed pseudo labels): {invalid} of '
      f'{len(records)}; they are left out of every mean and finding.', '']
  lines += findings.findings_section(runs)
  lines += report_tables(runs)
  lines += cells_section(runs)
  lines += pseudo_label_section(study_dir)
  if plot:
    lines += [f'![Figure 1]({os.path.basename(plot)})', '']
  path = os.path.join(study_dir, REPORT)
  file_io.write_text(path, '\n'.join(lines) + '\n')
  return path
