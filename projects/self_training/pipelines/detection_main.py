"""The main job: embedded data -> teacher -> export -> pseudo labels -> control and student.

`./run.sh` runs this. It prints one table of COCO AP / AP50 / AP75 on `val` for the
teacher, the same-steps supervised control and the self-trained student, and writes it
with everything else to `--runs_dir/results.json`. Each stage is skipped when its outputs
are complete (`--force=STAGE` or `--force=all` redoes it); `--stages=teacher` stops after
the teacher.
"""

import os

from absl import app
from absl import flags

from projects.self_training.common import cli
from projects.self_training.common import paths
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pipelines import detection as pipeline
from projects.self_training.pipelines import job_cli
from projects.self_training.pipelines import plots

FLAGS = flags.FLAGS
_DEFAULTS = pipeline.Settings(data_dir='', runs_dir='')

job_cli.define_flags(_DEFAULTS, pipeline.STAGES, paths.RUNS_DIR)
flags.adopt_module_key_flags(job_cli)
flags.DEFINE_string('experiment', _DEFAULTS.teacher_experiment, 'Teacher experiment.')
flags.DEFINE_string('student_experiment', _DEFAULTS.student_experiment, 'Student experiment.')
flags.DEFINE_string('student_only_override', '', 'Params override for the student alone '
                    '(e.g. task.concat_halves=true).')
flags.DEFINE_float('student_steps_fraction', _DEFAULTS.student_steps_fraction,
                   'With --student_steps 0, control and student train at most this share of '
                   'the teacher\'s steps (the paper: 0.75-1.0; 0.5 fits the embedded job in '
                   'its hour).')
flags.register_validator('student_steps_fraction', lambda v: v > 0,
                         message='--student_steps_fraction must be above 0, e.g. 0.5 or 1')
flags.DEFINE_float('student_learning_rate', None, 'Peak learning rate of control and student '
                   '(default: the teacher\'s, as in the paper).')
flags.DEFINE_float('pseudo_background_weight', None, 'Classification weight of the background '
                   'anchors of pseudo-labeled images (default: the experiment\'s, 1).')
flags.DEFINE_float('ignore_threshold', _DEFAULTS.ignore_threshold,
                   'Pseudo boxes scored in [this, --threshold) become ignore regions (no '
                   'loss); equal to --threshold: none, the paper\'s plain hard threshold.')
flags.DEFINE_list('tta_sizes', None,
                  'Pseudo labels from the teacher also exported at these input sizes, the '
                  'views\' detections fused (test-time augmentation); default: one size, '
                  f'{pipeline.TTA_SCALE:.2f}x the teacher\'s (96 -> 128 px); empty: one view.')
flags.DEFINE_bool('tta_flip', _DEFAULTS.tta_flip, 'Pseudo labels also from each image '
                  'mirrored, fused with the unmirrored view (test-time augmentation).')
flags.register_validator('tta_sizes',
                         lambda v: v is None or all(x.isdigit() and int(x) > 0 for x in v),
                         message='--tta_sizes takes positive integers, e.g. 128')
flags.DEFINE_bool('paper_labels', False, 'The paper\'s pseudo labels: one view of each '
                  'image, a hard --threshold (0.5), no ignore band (instead of the default '
                  'test-time augmentation and ignore band; README says why).')
flags.DEFINE_string('pseudo_input', '', 'The student\'s pseudo half from these TFRecords '
                    'instead of the teacher\'s labels; a human-labeled pool (e.g. `./run.sh data '
                    '--seed 7 --splits train --num_train 5000`) gives the ceiling of '
                    'self-training: perfect pseudo labels.')
flags.DEFINE_bool('label_iconic', False, 'Also pseudo-label the `iconic` pool.')
flags.DEFINE_bool('parallel_control', True, 'Train the supervised control in a process of '
                  'its own on half the cores, beside the export, the pseudo labels and the '
                  'student (on 2 cores the job ends sooner; the control\'s thread count, and '
                  'with it its rounding, differs); --noparallel_control: one after another.')
