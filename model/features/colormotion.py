"""`colormotion`: a weights-free clip descriptor, fast on CPU (numpy only).

Named groups, each built so that Euclidean distance means something and each
group's norm is about 1 (so none dominates when the whole vector is used):

- colour (28): hue x brightness histogram of chromatic pixels (12 x 2) plus a 4-bin
  brightness histogram of grey pixels, as a distribution, square-rooted (Hellinger).
- layout (48): mean opponent colour (luma, red-green, yellow-blue) on a 4x4 grid.
- shape (40): gradient-orientation histograms (8 unsigned bins) of the whole frame and
  of its 2x2 quadrants, averaged over three frames, square-rooted.
- motion (24): block-matching flow between frames 0.1 s apart, in px per frame: magnitude-weighted
  direction histogram (8), speed histogram (4), mean flow (2), mean flow per quadrant (8),
  frame-difference energy mean and spread (2).
- subject (36): what moves, apart from where it is. The colour histogram (28) and the
  gradient-orientation histogram (8) of the blocks the flow finds moving, minus the same
  histograms of the whole frame, clipped at zero and renormalised: the colours and edge
  directions over-represented where things move. The whole-frame groups are dominated by the
  background (a person or a car covers a few percent of the pixels); this one is not. All
  zero when nothing moves.
- heading (8): which way the moving blocks go: their flow directions (8 bins of 45 degrees),
  counted per block whatever its speed or place and normalised, square-rooted. The motion group
  mixes direction with speed and position; as a separate group direction gets a word of its own.
- silhouette (18): the outline of what moves, whatever its size or place. The pixels near the
  moving blocks whose colour (on a fine RGB grid) is over-represented there form a mask; its
  bounding box is cut into a 4x4 grid and each cell's filled fraction recorded, with the mask's
  extent (area over box area) and aspect ratio. A disc, a box, a wedge and a cross fill the grid
  differently; edge-direction histograms alone cannot tell a box from a cross. Averaged over
  three frames; all zero when nothing moves.

Nothing here is tuned to any corpus: the bins are uniform and the scales physical
(fractions of the frame, pixels per frame).
"""

from __future__ import annotations

import functools

import numpy as np

from model.features import ClipFeatureExtractor, group_slices
from model.features.imagestats import (
    LAYOUT_DIM,
    ORIENT_BINS,
    ORIENT_DIM,
    gradients,
    hsv_5bit,
    index_5bit,
    layout_features,
    luma,
    orientation_features,
    per_clip_hist,
)

INPUT_SIZE = (160, 120)  # (width, height) clips are decoded at; 4:3 keeps all grids integral
BATCH_SIZE = 16  # clips per call; ~9 MB of uint8 frames

# colour
HUE_BINS = 12  # 30 degrees each
CHROMA_VALUE_BINS = 2  # dark / bright chromatic pixels
GREY_BINS = 4  # brightness of achromatic pixels
MIN_SATURATION = 0.25  # below: grey
MIN_VALUE = 0.15  # below: black, counted as grey
COLOUR_FRAME_STEP = 3  # every 3rd frame (0.15 s) is plenty for colour statistics
COLOUR_PIXEL_STEP = 2  # and every 2nd pixel each way
# motion
# Flow runs at half resolution (80x60): fast, and larger motions stay in the search range.
FLOW_BLOCK = 8  # pixels (at flow resolution) per matched block
FLOW_STEP = 2  # frames between the two frames matched: at 0.05 s a walking pace (under 1 px at flow
# resolution) reads as still; at 0.1 s it moves a pixel or more
FLOW_RADIUS = 3  # px per FLOW_STEP searched at flow resolution (3 px at 80 px wide: 0.375 frame widths per second)
FLOW_SHIFT_PENALTY = 0.004  # SAD per pixel per px of shift: ties and noise go to the smaller shift
FLOW_MIN_TEXTURE = 0.01  # mean |gradient| of a block below which its motion is unknowable
DIR_BINS = 8  # motion direction, 45 degrees each
SPEED_EDGES = (0.5, 1.25, 2.25)  # px/frame at flow resolution: still | slow | medium | fast
FLOW_SCALE = 1.0  # px/frame: tanh scale for mean flows and direction mass
DIFF_SCALE = 0.05  # mean absolute frame difference (0..1) that counts as "a lot of change"

