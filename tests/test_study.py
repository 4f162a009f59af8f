"""The study runner (paper Tables 2, 3, 4, 7, 10, App. B) and `compare`."""

import dataclasses
import os
import re

import pytest
import yaml

from projects.self_training.common import cli
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.study import compare
from projects.self_training.study import findings
from projects.self_training.study import grid
from projects.self_training.study import report
from projects.self_training.study import runner


@pytest.fixture(scope='module')
def study_data(tmp_path_factory):
  """Labeled scenes, the unlabeled pool and iconic images (3 shards of 12), at 64 px."""
  out = str(tmp_path_factory.mktemp('study') / 'scenes')
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(emoji_scenes, 'IMAGES_PER_SHARD', 12)
    emoji_scenes.generate(out, image_size=64, num_train=12, num_holdout=4, num_val=6,
                          num_unlabeled=8, num_iconic=36,
                          splits=('train', 'holdout', 'val', 'unlabeled_scenes', 'iconic'),
                          num_workers=1)
  return out


def test_grid_ids_are_unique_and_shared_runs_have_one_key():
  cells = grid.grid()
  ids = [c.id for c in cells]
  assert len(ids) == len(set(ids))
  by_id = {c.id: c for c in cells}
  # Table 4's Rand Init cells are Table 2's Augment-S4 runs; Table 10's student is Table 2's.
  assert by_id['table4.rand.ap'].run_key == by_id['table2.rand.s4'].run_key
  assert by_id['table4.rand_st.ap'].run_key == by_id['table2.rand_st.s4'].run_key
  assert by_id['table10.student_from_teacher.s1'].run_key == by_id['table2.rand_st.s1'].run_key
  assert by_id['table3.rand.f100'].run_key == by_id['table2.rand.s4'].run_key
  # The loss variants are distinct runs of one teacher group.
  norm, std = by_id['appendix_b.loss_norm.a3'], by_id['appendix_b.standard.a3']
  assert norm.group == std.group and norm.run_key != std.run_key
  # Every cell of every table has a paper number, except where the paper has none.
  missing = [c.id for c in cells if c.paper is None and c.id != 'appendix_b.standard.a3']
  assert not missing, missing


def test_select_default_all_and_globs():
  cells = grid.grid()
  default = grid.select(cells, ['default'])
  assert all(c.default for c in default)
  assert not any(c.group.init == 'imagenet_plus' for c in default)
  assert {c.group.aug for c in default if c.table == 'table2'} == set(grid.DEFAULT_AUGS)
  assert len(grid.select(cells, ['all'])) == len(cells)
  assert grid.select(cells, ['default', 'table4.simclr.ap']) == default + [
      c for c in cells if c.id == 'table4.simclr.ap']
  assert [c.id for c in grid.select(cells, ['table4.*'])] == [
      'table4.rand.ap', 'table4.imagenet.ap', 'table4.simclr.ap', 'table4.rand_st.ap']
  with pytest.raises(trainer.ConfigError, match="'table9.*' matches no cell"):
    grid.select(cells, ['table9.*'])


def test_seed_plan_gives_each_cell_the_seeds_its_findings_need():
  default = grid.select(grid.grid(), ['default'])
  plan = grid.seed_plan(default)
  assert [seed for seed, _ in plan] == [0, 1, 2]
  assert plan[0][1] == default and plan[1][1] == default
  # The third seed: Table 2's headline rows, and the cells that share their runs for free.
  assert {c.id for c in plan[2][1]} == {
      'table2.rand.s1', 'table2.rand_st.s1', 'table2.rand.s4', 'table2.rand_st.s4',
      'table3.rand.f100', 'table3.rand_st.f100', 'table4.rand.ap', 'table4.rand_st.ap'}
  # Every check of every finding is made of default cells with the seeds it needs.
  seeds = {c.id: sum(c in cells for _, cells in plan) for c in default}
  for finding in findings.FINDINGS:
    for check in finding.checks:
      assert all(seeds.get(cell, 0) >= check.min_seeds for _, cell in check.terms), check
  # `--seeds` runs every selected cell at each seed given.
  assert grid.seed_plan(default[:2], [4, 7]) == [(4, default[:2]), (7, default[:2])]


def _record(cell_id, ap, kind='supervised'):
  table, row, column = cell_id.split('.', 2)
  return {'id': cell_id, 'table': table, 'row': row, 'column': column, 'kind': kind,
          'val': {'AP': ap, 'AP50': ap, 'AP75': ap}, 'seconds': 10.0, 'size': 'tiny'}


