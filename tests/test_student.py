"""The student task: exact equivalence with the official task at alpha = 0, empty pseudo
batches, teacher initialization, EMA state in checkpoints, and the whole pipeline at tiny
size."""

import collections
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.vision.tasks import retinanet
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.pseudo_label import records
from projects.self_training.pseudo_label import schema
from tests.conftest import TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def empty_pseudo(tiny_data, tmp_path_factory):
  """Pseudo-labeled records in which the teacher kept no box at all."""
  out = tmp_path_factory.mktemp('pseudo')
  path = str(out / 'pseudo-00000-of-00001.tfrecord')
  features = {'image/encoded': tf.io.FixedLenFeature((), tf.string),
              'image/source_id': tf.io.FixedLenFeature((), tf.string)}
  with tf.io.TFRecordWriter(path) as writer:
    for raw in tf.data.TFRecordDataset(
        tf.io.gfile.glob(emoji_scenes.split_pattern(tiny_data, 'unlabeled_scenes'))):
      ex = tf.io.parse_single_example(raw, features)
      writer.write(records.Labeled(
          ex['image/source_id'].numpy().decode(), ex['image/encoded'].numpy(), 64, 64,
          np.zeros((0, 4), np.float32), np.zeros((0,), np.int64),
          np.zeros((0,), np.float32)).example())
  return str(out / 'pseudo-*.tfrecord')


def _params(experiment, data_dir, extra=''):
  return trainer.build_params(
      experiment, params_override=','.join(x for x in (
          TINY, pipeline.data_override(data_dir), extra) if x))


def _sgd():
  return tf_keras.optimizers.legacy.SGD(learning_rate=1.0)


def _copy_weights(src, dst):
  for name in ('backbone', 'decoder', 'head'):
    getattr(dst, name).set_weights(getattr(src, name).get_weights())


@pytest.mark.slow
def test_alpha_zero_equals_the_official_task(tiny_data, empty_pseudo):
  official_params = _params('emoji_retinanet', tiny_data)
  student_params = _params('emoji_retinanet_student', tiny_data, (
      'task.loss_normalization.alpha=0.0,task.pseudo_data.global_batch_size=4,'
      f'task.pseudo_data.input_path={emoji_scenes.split_pattern(tiny_data, "train")}'))
  # Model Garden's own task class, its focal loss unfused.
  official = retinanet.RetinaNetTask(official_params.task)
  student = task_factory.get_task(student_params.task)
  m_off, m_st = official.build_model(), student.build_model()
  dummy = tf.zeros([1, 64, 64, 3])
  m_off(dummy, training=False)
  m_st(dummy, training=False)
  _copy_weights(m_off, m_st)

  human, pseudo = next(iter(student.build_inputs(student_params.task.train_data)))
  off_logs = official.train_step(human, m_off, _sgd(), metrics=None)
  st_logs = student.train_step((human, pseudo), m_st, _sgd(),
                               metrics=student.build_metrics(training=True))
  assert float(st_logs['loss']) == pytest.approx(float(off_logs['loss']), rel=1e-5)
  # SGD with learning rate 1: equal updated weights mean equal gradients.
  for a, b in zip(m_off.trainable_variables, m_st.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.name)


@pytest.mark.slow
def test_a_batch_without_pseudo_boxes_gives_finite_losses(tiny_data, empty_pseudo):
  params = _params('emoji_retinanet_student', tiny_data,
                   f'task.pseudo_data.input_path={empty_pseudo}')
  task = task_factory.get_task(params.task)
  model = task.build_model()
  batch = next(iter(task.build_inputs(params.task.train_data)))
  # Pseudo batch size 0 (the default) follows the human batch: 4 + 4 here.
  assert batch[0][0].shape[0] == batch[1][0].shape[0] == 4
  assert float(tf.reduce_sum(batch[1][1]['box_weights'])) == 0.0  # no positive anchor
  logs = task.train_step(batch, model, _sgd(), metrics=task.build_metrics(training=True))
  for name in ('total_loss', 'human_loss', 'pseudo_loss', 'ema_pseudo_loss', 'pseudo_weight'):
    assert np.isfinite(float(logs[name])), name
  assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


