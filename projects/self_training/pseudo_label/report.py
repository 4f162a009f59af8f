r"""What the teacher taught: a Markdown report with figures on a pseudo-label set.

  ./run.sh report PSEUDO_DIR [--reference LABELED_RECORDS] [--out_dir D]

For the output of `./run.sh pseudo_label` (detection or segmentation alike), writes
`PSEUDO_DIR/report/report.md` with PNG figures:

- detection: boxes per class against the human label distribution (of `--reference`, or
  of `--human` records), the fraction of images with no box, score histograms per class;
  segmentation: the ignored pixel fraction and the class pixel histogram;
- with `--reference` (labeled records, e.g. the held-out split): the teacher (the
  SavedModel named in the set's summary) labels them at threshold 0, and its labels are
  scored against the human ones: precision and recall per class at the set's threshold,
  COCO AP of the teacher's boxes (segmentation: mIoU), and precision / recall / boxes per
  image over thresholds 0.3-0.9 (what the 0.5 choice costs);
- a grid of random pseudo-labeled images with their boxes (masks) and class names, in the
  manner of the paper's Appendix G;
- warnings, printed and in the report, for collapse: no pseudo labels at all, far fewer
  per image than human labels, one class above `--max_class_share` of all labels.
"""

import collections
import contextlib
import io
import os
import random
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np
from PIL import Image
import tensorflow as tf

from projects.self_training.common import cli
from projects.self_training.common.file_io import read_json
from projects.self_training.common.file_io import write_json
from projects.self_training.pseudo_label import quality
from projects.self_training.pseudo_label import schema
from projects.self_training.pseudo_label import shards
from projects.self_training.pseudo_label.teacher import LabelerError
from projects.self_training.pseudo_label.teacher import Teacher

SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Pseudo boxes per image below this fraction of the human labels' is reported as collapse.
FEW_BOXES_RATIO = 0.25
DEFAULT_MAX_CLASS_SHARE = 0.5


class ReportError(ValueError):
  """A missing or incomplete pseudo-label set, a bad flag: reported in one line."""


# ----------------------------------------------------------------------------------------
# Reading.


def load(pseudo_dir: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """(summary, COCO JSON) of a complete pseudo-label set."""
  summary_path = os.path.join(pseudo_dir, schema.SUMMARY)
  coco_path = os.path.join(pseudo_dir, schema.COCO_JSON)
  if not tf.io.gfile.exists(summary_path) or not tf.io.gfile.exists(coco_path):
    raise ReportError(f'{pseudo_dir} is not a complete pseudo-label set (no {schema.SUMMARY} '
                      f'or {schema.COCO_JSON}; a labeling run still missing shards?)')
  return read_json(summary_path), read_json(coco_path)


_FEATURES = {
    'image/encoded': tf.io.FixedLenFeature((), tf.string),
    'image/source_id': tf.io.FixedLenFeature((), tf.string, default_value=''),
    'image/height': tf.io.FixedLenFeature((), tf.int64, default_value=0),
    'image/width': tf.io.FixedLenFeature((), tf.int64, default_value=0),
    'image/object/bbox/xmin': tf.io.VarLenFeature(tf.float32),
    'image/object/bbox/xmax': tf.io.VarLenFeature(tf.float32),
    'image/object/bbox/ymin': tf.io.VarLenFeature(tf.float32),
    'image/object/bbox/ymax': tf.io.VarLenFeature(tf.float32),
    'image/object/class/label': tf.io.VarLenFeature(tf.int64),
    'image/segmentation/class/encoded': tf.io.FixedLenFeature((), tf.string, default_value=''),
}


def read_records(pattern: str, limit: Optional[int] = None) -> List[Dict[str, Any]]:
  """Records of the human / pseudo schema as dicts of numpy values (boxes normalized)."""
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise ReportError(f'no records match {pattern}')
  out = []
  for serialized in tf.data.TFRecordDataset(files).take(limit or -1):
    ex = tf.io.parse_single_example(serialized, _FEATURES)
    dense = {k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v).numpy()
             for k, v in ex.items()}
    out.append({
        'source_id': dense['image/source_id'].decode(),
        'encoded': dense['image/encoded'],
        'boxes': np.stack([dense[f'image/object/bbox/{k}'] for k in
                           ('ymin', 'xmin', 'ymax', 'xmax')], axis=-1).reshape(-1, 4),
        'classes': dense['image/object/class/label'].astype(np.int64),
        'mask': dense['image/segmentation/class/encoded'],
        'height': int(dense['image/height']), 'width': int(dense['image/width']),
    })
  return out


