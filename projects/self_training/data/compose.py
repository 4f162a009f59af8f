"""Composition of the embedded data set's images: scenes, iconic images and their masks.

Scenes paste randomly scaled, flipped, rotated and color-jittered emoji onto a background
crop (later objects in front) and keep the visible part of each as its mask; iconic images
center one object; VOC label maps are drawn from the masks, clean or with human-style noise.
"""

from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image
from PIL import ImageFilter

from projects.self_training.data import categories
from projects.self_training.data import render

# Scene recipe.
MAX_OBJECTS = 6
MIN_SCALE, MAX_SCALE = 0.12, 0.5  # object long side / image side
MAX_ROTATION_DEGREES = 30.0
MAX_HUE_SHIFT = 0.05  # fraction of the hue circle
BRIGHTNESS_RANGE = (0.75, 1.25)
MIN_VISIBLE_FRACTION = 0.3
# Noisy (voc_aug) masks: objects left unlabeled, boundary dilation/erosion/shift in pixels.
AUG_UNLABELED_PROB = 0.15
AUG_MAX_BOUNDARY_PIXELS = 3


# ----------------------------------------------------------------------------------------
# Drawing one image.


def _draw_object(rng: np.random.Generator, emoji: str, long_side: float,
                 max_rotation: float) -> np.ndarray:
  """Renders one emoji with random scale, flip, rotation and color jitter (RGBA)."""
  # Few distinct font sizes keep the per-process glyph cache small.
  font_size = 109 * 2 ** max(0, int(np.ceil(np.log2(long_side * 1.2 / 109))))
  glyph = render.render_emoji(emoji, font_size)
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
  return render.jitter_colors(render.crop_to_alpha(np.asarray(image)), hue_shift, brightness)


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
  a mask is the object's alpha >= render.ALPHA_THRESHOLD minus the parts later objects hide.
  """
  image = render.random_background(rng, photos, size)[0]
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
    mask[y:y + h, x:x + w] = rgba[..., 3] >= render.ALPHA_THRESHOLD
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
  by the background alone (the measurements: docs/study.md, "Pre-training on `iconic`").
  """
  background, photo = render.random_background(rng, photos, size)
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
  return first, composite(render.random_background(rng, photos, size, exclude=photo)[0])


# ----------------------------------------------------------------------------------------
# Semantic label maps.


def _max_filter(mask: np.ndarray, radius: int) -> np.ndarray:
  image = Image.fromarray(mask.astype(np.uint8) * 255)
  return np.asarray(image.filter(ImageFilter.MaxFilter(2 * radius + 1))) > 0


def _min_filter(mask: np.ndarray, radius: int) -> np.ndarray:
  image = Image.fromarray(mask.astype(np.uint8) * 255)
  return np.asarray(image.filter(ImageFilter.MinFilter(2 * radius + 1))) > 0


def clean_semantic_mask(labels: Sequence[int], masks: Sequence[np.ndarray],
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


def noisy_semantic_mask(rng: np.random.Generator, labels: Sequence[int],
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
