"""What the study may conclude: whether a cell tests what it claims, and the paper's findings
judged over seeds.

A cell is *valid* when its teacher converged and, for a student,
when the pseudo labels it read did not collapse: at least `MIN_BOXES_PER_IMAGE` boxes per
pool image at the threshold, and a precision of at least `MIN_PRECISION` on `holdout`. An
invalid cell is reported with its reasons, never used for a finding.

A teacher *converged* when its held-out AP plateaued (the plateau rule stopped it), or peaked
before its step budget ended, or, the paper's own test (Section 3, Appendix H: "training
longer stops helping"), when the same teacher trained `LONGER_FACTOR` times longer (a
longer cosine schedule, not more steps at its end) gains at most `LONGER_TOLERANCE` held-out
AP. Under a cosine schedule the last evals are often the best, so a teacher at its best
when the budget ends may or may not have converged: only the longer run tells. When the
longer run gains more, it is the better-trained teacher and takes the first one's place
(Appendix H likewise reports each cell at its best length); if it too ended at its best it
is tested the same way, up to `LONGER_ROUNDS` tests (`runner.Study.converged_teacher`). A
teacher still gaining after the last test, or a size without the test
(`grid.Size.longer_factor`), leaves the cell invalid.

A finding is a set of checks, each a signed sum of cells' `val` AP computed per seed (e.g.
self-training's gain at Augment-S1: `table2.rand_st.s1 - table2.rand.s1`). A check *holds*
when its mean over seeds exceeds its spread (the standard deviation over seeds) in the
paper's direction, *does not hold* when it exceeds it the other way, and is *within noise*
otherwise; with fewer seeds than its `min_seeds` (`MIN_SEEDS`, or `HEADLINE_SEEDS` for Table
2's self-training row, the paper's headline) it is not judged. A finding holds when every
check holds, does not hold when one does not, and is within noise otherwise.
"""

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

# A teacher's pseudo labels are collapsed below these (the main job's, from the plateaued
# teacher with 4 views: 96% precision on `holdout`; 1.7 boxes per unlabeled scene with one view).
MIN_BOXES_PER_IMAGE = 0.5
MIN_PRECISION = 0.5
MIN_SEEDS = 2
HEADLINE_SEEDS = 3
# The convergence test of a teacher its budget cut off (see the module docstring). The
# tolerance, in held-out AP points, is the gain the plateau rule counts as improvement
# (`trainer.Plateau.min_delta`).
LONGER_FACTOR = 1.5
LONGER_TOLERANCE = 0.5
# Tests at most: a teacher trained up to 1.5 ** 2 = 2.25x its budget (Augment-S1: 27000
# steps, about 1.8 hours on one core here).
LONGER_ROUNDS = 2

HOLDS, DOES_NOT_HOLD, WITHIN_NOISE, NOT_JUDGED = (
    'holds', 'does not hold', 'within noise', 'not judged')


def cut_off(teacher: Dict[str, Any]) -> bool:
  """True when the teacher's step budget ended while its held-out AP was still at its best
  (its last eval), so the budget, not convergence, may have stopped it."""
  if teacher.get('stopped') == 'plateau':
    return False
  history = teacher.get('history') or []
  if not history or teacher.get('best_step') is None:
    return True
  return teacher['best_step'] >= history[-1]['step']


def longer_gain(teacher: Dict[str, Any], longer: Dict[str, Any], metric: str = 'AP') -> float:
  """Held-out AP points the teacher trained `LONGER_FACTOR` times longer gained over it."""
  return 100 * (longer['holdout'][metric] - teacher['holdout'][metric])


def teacher_reasons(teacher: Dict[str, Any], longer: Optional[Dict[str, Any]] = None,
                    metric: str = 'AP') -> List[str]:
  """Why a teacher's summary cannot stand for its group (empty: it can). `longer`: the same
  teacher trained `LONGER_FACTOR` times longer, the paper's convergence test for a teacher
  its budget cut off."""
  if not cut_off(teacher):
    return []  # plateaued, or held-out AP peaked before the budget ended
  history = teacher.get('history') or []
  last = history[-1]['step'] if history else None
  if longer is None:
    return [f'teacher did not plateau: held-out AP was still at its best at the last eval '
            f'(step {last}) when its step budget ended']
  gain = longer_gain(teacher, longer, metric)
  if gain <= LONGER_TOLERANCE:
    return []
  steps = (longer.get('history') or [{}])[-1].get('step')
  return [f'teacher did not converge: trained {LONGER_FACTOR:g}x longer ({steps} steps) it '
          f'gained {gain:+.2f} held-out AP (tolerance {LONGER_TOLERANCE:g})']


