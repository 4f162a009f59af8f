"""TensorBoard images of a student's inputs: human and pseudo labels drawn, at every eval.

`trainer.train_to_plateau` calls `write` after each eval of a student (a task with
`pseudo_data`): a few human-labeled and pseudo-labeled images from the records the student
reads, with their boxes and class names (detection; "ignore" pseudo boxes in gray) or
their masks (segmentation; ignored pixels darkened), under `inputs/human` and
`inputs/pseudo` in `model_dir/train`, next to the loss-normalization scalars. Each eval
shows the next images of each source.
"""

import io
import os
from typing import List

import numpy as np
from PIL import Image
from PIL import ImageDraw
import tensorflow as tf

from projects.self_training.data import categories
from projects.self_training.pseudo_label import report
from projects.self_training.pseudo_label import schema

SIZE = 192
MAX_SCAN = 256
_GRAY = (160, 160, 160)
_PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                     [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230],
                     [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255]],
                    np.uint8)


def draw(record, segmentation: bool, ignore_label: int = 255) -> np.ndarray:
  """One record's image at SIZE x SIZE with its boxes and names (or its mask) drawn."""
  image = Image.open(io.BytesIO(record['encoded'])).convert('RGB')
  w, h = image.size
  if segmentation:
    mask = np.asarray(Image.open(io.BytesIO(record['mask'])))
    pixels = np.asarray(image).astype(np.float32)
    color = _PALETTE[np.where(mask == ignore_label, 0, mask) % len(_PALETTE)]
    objects = (mask != 0) & (mask != ignore_label)
    pixels[objects] = 0.5 * pixels[objects] + 0.5 * color[objects]
    pixels[mask == ignore_label] *= 0.35
    return np.asarray(Image.fromarray(pixels.astype(np.uint8)).resize((SIZE, SIZE)))
  image = image.resize((SIZE, SIZE))
  canvas = ImageDraw.Draw(image)
  for (y0, x0, y1, x1), cls in zip(record['boxes'], record['classes']):
    color = _GRAY if cls == schema.IGNORE_CLASS else (255, 255, 0)
    canvas.rectangle([x0 * SIZE, y0 * SIZE, x1 * SIZE, y1 * SIZE], outline=color, width=2)
    name = 'ignore' if cls == schema.IGNORE_CLASS else categories.COCO_ID_TO_NAME.get(
        int(cls), str(int(cls)))
    canvas.text((x0 * SIZE + 2, y0 * SIZE + 1), name, fill=color)
  return np.asarray(image)


def _pick(pattern: str, index: int, num: int) -> List[dict]:
  records = report.read_records(pattern, limit=MAX_SCAN)
  if not records:
    return []
  return [records[(index * num + i) % len(records)] for i in range(min(num, len(records)))]


def write(params, model_dir: str, step: int, index: int, num: int = 3) -> None:
  """Draws `num` human and `num` pseudo images (the `index`-th batch of each) at `step`."""
  segmentation = hasattr(params.task.train_data, 'output_size')
  ignore = getattr(getattr(params.task, 'losses', None), 'ignore_label', 255)
  writer = tf.summary.create_file_writer(os.path.join(model_dir, 'train'))
  with writer.as_default():
    for name, data in (('human', params.task.train_data), ('pseudo', params.task.pseudo_data)):
      pattern = ','.join(data.input_path) if isinstance(data.input_path, (list, tuple)) else (
          data.input_path)
      records = []
      for p in pattern.split(','):
        records += _pick(p, index, num)
      if records:
        tf.summary.image(f'inputs/{name}', np.stack([draw(r, segmentation, ignore)
                                                     for r in records[:num]]),
                         step=step, max_outputs=num)
  writer.close()
