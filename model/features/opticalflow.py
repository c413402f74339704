"""Dense optical flow of a clip, the camera's share of it, and what is left: the things that move.

    frames -> Farneback flow between frames FLOW_STEP apart (OpenCV, Farneback 2003), at FLOW_WIDTH, on luma
              and on colour distance from the dominant colour (fused by local gradient energy)
           -> camera motion: an affine field fitted to the whole frame by trimmed least squares
              (the background is most of the picture; the trimmed fit ignores what moves on it)
           -> residual flow = flow - camera field: the motion of things relative to the scene
           -> per frame pair, the moving region (residual above MOVE_PX); `affine_motion` fits residual flow
              over a region: translation of its centre, divergence (growing / shrinking), curl (turning)

Farneback rather than DIS (OpenCV's fastest dense flow): on flat, noisy backgrounds DIS returns several
pixels of flow where nothing moves, Farneback returns ~0.

Descriptor (norm about 1):
- `flow_hist`: the histograms of dense trajectories (Wang & Schmid 2013) over the residual flow: HOF
  (flow orientation, magnitude-weighted, with a no-motion bin) and MBH (orientation of the gradients of
  the flow's x and y components: motion boundaries, unchanged by any constant camera motion).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.features.kinematics import (
    DIR_BINS,
    direction_histogram,
)

FLOW_WIDTH = 80  # px: flow runs at this width (the clip's aspect kept): 1.3 ms a pair at 80x60 on one core
FLOW_STEP = 2  # frames between the two frames of a pair: 0.1 s at 20 fps
PAIR_EVERY = 3  # a pair starts every 3rd frame: 10 pairs a clip, every 0.15 s (a 2 Hz pulse is still seen)
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=9, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)
MOVE_PX = 0.3  # px per pair at FLOW_WIDTH (3 px/s: 4 % of the width a second) that counts as moving
MOVE_OVER_MEDIAN = 3.0  # ... and at least this many times the pair's median residual
MIN_MOVING_PX = 12  # moving pixels (at flow resolution, 0.25 % of 80x60) below which nothing moves in a pair
TRIM_KEEP = 0.6  # share of the pixels (smallest residuals) the camera fit keeps in each refit
TRIM_ROUNDS = 2  # refits after the first least-squares fit
FIT_STRIDE = 2  # the camera fit reads every other pixel each way
FLOW_HIST_DIM = (DIR_BINS + 1) + 2 * DIR_BINS


@dataclass(frozen=True)
class ClipMotion:
    """The flow of a batch of clips, P frame pairs each, at flow resolution (h, w)."""

    residual: np.ndarray  # (B, P, h, w, 2) float32 px per pair: flow minus the camera field
    camera: np.ndarray  # (B, P, 6) the camera field per pair: (tx, ty, a11, a12, a21, a22), centred coordinates
    moving: np.ndarray  # (B, P, h, w) bool: residual above MOVE_PX
    pairs: np.ndarray  # (P,) first frame of each pair


def flow_size(width: int, height: int) -> tuple[int, int]:
    """(w, h) the flow runs at for frames of `width` x `height`."""
    return FLOW_WIDTH, max(8, round(height * FLOW_WIDTH / width))


def flow_planes(clips: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(B, T, H, W, 3) uint8 -> (B, len(frames), 2, h, w) uint8 at flow resolution: luma, and each pixel's
    colour distance from the clip's dominant colour. Farneback reads one channel; a red thing on red
    bricks, or any object of the background's brightness, is invisible in luma alone."""
    b, _, h, w, _ = clips.shape
    size = flow_size(w, h)
    out = np.empty((b, len(frames), 2, size[1], size[0]), np.uint8)
    for i in range(b):
        small = [cv2.resize(clips[i, f], size, interpolation=cv2.INTER_AREA) for f in frames]
        dominant = np.median(small[0].reshape(-1, 3), axis=0)
        for k, rgb in enumerate(small):
            out[i, k, 0] = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            dist = np.linalg.norm(rgb.astype(np.float32) - dominant.astype(np.float32), axis=-1)
            out[i, k, 1] = np.minimum(dist, 255).astype(np.uint8)
    return out


