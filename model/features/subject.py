"""The clip's subject: the thing that moves (or, when nothing moves, the thing that stands out), found in
each sampled frame, and described by its colours, its outline and its own motion (a `Trajectory`).

Finding it, in each sampled frame: colour saliency, each colour's uniqueness (its distance to the frame's
other colours, weighted by their share: histogram contrast, Cheng et al. 2011) times its compactness (a
background's colours are spread over the frame, an object's are not: element distribution, Perazzi et al.
2012), thresholded by Otsu; of its compact components, the one with the highest mean saliency plus the
share of it that moves (residual optical flow, model.features.opticalflow): what moves is what the footage
is about, and what stands out, when nothing does.

Its own motion, from one mask to the next: the centre's velocity, the growth of its linear size (square
root of area), and its rotation, the shift that best aligns the outline's centroid-distance profiles
r(theta) (circular cross-correlation; unmeasured for round outlines, whose profile is flat).

Outline (rotation, scale and position invariant): solidity (area over convex hull), circularity
(4 pi area / perimeter^2), rectangularity (area over the minimal rotated box), elongation, the share of
holes, and the magnitudes of the Fourier coefficients 2..8 of the centroid distance along the outline
(Zhang & Lu 2002: a triangle peaks at 3, a square at 4, a five-pointed star at 5).

Colour: a histogram over perceptual bins (16 hues, soft-assigned between neighbours, x dark / bright x
muted / vivid, and 5 greys), the same bins for the whole frame (the `colour` group) and for the subject.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from model.features import SAMPLE_FPS
from model.features.imagestats import hsv_5bit, index_5bit
from model.features.kinematics import Trajectory
from model.features.opticalflow import FLOW_STEP, affine_motion

HUE_BINS = 16  # 22.5 degrees each, soft-assigned
CHROMA_MIN_SAT = 0.2  # below: grey
CHROMA_MIN_VALUE = 0.2  # below: black
BRIGHT_VALUE = 0.6  # dark | bright
VIVID_SAT = 0.55  # muted | vivid
GREY_BINS = 5  # black .. white
COLOUR_DIM = HUE_BINS * 4 + GREY_BINS
FINE_BITS = 3  # bits per channel of the fine RGB grid the subject's colours are chosen on
MIN_SUBJECT_PX = 20  # mask pixels (at input resolution) below which there is no outline to describe
SUBJECT_MAX_SHARE = 0.4  # a subject, moving or still, covers at most this share of the frame
SALIENT_SPREAD_K = 6.0  # compactness weight exp(-k * spread / frame diagonal) (Perazzi et al. 2012)
PROFILE_BINS = 72  # centroid-distance profile, 5 degrees a bin
MAX_TURN = np.pi / 3  # rotation between two sampled frames looked for: +-60 degrees
ROUND_PROFILE = 0.03  # profile spread (relative to its mean) below which a rotation cannot be seen
FOURIER_ORDERS = range(2, 9)  # centroid-distance harmonics kept
OUTLINE_POINTS = 64  # points the outline is resampled to, evenly by arc length
SHAPE_FRAMES = 3  # frames whose outline is described (first, middle, last found)
SHAPE_DIM = 5 + len(FOURIER_ORDERS) + 1


@functools.lru_cache(maxsize=1)
def _colour_lut() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every RGB colour at 5 bits a channel: two bins and the first one's weight (soft hue)."""
    hue, sat, mx = hsv_5bit()
    pos = hue * HUE_BINS - 0.5  # bin centres at (k + 0.5) / HUE_BINS
    lo = np.floor(pos).astype(np.int64) % HUE_BINS
    w_lo = 1 - (pos - np.floor(pos))
    hi = (lo + 1) % HUE_BINS
    tone = (mx >= BRIGHT_VALUE) * 2 + (sat >= VIVID_SAT)
    chromatic = (sat >= CHROMA_MIN_SAT) & (mx >= CHROMA_MIN_VALUE)
    grey = HUE_BINS * 4 + np.minimum((mx * GREY_BINS).astype(np.int64), GREY_BINS - 1)
    return (np.where(chromatic, lo * 4 + tone, grey), np.where(chromatic, hi * 4 + tone, grey),
            np.where(chromatic, w_lo, 1.0))