def test_report_puts_gains_against_the_rand_init_supervised_cell():
  runs = {r['id']: {0: r} for r in [
      _record('table2.rand.s1', 0.200), _record('table2.imagenet.s1', 0.231),
      _record('table2.rand_st.s1', 0.185, 'self_training'),
      _record('table7.rand.supervised', 0.100), _record('table7.imagenet.joint', 0.125),
      _record('appendix_b.standard.a3', 0.210, 'self_training')]}
  text = '\n'.join(report.report_tables(runs))
  assert '| Rand Init | 20.0 | 39.2 |' in text
  assert '| ImageNet Init | (+3.1) 23.1 | (+0.3) 39.5 |' in text
  assert '| Rand Init w/ Self-training | (-1.5) 18.5 | (+1.7) 40.9 |' in text
  # Table 7 compares every column with its Rand Init Sup. Training cell.
  assert '(+2.5) 12.5 | (+3.3) 34.0 |' in text
  # Appendix B: ours against Table 2's S1 Rand Init; the paper's standard loss diverged.
  assert '(+1.0) 21.0 | NaN (diverged)' in text
  # Seeds: the mean of the valid ones, their spread and count; a cell with none is invalid.
  runs['table2.rand.s1'][1] = dict(_record('table2.rand.s1', 0.220), seed=1)
  runs['table2.imagenet.s1'][1] = dict(_record('table2.imagenet.s1', 0.5), seed=1,
                                       validity={'valid': False, 'reasons': ['x']})
  runs['table2.rand_st.s1'][0]['validity'] = {'valid': False, 'reasons': ['collapsed']}
  text = '\n'.join(report.report_tables(runs))
  assert '| Rand Init | 21.0 ± 1.4 ×2 | 39.2 |' in text
  assert '| ImageNet Init | (+2.1) 23.1 | (+0.3) 39.5 |' in text
  assert '| Rand Init w/ Self-training | invalid | (+1.7) 40.9 |' in text


def test_a_stage_time_counts_every_session_and_says_what_it_cannot_vouch_for():
  # Three intervals of 100 images: the third at a third of the median rate (paused), the
  # first from a history written before evals were timed.
  summary = {'history': [
      {'step': 10, 'train_seconds': 1.0, 'images_per_second': 100.0},
      {'step': 20, 'train_seconds': 1.0, 'eval_seconds': 0.5, 'images_per_second': 100.0},
      {'step': 30, 'train_seconds': 3.0, 'eval_seconds': 0.5, 'images_per_second': 100 / 3}],
      'val_eval_seconds': 2.0}
  assert runner.stage_time(summary) == {'seconds': 8.0, 'untimed_evals': 1,
                                        'slow_intervals': 1, 'slow_excess_seconds': 2.0}
  # A cell's time includes its shared stages; the study's total counts each stage once per
  # seed; a record from before stage times shows its wall time, and says it.
  teacher = {'seconds': 100.0, 'untimed_evals': 0, 'slow_intervals': 0,
             'slow_excess_seconds': 0.0}
  control = dict(teacher, seconds=40.0)
  student = dict(teacher, seconds=70.0, slow_intervals=1, slow_excess_seconds=20.0)
  records = [
      dict(_record('table2.rand.s1', 0.2), stage_times={'t': teacher, 'c': control}),
      dict(_record('table2.rand_st.s1', 0.2), stage_times={'t': teacher, 's': student}),
      dict(_record('table2.rand.s1', 0.2), seed=1, stage_times={'t': teacher}),
      dict(_record('table2.imagenet.s1', 0.2), seconds=33.0, side_by_side=2)]
  assert report.cell_seconds(records[0]) == '140'
  assert report.cell_seconds(records[1]) == (
      "170 (1 slow interval, 20 s over their stage's median rate)")
  assert report.cell_seconds(records[3]) == '33 (wall, last session only; 2 side by side)'
  line = report.compute_line(records)
  assert line.startswith('Compute: 310 s on this machine for the 4 stages the runs needed')
  assert '1 runs recorded before stage times were kept' in line and ': 33 s of wall' in line


class _Captured(Exception):
  """Raised in place of training: carries the params the stage would have trained with."""


