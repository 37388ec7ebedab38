"""Batched SLIC superpixels and albumentations' ``Superpixels`` (segment means), in plain torch.

Segmentation (:func:`slic`), per sample b of a [B,C,H,W] batch, every step a tensor op over the whole batch:

* features: the channels as given (no CIELAB conversion, as albumentations' ``slic``), divided by the sample's
  ``max |v| + 1e-6`` (albumentations divides by ``max(v + 1e-6)``: the same for non-negative images), so any scale works;
* grid: ``nx = clamp(round(sqrt(n W / H)), 1, min(W, n))`` columns and ``ny = clamp(n // nx, 1, H)`` rows of equal
  cells (so ``nx * ny <= n``), centre k = (cell row) * nx + (cell column); pixel (y, x) lies in cell
  ``((2y + 1) ny // 2H, (2x + 1) nx // 2W)``; labels start as the cells, centres as the cells' means;
* distance (albumentations' formula): ``|f - F_k|^2 + compactness * |p - P_k|^2 / S^2`` with ``S = sqrt(H W / n)``,
  f the pixel's features, p = (y, x) its position, F_k and P_k the mean features and mean position of cluster k;
* each iteration: every pixel takes the nearest of the centres of its own cell and the 8 neighbouring cells (the
  first of equals in the order own cell, then row-major neighbours), then the centres become the means of their
  pixels (an empty cluster keeps its centre). The sums are int64 (channels in fixed point, 2**-24; positions exact),
  so no float-atomics order enters: the labels are deterministic and a sample's labels do not depend on the batch;
* no connectivity clean-up: a label may cover disconnected pieces (albumentations' ``slic`` has none either).

Replacement (:func:`superpixels`): segment s of sample b is replaced by its per-channel mean when
``u = (mix(mix(key ^ 0x5EC) ^ s) >> 8) * 2**-24 < p_replace[b]``; means are accumulated in float64 (exact for
uint8-domain values); the uint8 domain rounds them half to even (``torch.round``, as ``np.round``) and clamps to [0, 255].
"""

from __future__ import annotations

import math

import torch

from fastaug.ops.counter import INV24, mix

SALT = 0x5EC  # the replacement decisions' stream
FIXED = float(1 << 24)  # fixed-point scale of the features in the centre sums
OFFSETS = ((0, 0), (-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))  # own cell first

__all__ = ["slic", "superpixels"]