def colour_histogram(pixels: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (COLOUR_DIM,) distribution, square-rooted (Hellinger); zeros if empty."""
    lo, hi, w_lo = _colour_lut()
    code = index_5bit(pixels)
    hist = np.bincount(lo[code], w_lo[code], COLOUR_DIM) + np.bincount(hi[code], 1 - w_lo[code], COLOUR_DIM)
    total = hist.sum()
    return np.sqrt(hist / total) if total > 0 else hist


def fine_colours(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) fine colour bin of each pixel, after a light blur (pixel noise would
    scatter one surface over neighbouring bins)."""
    q = cv2.GaussianBlur(rgb, (3, 3), 0) >> (8 - FINE_BITS)
    return (q[..., 0].astype(np.int64) << 2 * FINE_BITS) | (q[..., 1].astype(np.int64) << FINE_BITS) | q[..., 2]


N_FINE = 1 << 3 * FINE_BITS
_CLOSE = np.ones((5, 5), np.uint8)  # joins a striped or dotted thing's parts; a ring's hole is wider
_OPEN = np.ones((3, 3), np.uint8)  # drops specks


def _bin_centres() -> np.ndarray:
    levels = (np.arange(1 << FINE_BITS) + 0.5) * (256 >> FINE_BITS)
    return np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)


_CENTRES = _bin_centres()


def saliency(fine: np.ndarray) -> np.ndarray:
    """(H, W) fine colour bins -> (H, W) float saliency in [0, 1]: each colour's uniqueness (its mean distance
    to the frame's colours) times its compactness (exp(-k * spread of its pixels / frame diagonal))."""
    h, w = fine.shape
    flat = fine.ravel()
    count = np.bincount(flat, minlength=N_FINE)
    used = np.flatnonzero(count)
    p = count[used] / flat.size
    major = p >= 1e-3  # uniqueness against the colours that matter: a (used x major) distance table
    dist = np.linalg.norm(_CENTRES[used][:, None] - _CENTRES[used[major]][None], axis=-1) / 255
    uniqueness = dist @ p[major]
    ys, xs = np.divmod(np.arange(flat.size), w)
    spread = np.zeros(len(used))
    for coord in (xs, ys):
        mean = np.bincount(flat, coord, N_FINE)[used] / count[used]
        spread += np.bincount(flat, coord.astype(np.float64) ** 2, N_FINE)[used] / count[used] - mean**2
    sal = np.zeros(N_FINE)
    sal[used] = uniqueness * np.exp(-SALIENT_SPREAD_K * np.sqrt(np.maximum(spread, 0)) / np.hypot(h, w))
    smap = sal[fine]
    return smap / max(float(smap.max()), 1e-9)


