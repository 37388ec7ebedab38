"""Reading images the way a user's folder holds them, and encoding augmented ones (``fastaug synth``).

:func:`decode` turns a file into ``(color, alpha)``: ``color`` HxWxC uint8 with C = 1 (grayscale) or 3 (RGB), ``alpha``
HxW uint8 or None. It reads the whole file (a truncated file fails here, not later), applies the EXIF orientation,
brings deeper images to 8 bits (:func:`scale_deep`): 16-bit ones (modes ``I;16*``) by ``v * 255 / 65535`` rounded;
32-bit integer ones (mode ``I``) by their range: all values in 0..255 kept as they are, else the 16-bit scaling
(negatives 0, above 65535 clipped); float ones (mode ``F``) by their range: a maximum <= 1 means 0..1 (``v * 255``
rounded), a larger one means already 0..255 (rounded), clipped to 0..255 either way (NaN: 0); converts CMYK /
YCbCr / LAB / HSV / bilevel / palette images to RGB or grayscale, and then

- ``gray="keep"`` keeps a grayscale image 1 channel, ``gray="rgb"`` repeats it into 3;
- ``keep_alpha=False`` composites an image with transparency (an alpha channel, or a palette / ``transparency``
  entry) over ``background`` (RGB 0..255, white by default; its luma for a grayscale image), ``keep_alpha=True``
  returns the alpha separately (``fastaug synth`` moves it with the geometric ops, like a mask, and writes RGBA).

Every failure is an :class:`UnreadableImage` naming the file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
FORMATS = ("png", "jpeg", "webp")
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
WHITE = (255, 255, 255)


class UnreadableImage(ValueError):
    """A file that is not a readable image (truncated, corrupt, not an image at all)."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True)
class DecodeOptions:
    gray: str = "keep"  # "keep": 1 channel; "rgb": 3 equal channels
    keep_alpha: bool = False
    background: tuple[int, int, int] = WHITE

    def __post_init__(self):
        if self.gray not in ("keep", "rgb"):
            raise ValueError(f"gray must be 'keep' or 'rgb', got {self.gray!r}")
        bg = tuple(self.background)
        if len(bg) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in bg):
            raise ValueError(f"background must be three integers 0..255 (R,G,B), got {self.background!r}")


def scale_16bit(a: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded (v * 255 / 65535); larger values clip."""
    a = np.clip(a.astype(np.int64), 0, 65535)
    return ((a * 255 + 32767) // 65535).astype(np.uint8)


def scale_deep(a: np.ndarray, mode: str) -> np.ndarray:
    """An ``I;16*`` / ``I`` / ``F`` image's pixels as uint8 (the rules in the module docstring)."""
    if mode == "F":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if mode == "I" and (not a.size or (a.min() >= 0 and a.max() <= 255)):  # 32-bit holding 8-bit values
        return a.astype(np.uint8)
    return scale_16bit(a)


def _luma(rgb) -> int:
    r, g, b = rgb
    return int(round(0.299 * r + 0.587 * g + 0.114 * b))


def _planes(im) -> tuple[np.ndarray, np.ndarray | None]:
    """A PIL image as (color HxWxC uint8 with C in {1, 3}, alpha HxW uint8 or None)."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":  # 16- or 32-bit integers or float: to 8 bits by the documented rules
        return scale_deep(np.asarray(im), mode)[..., None], None
    if mode == "P" or mode == "PA" or "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"))[..., None], None
    if mode in ("LA", "La"):
        a = np.asarray(im.convert("LA"))
        return a[..., :1], a[..., 1]
    if mode in ("RGBA", "RGBa"):
        a = np.asarray(im.convert("RGBA"))
        return a[..., :3], a[..., 3]
    return np.asarray(im.convert("RGB")), None


def decode(path, options: DecodeOptions | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(color, alpha)`` of the image file ``path`` (see the module docstring); raises :class:`UnreadableImage`."""
    options = options or DecodeOptions()
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.load()  # the whole file: a truncated one fails here
            im = ImageOps.exif_transpose(im)
            color, alpha = _planes(im)
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ... on bad files
        reason = str(e) or type(e).__name__
        raise UnreadableImage(path, reason) from e
    return finish(color, alpha, options)


def finish(color: np.ndarray, alpha: np.ndarray | None, options: DecodeOptions) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply the gray and alpha options to decoded planes."""
    if alpha is not None and not options.keep_alpha:
        a = alpha.astype(np.uint32)[..., None]
        bg = np.array(options.background if color.shape[-1] == 3 else [_luma(options.background)], dtype=np.uint32)
        color = ((color.astype(np.uint32) * a + bg * (255 - a) + 127) // 255).astype(np.uint8)
        alpha = None
    if options.gray == "rgb" and color.shape[-1] == 1:
        color = np.repeat(color, 3, axis=-1)
    return np.ascontiguousarray(color), alpha


def encode(image: np.ndarray, fmt: str, png_level: int = 6, quality: int = 90) -> bytes:
    """HxWxC uint8 (C = 1, 2: gray + alpha, 3, 4: RGBA) as PNG / JPEG / WebP bytes."""
    from PIL import Image

    arr = image[..., 0] if image.shape[-1] == 1 else image
    im = Image.fromarray(np.ascontiguousarray(arr))
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, format="PNG", compress_level=png_level)
    elif fmt == "jpeg":
        if image.shape[-1] in (2, 4):
            raise ValueError("JPEG has no alpha channel: use --format png or webp with --keep-alpha")
        im.save(buf, format="JPEG", quality=quality)
    elif fmt == "webp":
        im.save(buf, format="WEBP", quality=quality)
    else:
        raise ValueError(f"image format must be one of {FORMATS}, got {fmt!r}")
    return buf.getvalue()


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")
