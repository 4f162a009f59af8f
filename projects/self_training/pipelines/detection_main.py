"""The main job: embedded data -> teacher -> export -> pseudo labels -> control and student.

`./run.sh` runs this. It prints one table of COCO AP / AP50 / AP75 on `val` for the
teacher, the same-steps supervised control and the self-trained student, and writes it
with everything else to `--runs_dir/results.json`. Each stage is skipped when its outputs
are complete (`--force=STAGE` or `--force=all` redoes it); `--stages=teacher` stops after
the teacher.
"""

import os
import time

from absl import app
from absl import flags

from projects.self_training.common import cli
from projects.self_training.common import paths
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.pipelines import plots

FLAGS = flags.FLAGS
_DEFAULTS = pipeline.Settings(data_dir='', runs_dir='')

flags.DEFINE_string('data_dir', None, 'An existing emoji-scenes set (default: generate or reuse '
                    'the cached default set).')
flags.DEFINE_string('runs_dir', paths.RUNS_DIR, 'Where every stage writes.')
flags.DEFINE_list('stages', list(pipeline.STAGES), 'Stages to run, in order, with '
                  'the stages they read.')
flags.DEFINE_list('force', [], 'Stages to redo from scratch (or "all").')
flags.DEFINE_string('experiment', _DEFAULTS.teacher_experiment, 'Teacher experiment.')
flags.DEFINE_string('student_experiment', _DEFAULTS.student_experiment, 'Student experiment.')
flags.DEFINE_multi_string('gin_file', [], 'Gin files for every stage, e.g. gin/augment/s1.gin.')
flags.DEFINE_multi_string('gin_params', [], 'Gin bindings.')
flags.DEFINE_string('params_override', '', 'Teacher params override (YAML or a=b,...).')
flags.DEFINE_string('student_override', '', 'Params override for control and student.')
flags.DEFINE_string('student_only_override', '', 'Params override for the student alone '
                    '(e.g. task.concat_halves=true).')
flags.DEFINE_integer('plateau_patience', _DEFAULTS.plateau_patience,
                     'Held-out evals without improvement before a model (teacher, control, '
                     'student) stops.')
flags.DEFINE_integer('student_steps', _DEFAULTS.student_steps,
                     'Most training steps of the student and of the supervised control '
                     '(0: as many as the teacher\'s schedule, as in the paper).')
flags.DEFINE_float('student_learning_rate', None, 'Peak learning rate of control and student '
                   '(default: the teacher\'s, as in the paper).')
flags.DEFINE_float('alpha', None, 'Pseudo-loss weight alpha (default: the experiment\'s).')
flags.DEFINE_float('pseudo_background_weight', None, 'Classification weight of the background '
                   'anchors of pseudo-labeled images (default: the experiment\'s, 1).')
flags.DEFINE_float('threshold', _DEFAULTS.threshold, 'Pseudo-label score threshold.')
flags.DEFINE_float('ignore_threshold', _DEFAULTS.ignore_threshold,
                   'Pseudo boxes scored in [this, --threshold) become ignore regions (no '
                   'loss); equal to --threshold: none, the paper\'s plain hard threshold.')
flags.DEFINE_list('tta_sizes', [str(x) for x in _DEFAULTS.tta_sizes],
                  'Pseudo labels from the teacher also exported at these input sizes, the '
                  'views\' detections fused (test-time augmentation); empty: one size.')
flags.DEFINE_bool('tta_flip', _DEFAULTS.tta_flip, 'Pseudo labels also from each image '
                  'mirrored, fused with the unmirrored view (test-time augmentation).')
flags.register_validator('tta_sizes', lambda v: all(x.isdigit() and int(x) > 0 for x in v),
                         message='--tta_sizes takes positive integers, e.g. 128')
flags.DEFINE_string('pseudo_input', '', 'The student\'s pseudo half from these TFRecords '
                    'instead of the teacher\'s labels; a human-labeled pool (e.g. `./run.sh data '
                    '--seed 7 --splits train --num_train 5000`) gives the ceiling of '
                    'self-training: perfect pseudo labels.')
flags.DEFINE_bool('label_iconic', False, 'Also pseudo-label the `iconic` pool.')
flags.DEFINE_integer('seed', 0, 'Seed for control and student data order and augmentation.')
flags.DEFINE_integer('rounds', 1, 'Rounds of self-training: the student of round k labels the '
                     'pool for round k + 1 (written under --runs_dir/round_k/).')