def coco_from_records(records: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """Human labels of detection records as COCO (image ids as the labeler assigns them)."""
  images, annotations = [], []
  for i, r in enumerate(records):
    image_id = int(r['source_id']) if r['source_id'].isdigit() else i
    h, w = r['height'], r['width']
    if not h or not w:
      h, w = np.asarray(Image.open(io.BytesIO(r['encoded']))).shape[:2]
    images.append({'id': image_id, 'height': h, 'width': w})
    for box, cls in zip(r['boxes'], r['classes']):
      y0, x0, y1, x1 = box * [h, w, h, w]
      annotations.append({'id': len(annotations) + 1, 'image_id': image_id,
                          'category_id': int(cls), 'bbox': [x0, y0, x1 - x0, y1 - y0],
                          'area': float((x1 - x0) * (y1 - y0)), 'iscrowd': 0})
  return {'images': images, 'annotations': annotations}


# ----------------------------------------------------------------------------------------
# Numbers.


def class_shares(counts: Dict[int, int]) -> Dict[int, float]:
  total = sum(counts.values())
  return {k: v / total for k, v in counts.items()} if total else {}


def warnings_for(summary: Dict[str, Any], pseudo_counts: Dict[int, int],
                 human_per_image: Optional[float], names: Dict[int, str],
                 max_class_share: float = DEFAULT_MAX_CLASS_SHARE) -> List[str]:
  """Collapse warnings: nothing kept, far fewer labels than humans give, one class dominant."""
  out = []
  segmentation = summary.get('task') == 'segmentation'
  total = sum(pseudo_counts.values())
  if not total:
    what = 'every pixel is ignored' if segmentation else 'no pseudo box at all'
    out.append(f'collapse: {what} in {summary["num_images"]} images '
               f'(threshold {summary["threshold"]}): the student learns only background')
    return out
  if not segmentation and human_per_image:
    per_image = summary['boxes_per_image']
    if per_image < FEW_BOXES_RATIO * human_per_image:
      out.append(f'collapse: {per_image:.2f} pseudo boxes per image against '
                 f'{human_per_image:.2f} human ones (under {FEW_BOXES_RATIO:.0%}): most '
                 'objects are taught as background')
  top, top_count = max(pseudo_counts.items(), key=lambda kv: kv[1])
  # Segmentation: the background class dominating is normal; judge the object classes.
  if segmentation:
    objects = {k: v for k, v in pseudo_counts.items() if k != 0}
    if objects:
      top, top_count = max(objects.items(), key=lambda kv: kv[1])
      total = sum(objects.values())
  if top_count / total > max_class_share:
    out.append(f'collapse: class {names.get(top, top)!s} holds {top_count / total:.0%} of '
               f'the {"object pixels" if segmentation else "pseudo boxes"} '
               f'(over {max_class_share:.0%})')
  return out


def per_class_precision_recall(pseudo: Dict, human: Dict, threshold: float,
                               iou_threshold: float = 0.5) -> Dict[int, Dict[str, float]]:
  """Precision and recall per class at `threshold` (the matching of `quality`)."""
  out = {}
  classes = sorted({a['category_id'] for a in human['annotations']} |
                   {a['category_id'] for a in pseudo['annotations'] if a['score'] >= threshold})
  for c in classes:
    row = quality.precision_recall(
        dict(pseudo, annotations=[a for a in pseudo['annotations'] if a['category_id'] == c]),
        dict(human, annotations=[a for a in human['annotations'] if a['category_id'] == c]),
        [threshold], iou_threshold)[0]
    humans = sum(1 for a in human['annotations'] if a['category_id'] == c)
    out[c] = {'precision': row['precision'], 'recall': row['recall'] if humans else None,
              'human': humans,
              'pseudo': sum(1 for a in pseudo['annotations']
                            if a['category_id'] == c and a['score'] >= threshold)}
  return out


def coco_ap(pseudo: Dict, human: Dict, categories: Sequence[Dict]) -> Dict[str, float]:
  """COCO AP / AP50 / AP75 of the teacher's scored boxes against the human boxes."""
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  from pycocotools.cocoeval import COCOeval  # pylint: disable=g-import-not-at-top
  if not pseudo['annotations']:
    return {'AP': 0.0, 'AP50': 0.0, 'AP75': 0.0}
  gt = COCO()
  gt.dataset = dict(human, categories=list(categories))
  with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
    gt.createIndex()
    dt = gt.loadRes([dict(a) for a in pseudo['annotations']])
    ev = COCOeval(gt, dt, 'bbox')
    ev.params.imgIds = sorted(im['id'] for im in human['images'])
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return {'AP': float(ev.stats[0]), 'AP50': float(ev.stats[1]), 'AP75': float(ev.stats[2])}


def segmentation_scores(pseudo_records, human_records, num_classes: int,
                        ignore_label: int = 255) -> Dict[str, Any]:
  """mIoU of the teacher's confident pixels against the human masks (matched by source id),
  and the fraction of human-labeled pixels the teacher left ignored."""
  human = {r['source_id']: r for r in human_records}
  confusion = np.zeros((num_classes, num_classes), np.int64)
  ignored = labeled = 0
  for r in pseudo_records:
    if r['source_id'] not in human:
      continue
    p = np.asarray(Image.open(io.BytesIO(r['mask']))).astype(np.int64)
    h = np.asarray(Image.open(io.BytesIO(human[r['source_id']]['mask']))).astype(np.int64)
    valid = h != ignore_label
    labeled += int(valid.sum())
    ignored += int((valid & (p == ignore_label)).sum())
    both = valid & (p != ignore_label)
    np.add.at(confusion, (h[both], p[both]), 1)
  inter = np.diag(confusion).astype(np.float64)
  union = confusion.sum(0) + confusion.sum(1) - inter
  present = union > 0
  iou = np.where(present, inter / np.maximum(union, 1), np.nan)
  return {'mIoU': float(np.nanmean(iou)) if present.any() else 0.0,
          'iou_per_class': {int(k): float(v) for k, v in enumerate(iou) if present[k]},
          'ignored_fraction_of_human_pixels': ignored / max(labeled, 1)}


# ----------------------------------------------------------------------------------------
# Figures.


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _axes_grid(plt, n: int, row_height: float, cols: int = 4):
  """A figure with `n` panels in rows of `cols`, every axis off until used."""
  rows = max(1, -(-n // cols))
  fig, axes = plt.subplots(rows, cols, figsize=(10, row_height * rows), dpi=100, squeeze=False)
  for ax in axes.ravel():
    ax.axis('off')
  return fig, axes.ravel()


def _save(plt, fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return path


def plot_counts(pseudo_counts, human_counts, names, path, unit='boxes', top=25) -> str:
  plt = _plt()
  shares_p, shares_h = class_shares(pseudo_counts), class_shares(human_counts or {})
  classes = sorted(set(shares_p) | set(shares_h), key=lambda c: -max(shares_p.get(c, 0),
                                                                      shares_h.get(c, 0)))[:top]
  fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(classes) + 2), 3.6), dpi=100)
  x = np.arange(len(classes))
  ax.bar(x - 0.2, [100 * shares_p.get(c, 0) for c in classes], 0.4, label=f'pseudo {unit}')
  if shares_h:
    ax.bar(x + 0.2, [100 * shares_h.get(c, 0) for c in classes], 0.4, label=f'human {unit}')
  ax.set_xticks(x, [str(names.get(c, c)) for c in classes], rotation=60, ha='right',
                fontsize=7)
  ax.set_ylabel(f'% of {unit}')
  ax.legend()
  return _save(plt, fig, path)


def plot_scores(coco, names, path, top=12) -> str:
  plt = _plt()
  by_class = collections.defaultdict(list)
  for a in coco['annotations']:
    by_class[a['category_id']].append(a['score'])
  classes = sorted(by_class, key=lambda c: -len(by_class[c]))[:top]
  fig, axes = _axes_grid(plt, len(classes), 2.0)
  for ax, c in zip(axes, classes):
    ax.axis('on')
    ax.hist(by_class[c], bins=20, range=(0, 1), color='tab:blue')
    ax.set_title(f'{names.get(c, c)} ({len(by_class[c])})', fontsize=8)
    ax.tick_params(labelsize=6)
  return _save(plt, fig, path)


def plot_sweep(rows, threshold, path) -> str:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=100)
  t = [r['threshold'] for r in rows]
  ax.plot(t, [100 * (r['precision'] or 0) for r in rows], marker='o', label='precision %')
  ax.plot(t, [100 * r['recall'] for r in rows], marker='o', label='recall %')
  ax2 = ax.twinx()
  ax2.plot(t, [r['boxes_per_image'] for r in rows], color='gray', linestyle='--',
           label='boxes / image')
  ax2.set_ylabel('pseudo boxes per image')
  ax.axvline(threshold, color='k', alpha=0.3)
  ax.set_xlabel('score threshold')
  ax.legend(loc='center left', fontsize=8)
  return _save(plt, fig, path)


_PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                     [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230],
                     [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255]],
                    np.uint8)


def plot_grid(records, coco, names, path, segmentation: bool, num: int = 16, seed: int = 0,
              ignore_label: int = 255) -> str:
  """Random pseudo-labeled images with their boxes (masks) and class names."""
  plt = _plt()
  rng = random.Random(seed)
  picked = rng.sample(records, min(num, len(records)))
  by_image = collections.defaultdict(list)
  for a in coco['annotations']:
    by_image[a['image_id']].append(a)
  fig, axes = _axes_grid(plt, len(picked), 2.6)
  for ax, r in zip(axes, picked):
    image = np.asarray(Image.open(io.BytesIO(r['encoded'])).convert('RGB'))
    if segmentation:
      mask = np.asarray(Image.open(io.BytesIO(r['mask'])))
      color = _PALETTE[mask % len(_PALETTE)]
      blend = np.where(((mask != ignore_label) & (mask != 0))[..., None],
                       (0.5 * image + 0.5 * color).astype(np.uint8), image)
      blend[mask == ignore_label] = (0.4 * blend[mask == ignore_label]).astype(np.uint8)
      ax.imshow(blend)
      present = [int(c) for c in np.unique(mask) if c not in (0, ignore_label)]
      ax.set_title(', '.join(str(names.get(c, c)) for c in present)[:40] or '(background)',
                   fontsize=7)
      continue
    ax.imshow(image)
    image_id = int(r['source_id']) if r['source_id'].isdigit() else None
    for a in by_image.get(image_id, []):
      x, y, w, h = a['bbox']
      ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color='yellow', linewidth=1))
      ax.text(x, y, f'{names.get(a["category_id"], a["category_id"])} {a["score"]:.2f}',
              color='black', fontsize=6, backgroundcolor='yellow')
    if not by_image.get(image_id):
      ax.set_title('(no pseudo box)', fontsize=7)
  return _save(plt, fig, path)