flags.DEFINE_integer('rounds', 1, 'Rounds of self-training: the student of round k labels the '
                     'pool for round k + 1 (written under --runs_dir/round_k/).')


def settings(data_dir: str) -> pipeline.Settings:
  # --alpha and --pseudo_background_weight exist in the student's config only, not in the
  # control's (the teacher's experiment).
  pseudo_override = pipeline.join_overrides(
      job_cli.alpha_override(),
      '' if FLAGS.pseudo_background_weight is None
      else f'task.pseudo_background_weight={FLAGS.pseudo_background_weight}',
      FLAGS.student_only_override)
  splits = [emoji_scenes.UNLABELED_SPLIT] + ([emoji_scenes.ICONIC_SPLIT]
                                             if FLAGS.label_iconic else [])
  ignore = pipeline.ignore_threshold_for(
      FLAGS.threshold, None if FLAGS['ignore_threshold'].using_default_value
      else FLAGS.ignore_threshold)
  tta_sizes = None if FLAGS.tta_sizes is None else tuple(int(x) for x in FLAGS.tta_sizes)
  tta_flip = FLAGS.tta_flip
  if FLAGS.paper_labels:
    given = [f'--{n}' for n in ('tta_sizes', 'tta_flip', 'ignore_threshold') if FLAGS[n].present]
    if given:
      raise trainer.ConfigError(f'--paper_labels sets {", ".join(given)} itself: drop them or it')
    ignore, tta_sizes, tta_flip = FLAGS.threshold, (), False
  return pipeline.Settings(
      data_dir=data_dir, runs_dir=FLAGS.runs_dir, teacher_experiment=FLAGS.experiment,
      student_experiment=FLAGS.student_experiment, gin_files=FLAGS.gin_file,
      gin_params=FLAGS.gin_params, teacher_override=FLAGS.params_override,
      student_override=FLAGS.student_override, pseudo_override=pseudo_override,
      plateau_patience=FLAGS.plateau_patience,
      plateau_start=FLAGS.plateau_start, plateau_window=FLAGS.plateau_window,
      finetune_patience=FLAGS.finetune_patience,
      student_steps=FLAGS.student_steps, student_steps_fraction=FLAGS.student_steps_fraction,
      student_learning_rate=FLAGS.student_learning_rate,
      threshold=FLAGS.threshold, ignore_threshold=ignore,
      pseudo_splits=splits, tta_sizes=tta_sizes, tta_flip=tta_flip,
      pseudo_input=FLAGS.pseudo_input, parallel_control=FLAGS.parallel_control,
      seed=FLAGS.seed, force=FLAGS.force)


def main(argv):
  start = job_cli.start(argv)
  with cli.errors_in_one_line(trainer.ConfigError, ValueError):
    data_dir = emoji_scenes.resolve_data_dir(FLAGS.data_dir)
    results = run(settings(data_dir))
  report(results, start)


def run(s: pipeline.Settings):
  """The stages `--stages` asks for (and `--rounds`), with progress printed."""
  if FLAGS.rounds < 1:
    raise trainer.ConfigError(f'--rounds must be >= 1, got {FLAGS.rounds}')
  if FLAGS.rounds > 1 and 'student' not in FLAGS.stages:
    raise trainer.ConfigError('--rounds > 1 needs the student stage')
  progress = lambda line: print(line, flush=True)
  results = pipeline.run(s, FLAGS.stages, progress=progress)
  if FLAGS.rounds > 1:
    results['rounds'] = pipeline.rounds(s, results, FLAGS.rounds, progress)
  return results


def report(results, start: float) -> None:
  """The held-out curves, the AP table on val, the margin, the curves' figure and
  `results.json`."""
  job_cli.print_training(results, ('control', 'student'), 'AP', 'AP', str.capitalize)
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
  job_cli.write_results(results, start)
  print('\nWhere the time went:')
  print('\n'.join(pipeline.stage_table(pipeline.stage_times(results))))


if __name__ == '__main__':
  app.run(main)
