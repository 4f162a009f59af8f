"""`./run.sh compare DIR_OR_JSON...`: the metrics of runs side by side, with reference numbers.

Reads any of:
  a study directory       (`cells/*.json`: one row per cell, its paper cell beside it)
  a pipeline runs dir     (`results.json` of `./run.sh` or `./run.sh segmentation`)
  a training model_dir    (`./run.sh train`: `params.yaml` + `metrics_*.json` or
                           `plateau_history.json`, its best held-out eval), e.g. a
                           full-scale run on a pod
  one of those JSON files directly
and prints one Markdown table: run, model, AP/AP50/AP75 (mIoU for segmentation), the
paper's number for the matching cell and Model Garden's published baseline for the same
recipe where one exists. A full-scale run is matched by what its `params.yaml` says
(backbone, input size, augmentation, pseudo-labeled data or not), not by its name.
"""

import glob
import os
from typing import Any, Dict, List, Optional, Tuple

from absl import app
import yaml

from projects.self_training.common import cli
from projects.self_training.common import file_io
from projects.self_training.common import trainer
from projects.self_training.study import paper_numbers

# Model Garden's published COCO numbers for recipes we also register, as printed in
# tensorflow/models official/vision/MODEL_GARDEN.md (RetinaNet table); SpineNet-190's from
# tensorflow/tpu models/official/detection/MODEL_ZOO.md (Model Garden publishes its config
# but no number). Key: (backbone, model id, input size, pre-trained init, Augment level);
# a run gets a baseline only when all five match. Model Garden's PASCAL rows (DeepLabV3+
# dilated ResNet-101) share no recipe with ours, so segmentation runs get none.
MODEL_GARDEN = {
    ('resnet', '50', 640, True, 1): ('RetinaNet R50-FPN 640, ImageNet init, 72 epochs '
                                     '(retinanet_resnetfpn_coco)', 36.8),
    ('spinenet', '49', 640, False, None): ('RetinaNet SpineNet-49 640, 500 epochs '
                                           '(coco_spinenet49_tpu.yaml)', 44.2),
    ('spinenet', '143', 1280, False, None): ('RetinaNet SpineNet-143 1280, 500 epochs '
                                             '(coco_spinenet143_tpu.yaml)', 50.0),
    ('spinenet', '190', 1280, False, None): ('RetinaNet SpineNet-190 1280, 400 epochs '
                                             '(tensorflow/tpu model zoo)', 52.0),
}
# The paper's numbers for the SpineNet and PASCAL recipes (Tables 5, 6); the EfficientNet-B7
# and ResNet ones come from paper_numbers (Tables 2, 3, 4, 12).
PAPER_FULL_SCALE = {
    ('spinenet', '143', False): ('Table 5 SpineNet-143', 50.9),
    ('spinenet', '143', True): ('Table 5 SpineNet-143 w/ Self-training', 52.4),
    ('spinenet', '190', False): ('Table 5 SpineNet-190', 52.6),
    ('spinenet', '190', True): ('Table 5 SpineNet-190 w/ Self-training', 54.2),
    ('efficientnet', 'b7-seg', False): ('Table 6 Eff-B7 (ImageNet++)', 85.2),
    ('efficientnet', 'b7-seg', True): ('Table 6 Eff-B7 w/ Self-training', 86.7),
    ('efficientnet', 'l2-seg', False): ('Table 6 Eff-L2 (ImageNet++)', 88.7),
    ('efficientnet', 'l2-seg', True): ('Table 6 Eff-L2 w/ Self-training', 90.0),
}
_TABLE12_ST = (39.0, 41.3, 42.8, 43.6)


class Row(dict):
  """run, model, metrics (percent), paper, model_garden."""


def _metrics(m: Dict[str, Any]) -> Dict[str, float]:
  keys = ('AP', 'AP50', 'AP75', 'mean_iou')
  return {k: 100 * float(m[k]) for k in keys if k in m and m[k] is not None}


