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

:func:`encode` writes PNG / JPEG / WebP with Pillow's codecs; for PNG (levels 1-9) it writes Pillow's bytes without
Pillow's row filtering, which took 17 % of a 224x224 RGB encode: the rows filtered by a numba loop that picks each row's
filter exactly as Pillow's ``ZipEncode.c`` does (none / up / sub / Paeth, the least sum of absolute signed bytes, ties to
the earlier), deflated by the zlib Pillow uses with Pillow's settings (``Z_FILTERED``, window 15, memory level 9), the
stream cut into IDAT chunks as Pillow cuts it (``max(65536, 4 * width)`` bytes). Used only where it gives Pillow's
bytes for a few probe images at that level (checked once per process; else Pillow encodes): a Pillow with another
filter choice, or a zlib other than Python's, falls back. Level 0 (stored blocks) always goes to Pillow: zlib cuts
stored blocks where its input arrives, so the bytes depend on Pillow's row-by-row feeding.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
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
    """HxWxC uint8 (C = 1, 2: gray + alpha, 3, 4: RGBA) as PNG / JPEG / WebP bytes (PNG: Pillow's bytes, see the module
    docstring)."""
    fast = fmt == "png" and image.ndim == 3 and image.dtype == np.uint8 and 1 <= image.shape[-1] <= 4 and image.size > 0
    if fast and _png_like_pillow(png_level):
        return _png(image, png_level)
    return _pillow_encode(image, fmt, png_level, quality)


def _pillow_encode(image: np.ndarray, fmt: str, png_level: int = 6, quality: int = 90) -> bytes:
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


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # gray, gray + alpha, RGB, RGBA (8 bits each)
_PILLOW_BLOCK = 65536  # PIL.ImageFile.MAXBLOCK: Pillow's encoder returns (and PNG writes as IDAT chunks) this many bytes


@functools.cache
def _png_filter_kernel():
    """numba: each row of ``rows`` (H x W*C) with its filter byte in front, the filter chosen as Pillow chooses it."""
    from numba import njit

    @njit(cache=True, nogil=True, inline="always")
    def neighbours(cur, prev, i, bpp):
        """Byte i of the row (x), the byte above (b), to the left (a) and above-left (c); 0 outside the image."""
        x, b = np.int32(cur[i]), np.int32(prev[i])
        if i >= bpp:
            return x, np.int32(cur[i - bpp]), b, np.int32(prev[i - bpp])
        return x, np.int32(0), b, np.int32(0)

    @njit(cache=True, nogil=True)
    def png_filter(rows, bpp, out):  # rows H x N uint8 -> out H x (N + 1)
        h, n = rows.shape
        zero = np.zeros(n, np.uint8)
        for y in range(h):
            cur = rows[y]
            prev = rows[y - 1] if y > 0 else zero
            s_none = s_up = s_sub = s_paeth = 0  # sums of |signed byte| per filter (Pillow: v < 128 ? v : 256 - v)
            for i in range(n):
                x, a, b, c = neighbours(cur, prev, i, bpp)
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                v = x
                s_none += v if v < 128 else 256 - v
                v = (x - b) & 255
                s_up += v if v < 128 else 256 - v
                v = (x - a) & 255
                s_sub += v if v < 128 else 256 - v
                v = (x - p) & 255
                s_paeth += v if v < 128 else 256 - v
            kind, best = 0, s_none  # Pillow's order: none, up, sub, Paeth; a later one only if strictly smaller
            if s_up < best:
                kind, best = 2, s_up
            if s_sub < best:
                kind, best = 1, s_sub
            if s_paeth < best:
                kind, best = 4, s_paeth
            o = out[y]
            o[0] = kind
            for i in range(n):
                x, a, b, c = neighbours(cur, prev, i, bpp)
                if kind == 0:
                    v = x
                elif kind == 2:
                    v = x - b
                elif kind == 1:
                    v = x - a
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    v = x - (a if pa <= pb and pa <= pc else (b if pb <= pc else c))
                o[i + 1] = v & 255

    return png_filter


def _png_chunk(kind: bytes, data) -> bytes:
    return struct.pack(">I", len(data)) + kind + bytes(data) + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _png(image: np.ndarray, level: int) -> bytes:
    """HxWxC uint8 (C = 1..4) as the PNG bytes Pillow writes at ``level`` 1-9 (no ancillary chunks)."""
    h, w, c = image.shape
    rows = np.ascontiguousarray(image).reshape(h, w * c)
    filtered = np.empty((h, w * c + 1), np.uint8)
    _png_filter_kernel()(rows, c, filtered)
    z = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_FILTERED)
    data = memoryview(z.compress(filtered) + z.flush())
    size = max(_PILLOW_BLOCK, 4 * w)
    parts = [_PNG_SIGNATURE, _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, _PNG_COLOR_TYPE[c], 0, 0, 0))]
    parts += [_png_chunk(b"IDAT", data[i : i + size]) for i in range(0, len(data), size)]
    parts.append(_png_chunk(b"IEND", b""))
    return b"".join(parts)


@functools.cache
def _png_like_pillow(level: int) -> bool:
    """Whether :func:`_png` gives Pillow's bytes at ``level`` here (probe images: noise, flat, gradients, a row wider than
    Pillow's block; 1-4 channels), checked once per process."""
    if not (isinstance(level, int) and 1 <= level <= 9):
        return False
    try:
        g = np.random.default_rng(12345)
        probes = [g.integers(0, 256, (13, 37, 3), dtype=np.uint8), np.full((9, 11, 1), 200, np.uint8),
                  (np.arange(40 * 50 * 2) % 253).astype(np.uint8).reshape(40, 50, 2),
                  np.cumsum(g.integers(0, 3, (30, 70, 4)), axis=1).astype(np.uint8),
                  g.integers(0, 256, (5, 17000, 1), dtype=np.uint8)]  # fmt: skip
        return all(_png(p, level) == _pillow_encode(p, "png", level) for p in probes)
    except Exception:  # no numba, an unexpected Pillow: Pillow encodes
        return False


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")
