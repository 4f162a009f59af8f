"""Augment-S1..S4 gin files: the parser config they produce, and the errors for bad bindings."""

import os
import subprocess
import sys

import pytest

from projects.self_training.common import trainer
from projects.self_training.configs import augment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN = os.path.join(ROOT, 'gin', 'augment')

EXPECTED = {
    # preset: (hflip, scale_min, scale_max, aug_type)
    's1': (True, 0.8, 1.2, None),
    's2': (True, 0.8, 1.2, 'autoaug'),
    's3': (True, 0.5, 2.0, 'autoaug'),
    's4': (True, 0.5, 2.0, 'randaug'),
}


def _parser(gin_file=None, override=''):
  params = trainer.build_params('emoji_retinanet', params_override=override,
                                gin_files=[gin_file] if gin_file else [])
  return params.task.train_data.parser, params.task.model.input_size[0]


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_gin_file_sets_parser(name):
  parser, size = _parser(os.path.join(GIN, f'{name}.gin'))
  hflip, lo, hi, aug_type = EXPECTED[name]
  assert parser.aug_rand_hflip is hflip
  assert (parser.aug_scale_min, parser.aug_scale_max) == (lo, hi)
  if aug_type is None:
    assert parser.aug_type is None
  else:
    assert parser.aug_type.type == aug_type
  if aug_type == 'autoaug':
    assert parser.aug_type.autoaug.augmentation_name == 'detection_v0'
    # Pixel constants are scaled from Model Garden's 640 px to the input size.
    assert parser.aug_type.autoaug.translate_const == pytest.approx(250 * size / 640)
  if aug_type == 'randaug':
    assert parser.aug_type.randaug.magnitude == 10
    assert parser.aug_type.randaug.num_layers == 2


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_gin_file_names_its_registered_preset(name):
  """Each gin file is its preset (the one definition, `augment.PRESETS`), not a copy."""
  from_gin, size = _parser(os.path.join(GIN, f'{name}.gin'))
  params = trainer.build_params('emoji_retinanet', lock=False)
  augment.apply_augmentation(params.task.train_data.parser, augment.PRESETS[name.upper()], size)
  assert from_gin.as_dict() == params.task.train_data.parser.as_dict()
  bindings = [line for line in open(os.path.join(GIN, f'{name}.gin'))
              if line.strip() and not line.startswith('#')]
  assert bindings == [f"augmentation.preset = '{name.upper()}'\n"]


def test_binding_after_a_preset_changes_that_field_only():
  parser, _ = _parser(os.path.join(GIN, 's4.gin'))
  changed = trainer.build_params('emoji_retinanet', gin_files=[os.path.join(GIN, 's4.gin')],
                                 gin_params=['augmentation.randaugment_magnitude = 15']
                                 ).task.train_data.parser
  assert changed.aug_type.randaug.magnitude == 15
  changed.aug_type.randaug.magnitude = parser.aug_type.randaug.magnitude
  assert changed.as_dict() == parser.as_dict()


def test_full_scale_experiment_uses_preset_and_paper_steps():
  params = trainer.build_params('retinanet_efficientnetb7_fpn_coco_s4')
  assert params.task.train_data.parser.aug_type.type == 'randaug'
  assert params.trainer.train_steps == 120_000
  assert params.task.train_data.parser.aug_type.randaug.translate_const == pytest.approx(100)


def test_params_override_composes_after_gin():
  parser, _ = _parser(os.path.join(GIN, 's4.gin'), 'task.train_data.parser.aug_scale_max=1.5')
  assert parser.aug_type.type == 'randaug'
  assert parser.aug_scale_max == 1.5


def test_no_gin_keeps_experiment_defaults():
  parser, _ = _parser()
  assert parser.aug_type is None
  assert (parser.aug_scale_min, parser.aug_scale_max) == (0.8, 1.2)


@pytest.mark.parametrize('binding, needle', [
    ("augmentaton.policy = 'randaugment'", 'augmentaton'),
    ('augmentation.hfip = True', 'hfip'),
    ("augmentation.name = 'x'\naugmentation.policy = 'randaugmnt'", 'randaugmnt'),
    ("augmentation.name = 'x'\naugmentation.autoaugment_name = 'nope'\n"
     "augmentation.policy = 'autoaugment'", 'nope'),
    ("augmentation.preset = 'S9'", 'S9'),
])
def test_bad_binding_is_one_line_error(binding, needle):
  with pytest.raises(trainer.ConfigError) as err:
    trainer.build_params('emoji_retinanet', gin_params=binding.split('\n'))
  message = str(err.value)
  assert needle in message and '\n' not in message


def test_missing_gin_file_and_unknown_experiment():
  with pytest.raises(trainer.ConfigError, match='gin file not found'):
    trainer.build_params('emoji_retinanet', gin_files=['gin/augment/s9.gin'])
  with pytest.raises(trainer.ConfigError, match='unknown experiment'):
    trainer.build_params('emoji_retinanett')


@pytest.mark.slow
def test_train_cli_reports_misspelled_binding_in_one_line(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.train', '--experiment=emoji_retinanet',
       '--mode=train', f'--model_dir={tmp_path}', f'--gin_file={GIN}/s1.gin',
       '--gin_params=augmentation.scale_jiter=(0.5, 2.0)'],
      capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
  assert proc.returncode == 2
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and 'scale_jiter' in errors[0], proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert not os.listdir(tmp_path)  # nothing written for a run that never started


def test_preset_of_names_table_1s_policy():
  """The parser settings of each gin file read back as its policy; large scale jittering is
  any range that holds (0.5, 2.0), so AutoAugment at SpineNet's (0.1, 2.0) is Augment-S3 and
  its flips and crops alone are none of Table 1's."""
  for name in EXPECTED:
    parser, _ = _parser(os.path.join(GIN, f'{name}.gin'))
    assert augment.preset_of(parser) == name.upper()
  spinenet, _ = _parser(override='task.train_data.parser.aug_scale_min=0.1,'
                        'task.train_data.parser.aug_scale_max=2.0')
  assert augment.preset_of(spinenet) is None
  wide_s3, _ = _parser(os.path.join(GIN, 's3.gin'), 'task.train_data.parser.aug_scale_min=0.1')
  assert augment.preset_of(wide_s3) == 'S3'
  narrow_s4, _ = _parser(os.path.join(GIN, 's4.gin'), 'task.train_data.parser.aug_scale_min=0.8,'
                         'task.train_data.parser.aug_scale_max=1.2')
  assert augment.preset_of(narrow_s4) is None