@pytest.mark.slow
def test_study_runs_a_tiny_grid_resumes_and_reports(study_data, tmp_path, monkeypatch):
  study_dir = str(tmp_path / 'study')
  lines = []
  run = runner.Study(study_dir, study_data, grid.SIZES['tiny'], 'tiny', progress=lines.append)
  ids = ['table2.rand.s1', 'table2.rand_st.s1']
  cells = grid.select(grid.grid(), ids)
  records = run.run(cells)
  assert [r['id'] for r in records] == ids
  for cell, r in zip(cells, records):
    assert trainer.read_json(run.cell_path(cell)) == r
    assert 0.0 <= r['val']['AP'] <= 1.0
  group = os.path.join(study_dir, 'groups', 'rand_s1_f100')
  assert sorted(os.listdir(group)) == ['control', 'export', 'pseudo', 'student', 'teacher']
  # The teacher was trained once for both cells and pseudo-labeled the unlabeled scenes
  # with the main job's labels (4 views), scored on `holdout`.
  assert sum('teacher: emoji_retinanet' in line for line in lines) == 1
  pseudo = trainer.read_json(os.path.join(group, 'pseudo', 'summary.json'))
  assert pseudo['num_images'] == 8 and pseudo['flip'] and pseudo['tta_sizes'] == [96]
  assert trainer.read_json(os.path.join(group, 'pseudo', 'quality.json'))['split'] == 'holdout'
  # A 6-step teacher cannot have plateaued: both cells are invalid, and say why.
  for r in records:
    assert not r['validity']['valid']
    assert 'teacher did not plateau' in r['validity']['reasons'][0]

  # Each cell's time is that of the stages it needed, from their own records: the shared
  # teacher in both, the pseudo labels (scored on `holdout`) in the student's.
  control_times, student_times = (r['stage_times'] for r in records)
  assert sorted(control_times) == ['groups/rand_s1_f100/control', 'groups/rand_s1_f100/teacher']
  assert sorted(student_times) == ['groups/rand_s1_f100/pseudo', 'groups/rand_s1_f100/student',
                                   'groups/rand_s1_f100/teacher']
  teacher = trainer.read_json(os.path.join(group, 'teacher', 'teacher_metrics.json'))
  assert control_times['groups/rand_s1_f100/teacher'] == student_times[
      'groups/rand_s1_f100/teacher'] == runner.stage_time(teacher)
  assert all(t['seconds'] > 0 and not t['untimed_evals'] for t in student_times.values())
  assert not student_times['groups/rand_s1_f100/pseudo']['untimed_exports']

  # A re-run skips both cells (and gives a record kept before stage times its own); a cell
  # whose JSON is gone is rebuilt from the completed stages without training anything
  # again, and takes their time, not the seconds the rebuild took.
  old_style = dict(records[0])
  del old_style['stage_times']
  trainer.write_json(run.cell_path(cells[0]), old_style)
  lines.clear()
  run.run(cells)
  assert all('done' in line for line in lines if line.startswith('['))
  assert trainer.read_json(run.cell_path(cells[0]))['stage_times'] == control_times
  os.remove(run.cell_path(cells[1]))
  lines.clear()
  again = run.run(cells)
  assert again[1]['val'] == records[1]['val']
  assert again[1]['stage_times'] == student_times
  stages = [line for line in lines if line.split(':')[0] in ('teacher', 'student')]
  assert len(stages) == 2 and all('skipped' in line for line in stages), lines
  assert not any(line.strip().startswith('step') for line in lines), lines

  # The variants of the same group reuse its teacher and pseudo labels and train with
  # their own settings (built here as full configs, not trained: the standard loss is
  # tested in test_loss_normalization.py, the student step in test_student.py). A stage
  # that fails leaves no cell JSON behind.
  def capture(params, model_dir, *args, **kwargs):
    raise _Captured(params, model_dir)
  monkeypatch.setattr(trainer, 'train_to_plateau', capture)
  variant, scratch = grid.select(grid.grid(), ['appendix_b.standard.a3',
                                               'table10.student_from_random.s1'])
  with pytest.raises(_Captured) as got:
    run.run([variant])
  params, model_dir = got.value.args
  assert model_dir == os.path.join(group, 'alpha3_standard', 'student')
  assert params.task.loss_normalization.alpha == 3.0
  assert not params.task.loss_normalization.normalize
  teacher = trainer.read_json(os.path.join(group, 'teacher', 'teacher_metrics.json'))
  assert params.task.init_checkpoint == teacher['checkpoint']
  with pytest.raises(_Captured) as got:
    run.run([scratch])
  params, model_dir = got.value.args
  tiny = grid.SIZES['tiny']
  teacher_params = pipeline.teacher_params(run.settings(scratch.group))
  lr = teacher_params.trainer.optimizer_config.learning_rate.cosine.initial_learning_rate
  assert model_dir == os.path.join(group, 'from_random', 'student')
  assert not params.task.init_checkpoint  # random weights, as Rand Init's gin says
  assert params.trainer.train_steps == tiny.teacher_steps + tiny.finetune_steps
  assert params.trainer.optimizer_config.learning_rate.cosine.initial_learning_rate == lr
  assert params.task.pseudo_data.input_path
  assert not os.path.exists(run.cell_path(variant))
  assert not os.path.exists(run.cell_path(scratch))
  assert sum('teacher: emoji_retinanet' in line for line in lines) == 0

  # Another size or seed in the same directory is refused, before anything is trained.
  for other in (runner.Study(study_dir, study_data, grid.SIZES['small'], 'small'),
                runner.Study(study_dir, study_data, tiny, 'tiny', seed=1)):
    with pytest.raises(trainer.ConfigError, match='use another --study_dir'):
      other.run(cells)

  path = report.write_report(study_dir)
  text = open(path).read()
  assert '### Table 2' in text and '| Rand Init w/ Self-training | invalid |' in text
  assert 'Invalid runs (teacher not converged, or collapsed pseudo labels): 2 of 2' in text
  assert '| table2.rand.s1 | 0 |' in text and 'no: teacher did not plateau' in text
  assert '**not judged**' in text and 'table2.rand.s1 seed 0 invalid' in text
  assert '| groups/rand_s1_f100 | 8 | ' in text  # the pseudo labels the student read
  assert 'Compute: ' in text and ' s on this machine for the 4 stages the runs needed' in text
  assert os.path.exists(os.path.join(study_dir, 'figure1.png'))

  # A rule that asks for the convergence test judges the finished cells again. The teacher
  # trained 1.5x longer (9 steps) gains 1.0 held-out AP and ends at its best too, so it is
  # tested in turn (2.25x: 14 steps; +0.3, it converged) and replaces the budget's teacher:
  # the finished cells, made from that one, are re-judged invalid with what to remove, and a
  # further re-run trains nothing. The longer teachers are stand-ins that write the
  # completion file the pipeline would, with chosen gains (their schedules are checked in
  # test_main_size_is_the_main_jobs_regime, adopting one in
  # test_convergence_test_adopts_the_teacher_that_gained).
  real_teacher = pipeline.teacher
  teacher = trainer.read_json(os.path.join(group, 'teacher', 'teacher_metrics.json'))
  base = teacher['holdout']['AP']
  longer_steps = []

  def longer_teacher(s, progress=print):
    if os.path.basename(s.runs_dir) != 'longer':
      return real_teacher(s, progress)
    done = pipeline.finished_teacher(s)
    if done:
      return done
    steps = pipeline.teacher_params(s).trainer.train_steps
    longer_steps.append(steps)
    gained = {9: 0.01, 14: 0.013}[steps]
    summary = {'holdout': {'AP': base + gained}, 'best_step': steps,
               'stopped': 'train_steps', 'history': [{'step': steps}], 'train_seconds': 3.0}
    trainer.write_json(os.path.join(s.dir('teacher'), pipeline.TEACHER_METRICS), summary)
    return summary
  monkeypatch.setattr(pipeline, 'teacher', longer_teacher)
  lines.clear()
  checked = runner.Study(study_dir, study_data, dataclasses.replace(tiny, longer_factor=1.5),
                         'tiny', progress=lines.append)
  again = checked.run(cells)
  assert longer_steps == [9, 14]
  assert sum('its budget ended at its best held-out AP; the convergence test trains it 1.5x '
             'longer' in line for line in lines) == 1
  assert sum('trained 1.5x its budget it gained +1.00 held-out AP and ended at its best '
             'again; the convergence test trains it 1.5x longer still' in line
             for line in lines) == 1
  assert sum("re-judged: invalid; made from the budget's teacher, but the convergence test "
             'now settles on the teacher trained 1.5x its budget' in line
             for line in lines) == 2, lines
  for r in again:
    path = os.path.join(study_dir, 'cells', f'{r["id"]}.json')
    assert r == trainer.read_json(path)
    assert r['validity']['reasons'][0].endswith(f'to re-run the cell, remove {path}')
    assert r['validity']['longer'] == [
        {'steps': 9, 'holdout_AP': base + 0.01, 'gain': 1.0, 'train_seconds': 3},
        {'steps': 14, 'holdout_AP': base + 0.013, 'gain': 0.3, 'train_seconds': 3}]
    assert r['validity']['teacher_round'] == 0  # what it was made from
  lines.clear()
  assert checked.run(cells) == again
  assert all(line.startswith('[') for line in lines), lines
  # Had training longer lost AP, the budget's teacher converged, the cells stand, and the
  # report says by how much (the second test is not consulted).
  path = os.path.join(group, 'longer', 'teacher', pipeline.TEACHER_METRICS)
  trainer.write_json(path, dict(trainer.read_json(path), holdout={'AP': base - 0.01}))
  control, student = checked.run(cells)
  assert control['validity']['valid'] and control['validity']['longer'][0]['gain'] == -1.0
  assert len(control['validity']['longer']) == 1
  assert not any('converge' in reason for reason in student['validity']['reasons'])
  text = open(report.write_report(study_dir)).read()
  assert 'Convergence tests (a teacher trained longer): 1, 3 s of training.' in text
  assert ('| table2.rand.s1 | 0 | ' in text and
          'yes (convergence test: 9 steps gave -1.00 held-out AP, 3 s) |' in text)

  # A teacher an earlier plateau rule stopped where today's would train on: its finished
  # cells are judged invalid, in one line each, and nothing is trained.
  path = os.path.join(group, 'teacher', pipeline.TEACHER_METRICS)
  trainer.write_json(path, dict(trainer.read_json(path), stopped='plateau'))
  lines.clear()
  for r in checked.run(cells):
    assert not r['validity']['valid']
    assert r['validity']['reasons'] == [
        f'{os.path.join(group, "teacher")} was stopped at step 6 by another plateau rule; '
        f'this run\'s rule (its whole schedule) trains it on: to re-run the cell, '
        f'remove {group} and {os.path.join(study_dir, "cells", r["id"] + ".json")}']
  assert sum('re-judged: invalid' in line for line in lines) == 2, lines
  # A cell to run on that teacher is refused in one line, saying what to remove; the cells
  # after it run on (here the finished student, judged again), then the run ends with it.
  os.remove(checked.cell_path(cells[0]))
  lines.clear()
  with pytest.raises(trainer.ConfigError, match=r'trains it on: to re-run the cell, remove '
                     + re.escape(group) + '$'):
    checked.run(cells)
  cell_lines = [line for line in lines if line.startswith('[')]
  assert cell_lines[0] == '[1/2] table2.rand.s1: rand_s1_f100, supervised', lines
  assert cell_lines[1].startswith('[1/2] table2.rand.s1: refused: ') and cell_lines[1].endswith(
      f'trains it on: to re-run the cell, remove {group}'), lines
  assert cell_lines[2].startswith('[2/2] table2.rand_st.s1: done (AP'), lines


