"""Every registered full-scale experiment is the paper's recipe for its cells (Appendix H).

A config and the paper cannot drift apart silently: each experiment's steps, alpha,
joint-training weight, batch, learning rate, RandAugment magnitude, backbone, augmentation,
initialization and data are compared with `paper_numbers.APPENDIX_H` for every cell it is
registered for (all but the numbers the paper does not state), and the generated table in
docs/ must be the one the configs give now.
"""

import dataclasses
import os

import pytest

from projects.self_training.configs import paper_cells
from projects.self_training.configs import student as student_cfg
from projects.self_training.study import paper_numbers
from projects.self_training.tools import full_scale

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES_DOC = os.path.join(ROOT, 'docs', 'full_scale_recipes.md')
NAMES = full_scale.full_scale_experiments()


def test_every_full_scale_experiment_names_its_paper_cells():
  assert len(NAMES) >= 59
  for name in NAMES:
    assert paper_cells.CELLS.get(name), f'{name} is registered without a paper cell'
    for cell in paper_cells.CELLS[name]:
      assert cell in paper_numbers.APPENDIX_H, (name, cell)
      assert paper_numbers.paper(*cell) is not None, (name, cell)


@pytest.mark.parametrize('name', NAMES)
def test_recipe_is_appendix_h(name):
  """Every field of the paper's recipe, but a batch, learning rate or magnitude it leaves
  unstated (None)."""
  ours = dataclasses.asdict(full_scale.recipe_of(name))
  for cell in paper_cells.CELLS[name]:
    paper = dataclasses.asdict(paper_numbers.APPENDIX_H[cell])
    stated = [k for k, v in paper.items() if v is not None or
              k not in paper_numbers.TRAINING_FIELDS]
    assert {k: ours[k] for k in stated} == {k: paper[k] for k in stated}, (
        f'{name} against {cell}')


def test_the_paper_states_most_batches_and_learning_rates():
  """None is kept for what the paper does not print: ResNet-50's batch and learning rate,
  SpineNet's learning rate and pseudo half, and Table 7's classification half beside a
  student's; nothing else goes unchecked."""
  unstated = {(cell[0], field) for cell, recipe in paper_numbers.APPENDIX_H.items()
              for field in paper_numbers.TRAINING_FIELDS
              if getattr(recipe, field) is None and (field != 'randaugment_magnitude' or
                                                     recipe.augmentation == 's4')}
  assert unstated == {('table4', 'batch'), ('table4', 'pseudo_batch'),
                      ('table4', 'learning_rate'), ('table5', 'pseudo_batch'),
                      ('table5', 'learning_rate'), ('table7', 'classification_batch')}


@pytest.mark.parametrize('name', NAMES)
def test_schedule_spans_the_run(name):
  """The learning rate decays over the run's own steps (a stepwise schedule's boundaries
  inside it), so a changed step count cannot leave the old schedule behind."""
  params = full_scale._registered(name)  # pylint: disable=protected-access
  schedule = params.trainer.optimizer_config.learning_rate
  if schedule.type == 'cosine':
    assert schedule.cosine.decay_steps == params.trainer.train_steps
  else:
    assert 0 < min(schedule.stepwise.boundaries)
    assert max(schedule.stepwise.boundaries) < params.trainer.train_steps


@pytest.mark.parametrize('name', sorted(paper_cells.TEACHERS))
def test_student_starts_from_its_teacher_on_its_pseudo_labels(name):
  """Section 3.2: every student is initialized from its teacher, whose pseudo labels it
  reads; and it has the teacher's model, input size and augmentation."""
  teacher_name = paper_cells.TEACHERS[name]
  params = full_scale._registered(name)  # pylint: disable=protected-access
  teacher = full_scale._registered(teacher_name)  # pylint: disable=protected-access
  assert params.task.init_checkpoint == student_cfg.teacher_checkpoint(teacher_name)
  assert params.task.init_checkpoint_modules == 'all'
  assert f'/pseudo/{teacher_name}/' in params.task.pseudo_data.input_path
  assert params.task.model.as_dict() == teacher.task.model.as_dict()
  def augmentation(data):
    parser = full_scale._parser(data)  # pylint: disable=protected-access
    return {k: v for k, v in parser.as_dict().items() if k.startswith('aug_')}
  assert augmentation(params.task.train_data) == augmentation(params.task.pseudo_data)
  assert augmentation(params.task.train_data)['aug_rand_hflip']


def test_generated_table_is_current():
  """docs/full_scale_recipes.md is `./run.sh describe --recipes=...`'s output for the
  configs as they are."""
  with open(RECIPES_DOC) as f:
    assert f.read() == full_scale.recipes_markdown(NAMES), (
        'docs/full_scale_recipes.md is stale: run ./run.sh describe '
        '--recipes=docs/full_scale_recipes.md')