def _study_rows(path: str, records: List[Dict[str, Any]]) -> List[Row]:
  rows = []
  for r in records:
    paper = paper_numbers.paper(r['table'], r['row'], r['column'])
    rows.append(Row(run=f'{path}:{r["id"]}', model=f'{r["kind"]} ({r["size"]} study)',
                    metrics=_metrics(r['val']),
                    paper=None if paper is None else (f'{r["table"]} {r["row"]} {r["column"]}',
                                                      paper), model_garden=None))
  return rows


def _pipeline_rows(path: str, results: Dict[str, Any]) -> List[Row]:
  rows = []
  for stage in ('teacher', 'control', 'train_aug', 'student'):
    if stage in results and 'val' in results[stage]:
      rows.append(Row(run=f'{path}:{stage}', model=results[stage].get('experiment', stage),
                      metrics=_metrics(results[stage]['val']), paper=None, model_garden=None))
  return rows


def augment_level(parser: Dict[str, Any]) -> Optional[int]:
  """Augment-S1..S4 from a detection parser config (gin/augment's settings), else None."""
  aug_type = (parser.get('aug_type') or {}).get('type') if parser.get('aug_type') else None
  large = float(parser.get('aug_scale_max', 1.0)) >= 2.0
  if aug_type is None:
    return None if large else 1
  if aug_type == 'autoaug':
    return 3 if large else 2
  if aug_type == 'randaug' and large:
    return 4
  return None


def pretrained(params: Dict[str, Any]) -> bool:
  """True when the run's backbone starts from a checkpoint (ImageNet / SimCLR Init)."""
  task = params.get('task', {})
  return bool(task.get('init_checkpoint')) and task.get('init_checkpoint_modules') in (
      'backbone', ['backbone'])


def recipe(params: Dict[str, Any]) -> Tuple[str, str, bool, Optional[int]]:
  """(backbone type, model id, self-training, Augment level) of a params.yaml."""
  task = params.get('task', {})
  model = task.get('model', {})
  backbone = model.get('backbone', {})
  kind = backbone.get('type', '')
  model_id = str((backbone.get(kind) or {}).get('model_id', '')).lower()
  model_id = model_id.replace('efficientnet-', '').replace('spinenet', '')
  pseudo = task.get('pseudo_data') or {}
  student = bool(pseudo.get('input_path') or pseudo.get('tfds_name'))
  if 'segmentation_head' in model or model.get('head', {}).get('level') is not None:
    model_id += '-seg'
  parser = (task.get('train_data') or {}).get('parser') or {}
  return kind, model_id, student, augment_level(parser)


def references(params: Dict[str, Any]):
  """(paper cell, Model Garden baseline) matching a run's recipe; None where none does."""
  kind, model_id, student, level = recipe(params)
  init = pretrained(params)
  size = (params.get('task', {}).get('model', {}).get('input_size') or [None])[0]
  paper = None
  if kind == 'spinenet' or model_id.endswith('-seg'):
    paper = PAPER_FULL_SCALE.get((kind, model_id, student))
  elif kind == 'efficientnet' and model_id == 'b7' and level:
    if not init:
      row = 'rand_st' if student else 'rand'
      paper = (f'Table 2 {row} Augment-S{level}',
               paper_numbers.paper('table2', row, f's{level}'))
    elif not student:
      paper = (f'Table 2 imagenet Augment-S{level}',
               paper_numbers.paper('table2', 'imagenet', f's{level}'))
    elif level == 4:
      paper = ('Table 3 ImageNet Init w/ Self-training, 100%',
               paper_numbers.paper('table3', 'imagenet_st', 'f100'))
  elif kind == 'resnet' and model_id == '50' and level == 4:
    row = 'rand_st' if student else ('imagenet' if init else 'rand')
    if not (init and student):
      paper = (f'Table 4 {row}', paper_numbers.paper('table4', row, 'ap'))
  elif kind == 'resnet' and model_id == '101' and level and not init:
    paper = ((f'Table 12 Self-training w/ ImageNet Augment-S{level}', _TABLE12_ST[level - 1])
             if student else (f'Table 12 Supervised Augment-S{level}',
                              paper_numbers.paper('table12', 'rand', f's{level}')))
  garden = None if student else MODEL_GARDEN.get(
      (kind, model_id, size, init, None if kind == 'spinenet' else level))
  return paper, garden


