"""The study's validity rules and findings: verdicts from seeds, invalid cells kept out."""

import pytest

from projects.self_training.common import trainer
from projects.self_training.study import findings


def _run(ap, valid=True, reasons=()):
  return {'val': {'AP': ap / 100}, 'validity': {'valid': valid, 'reasons': list(reasons)}}


def test_teacher_convergence_rule():
  assert findings.teacher_reasons({'stopped': 'plateau'}) == []
  peaked = {'stopped': 'train_steps', 'best_step': 7000, 'holdout': {'AP': 0.36},
            'history': [{'step': 7000}, {'step': 8000}]}
  assert not findings.cut_off(peaked) and findings.teacher_reasons(peaked) == []
  # Its budget ended at its best: invalid unless training longer stops helping.
  cut = dict(peaked, best_step=8000)
  assert findings.cut_off(cut)
  assert 'did not plateau' in findings.teacher_reasons(cut)[0]
  tol = findings.LONGER_TOLERANCE
  assert tol == pytest.approx(100 * trainer.Plateau.min_delta)  # one notion of "improves"
  for gain, valid in ((-1.0, True), (tol - 0.01, True), (tol + 0.01, False)):
    longer = {'holdout': {'AP': 0.36 + gain / 100}, 'history': [{'step': 12000}]}
    assert findings.longer_gain(cut, longer) == pytest.approx(gain)
    reasons = findings.teacher_reasons(cut, longer)
    assert (reasons == []) == valid, (gain, reasons)
  assert reasons == [f'teacher did not converge: trained {findings.LONGER_FACTOR:g}x longer '
                     f'(12000 steps) it gained +{tol + 0.01:.2f} held-out AP (tolerance {tol:g})']


def test_collapsed_pseudo_labels():
  ok = {'boxes_per_image': 1.7, 'threshold': 0.5}
  good = {'at_threshold': {'precision': 0.96}}
  assert findings.pseudo_reasons(ok, good) == []
  reasons = findings.pseudo_reasons({'boxes_per_image': 0.034, 'threshold': 0.5},
                                    {'at_threshold': {'precision': None}})
  assert len(reasons) == 2 and '0.03 boxes per image' in reasons[0]
  assert 'precision on holdout none' in reasons[1]
  assert '40%' in findings.pseudo_reasons(ok, {'at_threshold': {'precision': 0.4}})[0]


def test_estimate_and_verdict():
  e = findings.Estimate((1.2, 1.2, 1.9))
  assert e.mean == pytest.approx(1.4333, abs=1e-3)
  assert e.spread == pytest.approx(0.4041, abs=1e-3)
  assert e.text() == '+1.4 ± 0.4 (3 seeds)'
  assert e.text(signed=False) == '1.4 ± 0.4 (3 seeds)'
  assert findings.verdict(e) == findings.HOLDS
  assert findings.verdict(e, sign=-1) == findings.DOES_NOT_HOLD
  assert findings.verdict(findings.Estimate((0.5, -0.3))) == findings.WITHIN_NOISE
  assert findings.verdict(findings.Estimate((3.0,))) == findings.NOT_JUDGED


def test_finding_pairs_seeds_and_keeps_invalid_cells_out():
  st = findings.FINDINGS[2]  # self-training helps at every augmentation and data size
  by_cell = {
      'table2.rand.s1': {0: _run(39.6), 1: _run(39.5), 2: _run(39.2)},
      'table2.rand_st.s1': {0: _run(40.8), 1: _run(40.7), 2: _run(41.1)},
      'table2.rand.s4': {0: _run(30.0), 1: _run(31.0), 2: _run(30.5)},
      'table2.rand_st.s4': {0: _run(30.5), 1: _run(30.6), 2: _run(30.4)},
      'table3.rand.f20': {0: _run(20.0), 1: _run(21.0)},
      'table3.rand_st.f20': {0: _run(25.0), 1: _run(26.0)},
  }
  result, rows = findings.judge(st, by_cell)
  assert [r[2] for r in rows] == [findings.HOLDS, findings.WITHIN_NOISE, findings.HOLDS]
  assert rows[0][1].values == pytest.approx((1.2, 1.2, 1.9))
  assert result == findings.WITHIN_NOISE
  # Table 2's self-training row is the headline: 2 seeds are not enough to judge it.
  del by_cell['table2.rand.s4'][2]
  result, rows = findings.judge(st, by_cell)
  assert result == findings.NOT_JUDGED and rows[1][2] == findings.NOT_JUDGED
  assert rows[1][3] == ['2 of the 3 seeds it needs']
  assert rows[2][2] == findings.HOLDS  # 2 seeds judge Table 3's
  # An invalid seed of one cell: the check is not judged, with the reasons' heads (the
  # report's runs table has them whole).
  by_cell['table3.rand_st.f20'][1] = _run(26.0, valid=False, reasons=[
      'pseudo labels collapsed: 0.10 boxes per image at 0.5 (floor 0.5)',
      'teacher did not plateau: held-out AP was still at its best at step 6'])
  result, rows = findings.judge(st, by_cell)
  assert result == findings.NOT_JUDGED
  assert ('table3.rand_st.f20 seed 1 invalid: pseudo labels collapsed; teacher did not '
          'plateau') in rows[2][3]
  del by_cell['table2.rand.s4']
  assert 'table2.rand.s4 not run' in findings.judge(st, by_cell)[1][1][3]
  text = '\n'.join(findings.findings_section(by_cell))
  assert '| self-training helps at every augmentation and data size (Tables 2, 3) | ' \
         '**not judged** | at Augment-S1: +1.4 ± 0.4 (3 seeds) holds;' in text


def test_gain_difference_and_does_not_hold():
  aug = findings.FINDINGS[0]
  by_cell = {'table2.imagenet.s1': {0: _run(33), 1: _run(34)},
             'table2.rand.s1': {0: _run(30), 1: _run(30)},
             'table2.imagenet.s4': {0: _run(40), 1: _run(41)},
             'table2.rand.s4': {0: _run(30), 1: _run(30)}}
  result, rows = findings.judge(aug, by_cell)
  # Gains 3 / 4 at S1 and 10 / 11 at S4: pre-training helps more with strong augmentation.
  assert rows[0][1].values == (-7.0, -7.0)
  assert result == findings.DOES_NOT_HOLD
