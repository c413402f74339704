"""Image statistics shared by the weights-free extractors (colormotion, objectflow): batched
histograms, grid means and edge-orientation histograms over (B, ...) clips, and the HSV table of
5-bit RGB colours their colour bins are cut from.

Each function keeps a group's norm about 1, so no group dominates when vectors are compared whole.
"""

from __future__ import annotations

import functools

import numpy as np

LAYOUT_GRID = 4  # 4x4 cells
ORIENT_BINS = 8  # unsigned edge orientation, 22.5 degrees each
ORIENT_FLAT_ENERGY = 0.02  # gradient magnitude per pixel that counts as "some texture"
LAYOUT_DIM = LAYOUT_GRID * LAYOUT_GRID * 3
ORIENT_DIM = 5 * ORIENT_BINS  # the whole frame and its four quadrants


@functools.lru_cache(maxsize=1)
def hsv_5bit() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in [0, 1), saturation and value of every RGB colour quantised to 5 bits a channel (taken at
    the quantisation cell's centre): three (32768,) float64 arrays, indexed by `index_5bit`."""
    levels = (np.arange(32, dtype=np.float64) + 0.5) / 32
    r, g, b = (x.ravel() for x in np.meshgrid(levels, levels, levels, indexing="ij"))
    mx, mn = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    chroma = mx - mn
    safe = np.maximum(chroma, 1e-9)
    sextant = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4))
    return sextant / 6, chroma / mx, mx


def index_5bit(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) int64 index of each colour in `hsv_5bit`'s tables."""
    q = (rgb >> 3).astype(np.int64)
    return (q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]


def per_clip_hist(bins: np.ndarray, weights: np.ndarray | None, n_bins: int) -> np.ndarray:
    """bins: (B, N) int in [0, n_bins) -> (B, n_bins) (weighted) counts, one bincount for the batch."""
    b = bins.shape[0]
    flat = (bins + np.arange(b)[:, None] * n_bins).ravel()
    w = None if weights is None else weights.ravel()
    return np.bincount(flat, weights=w, minlength=b * n_bins).reshape(b, n_bins).astype(np.float64)


def cell_means(x: np.ndarray, grid: int) -> np.ndarray:
    """(B, H, W, C) -> (B, grid, grid, C) means, cropping the remainder pixels."""
    b, h, w, c = x.shape
    ch, cw = h // grid, w // grid
    x = x[:, : ch * grid, : cw * grid].reshape(b, grid, ch, grid, cw, c)
    return x.mean(axis=(2, 4))


def layout_features(rgb: np.ndarray) -> np.ndarray:
    """(B, t, h, w, 3) uint8 -> (B, 48): opponent colour means on a grid, time-averaged."""
    mean_frame = rgb.mean(axis=1, dtype=np.float32) / 255.0  # (B, h, w, 3)
    cells = cell_means(mean_frame, LAYOUT_GRID)  # (B, g, g, 3)
    r, g, bl = cells[..., 0], cells[..., 1], cells[..., 2]
    opp = np.stack([(r + g + bl) / 3, r - g, (r + g) / 2 - bl], axis=-1)
    return opp.reshape(len(rgb), -1) / LAYOUT_GRID  # norm ~1: 16 cells of values ~1


def gradients(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences on the interior: (..., H, W) -> two (..., H-2, W-2)."""
    gx = (gray[..., 1:-1, 2:] - gray[..., 1:-1, :-2]) / 2
    gy = (gray[..., 2:, 1:-1] - gray[..., :-2, 1:-1]) / 2
    return gx, gy


def orientation_features(gray: np.ndarray) -> np.ndarray:
    """gray: (B, 3, H, W), three frames of each clip -> (B, 40): edge-orientation histograms, frame + quadrants."""
    b = gray.shape[0]
    gx, gy = gradients(gray)
    mag = np.hypot(gx, gy)
    ang = np.arctan2(gy, gx) % np.pi  # unsigned: an edge and its mirror are the same shape
    obin = np.minimum((ang / np.pi * ORIENT_BINS).astype(np.int64), ORIENT_BINS - 1)
    h, w = mag.shape[-2:]
    qy = (np.arange(h) >= h // 2).astype(np.int64)
    qx = (np.arange(w) >= w // 2).astype(np.int64)
    quadrant = (qy[:, None] * 2 + qx[None, :])  # (H, W) in 0..3
    bins = quadrant[None, None] * ORIENT_BINS + obin  # (B, 3, H, W)
    quad = per_clip_hist(bins.reshape(b, -1), mag.reshape(b, -1), 4 * ORIENT_BINS).reshape(b, 4, ORIENT_BINS)
    whole = quad.sum(axis=1, keepdims=True)
    hists = np.concatenate([whole, quad], axis=1)  # (B, 5, bins)
    n_px = np.array([4.0] + [1.0] * 4)[None, :, None] * (3 * h * w / 4)
    # Dividing by (mass + a texture floor) keeps flat cells near zero instead of amplifying noise.
    hists = hists / (hists.sum(axis=2, keepdims=True) + ORIENT_FLAT_ENERGY * n_px)
    return np.sqrt(hists).reshape(b, -1) / np.sqrt(5)


def luma(rgb: np.ndarray, full_scale: float) -> np.ndarray:
    """(..., 3) -> (...) float32 Rec. 601 luma in [0, 1]; per-channel products beat a matmul here."""
    w = np.array([0.299, 0.587, 0.114], np.float32) / np.float32(full_scale)
    return rgb[..., 0] * w[0] + rgb[..., 1] * w[1] + rgb[..., 2] * w[2]
