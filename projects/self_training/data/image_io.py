"""Image bytes to RGB: the one conversion the converters and the pseudo-labeler share."""

import io
from typing import Tuple

import numpy as np
from PIL import Image

JPEG_QUALITY = 95
# Converted images get source ids above COCO's (< 600k) and the embedded detection
# splits' (< 6M), and below 2**24 since Model Garden carries them through float32.
DEFAULT_SOURCE_ID_OFFSET = 10_000_000


def to_rgb(image: Image.Image) -> Image.Image:
  """Any PIL mode to RGB; 16-bit/float stretched to 8 bits, transparency over white."""
  if image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'F'):
    array = np.asarray(image, np.float64)
    span = max(array.max() - array.min(), 1e-12)
    image = Image.fromarray(np.uint8(np.round(255 * (array - array.min()) / span)))
  if image.mode in ('RGBA', 'LA', 'PA') or (image.mode == 'P' and
                                             'transparency' in image.info):
    # Flatten transparency onto white, as a viewer would show it.
    rgba = image.convert('RGBA')
    image = Image.new('RGB', rgba.size, (255, 255, 255))
    image.paste(rgba, mask=rgba.getchannel('A'))
  return image.convert('RGB')


def jpeg_bytes(pixels: np.ndarray) -> bytes:
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, format='JPEG', quality=JPEG_QUALITY)
  return out.getvalue()


def rgb_image_bytes(encoded: bytes) -> Tuple[bytes, int, int]:
  """Validates an encoded image and returns (RGB JPEG bytes, height, width).

  RGB JPEGs are kept byte for byte; other formats and modes (grayscale, RGBA, CMYK,
  palette, 16-bit) are converted to RGB and re-encoded. Raises on unreadable data,
  including truncated files.
  """
  image = Image.open(io.BytesIO(encoded))
  image.load()
  width, height = image.size
  if image.format == 'JPEG' and image.mode == 'RGB':
    return encoded, height, width
  return jpeg_bytes(np.asarray(to_rgb(image))), height, width


def decode_rgb(encoded: bytes) -> Tuple[np.ndarray, bytes]:
  """(uint8 RGB pixels, RGB JPEG bytes) of an encoded image; raises on undecodable data.

  The pixels are those of the returned JPEG, i.e. what a reader of the stored record sees.
  """
  image = Image.open(io.BytesIO(encoded))
  image.load()
  if image.format == 'JPEG' and image.mode == 'RGB':  # the common case: decoded once
    return np.asarray(image), encoded
  stored = jpeg_bytes(np.asarray(to_rgb(image)))
  return np.asarray(Image.open(io.BytesIO(stored)).convert('RGB')), stored