GROUP_DIMS = {
    "colour": HUE_BINS * CHROMA_VALUE_BINS + GREY_BINS,
    "layout": LAYOUT_DIM,
    "shape": ORIENT_DIM,
    "motion": DIR_BINS + len(SPEED_EDGES) + 1 + 2 + 8 + 2,
    "subject": HUE_BINS * CHROMA_VALUE_BINS + GREY_BINS + ORIENT_BINS,
    "heading": DIR_BINS,
    "silhouette": 4 * 4 + 2,
}
SUBJECT_MIN_MASS = 0.02  # excess probability mass below which nothing stands out where things move
SILHOUETTE_GRID = 4  # cells per side of the subject's bounding box
SILHOUETTE_RGB_BITS = 3  # bits per channel of the fine colour grid the subject's mask is cut on
SILHOUETTE_CONTRAST = 3.0  # how many times as common in the moving blocks as in the frame a subject colour is
SILHOUETTE_MIN_PIXELS = 12  # fewer mask pixels (at input resolution) than this: no outline to describe


@functools.lru_cache(maxsize=1)
def _colour_lut() -> np.ndarray:
    """Colour bin of every RGB colour quantised to 5 bits per channel: (32768,) int64."""
    hue, sat, mx = hsv_5bit()
    chromatic = (sat >= MIN_SATURATION) & (mx >= MIN_VALUE)
    hue_bin = np.minimum((hue * HUE_BINS).astype(np.int64), HUE_BINS - 1)
    chroma_bin = hue_bin * CHROMA_VALUE_BINS + (mx >= 0.6)
    grey_bin = HUE_BINS * CHROMA_VALUE_BINS + np.minimum((mx * GREY_BINS).astype(np.int64), GREY_BINS - 1)
    return np.where(chromatic, chroma_bin, grey_bin)