def subject_mask(rgb: np.ndarray, moving: np.ndarray | None) -> np.ndarray | None:
    """One frame (H, W, 3) uint8 and where it moves ((h, w) bool at flow resolution, or None) -> the
    subject's (H, W) bool mask, or None.

    Candidates are the components of the saliency map thresholded by Otsu (closed, then opened), at least
    MIN_SUBJECT_PX and at most SUBJECT_MAX_SHARE of the frame, touching fewer than two borders (a sky or a
    floor touches three). The subject is the one with the highest mean saliency plus the share of it that
    moves: what moves is what the footage is about, and what stands out, when nothing moves."""
    h, w = rgb.shape[:2]
    smap = saliency(fine_colours(rgb))
    _, mask = cv2.threshold((255 * smap).astype(np.uint8), 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _CLOSE), cv2.MORPH_OPEN, _OPEN)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return None
    area = np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
    score = np.bincount(labels.ravel(), smap.ravel(), n) / area
    if moving is not None:
        region = cv2.resize(moving.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        if region.sum() <= SUBJECT_MAX_SHARE * h * w:  # more is the camera or the whole scene moving
            score = score + np.bincount(labels[region], minlength=n) / area
    x, y, bw, bh = (stats[:, k] for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    borders = (x == 0).astype(int) + (y == 0) + (x + bw == w) + (y + bh == h)
    ok = (borders < 2) & (area >= MIN_SUBJECT_PX) & (area <= SUBJECT_MAX_SHARE * h * w)
    ok[0] = False  # the background label
    if not ok.any():
        return None
    best = int(np.argmax(np.where(ok, score, -1)))
    return labels == best


def subject_masks(frames: np.ndarray, moving: np.ndarray) -> list[np.ndarray | None]:
    """frames (K, H, W, 3) uint8, moving (K, h, w) bool at flow resolution (pair k starts at frame k)
    -> the subject's (H, W) bool mask in each frame, None where none is found."""
    return [subject_mask(f, m if m.sum() else None) for f, m in zip(frames, moving, strict=True)]


def _profile(mask: np.ndarray, x_scale: float) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(centre (2,), centroid-distance profile (PROFILE_BINS,) over angle, area) of a mask's outline."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    pts = max(contours, key=cv2.contourArea)[:, 0].astype(np.float64) * [x_scale, 1.0]
    area = float(mask.sum()) * x_scale
    ys, xs = np.nonzero(mask)
    centre = np.array([xs.mean() * x_scale, ys.mean()])
    d = pts - centre
    ang = ((np.arctan2(d[:, 1], d[:, 0]) % (2 * np.pi)) / (2 * np.pi) * PROFILE_BINS).astype(np.int64) % PROFILE_BINS
    prof = np.zeros(PROFILE_BINS)
    np.maximum.at(prof, ang, np.hypot(d[:, 0], d[:, 1]))
    seen = prof > 0
    if seen.sum() < PROFILE_BINS // 4:
        return None
    idx = np.arange(PROFILE_BINS)  # fill unseen angles around the circle
    prof = np.interp(idx, idx[seen], prof[seen], period=PROFILE_BINS)
    return centre, prof / prof.mean(), area


def _turn(a: np.ndarray, b: np.ndarray) -> float | None:
    """Rotation (radians, clockwise on screen) that best maps profile a onto profile b; None if round."""
    if min(a.std(), b.std()) < ROUND_PROFILE:
        return None
    corr = np.fft.irfft(np.conj(np.fft.rfft(a - a.mean())) * np.fft.rfft(b - b.mean()), PROFILE_BINS)
    reach = int(MAX_TURN / (2 * np.pi) * PROFILE_BINS)
    shifts = np.r_[0:reach + 1, -reach:0]
    best = shifts[np.argmax(corr[shifts])]
    y0, y1, y2 = corr[(best - 1) % PROFILE_BINS], corr[best % PROFILE_BINS], corr[(best + 1) % PROFILE_BINS]
    den = y0 - 2 * y1 + y2
    frac = 0.5 * (y0 - y2) / den if den < 0 else 0.0
    return (best + frac) * 2 * np.pi / PROFILE_BINS


def subject_trajectory(masks: list[np.ndarray | None], residual: np.ndarray, camera: np.ndarray, x_scale: float,
                       step_s: float) -> Trajectory:
    """The subject's motion between consecutive masks, (1, K-1) steps, in frame widths and seconds, relative to
    the scene (the camera's share, `camera` (K, 6) fields per pair at flow resolution, taken off): its centre's
    velocity, the growth of its linear size, and its rotation: the turn of its outline, or, for a round
    outline, the curl of the residual flow (K, h, w, 2) over it (a striped disc turns only inside)."""
    h, w = residual.shape[1:3]
    small = np.zeros((len(masks), h, w), bool)
    for k, m in enumerate(masks):
        if m is not None:
            small[k] = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_AREA) > 0
    pair_s = FLOW_STEP / SAMPLE_FPS
    _, _, curl, measured = affine_motion(residual, small)
    curl = curl / pair_s
    profiles = [None if m is None else _profile(m, x_scale) for m in masks]
    width = next((m.shape[1] for m in masks if m is not None), w)
    to_flow = w / width  # flow pixels per input pixel
    n = len(masks) - 1
    vel, growth, rot, active = np.zeros((1, n, 2)), np.zeros((1, n)), np.zeros((1, n)), np.zeros((1, n), bool)
    for k in range(n):
        a, b = profiles[k], profiles[k + 1]
        if a is None or b is None:
            continue
        active[0, k] = True
        tx, ty, c11, c12, c21, c22 = camera[k]
        x, y = a[0][0] / x_scale * to_flow - w / 2, a[0][1] * to_flow - h / 2  # centred flow coordinates
        carried = np.array([tx + c11 * x + c12 * y, ty + c21 * x + c22 * y]) / w / pair_s
        vel[0, k] = (b[0] - a[0]) / (width * x_scale) / step_s - carried * [x_scale, 1.0] / x_scale
        growth[0, k] = np.log(b[2] / a[2]) / 2 / step_s - (c11 + c22) / 2 / pair_s
        turn = _turn(a[1], b[1])
        rot[0, k] = (turn / step_s - (c21 - c12) / 2 / pair_s) if turn is not None else (curl[k] if measured[k] else 0.0)
    return Trajectory(vel, growth, rot, active, step_s)


def shape_descriptor(mask: np.ndarray, x_scale: float = 1.0) -> np.ndarray | None:
    """(H, W) bool -> (SHAPE_DIM - 1,) outline descriptor (module doc), x stretched by `x_scale` to undo a
    resize that changed the picture's aspect; None when the mask is too small."""
    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    outer = [i for i in range(len(contours)) if hierarchy[0, i, 3] < 0]
    k = max(outer, key=lambda i: cv2.contourArea(contours[i]))
    scale = np.float32([x_scale, 1.0])
    pts = contours[k][:, 0].astype(np.float32) * scale
    area = cv2.contourArea(pts)
    if len(pts) < 8 or area < MIN_SUBJECT_PX:
        return None
    holes = sum(cv2.contourArea(contours[i][:, 0].astype(np.float32) * scale)
                for i in range(len(contours)) if hierarchy[0, i, 3] == k)
    perimeter = cv2.arcLength(pts, closed=True)
    hull = cv2.contourArea(cv2.convexHull(pts))
    (_, _), (rw, rh), _ = cv2.minAreaRect(pts)
    # centroid distance, resampled evenly along the outline
    closed = np.vstack([pts, pts[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    s = np.concatenate([[0], np.cumsum(seg)])
    t = np.linspace(0, s[-1], OUTLINE_POINTS, endpoint=False)
    xy = np.stack([np.interp(t, s, closed[:, 0]), np.interp(t, s, closed[:, 1])], 1)
    m = cv2.moments(pts)
    centre = np.array([m["m10"], m["m01"]]) / max(m["m00"], 1e-9)
    dist = np.linalg.norm(xy - centre, axis=1)
    spectrum = np.abs(np.fft.rfft(dist / max(dist.mean(), 1e-9))) / OUTLINE_POINTS * 2
    return np.concatenate([
        [area / max(hull, 1e-9), min(1.0, 4 * np.pi * area / max(perimeter, 1e-9) ** 2),
         area / max(rw * rh, 1e-9), min(rw, rh) / max(rw, rh, 1e-9), min(1.0, holes / area)],
        np.sqrt(np.minimum(spectrum[list(FOURIER_ORDERS)], 1.0)),
    ])


@dataclass(frozen=True)
class Subject:
    colour: np.ndarray  # (COLOUR_DIM,) colour histogram of the masks' pixels
    shape: np.ndarray  # (SHAPE_DIM,) outline descriptor, and the share of frames an outline was found in
    trajectory: Trajectory  # its own motion between the sampled frames


def describe_subject(frames: np.ndarray, moving: np.ndarray, residual: np.ndarray, camera: np.ndarray,
                     x_scale: float, step_s: float) -> Subject:
    """The subject of one clip from K sampled frames (K, H, W, 3), and the moving masks (K, h, w), residual
    flow (K, h, w, 2) and camera fields (K, 6) of the pairs starting at them."""
    masks = subject_masks(frames, moving)
    found = [k for k, m in enumerate(masks) if m is not None]
    colour = (colour_histogram(np.concatenate([frames[k][masks[k]] for k in found])) if found
              else np.zeros(COLOUR_DIM))
    shape = np.zeros(SHAPE_DIM)
    picks = [found[i] for i in np.unique(np.linspace(0, len(found) - 1, SHAPE_FRAMES).round().astype(int))] if found else []
    descs = [d for d in (shape_descriptor(masks[k], x_scale) for k in picks) if d is not None]
    if descs:
        shape[:-1] = np.mean(descs, 0)
    shape[-1] = len(found) / len(masks)
    return Subject(colour, shape / np.sqrt(4), subject_trajectory(masks, residual, camera, x_scale, step_s))