# ----------------------------------------------------------------------------------------
# The report.


def write_report(pseudo_dir: str, reference: Optional[str] = None, human: Optional[str] = None,
                 out_dir: Optional[str] = None,
                 max_class_share: float = DEFAULT_MAX_CLASS_SHARE,
                 teacher: Optional[Teacher] = None) -> Dict[str, Any]:
  """Writes `out_dir/report.md` (+ PNGs, `report.json`); returns the report's numbers."""
  summary, coco = load(pseudo_dir)
  out_dir = out_dir or os.path.join(pseudo_dir, 'report')
  tf.io.gfile.makedirs(out_dir)
  segmentation = summary.get('task') == 'segmentation'
  names = {int(c['id']): c['name'] for c in coco.get('categories', [])}
  threshold = summary['threshold']
  pseudo_records = read_records(schema.record_pattern(pseudo_dir))
  result: Dict[str, Any] = {'pseudo_dir': pseudo_dir, 'task': summary.get('task', 'detection'),
                            'num_images': summary['num_images'], 'threshold': threshold}
  md = [f'# Pseudo-label report: `{pseudo_dir}`', '',
        f'Teacher `{summary["saved_model"]}` on `{summary["input"]}`, threshold {threshold}: '
        f'{summary["num_images"]} images, {summary["num_skipped"]} skipped inputs.', '']
  human_records = read_records(human or reference) if (human or reference) else None
  if segmentation:
    pixels = {int(k): v for k, v in _by_id(summary['pixels_per_class'], names).items()}
    human_pixels = None
    if human_records:
      human_pixels = collections.Counter()
      for r in human_records:
        values, counts = np.unique(np.asarray(Image.open(io.BytesIO(r['mask']))),
                                   return_counts=True)
        human_pixels.update({int(v): int(c) for v, c in zip(values, counts) if v != 255})
    result.update(ignored_pixel_fraction=summary['ignored_pixel_fraction'],
                  empty_images=summary['num_empty_images'])
    md += [f'- Ignored pixels (teacher below the threshold): '
           f'**{100 * summary["ignored_pixel_fraction"]:.1f}%**; wholly ignored images: '
           f'{summary["num_empty_images"]}.', '',
           '![class pixels](class_pixels.png)', '']
    plot_counts(pixels, human_pixels, names, os.path.join(out_dir, 'class_pixels.png'),
                unit='pixels')
    warnings = warnings_for(summary, pixels, None, names, max_class_share)
  else:
    counts = collections.Counter(a['category_id'] for a in coco['annotations'])
    human_counts, human_per_image = None, None
    if human_records:
      human_counts = collections.Counter(int(c) for r in human_records for c in r['classes'])
      human_per_image = sum(human_counts.values()) / max(len(human_records), 1)
    empty = summary['num_empty_images'] / max(summary['num_images'], 1)
    result.update(boxes_per_image=summary['boxes_per_image'], empty_fraction=empty,
                  human_boxes_per_image=human_per_image,
                  boxes_per_class={names.get(k, str(k)): v for k, v in counts.items()})
    md += [f'- Boxes per image: **{summary["boxes_per_image"]:.2f}**'
           + (f' (human labels: {human_per_image:.2f})' if human_per_image else ''),
           f'- Images with no pseudo box: **{100 * empty:.1f}%** '
           f'({summary["num_empty_images"]} of {summary["num_images"]})', '',
           '![boxes per class](class_counts.png)', '', '![scores per class](scores.png)', '']
    plot_counts(counts, human_counts, names, os.path.join(out_dir, 'class_counts.png'))
    plot_scores(coco, names, os.path.join(out_dir, 'scores.png'))
    warnings = warnings_for(summary, counts, human_per_image, names, max_class_share)
  if reference:
    md += _reference_section(summary, reference, human_records, names, segmentation, out_dir,
                             result, teacher)
  plot_grid(pseudo_records, coco, names, os.path.join(out_dir, 'grid.png'), segmentation)
  md += ['## Random pseudo-labeled images', '', '![grid](grid.png)', '']
  result['warnings'] = warnings
  head = (['## Warnings', ''] + [f'- **{w}**' for w in warnings] + ['']) if warnings else [
      'No collapse warning.', '']
  md = md[:4] + head + md[4:]
  with tf.io.gfile.GFile(os.path.join(out_dir, 'report.md'), 'w') as f:
    f.write('\n'.join(md))
  write_json(os.path.join(out_dir, 'report.json'), result)
  return result