def _tensor(plane: np.ndarray) -> np.ndarray:
    """(h, w) uint8 -> (3, h, w) float32 structure tensor (Jxx, Jxy, Jyy), smoothed over 5x5."""
    gx = cv2.Sobel(plane, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(plane, cv2.CV_32F, 0, 1, ksize=3)
    return np.stack([cv2.GaussianBlur(g, (5, 5), 0) for g in (gx * gx, gx * gy, gy * gy)])


def pair_flow(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2, h, w) uint8 planes of two frames -> (h, w, 2) float32 flow and (h, w) its confidence.

    The flow is each plane's Farneback flow weighted per pixel by that plane's gradient energy; the
    confidence is the smaller eigenvalue of the planes' summed structure tensor (Shi & Tomasi 1994): zero on
    flat areas, where any motion fits, and small along a straight edge, where only the normal motion does."""
    flows = [cv2.calcOpticalFlowFarneback(a[c], b[c], None, **FARNEBACK) for c in range(len(a))]
    tensors = [_tensor(a[c]) for c in range(len(a))]
    energy = [t[0] + t[2] + 1e-3 for t in tensors]
    total = sum(energy)
    flow = sum(f * (e / total)[..., None] for f, e in zip(flows, energy, strict=True))
    jxx, jxy, jyy = sum(tensors)
    confidence = (jxx + jyy) / 2 - np.sqrt(((jxx - jyy) / 2) ** 2 + jxy**2)
    return flow, np.maximum(confidence, 0)


def _camera_fit(flow: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """(N, h, w, 2) flows, (N, h, w) confidences -> (N, 6) affine camera fields by trimmed, weighted least
    squares over every other pixel. A pixel's weight is its confidence capped at the frame's median
    confidence: flat areas (a wall, a sky) say nothing of the camera, and a few strong edges (the object's)
    must not outvote the many textured pixels of the background."""
    n, h, w, _ = flow.shape
    ys, xs = np.mgrid[0:h:FIT_STRIDE, 0:w:FIT_STRIDE].astype(np.float64)
    design = np.stack([np.ones(xs.size), (xs.ravel() - w / 2) / w, (ys.ravel() - h / 2) / w], 1)  # (M, 3)
    outer = (design[:, :, None] * design[:, None, :]).reshape(len(design), 9)  # (M, 9): X^T W X = w @ this
    u = flow[:, ::FIT_STRIDE, ::FIT_STRIDE].reshape(n, -1, 2).astype(np.float64)  # (N, M, 2)
    conf = confidence[:, ::FIT_STRIDE, ::FIT_STRIDE].reshape(n, -1).astype(np.float64)
    prior = np.minimum(conf, np.median(conf, axis=1, keepdims=True)) + 1e-9
    weight = prior
    for _ in range(TRIM_ROUNDS + 1):
        xtwx = (weight @ outer).reshape(n, 3, 3) + 1e-9 * np.eye(3)
        xtwu = design.T[None] @ (weight[..., None] * u)  # (N, 3, 2)
        coef = np.linalg.solve(xtwx, xtwu)  # (N, 3, 2): rows 1, x, y; columns u, v
        err = np.linalg.norm(u - design @ coef, axis=2)  # (N, M)
        cut = np.quantile(err, TRIM_KEEP, axis=1, keepdims=True)
        weight = prior * (err <= cut)
    # (tx, ty, du/dx, du/dy, dv/dx, dv/dy), derivatives per pixel
    return np.stack([coef[:, 0, 0], coef[:, 0, 1], coef[:, 1, 0] / w, coef[:, 2, 0] / w,
                     coef[:, 1, 1] / w, coef[:, 2, 1] / w], 1)


def _camera_field(camera: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, 6) -> (N, h, w, 2) the camera's flow at every pixel."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = xs - w / 2, ys - h / 2
    tx, ty, a, b, c, d = (camera[:, i, None, None] for i in range(6))
    return np.stack([tx + a * x + b * y, ty + c * x + d * y], -1)


def clip_motion(clips: np.ndarray) -> ClipMotion:
    """Flow, camera and residual motion of (B, T, H, W, 3) uint8 clips."""
    b, t = clips.shape[:2]
    pairs = np.arange(0, t - FLOW_STEP, PAIR_EVERY)
    frames, where = np.unique(np.concatenate([pairs, pairs + FLOW_STEP]), return_inverse=True)
    planes = flow_planes(clips, frames)
    first, second = where[: len(pairs)], where[len(pairs):]
    _, _, _, h, w = planes.shape
    flow = np.empty((b, len(pairs), h, w, 2), np.float32)
    confidence = np.empty((b, len(pairs), h, w), np.float32)
    for i in range(b):
        for k in range(len(pairs)):
            flow[i, k], confidence[i, k] = pair_flow(planes[i, first[k]], planes[i, second[k]])
    flat = flow.reshape(-1, h, w, 2)
    camera = _camera_fit(flat, confidence.reshape(-1, h, w))
    residual = (flat - _camera_field(camera, h, w)).astype(np.float32).reshape(flow.shape)
    speed = np.hypot(residual[..., 0], residual[..., 1])
    # a moving camera leaves residual flow all over the background: count as moving only what stands out
    floor = np.maximum(MOVE_PX, MOVE_OVER_MEDIAN * np.median(speed.reshape(b, len(pairs), -1), axis=2))
    moving = speed > floor[..., None, None]
    kernel = np.ones((3, 3), np.uint8)  # pixel noise moves single pixels; anything real is wider
    flat_moving = moving.reshape(-1, h, w)
    for k in range(len(flat_moving)):
        flat_moving[k] = cv2.morphologyEx(flat_moving[k].astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    return ClipMotion(residual, camera.reshape(b, len(pairs), 6), moving, pairs)


def affine_motion(residual: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Affine least-squares fit of residual flow (N, h, w, 2) over regions (N, h, w) bool -> per region: mean
    flow (N, 2) px per pair, divergence (N,) and curl (N,) per pair, and whether the region is big enough."""
    n, h, w, _ = residual.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    m = regions.reshape(n, -1).astype(np.float64)
    r = residual.reshape(n, -1, 2).astype(np.float64)
    count = m.sum(1)
    active = count >= MIN_MOVING_PX
    safe = np.maximum(count, 1)
    cx, cy = (m * xs.ravel()).sum(1) / safe, (m * ys.ravel()).sum(1) / safe
    dx, dy = xs.ravel()[None] - cx[:, None], ys.ravel()[None] - cy[:, None]
    vel = np.einsum("nm,nmc->nc", m, r) / safe[:, None]
    ru, rv = r[..., 0] - vel[:, :1], r[..., 1] - vel[:, 1:]
    # 2x2 least squares of (ru, rv) on (dx, dy) over the region, a small ridge for thin regions
    sxx, sxy, syy = (m * dx * dx).sum(1), (m * dx * dy).sum(1), (m * dy * dy).sum(1)
    ridge = 1e-3 * (sxx + syy) + 1e-6
    det = (sxx + ridge) * (syy + ridge) - sxy**2
    inv = np.stack([syy + ridge, -sxy, -sxy, sxx + ridge], 1).reshape(-1, 2, 2) / det[:, None, None]
    rhs = np.stack([(m * ru * dx).sum(1), (m * ru * dy).sum(1), (m * rv * dx).sum(1), (m * rv * dy).sum(1)], 1)
    a = np.einsum("nij,nkj->nki", inv, rhs.reshape(-1, 2, 2))  # rows: d(u)/d(x, y), d(v)/d(x, y)
    div = np.where(active, (a[:, 0, 0] + a[:, 1, 1]) / 2, 0.0)
    curl = np.where(active, (a[:, 1, 0] - a[:, 0, 1]) / 2, 0.0)
    return np.where(active[:, None], vel, 0.0), div, curl, active


def flow_histograms(motion: ClipMotion) -> np.ndarray:
    """(B, FLOW_HIST_DIM): HOF (8 orientations + still) and MBH-x, MBH-y (8 orientations each) of the
    residual flow over the whole clip, each L1-normalised and square-rooted."""
    r = motion.residual[:, :, ::FIT_STRIDE, ::FIT_STRIDE]
    moving = motion.moving[:, :, ::FIT_STRIDE, ::FIT_STRIDE]
    b = r.shape[0]
    mag = np.hypot(r[..., 0], r[..., 1])
    hof = direction_histogram(r.reshape(b, -1, 2), mag.reshape(b, -1))
    still = (~moving).reshape(b, -1).sum(1, keepdims=True) * MOVE_PX
    hof = np.concatenate([hof, still], 1)
    mbh = []
    for k in (0, 1):
        gy, gx = np.gradient(r[..., k], axis=(2, 3))
        g = np.stack([gx, gy], -1)
        mbh.append(direction_histogram(g.reshape(b, -1, 2), np.hypot(gx, gy).reshape(b, -1)))
    parts = [h / np.maximum(h.sum(1, keepdims=True), 1e-9) for h in (hof, *mbh)]
    return np.sqrt(np.concatenate(parts, 1)) / np.sqrt(3)