def _model_dir_rows(path: str) -> List[Row]:
  with open(os.path.join(path, 'params.yaml')) as f:
    params = yaml.safe_load(f) or {}
  metrics = None
  for name in ('metrics_eval.json', 'metrics_train_and_eval.json', 'metrics_continuous_eval.json'):
    metrics = file_io.read_json(os.path.join(path, name)) or metrics
  history = file_io.read_json(os.path.join(path, trainer.HISTORY_FILE))
  source = ''
  if metrics is None and history and history.get('history'):
    metrics = max(history['history'], key=lambda h: h.get('AP', h.get('mean_iou', 0)))
    source = f' (best held-out eval, step {metrics.get("step")})'
  if metrics is None:
    raise ValueError(f'{path} has params.yaml but no metrics_*.json or '
                     f'{trainer.HISTORY_FILE} yet')
  paper, garden = references(params)
  kind, model_id, student, level = recipe(params)
  model = f'{kind} {model_id}' + (f' Augment-S{level}' if level else '') + (
      ' student' if student else '') + source
  return [Row(run=path, model=model, metrics=_metrics(metrics), paper=paper,
              model_garden=garden)]


def rows_of(path: str) -> List[Row]:
  """The rows one argument contributes; a one-line ValueError when it holds no metrics."""
  if not os.path.exists(path):
    raise ValueError(f'not found: {path}')
  if os.path.isfile(path):
    payload = file_io.read_json(path)
    if isinstance(payload, dict) and 'table' in payload and 'val' in payload:
      return _study_rows(path, [payload])
    if isinstance(payload, dict) and any(k in payload for k in ('teacher', 'student')):
      return _pipeline_rows(path, payload)
    if isinstance(payload, dict) and _metrics(payload):
      return [Row(run=path, model='', metrics=_metrics(payload), paper=None, model_garden=None)]
    raise ValueError(f'{path}: not a metrics JSON this tool knows')
  cells = sorted(glob.glob(os.path.join(path, 'cells', '*.json')))
  if cells:
    return _study_rows(path, [file_io.read_json(c) for c in cells])
  if os.path.exists(os.path.join(path, 'results.json')):
    return _pipeline_rows(path, file_io.read_json(os.path.join(path, 'results.json')))
  if os.path.exists(os.path.join(path, 'params.yaml')):
    return _model_dir_rows(path)
  raise ValueError(f'{path}: no cells/*.json, results.json or params.yaml')


def _num(value: Optional[float]) -> str:
  return '—' if value is None else f'{value:.1f}'


def table(rows: List[Row]) -> List[str]:
  segmentation = any('mean_iou' in r['metrics'] for r in rows)
  head = '| run | model | AP | AP50 | AP75 |' + (' mIoU |' if segmentation else '')
  lines = [head + ' paper (cell) | Model Garden (recipe) |',
           '|' + '---|' * (head.count('|') + 1)]
  for r in rows:
    m = r['metrics']
    cols = [r['run'], r['model'], _num(m.get('AP')), _num(m.get('AP50')), _num(m.get('AP75'))]
    if segmentation:
      cols.append(_num(m.get('mean_iou')))
    cols.append(f'{r["paper"][1]:.1f} ({r["paper"][0]})' if r['paper'] else '—')
    cols.append(f'{r["model_garden"][1]:.1f} ({r["model_garden"][0]})'
                if r['model_garden'] else '—')
    lines.append('| ' + ' | '.join(cols) + ' |')
  return lines


def main(argv):
  paths = argv[1:]
  if not paths:
    cli.fail('./run.sh compare DIR_OR_JSON [...] (a study dir, a runs dir, a model_dir)',
             prefix='usage')
  rows = []
  with cli.errors_in_one_line(ValueError, OSError, KeyError, TypeError, yaml.YAMLError):
    for path in paths:
      rows += rows_of(path)
  print('\n'.join(table(rows)))


if __name__ == '__main__':
  app.run(main)