@pytest.mark.slow
def test_student_starts_from_the_teacher_and_checkpoints_its_emas(tiny_data, empty_pseudo,
                                                                  tmp_path):
  teacher_params = _params('emoji_retinanet', tiny_data)
  teacher = task_factory.get_task(teacher_params.task).build_model()
  teacher(tf.zeros([1, 64, 64, 3]), training=False)
  # As Model Garden's trainer saves it: the model, and its parts at the root.
  ckpt = tf.train.Checkpoint(model=teacher, **teacher.checkpoint_items).save(
      str(tmp_path / 'teacher' / 'ckpt'))

  params = _params('emoji_retinanet_student', tiny_data,
                   f'task.pseudo_data.input_path={empty_pseudo},task.init_checkpoint={ckpt}')
  assert params.task.init_checkpoint_modules == 'all'
  task = task_factory.get_task(params.task)
  model = task.build_model()
  model(tf.zeros([1, 64, 64, 3]), training=False)
  task.initialize(model)
  for a, b in zip(teacher.trainable_variables, model.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())

  model.loss_normalization(tf.constant(1.0), tf.constant(4.0))
  saved = tf.train.Checkpoint(model=model).save(str(tmp_path / 'student' / 'ckpt'))
  names = [n for n, _ in tf.train.list_variables(saved)]
  assert any('loss_normalization' in n and 'ema_pseudo_loss' in n for n in names)


@pytest.mark.slow
def test_one_call_on_both_halves_equals_two_calls_on_identical_halves(tiny_data):
  """`concat_halves`: one model call on the concatenated batch. With the same images and
  labels in both halves, batch-norm statistics over the whole batch equal each half's, so
  losses and updated weights must equal those of two calls."""
  source = emoji_scenes.split_pattern(tiny_data, 'train')
  results, start = [], None
  for concat in (False, True):
    params = _params('emoji_retinanet_student', tiny_data,
                     f'task.pseudo_data.input_path={source},task.concat_halves={concat}')
    task = task_factory.get_task(params.task)
    model = task.build_model()
    model(tf.zeros([1, 64, 64, 3]), training=False)
    if start is None:
      human = next(iter(task.build_inputs(params.task.train_data)))[0]
      start = model.get_weights()
    model.set_weights(start)
    before = [v.numpy() for v in model.trainable_variables]
    logs = task.train_step((human, human), model, _sgd(),
                           metrics=task.build_metrics(training=True))
    results.append(([v.numpy() - b for v, b in zip(model.trainable_variables, before)], logs))
  (u2, l2), (u1, l1) = results
  for name in ('human_loss', 'pseudo_loss', 'total_loss'):
    assert float(l1[name]) == pytest.approx(float(l2[name]), rel=1e-5), name
  assert float(l1['human_loss']) == pytest.approx(float(l1['pseudo_loss']), rel=1e-6)
  # The step's update, all weights at once: batch-norm sums over 2N images in one call and N
  # in each of two, so the updates differ in float rounding, about 1e-5 of their norm (one
  # weight of 0.014 differed by 9e-5 in one run, with a thread per process); a wrong split,
  # batch size or statistics changes the update by a large part of itself.
  norm = np.sqrt(sum(np.sum(b ** 2) for b in u2))
  assert norm > 0
  assert np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(u1, u2))) < 1e-3 * norm


def test_control_and_student_follow_the_teachers_schedule_by_default(tiny_data):
  """The paper's protocol: a share of the teacher's steps (half by default), at its learning
  rate and warm-up, the whole schedule (no plateau stop); explicit settings win; the
  student's EMA horizon follows its length."""
  from projects.self_training.configs import student as student_cfg  # pylint: disable=g-import-not-at-top
  s = pipeline.Settings(data_dir=tiny_data, runs_dir='', teacher_override=TINY)
  plan = pipeline.finetune_schedule(s)
  teacher = pipeline.teacher_params(s).trainer
  assert plan == {'steps': 3, 'learning_rate': teacher.optimizer_config.learning_rate.cosine
                  .initial_learning_rate, 'warmup_steps': 1, 'eval_interval': 3,
                  'rule': trainer.Plateau(patience=None, start_step=2)}
  other = pipeline.finetune_schedule(pipeline.Settings(
      data_dir=tiny_data, runs_dir='', teacher_override=TINY, student_steps=4,
      student_learning_rate=0.01, student_warmup_steps=2, eval_interval=2,
      finetune_patience=7))
  assert other == {'steps': 4, 'learning_rate': 0.01, 'warmup_steps': 2, 'eval_interval': 2,
                   'rule': trainer.Plateau(patience=7, start_step=2)}
  assert other['rule'].describe() == 'plateau after 7 evals without gain, counted from step 2'
  assert plan['rule'].describe() == 'its whole schedule'
  as_long = pipeline.finetune_schedule(pipeline.Settings(
      data_dir=tiny_data, runs_dir='', teacher_override=TINY, student_steps_fraction=1.0))
  assert as_long['steps'] == 6 and as_long['eval_interval'] == 3
  # The paper's 0.9997 over its 90k-step students; the same fraction of a shorter run.
  assert student_cfg.ema_decay_for(90_000) == pytest.approx(0.9997)
  assert 1 / (1 - student_cfg.ema_decay_for(4000)) == pytest.approx(4000 / 27, rel=1e-3)
  assert student_cfg.ema_decay_for(6) == 0.0