def test_redo_hint_names_only_what_a_refused_stage_feeds(study_data, tmp_path):
  """A refused control or student: its own directory (the teacher need not retrain); a
  refused teacher, export or pseudo labels: the whole group, whose other stages they feed,
  or, for a convergence test's teacher, its `longer/` (the budget's teacher stays)."""
  run = runner.Study(str(tmp_path), study_data, dataclasses.replace(
      grid.SIZES['tiny'], longer_factor=findings.LONGER_FACTOR), 'tiny')
  cell = grid.select(grid.grid(), ['table2.rand_st.s1'])[0]
  base = run.settings(cell.group)
  longer = run.longer_settings(base, cell.group)
  cell_json = run.cell_path(cell)
  for s, stage, redo in ((base, 'student', base.dir('student')),
                         (base, 'control', base.dir('control')),
                         (base, 'teacher', run.group_dir(cell.group)),
                         (base, 'pseudo', run.group_dir(cell.group)),
                         (longer, 'teacher', longer.runs_dir)):
    pipeline.claim(stage, s.dir(stage), {'seed': 0})
    with pytest.raises(trainer.MadeOtherwise) as refused:
      pipeline.claim(stage, s.dir(stage), {'seed': 1})
    assert str(refused.value).startswith(f'{s.dir(stage)} (an interrupted run) was made with '
                                         'seed=0, this run asks for 1')
    assert run.redo_hint(refused.value, cell, cell_json) == (
        f'{s.dir(stage)} (an interrupted run) was made with seed=0, this run asks for 1: to '
        f're-run the cell, remove {redo} and {cell_json}')
  assert run.redo_hint(ValueError('bad\nthing'), cell) == cli.one_line(ValueError('bad\nthing'))