def _on_cpu(*ts: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" for t in ts)


def _check_common(img: torch.Tensor, n_segments: torch.Tensor, max_segments: int, compactness: float, iterations: int) -> int:
    if not isinstance(img, torch.Tensor) or img.dim() != 4 or not img.is_floating_point():
        raise ValueError(f"img must be a floating [B,C,H,W] tensor, got {getattr(img, 'shape', type(img))}")
    b = img.shape[0]
    if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1:
        raise ValueError(f"max_segments must be an int >= 1, got {max_segments!r}")
    if not isinstance(n_segments, torch.Tensor) or n_segments.shape != (b,) or n_segments.is_floating_point() or n_segments.is_complex():
        raise ValueError(f"n_segments must be an integer tensor [B] with B = {b}, got {getattr(n_segments, 'shape', type(n_segments))}")
    if n_segments.device != img.device:
        raise ValueError(f"n_segments must be on img's device {img.device}, got {n_segments.device}")
    if _on_cpu(n_segments) and b and not bool(((n_segments >= 1) & (n_segments <= max_segments)).all()):
        raise ValueError(f"n_segments must lie in [1, max_segments = {max_segments}], got {n_segments.tolist()}")
    if not (math.isfinite(compactness) and compactness >= 0):
        raise ValueError(f"compactness must be finite and >= 0, got {compactness!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an int >= 0, got {iterations!r}")
    return b


def _grid(n: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample grid rows ny and columns nx [B] (int64), nx * ny <= n."""
    nf = n.to(torch.float64)
    nx = torch.round(torch.sqrt(nf * (w / h))).to(torch.int64)
    nx = torch.minimum(nx.clamp(min=1), n.clamp(max=w))
    ny = torch.div(n, nx, rounding_mode="floor").clamp(1, h)
    return ny, nx


def _centres(lab: torch.Tensor, fq: torch.Tensor, unq: torch.Tensor, k: int, old: torch.Tensor | None) -> torch.Tensor:
    """Means [F,B,K] of the fixed-point features ``fq`` [F,B,N] (int64; ``unq`` [F,1,1] their units) over the clusters
    ``lab`` [B,N] (int64 sums: exact, whatever the order); an empty cluster keeps its ``old`` centre."""
    nf, b, _ = fq.shape
    cnt = torch.zeros(b, k, dtype=torch.int64, device=lab.device).scatter_add_(1, lab, torch.ones_like(lab))
    sums = torch.zeros(nf, b, k, dtype=torch.int64, device=lab.device)
    for j in range(nf):
        sums[j].scatter_add_(1, lab, fq[j])
    new = sums.to(torch.float64) * (unq / cnt.clamp(min=1).to(torch.float64))
    return new if old is None else torch.where(cnt > 0, new, old)


def slic(img: torch.Tensor, n_segments: torch.Tensor, max_segments: int, compactness: float = 10.0, iterations: int = 10) -> torch.Tensor:
    """Batched SLIC superpixels (module doc). ``img`` [B,C,H,W] float (any scale), ``n_segments`` [B] int in
    [1, max_segments] (per-sample target count). Returns labels [B,H,W] int64 in [0, max_segments) (at most
    ``n_segments[b]`` distinct ones). No host sync: runs unchanged on CUDA (value checks only on CPU)."""
    b = _check_common(img, n_segments, max_segments, compactness, iterations)
    _, c, h, w = img.shape
    dev = img.device
    work = torch.float64 if img.dtype == torch.float64 else torch.float32
    n_pix, k, nf = h * w, max_segments, c + 2
    if b == 0 or n_pix == 0:
        return torch.zeros(b, h, w, dtype=torch.int64, device=dev)
    x = img.detach().to(work)
    scale = x.abs().amax(dim=(1, 2, 3)) + 1e-6
    n = n_segments.to(device=dev, dtype=torch.int64).clamp(1, max_segments)  # (checked on CPU only)
    ny, nx = _grid(n, h, w)
    yi = torch.arange(h, device=dev, dtype=torch.int64)
    xi = torch.arange(w, device=dev, dtype=torch.int64)
    # features [F,B,N]: the channels over the sample's max |v| (fixed point for the sums), then y and x (integers)
    f = (x / scale.view(b, 1, 1, 1)).reshape(b, c, n_pix).transpose(0, 1)
    pos = torch.stack([yi.view(h, 1).expand(h, w), xi.view(1, w).expand(h, w)]).reshape(2, 1, n_pix).expand(2, b, n_pix)
    fq = torch.cat([torch.round(f.to(torch.float64) * FIXED).to(torch.int64), pos])
    unq = torch.where(torch.arange(nf, device=dev) < c, 1.0 / FIXED, 1.0).to(torch.float64).view(nf, 1, 1)  # no host copy
    wsq = torch.sqrt(compactness * n.to(torch.float64) / n_pix).view(1, b, 1)  # sqrt(compactness) / S
    unit = torch.cat([torch.ones(c, b, 1, dtype=torch.float64, device=dev), wsq.expand(2, b, 1)])  # feature scales [F,B,1]
    pix = torch.cat([f, pos.to(work) * wsq.to(work)])  # [F,B,N]: distance = plain squared Euclidean
    gy = torch.div((2 * yi + 1).view(1, h) * ny.view(b, 1), 2 * h, rounding_mode="floor").view(b, h, 1)  # [B,H,1]
    gx = torch.div((2 * xi + 1).view(1, w) * nx.view(b, 1), 2 * w, rounding_mode="floor").view(b, 1, w)  # [B,1,W]
    nyv, nxv = ny.view(b, 1, 1), nx.view(b, 1, 1)
    cands = []  # the centre index of each offset [B,N]; k (a centre at infinity) where the neighbour cell does not exist
    for dy, dx in OFFSETS:
        cy, cx = gy + dy, gx + dx
        valid = (cy >= 0) & (cy < nyv) & (cx >= 0) & (cx < nxv)
        cands.append(torch.where(valid, cy * nxv + cx, k).expand(b, h, w).reshape(b, n_pix))
    lab = cands[0]
    cent = _centres(lab, fq, unq, k, None)
    far = torch.full((nf, b, 1), math.inf, dtype=work, device=dev)
    tmp = torch.empty(b, n_pix, dtype=work, device=dev)
    d = torch.empty_like(tmp)
    best = torch.empty_like(tmp)
    for it in range(iterations):
        g = torch.cat([(cent * unit).to(work), far], 2)  # [F,B,K+1]
        for i, idx in enumerate(cands):
            acc = best if i == 0 else d
            for j in range(nf):  # a fixed summation order
                torch.gather(g[j], 1, idx, out=tmp)
                tmp.sub_(pix[j])
                tmp.mul_(tmp)
                if j == 0:
                    acc.copy_(tmp)
                else:
                    acc.add_(tmp)
            if i == 0:
                lab = idx
            else:  # strictly nearer: the first of equals (own cell, then the neighbours row-major) wins
                nearer = d < best
                best = torch.where(nearer, d, best)
                lab = torch.where(nearer, idx, lab)
        if it + 1 < iterations:
            cent = _centres(lab, fq, unq, k, cent)
    return lab.reshape(b, h, w)


def _labels(img: torch.Tensor, n_segments: torch.Tensor, max_segments: int, compactness: float, iterations: int,
            max_size: int | None) -> torch.Tensor:
    """:func:`slic` labels [B,H,W]; with ``max_size`` and a larger side above it, of an area-downscaled copy (the
    larger side ``max_size``, albumentations' size rule ``int(side * max_size / larger side)``), upsampled nearest."""
    h, w = img.shape[-2:]
    if max_size is None or max(h, w) <= max_size:
        return slic(img, n_segments, max_segments, compactness, iterations)
    scale = max_size / max(h, w)
    small = torch.nn.functional.interpolate(img, size=(max(int(h * scale), 1), max(int(w * scale), 1)), mode="area")
    lab = slic(small, n_segments, max_segments, compactness, iterations)
    return torch.nn.functional.interpolate(lab.unsqueeze(1).double(), size=(h, w), mode="nearest")[:, 0].long()


def superpixels(
    img: torch.Tensor,
    p_replace: torch.Tensor,
    n_segments: torch.Tensor,
    key: torch.Tensor,
    *,
    max_segments: int,
    uint8_domain: bool,
    compactness: float = 10.0,
    iterations: int = 10,
    max_size: int | None = None,
) -> torch.Tensor:
    """albumentations' Superpixels on working values ``img`` [B,C,H,W] float (uint8 domain: integers in [0, 255],
    else [0, 1]): each :func:`slic` segment s of sample b is replaced by its per-channel mean when the counter hash
    of (``key[b]``, s) falls below ``p_replace[b]`` (module doc). uint8 domain: means rounded half to even and clamped.
    ``max_size``: segment an area-downscaled copy whose larger side is ``max_size`` (when the image is larger), the
    labels upsampled (nearest); the means and the replacement stay at full resolution.
    Gradients to ``img`` only: identity on kept pixels, through the means on replaced ones (float domain; the uint8
    domain's rounding has zero gradient, as the project's other uint8-domain ops). Same dtype and shape out."""
    b = _check_common(img, n_segments, max_segments, compactness, iterations)
    for name, t in (("p_replace", p_replace), ("key", key)):
        if not isinstance(t, torch.Tensor) or t.shape != (b,):
            raise ValueError(f"{name} must be a tensor [B] with B = {b}, got {getattr(t, 'shape', type(t))}")
        if t.device != img.device:
            raise ValueError(f"{name} must be on img's device {img.device}, got {t.device}")
    if not p_replace.is_floating_point():
        raise ValueError(f"p_replace must be floating, got {p_replace.dtype}")
    if key.is_floating_point() or key.is_complex() or key.dtype == torch.bool:
        raise ValueError(f"key must be an integer tensor, got {key.dtype}")
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1):
        raise ValueError(f"max_size must be None or an int >= 1, got {max_size!r}")
    if _on_cpu(p_replace) and b and not bool(((p_replace >= 0) & (p_replace <= 1)).all()):
        raise ValueError(f"p_replace must lie in [0, 1], got {p_replace.tolist()}")
    _, c, h, w = img.shape
    if b == 0 or h * w == 0:
        return img.clone()
    n_pix = h * w
    lab = _labels(img.detach(), n_segments, max_segments, compactness, iterations, max_size).reshape(b, 1, n_pix)
    k = max_segments
    seg = torch.arange(k, device=img.device, dtype=torch.int64).view(1, k)
    u = (mix(mix(key.to(torch.int64).view(b, 1) ^ SALT) ^ seg) >> 8).to(torch.float64) * INV24
    replace = u < p_replace.detach().to(torch.float64).view(b, 1)  # [B,K]
    src = img.reshape(b, c, n_pix).to(torch.float64)
    labc = lab.expand(b, c, n_pix)
    sums = torch.zeros(b, c, k, dtype=torch.float64, device=img.device).scatter_add(2, labc, src)
    cnt = torch.zeros(b, 1, k, dtype=torch.float64, device=img.device).scatter_add_(2, lab, torch.ones_like(src[:, :1]))
    mean = sums / cnt.clamp(min=1.0)
    if uint8_domain:
        mean = torch.round(mean).clamp(0.0, 255.0)
    vals = torch.gather(mean, 2, labc).to(img.dtype)
    rep = torch.gather(replace, 1, lab.view(b, n_pix)).view(b, 1, n_pix)
    return torch.where(rep, vals, img.reshape(b, c, n_pix)).reshape(b, c, h, w)