def test_student_requires_pseudo_data(tiny_data):
  params = _params('emoji_retinanet_student', tiny_data, 'task.pseudo_data.input_path=')
  task = task_factory.get_task(params.task)
  with pytest.raises(ValueError, match='pseudo_data.input_path is empty'):
    task.build_inputs(params.task.train_data)


@pytest.mark.slow
def test_whole_pipeline_end_to_end_at_tiny_size(tiny_data, tmp_path):
  runs = tmp_path / 'runs'
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  cmd = [sys.executable, '-m', 'projects.self_training.pipelines.detection_main', f'--data_dir={tiny_data}',
         f'--runs_dir={runs}', f'--params_override={TINY}', f'--student_override={TINY}',
         '--student_steps=6', '--threshold=0.0', '--rounds=2', '--alpha=0.25',
         '--pseudo_background_weight=0.5']
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for row in ('| teacher |', '| supervised control (same steps) |',
              '| student (self-training) |'):
    assert row in proc.stdout
  results = json.loads((runs / 'results.json').read_text())
  assert results['pseudo']['num_images'] == 8
  assert 'pseudo: on holdout at 0.0: precision' in proc.stdout
  assert [r['threshold'] for r in results['pseudo_quality']['rows']][0] == 0.0
  assert results['student']['steps'] == results['control']['steps'] == 6
  # By default the control trained in a process of its own, beside the student, its lines
  # prefixed; its record is the one the stage writes in place.
  assert results['control']['beside'] and '[control] control: emoji_retinanet' in proc.stdout
  assert json.loads((runs / 'control' / 'result.json').read_text())['steps'] == 6
  # The student's own flags reach the student only (the control's config has no alpha).
  assert results['student']['settings']['pseudo_override'] == (
      'task.loss_normalization.alpha=0.25,task.pseudo_background_weight=0.5')
  assert (runs / 'export' / 'saved_model' / 'saved_model.pb').exists()
  # The default pseudo labels fuse 4 views: 64 px and 96 (4/3 x 64, to a multiple of 32),
  # each also mirrored.
  assert (runs / 'export' / 'saved_model_96' / 'saved_model.pb').exists()
  assert results['pseudo']['tta_sizes'] == [96] and results['pseudo']['flip'] is True
  assert (runs / 'curves.png').stat().st_size > 0
  teacher = json.loads((runs / 'teacher' / 'teacher_metrics.json').read_text())
  assert set(teacher['val']) >= {'AP', 'AP50', 'AP75'}
  assert teacher['stopped'] in ('plateau', 'train_steps')
  # Round 2: the round-1 student labels the pool into its own versioned directory.
  assert [r['round'] for r in results['rounds']] == [1, 2]
  assert (runs / 'pseudo' / 'summary.json').exists()
  round2 = runs / 'round_2'
  assert sorted(p.name for p in round2.iterdir()) == ['export', 'pseudo', 'student']
  assert json.loads((round2 / 'pseudo' / 'summary.json').read_text())['saved_model'] == ','.join(
      str(round2 / 'export' / name) for name in ('saved_model', 'saved_model_96'))
  assert results['rounds'][1]['student']['steps'] == 6
  assert '| 2 | round-1 student |' in proc.stdout
  # Every student eval drew its human and pseudo inputs for TensorBoard.
  tags = collections.Counter()
  for event_file in (runs / 'student' / 'train').glob('events.out.tfevents.*'):
    for event in tf.compat.v1.train.summary_iterator(str(event_file)):
      tags.update(v.tag for v in event.summary.value if v.tag.startswith('inputs/'))
  assert tags['inputs/human'] >= 1 and tags['inputs/human'] == tags['inputs/pseudo'], tags

  # A re-run skips every complete stage, round 2's too.
  again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count(', skipped') == 5 + 3 + 2  # + each round's 96-px export

  # Other settings on top of complete stages: a one-line error, nothing silently reused.
  other = subprocess.run(cmd + ['--threshold=0.3'], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=900)
  assert other.returncode == 2
  assert 'threshold=0.0, this run asks for 0.3: redo it (--force=pseudo)' in other.stderr
  assert len(other.stderr.strip().splitlines()) == 1

  # --pseudo_input: the student's pseudo half from human-labeled records (the ceiling run);
  # a pattern that matches nothing is a one-line error.
  human = emoji_scenes.split_pattern(str(tiny_data), 'train')
  ceiling = subprocess.run(cmd + [f'--pseudo_input={human}', '--stages=student',
                                  '--force=student', '--rounds=1'],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
  assert ceiling.returncode == 0, ceiling.stderr[-3000:]
  student = json.loads((runs / 'student' / 'result.json').read_text())
  assert student['settings']['pseudo_input'] == human and student['steps'] == 6
  missing = subprocess.run(cmd + [f'--pseudo_input={tmp_path}/none-*', '--stages=student',
                                  '--force=student', '--rounds=1'],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
  assert missing.returncode == 2
  assert missing.stderr.strip() == f'error: --pseudo_input {tmp_path}/none-*: no such files'


def test_an_interrupted_stage_resumes_only_with_its_own_settings(tmp_path):
  model_dir = str(tmp_path / 'student')
  pipeline.claim('student', model_dir, {'threshold': 0.5, 'seed': 1})
  pipeline.claim('student', model_dir, {'threshold': 0.5, 'seed': 1})  # the same: resumes
  with pytest.raises(trainer.ConfigError, match=r'\(an interrupted run\) was made with '
                     r'threshold=0.5, this run asks for 0.4: redo it \(--force=student\)'):
    pipeline.claim('student', model_dir, {'threshold': 0.4, 'seed': 1})


def test_a_stopping_rule_change_keeps_runs_it_cannot_have_changed(tmp_path):
  """Only a run the old rule stopped early differs under the new one; a run that trained all
  its steps, or an interrupted one, is kept."""
  old = {'patience': 3, 'plateau_start_step': 0, 'seed': 1}
  new = {'patience': None, 'plateau_start_step': 3000, 'seed': 1}
  pipeline.same_run('control', 'c', {'stopped': 'train_steps', 'settings': old}, new)
  with pytest.raises(trainer.ConfigError, match=r'c was made with patience=3, this run asks '
                     r'for None: redo it \(--force=control\)'):
    pipeline.same_run('control', 'c', {'stopped': 'plateau', 'settings': old}, new)
  with pytest.raises(trainer.ConfigError, match='seed=1, this run asks for 2'):
    pipeline.same_run('control', 'c', {'stopped': 'train_steps', 'settings': old},
                      dict(new, seed=2))
  model_dir = str(tmp_path / 'control')
  pipeline.claim('control', model_dir, old)
  pipeline.claim('control', model_dir, new)  # interrupted: resumes under the new rule


def test_a_run_an_earlier_plateau_rule_stopped_stands_only_where_this_rule_stops_it():
  """Replayed on its held-out history: the same stop under this rule keeps the run (even
  one recorded before its settings named a patience); a stop this rule would not have made
  is refused in one line."""
  history = [{'step': 500 * (i + 1), 'AP': a}
             for i, a in enumerate((0.30, 0.38, 0.36, 0.37, 0.37))]
  done = {'stopped': 'plateau', 'history': history, 'settings': {'seed': 1}}
  wanted = {'patience': 3, 'plateau_start': 0.5, 'seed': 1}
  pipeline.same_run('teacher', 't', done, wanted, trainer.Plateau(patience=3))
  with pytest.raises(trainer.MadeOtherwise, match=r't was stopped at step 2500 by another '
                     r'plateau rule; this run\'s rule \(plateau after 4 evals without gain, '
                     r'counted from step 0\) trains it on: redo it \(--force=teacher\)'):
    pipeline.same_run('teacher', 't', done, dict(wanted, patience=4),
                      trainer.Plateau(patience=4))
  with pytest.raises(trainer.ConfigError, match=r'this run\'s rule \(plateau after 2 evals '
                     r'without gain, counted from step 0\) stops it at 2000'):
    pipeline.same_run('teacher', 't', done, dict(wanted, patience=2),
                      trainer.Plateau(patience=2))


def test_forcing_a_stage_redoes_what_depends_on_it():
  def forced(*force):
    return pipeline.forced_stages(pipeline.Settings(data_dir='', runs_dir='', force=force))
  assert forced() == []
  assert forced('pseudo') == ['pseudo', 'student']
  assert forced('teacher') == list(pipeline.STAGES)
  assert forced('control') == ['control']
  assert forced('all') == list(pipeline.STAGES)


def test_asking_for_a_stage_runs_what_it_reads():
  s = pipeline.Settings(data_dir='', runs_dir='')
  assert pipeline.with_prerequisites(s, ['control']) == ['teacher', 'control']
  assert pipeline.with_prerequisites(s, ['student']) == ['teacher', 'export', 'pseudo',
                                                         'student']
  assert pipeline.with_prerequisites(s, ['teacher']) == ['teacher']
  assert pipeline.with_prerequisites(s, ['all']) == list(pipeline.STAGES)


def test_asking_for_the_control_trains_it_without_labeling_anything(monkeypatch):
  calls = []
  monkeypatch.setattr(pipeline, 'teacher', lambda s, progress: {'checkpoint': 'T'})
  monkeypatch.setattr(pipeline, 'finetune', lambda s, stage, *a, **k: calls.append(stage))
  monkeypatch.setattr(pipeline, 'export', lambda *a, **k: calls.append('export'))
  out = pipeline.run(pipeline.Settings(data_dir='', runs_dir=''), ['control'])
  assert calls == ['control'] and set(out) == {'teacher', 'control'}


@pytest.mark.slow
def test_ignore_boxes_get_no_loss(tiny_data, tmp_path):
  """A pseudo box of class IGNORE_CLASS survives Model Garden's parser and is masked out;
  `pseudo_background_weight` scales the background anchors of the pseudo half."""
  raw = next(iter(tf.data.TFRecordDataset(
      tf.io.gfile.glob(emoji_scenes.split_pattern(tiny_data, 'unlabeled_scenes')))))
  encoded = tf.io.parse_single_example(raw, {'image/encoded': tf.io.FixedLenFeature(
      (), tf.string)})['image/encoded'].numpy()
  path = str(tmp_path / 'pseudo-00000-of-00001.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(records.Labeled(
        '7', encoded, 64, 64,
        np.array([[0.1, 0.1, 0.5, 0.5], [0.55, 0.5, 0.95, 0.95]], np.float32),
        np.array([18, schema.IGNORE_CLASS]), np.array([0.9, 0.3], np.float32)).example())
  params = _params('emoji_retinanet_student', tiny_data,
                   f'task.pseudo_data.input_path={path},task.pseudo_data.global_batch_size=1,'
                   'task.pseudo_data.parser.aug_rand_hflip=false,'
                   'task.pseudo_data.parser.aug_scale_min=1.0,'
                   'task.pseudo_data.parser.aug_scale_max=1.0')
  task = task_factory.get_task(params.task)
  _, (_, labels) = next(iter(task.build_inputs(params.task.train_data)))
  from official.vision.losses import loss_utils  # pylint: disable=g-import-not-at-top
  targets = loss_utils.multi_level_flatten(labels['cls_targets'], last_dim=None).numpy()
  ignored, real = targets == schema.IGNORE_CLASS, targets == 18
  assert ignored.sum() >= 1 and real.sum() >= 1
  masked = task.pseudo_label_weights(labels)
  assert masked['cls_weights'].numpy()[ignored].sum() == 0
  assert masked['box_weights'].numpy()[ignored].sum() == 0
  assert masked['box_weights'].numpy().sum() == real.sum()
  assert masked['cls_weights'].numpy()[~ignored].min() == 1.0
  # A lighter background in the pseudo half: background anchors only, boxes untouched.
  background = (targets == -1) & (labels['cls_weights'].numpy() > 0)
  assert background.sum() > 0
  params.task.pseudo_background_weight = 0.25
  light = task_factory.get_task(params.task).pseudo_label_weights(labels)
  np.testing.assert_allclose(light['cls_weights'].numpy()[background], 0.25)
  np.testing.assert_array_equal(light['cls_weights'].numpy()[real], 1.0)
  np.testing.assert_array_equal(light['box_weights'].numpy(), masked['box_weights'].numpy())
  # Weighted by the teacher's score: the kept box's anchors weigh 0.9, background 1, the
  # ignore box's still 0; read through Model Garden's decoder and anchor labeler.
  params.task.pseudo_background_weight = 1.0
  params.task.pseudo_score_weight = True
  scored_task = task_factory.get_task(params.task)
  _, (_, scored_labels) = next(iter(scored_task.build_inputs(params.task.train_data)))
  scored = scored_task.pseudo_label_weights(scored_labels)
  assert 'attribute_targets' not in scored
  np.testing.assert_allclose(scored['cls_weights'].numpy()[real], 0.9, rtol=1e-6)
  np.testing.assert_allclose(scored['box_weights'].numpy()[real], 0.9, rtol=1e-6)
  assert scored['cls_weights'].numpy()[ignored].sum() == 0
  np.testing.assert_array_equal(scored['cls_weights'].numpy()[background], 1.0)


def test_default_ignore_band_never_reaches_above_the_threshold():
  default = pipeline.Settings(data_dir='', runs_dir='').ignore_threshold
  assert default == pipeline.DEFAULT_IGNORE_THRESHOLD and 0.0 < default < 0.5
  assert pipeline.ignore_threshold_for(0.5) == default
  assert pipeline.ignore_threshold_for(0.2) == 0.2  # below the default band: no band
  assert pipeline.ignore_threshold_for(0.5, asked=0.1) == 0.1
  assert pipeline.ignore_threshold_for(0.5, asked=0.5) == 0.5  # the paper's: no band


def test_tta_sizes_default_to_four_thirds_of_the_teachers_input(tiny_data):
  s = pipeline.Settings(data_dir=tiny_data, runs_dir='', teacher_override=TINY)  # 64 px
  assert pipeline.tta_sizes_of(s) == [96]
  big = 'task.model.input_size=[256,256,3]'
  assert pipeline.tta_sizes_of(dataclasses.replace(s, teacher_override=big)) == [352]
  assert pipeline.tta_sizes_of(pipeline.Settings(data_dir=tiny_data, runs_dir='')) == [128]
  assert pipeline.tta_sizes_of(dataclasses.replace(s, tta_sizes=())) == []
  assert pipeline.tta_sizes_of(dataclasses.replace(s, tta_sizes=(160, 192))) == [160, 192]


@pytest.mark.slow
def test_paper_labels_refuses_the_flags_it_sets(tiny_data):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.pipelines.detection_main',
       f'--data_dir={tiny_data}', '--paper_labels', '--tta_flip', '--ignore_threshold=0.2'],
      capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      'error: --paper_labels sets --tta_flip, --ignore_threshold itself: drop them or it')


def test_a_stage_that_fails_in_its_own_process_is_a_one_line_error(tmp_path, capsys):
  # The control beside the rest of the job: its lines come back prefixed, to standard
  # output even while the parent's training loop has swapped it for a buffer, and its
  # failure is the parent's one-line error, never a missing record read as a result.
  import contextlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  from projects.self_training.pipelines import beside  # pylint: disable=g-import-not-at-top
  s = pipeline.Settings(data_dir=str(tmp_path), runs_dir=str(tmp_path / 'runs'),
                        teacher_experiment='no_such_experiment')
  job = beside.start(s, 'control', s.teacher_experiment, None,
                     os.path.join(s.dir('control'), pipeline.RESULT))
  with contextlib.redirect_stdout(io.StringIO()):  # as trainer.train_to_plateau does
    with pytest.raises(trainer.ConfigError, match=r'^control \(in its own process\) failed '
                       r'with exit status 2: its lines above, prefixed \[control\]$'):
      job.result()
  lines = capsys.readouterr().out.splitlines()
  assert lines[-1].startswith('[control] error: ') and 'no_such_experiment' in lines[-1], lines