@pytest.mark.slow
def test_study_cli_runs_seeds_side_by_side(study_data, tmp_path):
  """`--jobs 2`: two seeds in two processes, each in its own directory, one report."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  study_dir = str(tmp_path / 'study')
  result = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.study.study', '--size=tiny',
       '--cells=table2.rand.s1', '--seeds=0,1', '--jobs=2', f'--study_dir={study_dir}',
       f'--data_dir={study_data}'], capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert 'study: seed 0 started (1 cells, 1 thread(s))' in result.stdout
  assert '[seed 1] [1/1] table2.rand.s1: val AP' in result.stdout
  for seed in (0, 1):
    record = trainer.read_json(os.path.join(study_dir, f'seed{seed}', 'cells',
                                            'table2.rand.s1.json'))
    assert record['seed'] == seed and record['side_by_side'] == 2
  assert '(2 side by side)' in open(os.path.join(study_dir, 'report.md')).read()


def test_labeled_fraction_is_a_nested_subset_made_once(study_data, tmp_path):
  run = runner.Study(str(tmp_path), study_data, grid.SIZES['tiny'], 'tiny')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  def ids(pattern):
    return [r for f in sorted(tf.io.gfile.glob(pattern)) for r in tf.data.TFRecordDataset(f)
            .as_numpy_iterator()]
  half, fifth = ids(run.train_input(0.5)), ids(run.train_input(0.2))
  assert len(half) == 6 and len(fifth) == 3 and set(fifth) <= set(half)
  assert run.train_input(1.0) == emoji_scenes.split_pattern(study_data, 'train')


def test_report_only_without_cells_is_one_line(tmp_path):
  with pytest.raises(trainer.ConfigError, match='holds no finished study cell'):
    report.write_report(str(tmp_path))


@pytest.mark.slow
def test_study_cli_rejects_a_bad_cell_pattern(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  result = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.study.study', '--cells=tabel2.*',
       f'--study_dir={tmp_path}'], capture_output=True, text=True, check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: --cells 'tabel2.*' matches")


def _model_dir(tmp_path, backbone, model_id, metrics, pseudo='', parser=None, size=1280,
               init=''):
  path = tmp_path / f'{backbone}{model_id}{init.replace("/", "_")}'
  path.mkdir()
  params = {'task': {'model': {'backbone': {'type': backbone, backbone: {'model_id': model_id}},
                               'head': {}, 'input_size': [size, size, 3]},
                     'init_checkpoint': init, 'init_checkpoint_modules': 'backbone',
                     'train_data': {'parser': parser or {}},
                     'pseudo_data': {'input_path': pseudo}}}
  (path / 'params.yaml').write_text(yaml.safe_dump(params))
  trainer.write_json(str(path / 'metrics_eval.json'), metrics)
  return str(path)


def test_compare_matches_full_scale_runs_to_the_paper_and_model_garden(tmp_path):
  teacher = _model_dir(tmp_path, 'spinenet', 'spinenet143', {'AP': 0.5, 'AP50': 0.7, 'AP75': 0.55})
  rows = compare.rows_of(teacher)
  assert rows[0]['paper'] == ('Table 5 SpineNet-143', 50.9)
  assert rows[0]['model_garden'][1] == 50.0
  student = _model_dir(tmp_path, 'efficientnet', 'b7', {'AP': 0.45, 'AP50': 0.6, 'AP75': 0.5},
                       pseudo='gs://b/pseudo-*',
                       parser={'aug_scale_max': 2.0, 'aug_type': {'type': 'randaug'}})
  rows = compare.rows_of(student)
  assert rows[0]['paper'] == ('Table 2 rand_st Augment-S4', 45.6)
  assert rows[0]['model_garden'] is None
  # The initialization picks the row; Model Garden's ResNet-50 baseline is ImageNet-
  # initialized with standard augmentation, so only such a run gets it.
  imagenet = _model_dir(tmp_path, 'efficientnet', 'b7', {'AP': 0.4}, init='/ckpt/b7',
                        parser={'aug_scale_max': 1.2})
  assert compare.rows_of(imagenet)[0]['paper'] == ('Table 2 imagenet Augment-S1', 39.5)
  r50 = _model_dir(tmp_path, 'resnet', 50, {'AP': 0.37}, size=640, init='/ckpt/r50',
                   parser={'aug_scale_max': 1.2})
  assert compare.rows_of(r50)[0]['model_garden'][1] == 36.8
  r50_scratch = _model_dir(tmp_path, 'resnet', 50, {'AP': 0.4}, size=640,
                           parser={'aug_scale_max': 2.0, 'aug_type': {'type': 'randaug'}})
  assert compare.rows_of(r50_scratch)[0]['model_garden'] is None
  assert compare.rows_of(r50_scratch)[0]['paper'] == ('Table 4 rand', 41.1)
  text = '\n'.join(compare.table(compare.rows_of(teacher) + rows))
  assert '| 50.0 | 70.0 | 55.0 | 50.9 (Table 5 SpineNet-143) |' in text
  assert compare.augment_level({'aug_scale_max': 1.2}) == 1
  assert compare.augment_level({'aug_scale_max': 1.2, 'aug_type': {'type': 'autoaug'}}) == 2
  assert compare.augment_level({'aug_scale_max': 2.0, 'aug_type': {'type': 'autoaug'}}) == 3
  with pytest.raises(ValueError, match='not found'):
    compare.rows_of(str(tmp_path / 'nope'))
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(ValueError, match='no cells'):
    compare.rows_of(str(empty))


def test_compare_reads_a_study_dir(tmp_path):
  for cell_id, ap in (('table2.rand.s1', 0.2), ('table2.rand_st.s1', 0.22)):
    record = _record(cell_id, ap)
    trainer.write_json(str(tmp_path / 'cells' / f'{cell_id}.json'), record)
  rows = compare.rows_of(str(tmp_path))
  assert [r['paper'][1] for r in rows] == [39.2, 40.9]
  assert [r['metrics']['AP'] for r in rows] == pytest.approx([20.0, 22.0])


def test_teacher_budget_scales_like_appendix_h_and_refuses_a_fraction_it_lacks():
  """Appendix H's Rand Init steps, over Augment-S1 on all labels: 120k / 45k at S4, 45k /
  45k at S4 on 20%; a fraction it gives no steps for is a one-line error."""
  assert grid.teacher_budget_factor('s1') == 1.0
  assert grid.teacher_budget_factor('s4') == pytest.approx(120 / 45)
  assert grid.teacher_budget_factor('s4', 0.2) == pytest.approx(1.0)
  assert grid.teacher_budget_factor('s1', 0.5) == pytest.approx(90 / 120)
  with pytest.raises(trainer.ConfigError, match='no steps for 30% of the labels') as e:
    grid.teacher_budget_factor('s4', 0.3)
  assert '\n' not in str(e.value)


def test_convergence_test_adopts_the_teacher_that_gained(tmp_path, monkeypatch):
  """A teacher its budget cut off: trained 1.5x longer it either gains at most 0.5 held-out
  AP (it converged, it stays) or more (the longer one replaces it, tested in turn if it too
  ended at its best, at most `LONGER_ROUNDS` tests; still gaining after them: invalid). The
  cell's stage starts from the chosen teacher. Teachers are stand-ins: depth of `longer/`
  -> (held-out AP, cut off at its best)."""
  run = runner.Study(str(tmp_path), 'data', dataclasses.replace(
      grid.SIZES['tiny'], longer_factor=findings.LONGER_FACTOR), 'tiny', progress=print)
  group = grid.Group('rand', 's1')
  s = run.settings(group)
  teachers = {}

  def teacher(settings, progress=print):
    depth = os.path.relpath(settings.runs_dir, s.runs_dir).split(os.sep).count('longer')
    ap, cut = teachers[depth]
    steps = pipeline.teacher_params(settings).trainer.train_steps
    return {'holdout': {'AP': ap}, 'stopped': 'train_steps' if cut else 'plateau',
            'best_step': steps, 'history': [{'step': steps}], 'train_seconds': 1.0,
            'checkpoint': os.path.join(settings.runs_dir, 'teacher', 'best_ckpt')}
  monkeypatch.setattr(pipeline, 'teacher', teacher)
  monkeypatch.setattr(pipeline, 'finished_teacher', lambda settings: None)
  longer = os.path.join(s.runs_dir, 'longer')
  for case, expected_dir, rounds, valid in (
      ({0: (0.30, True), 1: (0.302, True)}, s.runs_dir, 0, True),      # +0.2: converged
      ({0: (0.30, True), 1: (0.31, False)}, longer, 1, True),          # +1.0, plateaued
      ({0: (0.30, True), 1: (0.31, True), 2: (0.312, True)}, longer, 1, True),
      ({0: (0.30, True), 1: (0.31, True), 2: (0.32, True)},
       os.path.join(longer, 'longer'), 2, False)):                      # still gaining
    teachers.clear()
    teachers.update(case)
    got_rounds, chosen, summary, tests, reasons = run.converged_teacher(
        group, s, teacher(s), print)
    assert (got_rounds, chosen.runs_dir, not reasons) == (rounds, expected_dir, valid), case
    assert len(tests) == min(len(case) - 1, findings.LONGER_ROUNDS)
    assert summary['holdout']['AP'] == case[rounds][0]
    if not valid:
      assert reasons == [
          'teacher did not converge: trained 1.5x longer (14 steps) it gained +1.00 held-out '
          'AP (tolerance 0.5), and at 14 steps it was still at its best at its last eval (2 '
          'tests, the most the study runs)']
  # A cell's stage, and a student's pseudo labels, start from the adopted teacher, with its
  # schedule; the report lists the pseudo labels under `longer/`; a re-run keeps the record.
  teachers.clear()
  teachers.update({0: (0.30, True), 1: (0.31, False)})
  started, labeled = [], []
  monkeypatch.setattr(runner.Study, '_run_stage',
                      lambda self, cell, settings, t: started.append((settings, t)) or {})
  monkeypatch.setattr(runner.Study, '_pseudo',
                      lambda self, settings, t, look: labeled.append((settings, t)) or [])
  control, st = grid.select(grid.grid(), ['table2.rand.s1', 'table2.rand_st.s1'])
  for cell in (control, st):
    _, validity = run.run_cell(cell)
    settings, t = started[-1]
    assert settings.runs_dir == longer and t['checkpoint'].startswith(longer)
    assert pipeline.teacher_params(settings).trainer.train_steps == 9
    assert validity == {'valid': True, 'reasons': [], 'teacher_round': 1, 'longer': [
        {'steps': 9, 'holdout_AP': 0.31, 'gain': 1.0, 'train_seconds': 1}]}
  (settings, t), = labeled  # the student's only
  assert settings.runs_dir == longer and t['checkpoint'].startswith(longer)
  path = run.cell_path(st)
  done = {'id': st.id, 'kind': st.kind, 'group': dataclasses.asdict(st.group),
          'validity': validity}
  trainer.write_json(path, done)
  assert report.pseudo_dirs(str(tmp_path)) == [os.path.join(longer, 'pseudo')]
  trainer.write_json(os.path.join(s.dir('teacher'), pipeline.TEACHER_METRICS), teacher(s))
  assert run.rejudge(st, done, path) is done
  # A record of the time one test was all there was reads as a list of one.
  assert findings.convergence_tests({'longer': {'steps': 9}}) == [{'steps': 9}]


def test_status_says_where_each_cell_stands_from_its_files(tmp_path):
  """`--list`: a finished cell's `val` AP and validity, a teacher's step out of its budget
  (and its convergence test's) and the cell's own stage's, or not started; nothing is
  trained or pre-trained."""
  run = runner.Study(str(tmp_path), 'data', dataclasses.replace(
      grid.SIZES['tiny'], longer_factor=findings.LONGER_FACTOR), 'tiny')
  rand, imagenet, st = grid.select(grid.grid(), ['table2.rand.s1', 'table2.imagenet.s1',
                                                 'table2.rand_st.s1'])
  assert run.status(imagenet) == 'not started (teacher: 6 steps)'
  teacher_dir = os.path.join(run.group_dir(rand.group), 'teacher')
  os.makedirs(teacher_dir)
  for name in ('ckpt-2.index', 'ckpt-4.index', 'ckpt-4.data-00000-of-00001', 'checkpoint'):
    open(os.path.join(teacher_dir, name), 'w').close()
  assert run.status(rand) == 'teacher at step 4 of 6'
  # With two held-out intervals, the time to its budget at their median rate.
  trainer.write_json(os.path.join(teacher_dir, trainer.HISTORY_FILE), {'history': [
      {'step': 2, 'train_seconds': 50.0}, {'step': 4, 'train_seconds': 40.0,
                                           'eval_seconds': 20.0}]})
  assert run.status(rand) == 'teacher at step 4 of 6, about 1 min to its budget'
  trainer.write_json(os.path.join(teacher_dir, pipeline.TEACHER_METRICS),
                     {'holdout': {'AP': 0.1234}, 'best_step': 6})
  os.makedirs(os.path.join(run.group_dir(rand.group), 'longer', 'teacher'))
  assert run.status(rand) == ('teacher done (held-out AP 12.3 at step 6); convergence test 1 '
                              'at step 0 of 9')
  # The cell's own stage, from the teacher it trained from: the control, or a variant's
  # student in its own subdirectory (where the runner trains them).
  variant = grid.select(grid.grid(), ['appendix_b.standard.a3'])[0]
  assert run.stage_of(variant) == ('student', 'alpha3_standard')
  for path in ('control', os.path.join('alpha3_standard', 'student')):
    stage_dir = os.path.join(run.group_dir(rand.group), path)
    os.makedirs(stage_dir)
    trainer.write_json(os.path.join(stage_dir, pipeline.STARTED), {'steps': 3})
    open(os.path.join(stage_dir, 'ckpt-2.index'), 'w').close()
  assert run.status(rand) == ('teacher done (held-out AP 12.3 at step 6); its control at step '
                              '2 of 3; convergence test 1 at step 0 of 9')
  assert run.status(variant).startswith('teacher done (held-out AP 12.3 at step 6); its '
                                        'student at step 2 of 3; ')
  assert run.status(st) == ('teacher done (held-out AP 12.3 at step 6); convergence test 1 '
                            'at step 0 of 9')
  trainer.write_json(os.path.join(run.group_dir(rand.group), 'control', pipeline.RESULT), {})
  assert '; its control done; ' in run.status(rand)
  trainer.write_json(run.cell_path(rand), {'val': {'AP': 0.2}, 'validity': {
      'valid': False, 'reasons': ['teacher did not plateau']}})
  trainer.write_json(run.cell_path(st), {'val': {'AP': 0.25}})
  assert run.status(rand) == 'done: val AP 20.0, invalid: teacher did not plateau'
  assert run.status(st) == 'done: val AP 25.0, valid'
  assert not os.path.exists(os.path.join(str(tmp_path), 'pretrain'))


def test_main_size_is_the_main_jobs_regime(study_data, tmp_path):
  """`--size main`: teachers to their plateau within 1.5x the registered budget scaled by
  Appendix H (S4: 8/3 of S1's; S4 on 20% of the labels: as S1 on all), control and student
  by the main job's protocol, the main job's pool and labels; the convergence test 1.5x
  longer again."""
  run = runner.Study(str(tmp_path), study_data, grid.SIZES['main'], 'main')
  steps = trainer.build_params('emoji_retinanet').trainer.train_steps
  # group, its teacher's budget, its plateau rule's patience (a quarter of the schedule in
  # evals of 500 steps, rounded up: at the registered 6000 steps, 9000 / 4 / 500 -> 5)
  assert steps == 6000
  for group, budget, patience in (
      (grid.Group('rand', 's1'), round(steps * 1.5), 5),
      (grid.Group('rand', 's4', 0.2), round(steps * 1.5), 5),
      (grid.Group('rand', 's4', 0.5), round(steps * 1.5 * 90 / 45), 9),
      (grid.Group('rand', 's4'), round(steps * 1.5 * 120 / 45), 12)):
    s = run.settings(group)
    params = pipeline.teacher_params(s)
    assert params.trainer.train_steps == budget, group
    assert params.trainer.optimizer_config.learning_rate.cosine.decay_steps == budget
    assert pipeline.finetune_schedule(s)['steps'] == budget // 2
    assert pipeline.teacher_rule(s).patience == patience
    longer = pipeline.teacher_params(run.longer_settings(s, group)).trainer
    assert longer.train_steps == round(budget * 1.5)
    assert longer.optimizer_config.learning_rate.cosine.decay_steps == round(budget * 1.5)
  s4 = s
  default = pipeline.Settings(data_dir=study_data, runs_dir=str(tmp_path))
  for field in ('student_steps', 'student_steps_fraction', 'student_warmup_steps',
                'eval_interval', 'plateau_patience', 'plateau_start', 'plateau_window',
                'tta_sizes', 'tta_flip',
                'threshold', 'ignore_threshold', 'pseudo_splits'):
    assert getattr(s4, field) == getattr(default, field), field


def test_a_refused_seed_leaves_the_others_to_run_and_the_report_to_be_written(
    tmp_path, monkeypatch, capsys):
  """A grid runs for hours unattended: cells refused in one seed (`Study.run` says each and
  runs the rest) do not stop the other seeds; the report covers what finished, and the run
  ends in one line naming the seed."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl.testing import flagsaver  # pylint: disable=g-import-not-at-top
  from projects.self_training.study import study  # pylint: disable=g-import-not-at-top
  ran = []

  def run(self, cells):
    ran.append((self.seed, [c.id for c in cells]))
    if self.seed == 0:
      raise trainer.ConfigError('g was made with seed=5: to re-run the cell, remove g')
    return []
  monkeypatch.setattr(runner.Study, 'run', run)
  monkeypatch.setattr(emoji_scenes, 'resolve_data_dir', lambda data_dir: 'data')
  reported = tmp_path / 'report.md'
  reported.write_text('# the report')
  monkeypatch.setattr(report, 'write_report', lambda study_dir: str(reported))
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  with flagsaver.flagsaver(cells=['table2.rand.s1'], seeds=['0', '1'], jobs=1,
                           study_dir=str(tmp_path)):
    with pytest.raises(SystemExit) as exit_status:
      study.main(['study'])
  assert exit_status.value.code == 2
  assert ran == [(0, ['table2.rand.s1']), (1, ['table2.rand.s1'])]
  out, err = capsys.readouterr()
  assert '# the report' in out
  assert err.strip() == ('error: seed(s) 0 stopped (their lines above); the first: g was made '
                         'with seed=5: to re-run the cell, remove g')