def _by_id(per_class: Dict[str, int], names: Dict[int, str]) -> Dict[int, int]:
  ids = {v: k for k, v in names.items()}
  return {ids.get(k, int(k) if str(k).isdigit() else -1): v for k, v in per_class.items()}


def _reference_section(summary, reference, human_records, names, segmentation, out_dir,
                       result, teacher) -> List[str]:
  """The teacher on the labeled reference records, scored against their human labels."""
  threshold = summary['threshold']
  with tempfile.TemporaryDirectory() as tmp:
    checked = shards.run(summary['saved_model'], reference, tmp,
                         threshold=threshold if segmentation else 0.0, progress=False,
                         teacher=teacher)
    teacher_coco = read_json(os.path.join(tmp, schema.COCO_JSON))
    teacher_records = read_records(schema.record_pattern(tmp)) if segmentation else None
  md = [f'## The teacher on `{reference}` ({checked["num_images"]} labeled images)', '']
  if segmentation:
    scores = segmentation_scores(teacher_records, human_records, num_classes=max(names) + 1)
    result['reference'] = scores
    md += [f'- mIoU of the confident pixels: **{100 * scores["mIoU"]:.1f}**; human-labeled '
           f'pixels the teacher ignores: {100 * scores["ignored_fraction_of_human_pixels"]:.1f}%',
           '', '| class | IoU |', '|---|---|']
    md += [f'| {names.get(k, k)} | {100 * v:.1f} |' for k, v in scores['iou_per_class'].items()]
    return md + ['']
  human = coco_from_records(human_records)
  ap = coco_ap(teacher_coco, human, [{'id': k, 'name': v} for k, v in names.items()] or
               [{'id': c} for c in {a['category_id'] for a in human['annotations']}])
  sweep = quality.precision_recall(teacher_coco, human, SWEEP)
  at = quality.precision_recall(teacher_coco, human, [threshold])[0]
  per_class = per_class_precision_recall(teacher_coco, human, threshold)
  result['reference'] = {'AP': ap, 'at_threshold': at, 'sweep': sweep,
                         'per_class': {names.get(k, str(k)): v for k, v in per_class.items()}}
  plot_sweep(sweep, threshold, os.path.join(out_dir, 'threshold_sweep.png'))

  def pct(v):
    return '—' if v is None else f'{100 * v:.0f}%'
  md += [f'- COCO AP of the teacher\'s boxes: **{100 * ap["AP"]:.1f}** (AP50 '
         f'{100 * ap["AP50"]:.1f}, AP75 {100 * ap["AP75"]:.1f})',
         f'- At threshold {threshold}: precision **{pct(at["precision"])}**, recall '
         f'**{pct(at["recall"])}**, {at["boxes_per_image"]:.2f} boxes per image against '
         f'{at["human_boxes_per_image"]:.2f} human', '',
         '![threshold sweep](threshold_sweep.png)', '',
         '| threshold | precision | recall | boxes / image |', '|---|---|---|---|']
  md += [f'| {r["threshold"]} | {pct(r["precision"])} | {pct(r["recall"])} | '
         f'{r["boxes_per_image"]:.2f} |' for r in sweep]
  md += ['', f'Per class at {threshold} (by human count):', '',
         '| class | human | pseudo | precision | recall |', '|---|---|---|---|---|']
  for k, v in sorted(per_class.items(), key=lambda kv: -kv[1]['human']):
    md.append(f'| {names.get(k, k)} | {v["human"]} | {v["pseudo"]} | {pct(v["precision"])} | '
              f'{pct(v["recall"])} |')
  return md + ['']


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('reference', None, 'Labeled records (e.g. the held-out split) the '
                      "teacher labels and is scored on; their labels are also the human "
                      'distribution.')
  flags.DEFINE_string('human', None, 'Labeled records for the human label distribution only '
                      '(default: --reference).')
  flags.DEFINE_string('out_dir', None, 'Where the report goes (default: PSEUDO_DIR/report).')
  flags.DEFINE_float('max_class_share', DEFAULT_MAX_CLASS_SHARE, 'Warn when one class holds '
                     'more than this share of the pseudo labels.')


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('usage: report PSEUDO_DIR [--reference RECORDS] [--out_dir D]')
  with cli.errors_in_one_line(ReportError, LabelerError):
    result = write_report(argv[1], FLAGS.reference, FLAGS.human, FLAGS.out_dir,
                          FLAGS.max_class_share)
  out = FLAGS.out_dir or os.path.join(argv[1], 'report')
  for w in result['warnings']:
    print(f'WARNING: {w}')
  print(f'report: {os.path.join(out, "report.md")}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