def settings(data_dir: str) -> pipeline.Settings:
  # --alpha and --pseudo_background_weight exist in the student's config only, not in the
  # control's (the teacher's experiment).
  pseudo_override = pipeline.join_overrides(
      '' if FLAGS.alpha is None else f'task.loss_normalization.alpha={FLAGS.alpha}',
      '' if FLAGS.pseudo_background_weight is None
      else f'task.pseudo_background_weight={FLAGS.pseudo_background_weight}',
      FLAGS.student_only_override)
  splits = [emoji_scenes.UNLABELED_SPLIT] + ([emoji_scenes.ICONIC_SPLIT]
                                             if FLAGS.label_iconic else [])
  return pipeline.Settings(
      data_dir=data_dir, runs_dir=FLAGS.runs_dir, teacher_experiment=FLAGS.experiment,
      student_experiment=FLAGS.student_experiment, gin_files=FLAGS.gin_file,
      gin_params=FLAGS.gin_params, teacher_override=FLAGS.params_override,
      student_override=FLAGS.student_override, pseudo_override=pseudo_override,
      plateau_patience=FLAGS.plateau_patience,
      student_steps=FLAGS.student_steps, student_learning_rate=FLAGS.student_learning_rate,
      threshold=FLAGS.threshold,
      ignore_threshold=pipeline.ignore_threshold_for(
          FLAGS.threshold, None if FLAGS['ignore_threshold'].using_default_value
          else FLAGS.ignore_threshold),
      pseudo_splits=splits, tta_sizes=tuple(int(x) for x in FLAGS.tta_sizes),
      tta_flip=FLAGS.tta_flip, pseudo_input=FLAGS.pseudo_input,
      seed=FLAGS.seed, force=FLAGS.force)


def main(argv):
  cli.no_arguments(argv[1:])
  trainer.quiet_logs()
  start = time.time()
  with cli.errors_in_one_line(trainer.ConfigError, ValueError):
    data_dir = emoji_scenes.resolve_data_dir(FLAGS.data_dir)
    s = settings(data_dir)
    if FLAGS.rounds < 1:
      raise trainer.ConfigError(f'--rounds must be >= 1, got {FLAGS.rounds}')
    if FLAGS.rounds > 1 and 'student' not in FLAGS.stages:
      raise trainer.ConfigError('--rounds > 1 needs the student stage')
    progress = lambda line: print(line, flush=True)
    results = pipeline.run(s, FLAGS.stages, progress=progress)
    if FLAGS.rounds > 1:
      results['rounds'] = pipeline.rounds(s, results, FLAGS.rounds, progress)
  t = results['teacher']
  hist = ', '.join(f'{h["step"]}:{100 * h["AP"]:.1f}' for h in t['history'])
  print()
  print(f'Teacher held-out AP by step: {hist}')
  print(f'Teacher stopped: {t["stopped"]}; best held-out AP {100 * t["holdout"]["AP"]:.1f} at '
        f'step {t["best_step"]}; training {t["train_seconds"]:.0f} s.')
  for key in ('control', 'student'):
    if key in results:
      r = results[key]
      curve = ', '.join(f'{h["step"]}:{100 * h["AP"]:.1f}' for h in r['history'])
      print(f'{key.capitalize()} held-out AP by step: {curve}')
  print()
  print('\n'.join(pipeline.table(results)))
  if 'rounds' in results:
    print('\nRounds of self-training (pseudo labels scored on holdout at the threshold):')
    print('\n'.join(pipeline.rounds_table(results['rounds'])))
  if 'student' in results and 'control' in results:
    margin = results['student']['val']['AP'] - results['control']['val']['AP']
    print(f'\nStudent - control: {100 * margin:+.1f} AP on val.')
  if 'teacher' in results:
    curves = plots.learning_curves(results, os.path.join(FLAGS.runs_dir, 'curves.png'))
    print(f'Learning curves: {curves}')
  results['wall_seconds'] = time.time() - start
  trainer.write_json(os.path.join(FLAGS.runs_dir, 'results.json'), results)
  print(f'\nMetrics: {os.path.join(FLAGS.runs_dir, "results.json")}; '
        f'wall time {results["wall_seconds"]:.0f} s.')


if __name__ == '__main__':
  app.run(main)