def convergence_tests(validity: Optional[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """A cell's convergence tests, in order (a record written before there could be more
  than one holds a single test)."""
  tests = (validity or {}).get('longer') or []
  return [tests] if isinstance(tests, dict) else list(tests)


def last_test_reasons(teacher: Dict[str, Any],
                      previous: Optional[Dict[str, Any]] = None) -> List[str]:
  """Why the teacher the convergence tests ended on cannot stand (empty: it can).
  `previous`: the teacher it replaced, trained `LONGER_FACTOR` times shorter (None: no test
  ran, so a teacher its budget cut off did not plateau)."""
  if not cut_off(teacher) or previous is None:
    return teacher_reasons(teacher)
  last = (teacher.get('history') or [{}])[-1].get('step')
  return [f'{teacher_reasons(previous, teacher)[0]}, and at {last} steps it was still at '
          f'its best at its last eval ({LONGER_ROUNDS} tests, the most the study runs)']


def pseudo_reasons(summary: Dict[str, Any], quality: Optional[Dict[str, Any]]) -> List[str]:
  """Why a set of pseudo labels is collapsed (empty: it is not)."""
  reasons = []
  per_image = summary.get('boxes_per_image', 0.0)
  if per_image < MIN_BOXES_PER_IMAGE:
    reasons.append(f'pseudo labels collapsed: {per_image:.2f} boxes per image at '
                   f'{summary.get("threshold")} (floor {MIN_BOXES_PER_IMAGE})')
  precision = (quality or {}).get('at_threshold', {}).get('precision')
  if precision is None or precision < MIN_PRECISION:
    shown = 'none' if precision is None else f'{100 * precision:.0f}%'
    reasons.append(f'pseudo-label precision on holdout {shown} (floor '
                   f'{100 * MIN_PRECISION:.0f}%)')
  return reasons


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A quantity over seeds: its mean, spread (sample standard deviation) and values."""
  values: Tuple[float, ...]

  @property
  def n(self) -> int:
    return len(self.values)

  @property
  def mean(self) -> Optional[float]:
    return sum(self.values) / self.n if self.values else None

  @property
  def spread(self) -> Optional[float]:
    if self.n < 2:
      return None
    m = self.mean
    return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

  def text(self, signed: bool = True) -> str:
    """'+1.2 ± 0.4 (3 seeds)'; unsigned for an AP."""
    if not self.values:
      return '—'
    sign = '+' if signed else ''
    if self.n == 1:
      return f'{self.values[0]:{sign}.1f} (1 seed)'
    return f'{self.mean:{sign}.1f} ± {self.spread:.1f} ({self.n} seeds)'


def verdict(estimate: Estimate, sign: int = 1, min_seeds: int = MIN_SEEDS) -> str:
  """`holds` / `does not hold` / `within noise` for the mean against its spread."""
  if estimate.n < max(MIN_SEEDS, min_seeds):
    return NOT_JUDGED
  gain = sign * estimate.mean
  if gain > estimate.spread:
    return HOLDS
  if gain < -estimate.spread:
    return DOES_NOT_HOLD
  return WITHIN_NOISE


@dataclasses.dataclass(frozen=True)
class Check:
  """One comparison: sum of coefficient x cell AP (percent), expected positive."""
  label: str
  terms: Tuple[Tuple[float, str], ...]
  min_seeds: int = MIN_SEEDS


@dataclasses.dataclass(frozen=True)
class Finding:
  name: str
  checks: Tuple[Check, ...]


def _gain(label, better, worse, min_seeds=MIN_SEEDS):
  return Check(label, ((1.0, better), (-1.0, worse)), min_seeds)


def _gain_difference(label, a_better, a_worse, b_better, b_worse):
  """(a_better - a_worse) - (b_better - b_worse): the gain at a beats the gain at b."""
  return Check(label, ((1.0, a_better), (-1.0, a_worse), (-1.0, b_better), (1.0, b_worse)))


FINDINGS = (
    Finding("pre-training's gain falls with stronger augmentation (Table 2)", (
        _gain_difference('ImageNet - Rand at S1, minus the same at S4', 'table2.imagenet.s1',
                         'table2.rand.s1', 'table2.imagenet.s4', 'table2.rand.s4'),)),
    Finding("pre-training's gain falls with more labels (Table 3)", (
        _gain_difference('ImageNet - Rand at 20%, minus the same at 100%', 'table3.imagenet.f20',
                         'table3.rand.f20', 'table3.imagenet.f100', 'table3.rand.f100'),)),
    Finding('self-training helps at every augmentation and data size (Tables 2, 3)', (
        _gain('at Augment-S1', 'table2.rand_st.s1', 'table2.rand.s1', HEADLINE_SEEDS),
        _gain('at Augment-S4', 'table2.rand_st.s4', 'table2.rand.s4', HEADLINE_SEEDS),
        _gain('at 20% labels', 'table3.rand_st.f20', 'table3.rand.f20'))),
    Finding('joint training helps (Table 7)', (
        _gain('joint - supervised, Rand Init, 20%', 'table7.rand.joint',
              'table7.rand.supervised'),)),
    Finding('loss normalization beats the standard loss at large alpha (Appendix B)', (
        _gain('alpha 3: normalized - standard', 'appendix_b.loss_norm.a3',
              'appendix_b.standard.a3'),)),
)


def check_estimate(check: Check, by_cell: Dict[str, Dict[int, Dict[str, Any]]]
                   ) -> Tuple[Estimate, List[str]]:
  """The check's value per seed (seeds every term has, valid), and what kept cells out."""
  problems = []
  seeds = None
  for _, cell in check.terms:
    runs = by_cell.get(cell, {})
    if not runs:
      problems.append(f'{cell} not run')
      continue
    invalid = {s: r for s, r in runs.items() if not r.get('validity', {}).get('valid', True)}
    for s, r in sorted(invalid.items()):  # the reasons' heads: the runs table has the rest
      heads = dict.fromkeys(reason.split(':')[0] for reason in r['validity']['reasons'])
      problems.append(f'{cell} seed {s} invalid: {"; ".join(heads)}')
    valid = set(runs) - set(invalid)
    seeds = valid if seeds is None else seeds & valid
  if problems or not seeds:
    return Estimate(()), problems
  values = tuple(sum(c * 100 * by_cell[cell][s]['val']['AP'] for c, cell in check.terms)
                 for s in sorted(seeds))
  return Estimate(values), []


def judge(finding: Finding, by_cell: Dict[str, Dict[int, Dict[str, Any]]]
          ) -> Tuple[str, List[Tuple[Check, Estimate, str, List[str]]]]:
  """The finding's verdict and, per check, its estimate, verdict and problems."""
  rows = []
  for check in finding.checks:
    estimate, problems = check_estimate(check, by_cell)
    if not problems and estimate.n < check.min_seeds:
      problems = [f'{estimate.n} of the {check.min_seeds} seeds it needs']
    rows.append((check, estimate, NOT_JUDGED if problems else
                 verdict(estimate, min_seeds=check.min_seeds), problems))
  verdicts = [r[2] for r in rows]
  if NOT_JUDGED in verdicts:
    return NOT_JUDGED, rows
  if DOES_NOT_HOLD in verdicts:
    return DOES_NOT_HOLD, rows
  if all(v == HOLDS for v in verdicts):
    return HOLDS, rows
  return WITHIN_NOISE, rows


def cell_estimate(runs: Dict[int, Dict[str, Any]]) -> Estimate:
  """A cell's `val` AP (percent) over its valid seeds."""
  return Estimate(tuple(100 * r['val']['AP'] for _, r in sorted(runs.items())
                        if r.get('validity', {}).get('valid', True)))


def findings_section(by_cell: Dict[str, Dict[int, Dict[str, Any]]],
                     findings: Sequence[Finding] = FINDINGS) -> List[str]:
  """Markdown: each of the paper's findings, its verdict and the figures behind it."""
  lines = ['### The paper\'s findings at this scale', '',
           f'A check holds when its mean gain over seeds (AP points on `val`) exceeds its '
           f'spread (standard deviation over seeds) in the paper\'s direction; at least '
           f'{MIN_SEEDS} seeds ({HEADLINE_SEEDS} for Table 2\'s self-training row), valid cells '
           f'only.', '',
           '| finding | verdict | checks |', '|---|---|---|']
  for finding in findings:
    result, rows = judge(finding, by_cell)
    checks = '; '.join(
        f'{check.label}: {estimate.text()} {v}' + (f' ({", ".join(problems)})' if problems else '')
        for check, estimate, v, problems in rows)
    lines.append(f'| {finding.name} | **{result}** | {checks} |')
  return lines + ['']