def colour_bins(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) int64 colour bin of every pixel."""
    return _colour_lut()[index_5bit(rgb)]


def colour_features(rgb: np.ndarray) -> np.ndarray:
    """rgb: (B, t, h, w, 3) uint8, a temporal and spatial subsample -> (B, 28)."""
    b = rgb.shape[0]
    bins = colour_bins(rgb.reshape(b, -1, 3))
    hist = per_clip_hist(bins, None, GROUP_DIMS["colour"])
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1)
    return np.sqrt(hist)


def block_flow(planes: np.ndarray) -> np.ndarray:
    """Block-matching flow between frames FLOW_STEP apart (exhaustive search, sum of absolute differences).

    planes: (B, T, C, h, w) in about [0, 1] at flow resolution (luma and opponent colours: a red object on
    green grass has the grass's luma) -> (B, P, by, bx, 2) as (dx, dy) in px/frame, pair k matching frame
    k * FLOW_STEP with the one FLOW_STEP later. Blocks without texture get zero flow; ties prefer the
    smaller shift, so an edge moving along itself reads as its normal motion and a still scene as still.
    """
    f0, f1 = planes[:, 0:-FLOW_STEP:FLOW_STEP], planes[:, FLOW_STEP::FLOW_STEP]
    b, t = f0.shape[:2]
    r = FLOW_RADIUS
    hh, ww = planes.shape[-2] - 2 * r, planes.shape[-1] - 2 * r
    by, bx = hh // FLOW_BLOCK, ww // FLOW_BLOCK
    hh, ww = by * FLOW_BLOCK, bx * FLOW_BLOCK

    def block_sum(x: np.ndarray) -> np.ndarray:  # (B, P, hh, ww) -> (B, P, by, bx)
        return x.reshape(b, t, by, FLOW_BLOCK, bx, FLOW_BLOCK).sum(axis=(3, 5))

    ref = f0[..., r : r + hh, r : r + ww]
    shifts = [(dx, dy) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    cost = np.stack(
        [block_sum(np.abs(f1[..., r + dy : r + dy + hh, r + dx : r + dx + ww] - ref).sum(axis=2)) for dx, dy in shifts]
    )  # (S, B, P, by, bx)
    norms = np.array([np.hypot(dx, dy) for dx, dy in shifts])
    cost = cost + (FLOW_SHIFT_PENALTY * FLOW_BLOCK * FLOW_BLOCK) * norms[:, None, None, None, None]
    best = np.asarray(shifts, np.float64)[cost.argmin(axis=0)] / FLOW_STEP  # (B, P, by, bx, 2) px/frame
    gx = np.abs(np.diff(ref, axis=-1))[..., :-1, :]
    gy = np.abs(np.diff(ref, axis=-2))[..., :, :-1]
    texture = block_sum(np.pad((gx + gy).sum(axis=2), [(0, 0)] * 2 + [(0, 1), (0, 1)])) / (FLOW_BLOCK * FLOW_BLOCK)
    return np.where((texture > FLOW_MIN_TEXTURE)[..., None], best, 0.0)


def _direction_bins(flow: np.ndarray) -> np.ndarray:
    """(B, ..., 2) flow -> (B, N) direction bin of each vector, bins centred on right, down-right, ..."""
    b = flow.shape[0]
    direction = np.arctan2(flow[..., 1], flow[..., 0]).reshape(b, -1) % (2 * np.pi)
    return (direction / (2 * np.pi) * DIR_BINS + 0.5).astype(np.int64) % DIR_BINS


def motion_features(gray: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """gray: (B, T, h, w) at flow resolution, flow: its `block_flow` -> (B, 24)."""
    b = gray.shape[0]
    u, v = flow[..., 0], flow[..., 1]
    speed = np.hypot(u, v).reshape(b, -1)
    n = speed.shape[1]
    dir_mass = per_clip_hist(_direction_bins(flow), speed, DIR_BINS) / n  # mean px/frame moving in each direction
    sbin = np.searchsorted(np.asarray(SPEED_EDGES), speed)
    speeds = np.sqrt(per_clip_hist(sbin, None, len(SPEED_EDGES) + 1) / n)
    mean_flow = flow.mean(axis=(1, 2, 3))  # (B, 2)
    by, bx = flow.shape[2:4]
    hy, hx = (by + 1) // 2, (bx + 1) // 2  # odd block counts: the middle row/column joins the first half
    quad_flow = np.concatenate(
        [flow[:, :, ys, xs].mean(axis=(1, 2, 3)) for ys in (slice(0, hy), slice(hy, by)) for xs in (slice(0, hx), slice(hx, bx))],
        axis=1,
    )  # (B, 8): (dx, dy) of the top-left, top-right, bottom-left, bottom-right quadrant
    diff = np.abs(np.diff(gray, axis=1)).mean(axis=(2, 3))  # (B, T-1)
    change = np.stack([diff.mean(axis=1), diff.std(axis=1)], axis=1)
    return np.concatenate(
        [
            np.tanh(dir_mass / FLOW_SCALE),
            speeds / np.sqrt(2),
            np.tanh(mean_flow / FLOW_SCALE) / np.sqrt(2),
            np.tanh(quad_flow / FLOW_SCALE) / np.sqrt(8),
            np.tanh(change / DIFF_SCALE) / np.sqrt(2),
        ],
        axis=1,
    )


def _block_pixels(h: int, w: int, by: int, bx: int) -> np.ndarray:
    """(h, w) int: the flow block each pixel (at flow resolution) lies in, -1 outside every block."""
    r = FLOW_RADIUS
    ys, xs = np.arange(h) - r, np.arange(w) - r
    iy = np.where((ys >= 0) & (ys < by * FLOW_BLOCK), ys // FLOW_BLOCK, -1)
    ix = np.where((xs >= 0) & (xs < bx * FLOW_BLOCK), xs // FLOW_BLOCK, -1)
    return np.where((iy[:, None] >= 0) & (ix[None, :] >= 0), iy[:, None] * bx + ix[None, :], -1)


def _excess(moving: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """(B, n) histograms -> (B, n): the distribution over-represented in `moving`, square-rooted (0 if none)."""
    p_m = moving / np.maximum(moving.sum(axis=1, keepdims=True), 1e-9)
    p_w = whole / np.maximum(whole.sum(axis=1, keepdims=True), 1e-9)
    ex = np.maximum(p_m - p_w, 0.0)
    mass = ex.sum(axis=1, keepdims=True)
    return np.where(mass > SUBJECT_MIN_MASS, np.sqrt(ex / np.maximum(mass, 1e-9)), 0.0)


def subject_features(rgb: np.ndarray, gray: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """What moves: rgb (B, T, h, w, 3) uint8 and gray (B, T, h, w) at flow resolution, flow their
    `block_flow` (B, P, by, bx, 2) -> (B, 36): excess colour (28) and orientation (8) histograms."""
    b, t, h, w = gray.shape
    p, by, bx = flow.shape[1:4]
    moving = (np.abs(flow).sum(-1) > 0).reshape(b, p, -1)  # (B, P, blocks)
    block = _block_pixels(h, w, by, bx)  # (h, w)
    inside = block >= 0
    frames = np.arange(p) * FLOW_STEP  # the first frame of each flow pair: the one the blocks were matched in
    weight = np.where(inside[None, None], moving[:, :, np.maximum(block, 0)], False).astype(np.float64)  # (B, P, h, w)
    cbins = colour_bins(rgb[:, frames])  # (B, P, h, w)
    n_col = GROUP_DIMS["colour"]
    col = _excess(per_clip_hist(cbins.reshape(b, -1), weight.reshape(b, -1), n_col),
                  per_clip_hist(cbins.reshape(b, -1), inside[None, None].repeat(p, 1).reshape(1, -1).repeat(b, 0)
                                 .astype(np.float64), n_col))
    gx, gy = gradients(gray[:, frames])  # (B, P, h-2, w-2)
    mag = np.hypot(gx, gy)
    obin = np.minimum(((np.arctan2(gy, gx) % np.pi) / np.pi * ORIENT_BINS).astype(np.int64), ORIENT_BINS - 1)
    wm = weight[..., 1:-1, 1:-1] * mag
    ori = _excess(per_clip_hist(obin.reshape(b, -1), wm.reshape(b, -1), ORIENT_BINS),
                  per_clip_hist(obin.reshape(b, -1), mag.reshape(b, -1), ORIENT_BINS))
    return np.concatenate([col, ori], axis=1) / np.sqrt(2)


def _open3(mask: np.ndarray) -> np.ndarray:
    """Morphological opening with a 3x3 square: drops specks (background pixels that share the subject's
    colour bin through noise) and keeps anything at least 3 pixels thick."""
    def over_3x3(m: np.ndarray, op: np.ufunc) -> np.ndarray:  # logical_and: erode, logical_or: dilate
        p = np.pad(m, 1)
        return op.reduce([p[dy : dy + m.shape[0], dx : dx + m.shape[1]] for dy in range(3) for dx in range(3)])

    return over_3x3(over_3x3(mask, np.logical_and), np.logical_or)


def _outline(mask: np.ndarray) -> np.ndarray | None:
    """(H, W) bool -> (18,): 4x4 fill fractions of the mask's bounding box, extent, aspect (None if too small)."""
    ys, xs = np.nonzero(_open3(mask))
    if len(ys) < SILHOUETTE_MIN_PIXELS:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    g = SILHOUETTE_GRID
    # each mask pixel's cell in the box, then the fraction of each cell's pixels that are filled
    cy = np.minimum((ys - y0) * g // (y1 - y0), g - 1)
    cx = np.minimum((xs - x0) * g // (x1 - x0), g - 1)
    filled = np.bincount(cy * g + cx, minlength=g * g).astype(np.float64)
    rows = np.bincount(np.minimum(np.arange(y1 - y0) * g // (y1 - y0), g - 1), minlength=g)
    cols = np.bincount(np.minimum(np.arange(x1 - x0) * g // (x1 - x0), g - 1), minlength=g)
    fill = filled / np.maximum(np.outer(rows, cols).ravel(), 1)
    extent = len(ys) / ((y1 - y0) * (x1 - x0))
    aspect = np.tanh(np.log((x1 - x0) / (y1 - y0)))
    return np.concatenate([fill / g, [extent, aspect]])


def silhouette_features(rgb: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """rgb (B, 3, H, W, 3) uint8 at input resolution, the first frames of flow pairs 0, P//2 and P-1;
    flow (B, P, by, bx, 2) at half resolution -> (B, 18).

    The subject's colours are those at least SILHOUETTE_CONTRAST times as common in the moving blocks as
    in the whole frame, on a fine RGB grid (the colour group's 30-degree hue bins put a blue ball and a
    blue sky in one bin)."""
    b, _, h, w, _ = rgb.shape
    p, by, bx = flow.shape[1:4]
    scale = FLOW_BLOCK * 2  # input pixels per flow block side
    off = 2 * FLOW_RADIUS  # input pixels left of (and above) the first flow block
    q = rgb >> (8 - SILHOUETTE_RGB_BITS)
    fine = ((q[..., 0].astype(np.int64) << 2 * SILHOUETTE_RGB_BITS) | (q[..., 1].astype(np.int64) << SILHOUETTE_RGB_BITS)
            | q[..., 2])  # (B, 3, H, W) fine colour bin
    n_bins = 1 << 3 * SILHOUETTE_RGB_BITS
    out = np.zeros((b, GROUP_DIMS["silhouette"]))
    for i in range(b):
        descs = []
        for k, pair in enumerate((0, p // 2, p - 1)):
            moving = np.abs(flow[i, pair]).sum(-1) > 0  # (by, bx)
            if not moving.any():
                continue
            inside = np.zeros((h, w), bool)
            inside[off : off + by * scale, off : off + bx * scale] = np.kron(moving, np.ones((scale, scale), bool))
            p_m = np.bincount(fine[i, k][inside], minlength=n_bins) / inside.sum()
            p_w = np.bincount(fine[i, k].ravel(), minlength=n_bins) / (h * w)
            subject = (p_m >= SILHOUETTE_CONTRAST * p_w) & (p_m > 0)
            # the moving blocks' box, one block wider each way: the subject's flat interior may not move
            my, mx = np.nonzero(moving)
            y0, y1 = max(off + (my.min() - 1) * scale, 0), min(off + (my.max() + 2) * scale, h)
            x0, x1 = max(off + (mx.min() - 1) * scale, 0), min(off + (mx.max() + 2) * scale, w)
            mask = np.zeros((h, w), bool)
            mask[y0:y1, x0:x1] = subject[fine[i, k, y0:y1, x0:x1]]
            outline = _outline(mask)
            if outline is not None:
                descs.append(outline)
        if descs:
            out[i] = np.mean(descs, axis=0)
    return out / np.sqrt(2)  # norm about 1, like the other groups


def heading_features(flow: np.ndarray) -> np.ndarray:
    """flow (B, P, by, bx, 2) -> (B, 8): the direction distribution of the moving blocks (0 if none)."""
    moving = np.abs(flow).sum(-1).reshape(len(flow), -1) > 0
    hist = per_clip_hist(_direction_bins(flow), moving.astype(np.float64), DIR_BINS)
    return np.sqrt(hist / np.maximum(hist.sum(axis=1, keepdims=True), 1.0))


def _opponent(rgb: np.ndarray, full_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(..., 3) -> red-green and yellow-blue opponent channels (...) float32, half scale: about [-0.5, 0.5]."""
    x = rgb.astype(np.float32) / np.float32(2 * full_scale)
    return x[..., 0] - x[..., 1], (x[..., 0] + x[..., 1]) / 2 - x[..., 2]


class ColorMotion(ClipFeatureExtractor):
    name = "colormotion"
    dim = sum(GROUP_DIMS.values())
    groups = group_slices(GROUP_DIMS)
    input_size = INPUT_SIZE
    batch_size = BATCH_SIZE

    def __call__(self, clips: np.ndarray, x_scale: float = 1.0) -> np.ndarray:
        if clips.ndim != 5 or clips.shape[-1] != 3 or clips.shape[1] < 2:
            raise ValueError(f"expected (B, T>=2, H, W, 3) clips, got shape {clips.shape}")
        return self._in_batches(clips, self._batch)

    def _batch(self, clips: np.ndarray) -> np.ndarray:
        b, t, h, w, _ = clips.shape
        # Colour statistics need neither every frame nor every pixel: a 1-in-3 frame, 1-in-4 pixel sample.
        sample = clips[:, ::COLOUR_FRAME_STEP, ::COLOUR_PIXEL_STEP, ::COLOUR_PIXEL_STEP]
        shape_frames = luma(clips[:, [0, t // 2, t - 1]].astype(np.float32), 255.0)  # (B, 3, H, W)
        # 2x2 box downscale for the flow; integer sums of strided views are far faster than mean(axis=...).
        hh, ww = h // 2 * 2, w // 2 * 2
        quad = clips[:, :, 0:hh:2, 0:ww:2].astype(np.uint16)
        for dy, dx in ((1, 0), (0, 1), (1, 1)):
            quad += clips[:, :, dy:hh:2, dx:ww:2]
        small = luma(quad, 4 * 255.0)  # (B, T, H/2, W/2)
        flow = block_flow(np.stack([small, *_opponent(quad, 4 * 255.0)], axis=2))  # (B, P, by, bx, 2)
        small_rgb = (quad >> 2).astype(np.uint8)  # the same 2x2 box means, in colour
        p = flow.shape[1]
        outline_frames = clips[:, [0, FLOW_STEP * (p // 2), FLOW_STEP * (p - 1)]]  # first frames of three flow pairs
        parts = [colour_features(sample), layout_features(sample), orientation_features(shape_frames),
                 motion_features(small, flow), subject_features(small_rgb, small, flow), heading_features(flow),
                 silhouette_features(outline_frames, flow)]
        return np.concatenate(parts, axis=1).astype(np.float32)
