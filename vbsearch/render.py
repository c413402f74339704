"""Drawing for the sample-archive family (vbsearch.samplefamily): shapes, textures, motions, backgrounds
and camera moves, each a module-level pool from a name to a function, so a new entry is one function and
one line. The truth of a scene is what these functions draw, so the tests check them on their own masks.

Coordinates: x to the right, y down, in pixels of the frame; angles in degrees, anticlockwise on screen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

SIZE_LIMITS = (0.12, 0.35)  # object size (diameter of its bounding circle), fraction of frame height
EDGE_PAD = 0.03  # free space kept between the object and the frame edge, fraction of frame height
CAMERA_MARGIN = 0.2  # extra canvas around the view when the camera moves, fraction of each side
POSITION_JITTER = 0.3  # px, standard deviation of the object's per-frame position noise
TILT = 15.0  # degrees, the largest random resting tilt of an object
SHADE = (0.3, 0.7)  # a texture's lighter shade blends this far to white; its darker one scales by this
MIN_CONTRAST = 90.0  # least RGB distance between the object's colour and the background's mean colour
BACKGROUND_TRIES = 8  # draws of a background before the best-contrasting one is kept
NOISE_FRAMES = 5  # distinct pixel-noise frames cycled through per video
SUBPIXEL = 4  # bits of sub-pixel precision for cv2.fillPoly

Points = np.ndarray  # (N, 2) float polygon in unit coordinates: centred, inside the unit circle


# ---------------------------------------------------------------------------------------------- shapes
def _ring_pts(r: float, cx: float = 0.0, cy: float = 0.0, ry: float | None = None, n: int = 72) -> Points:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + (ry if ry is not None else r) * np.sin(t)], 1)


def _regular(n: int, inner: float | None = None, r: float = 0.97) -> Points:
    k = 2 * n if inner else n
    angle = np.deg2rad(-90 + np.arange(k) * 360 / k)
    radius = np.where(np.arange(k) % 2, inner or r, r)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)


def _fit(pts: Sequence[Sequence[float]] | np.ndarray) -> Points:
    """Centre a polygon on its bounding box and scale it into the unit circle."""
    p = np.asarray(pts, dtype=np.float64)
    p = p - (p.max(0) + p.min(0)) / 2
    return p * (0.97 / np.linalg.norm(p, axis=1).max())


def _heart() -> Points:
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    return _fit(np.stack([16 * np.sin(t) ** 3,
                          -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))], 1))


# name -> polygons drawn in order, each (points, fill): fill False cuts a hole (ring, crescent).
SHAPES: dict[str, Callable[[], list[tuple[Points, bool]]]] = {
    "circle": lambda: [(_ring_pts(0.97), True)],
    "square": lambda: [(_fit([(-1, -1), (1, -1), (1, 1), (-1, 1)]), True)],
    "triangle": lambda: [(_regular(3), True)],
    "cross": lambda: [(_fit([(-1, -3), (1, -3), (1, -1), (3, -1), (3, 1), (1, 1), (1, 3), (-1, 3), (-1, 1),
                             (-3, 1), (-3, -1), (-1, -1)]), True)],
    "star": lambda: [(_regular(5, inner=0.42), True)],
    "hexagon": lambda: [(_regular(6), True)],
    "diamond": lambda: [(_fit([(0, -1), (0.62, 0), (0, 1), (-0.62, 0)]), True)],
    "heart": lambda: [(_heart(), True)],
    "ring": lambda: [(_ring_pts(0.97), True), (_ring_pts(0.55), False)],
    "arrow": lambda: [(_fit([(-1, -0.25), (0.25, -0.25), (0.25, -0.65), (1, 0), (0.25, 0.65), (0.25, 0.25),
                             (-1, 0.25)]), True)],
    "crescent": lambda: [(_ring_pts(0.97), True), (_ring_pts(0.8, 0.42, -0.18), False)],
    "pentagon": lambda: [(_regular(5), True)],
    "ellipse": lambda: [(_ring_pts(0.97, ry=0.5), True)],
    "rectangle": lambda: [(_fit([(-1, -0.5), (1, -0.5), (1, 0.5), (-1, 0.5)]), True)],
    # added for the test variants, after the system's choices were frozen (README)
    "octagon": lambda: [(_regular(8), True)],
    "trapezoid": lambda: [(_fit([(-0.55, -0.6), (0.55, -0.6), (1, 0.6), (-1, 0.6)]), True)],
    "kite": lambda: [(_fit([(0, -1), (0.6, -0.25), (0, 1), (-0.6, -0.25)]), True)],
    "semicircle": lambda: [(_fit(np.concatenate([_ring_pts(1.0, n=72)[:37], [[-1.0, 0.0]]])), True)],
}
ROUND_SHAPES = frozenset({"circle", "ring"})  # a spin shows only through their texture


def shape_mask(shape: str, side: int) -> np.ndarray:
    """The unrotated shape as an anti-aliased uint8 mask (0..255) filling side x side pixels."""
    mask = np.zeros((side, side), np.uint8)
    half = side / 2
    for pts, fill in SHAPES[shape]():
        fixed = np.round((pts * half + half) * (1 << SUBPIXEL)).astype(np.int32)
        cv2.fillPoly(mask, [fixed], 255 if fill else 0, lineType=cv2.LINE_AA, shift=SUBPIXEL)
    return mask


def blob_mask(side: int, rng: np.random.Generator) -> np.ndarray:
    """An irregular blob (no pool shape): the drifting distractor."""
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    r = 0.75 + 0.22 * np.convolve(np.tile(rng.uniform(-1, 1, 24), 3), np.ones(5) / 5, "same")[24:48]
    pts = np.stack([r * np.cos(t), r * np.sin(t)], 1) * side / 2 + side / 2
    mask = np.zeros((side, side), np.uint8)
    cv2.fillPoly(mask, [np.round(pts * (1 << SUBPIXEL)).astype(np.int32)], 255, cv2.LINE_AA, shift=SUBPIXEL)
    return mask


# -------------------------------------------------------------------------------------------- textures
def shades(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lighter and darker shade of a colour: the texture stays readable as that colour."""
    return rgb + (255 - rgb) * SHADE[0], rgb * SHADE[1]


def _other_shade(rgb: np.ndarray) -> np.ndarray:
    light, dark = shades(rgb)
    return dark if rgb.mean() > 110 else light


def _uv(side: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel grid rotated by a random angle, in units of the sprite side."""
    yy, xx = (np.mgrid[0:side, 0:side].astype(np.float32) + 0.5) / side - 0.5
    a = rng.uniform(0, np.pi)
    return np.cos(a) * xx + np.sin(a) * yy, -np.sin(a) * xx + np.cos(a) * yy


def _two_tone(pattern: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    return np.where(pattern[..., None], _other_shade(rgb), rgb).astype(np.float32)


def _solid(side: int, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One colour with faint shading across it, as if lit from one side."""
    u, v = _uv(side, rng)
    return (rgb[None, None] * (1.0 + 0.08 * u - 0.05 * (u**2 + v**2))[..., None]).astype(np.float32)


def _gradient(side: int, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    light, dark = shades(rgb)
    u, _ = _uv(side, rng)
    k = np.clip(u + 0.5, 0, 1)[..., None]
    mid = np.where(k < 0.5, light + (rgb - light) * 2 * k, rgb + (dark - rgb) * (2 * k - 1))
    return mid.astype(np.float32)


TEXTURES: dict[str, Callable[[int, np.ndarray, np.random.Generator], np.ndarray]] = {
    "solid": _solid,
    "stripes": lambda side, rgb, rng: _two_tone(_uv(side, rng)[0] * rng.uniform(4, 7) % 1 < 0.5, rgb),
    "checker": lambda side, rgb, rng: _two_tone(np.logical_xor(*(np.floor(c * 6 + 9) % 2 > 0
                                                                for c in _uv(side, rng))), rgb),
    "dots": lambda side, rgb, rng: _two_tone(np.hypot(*((c * 5 + 9) % 1 - 0.5 for c in _uv(side, rng))) < 0.28,
                                             rgb),
    "gradient": _gradient,
}


# --------------------------------------------------------------------------------------------- motions
@dataclass(frozen=True)
class Stage:
    h: int  # frame height, px
    w: int  # frame width, px
    size: tuple[float, float]  # the variant's object size range, px (diameter of the bounding circle)

    def free(self, size: float) -> tuple[float, float, float, float]:
        """x and y range of an object centre that keeps an object of `size` px inside the frame."""
        m = size / 2 + EDGE_PAD * self.h
        return m, self.w - m, m, self.h - m

    def limits(self) -> tuple[float, float]:
        """Global size limits, px: motions that change size use these, not the variant's range."""
        return SIZE_LIMITS[0] * self.h, SIZE_LIMITS[1] * self.h


@dataclass(frozen=True)
class Track:
    x: np.ndarray  # object centre per frame, px
    y: np.ndarray
    size: np.ndarray  # diameter per frame, px
    angle: np.ndarray  # rotation per frame, degrees


MotionFn = Callable[[np.ndarray, Stage, np.random.Generator], Track]  # (frame times in s, stage, rng)


def _track(t: np.ndarray, x, y, size, angle=0.0) -> Track:
    return Track(*(np.broadcast_to(np.asarray(v, np.float64), t.shape).copy() for v in (x, y, size, angle)))


def _spot(lo: float, hi: float, rng: np.random.Generator) -> float:
    return float(rng.uniform(lo, hi)) if hi > lo else (lo + hi) / 2


def _duration(t: np.ndarray) -> float:
    return float(t[-1] + (t[1] - t[0] if len(t) > 1 else 1.0))


def _translate(dx: float, dy: float) -> MotionFn:
    """Straight travel along (dx, dy) over 60-100 % of the free span: the speed varies with it."""
    norm = math.hypot(dx, dy)
    dx, dy = dx / norm, dy / norm

    def motion(t: np.ndarray, st: Stage, rng: np.random.Generator) -> Track:
        size = rng.uniform(*st.size)
        x0, x1, y0, y1 = st.free(size)
        reach = min((x1 - x0) / abs(dx) if dx else math.inf, (y1 - y0) / abs(dy) if dy else math.inf)
        length = rng.uniform(0.6, 1.0) * reach

        def start(lo: float, hi: float, d: float) -> float:
            off = _spot(0, (hi - lo) - abs(d) * length, rng)
            return lo + off if d >= 0 else hi - off

        sx, sy = start(x0, x1, dx), start(y0, y1, dy)
        p = t / _duration(t)
        return _track(t, sx + dx * length * p, sy + dy * length * p, size)

    return motion


def _spin(t, st, rng) -> Track:
    size = rng.uniform(*st.size)
    x0, x1, y0, y1 = st.free(size)
    drift = rng.choice([0.0, 1.0]) * rng.choice([-1, 1]) * rng.uniform(0.02, 0.05) * st.w * _duration(t)
    sx = _spot(x0 + max(0, -drift), x1 - max(0, drift), rng)
    speed = rng.uniform(60, 150) * rng.choice([-1, 1])  # deg/s; the sign is the direction of turning
    return _track(t, sx + drift * t / _duration(t), _spot(y0, y1, rng), size, speed * t)


def _resize(growing: bool) -> MotionFn:
    def motion(t, st, rng) -> Track:
        lo, hi = st.limits()
        factor = rng.uniform(2.0, min(3.0, hi / lo))
        small = rng.uniform(lo, hi / factor)
        x0, x1, y0, y1 = st.free(small * factor)
        p = t / _duration(t)
        size = small * factor ** (p if growing else 1 - p)
        return _track(t, _spot(x0, x1, rng), _spot(y0, y1, rng), size)

    return motion


def _bounce(t, st, rng) -> Track:
    size = rng.uniform(st.size[0], max(st.size[0], min(st.size[1], 0.28 * st.h)))
    x0, x1, top, floor = st.free(size)
    height = rng.uniform(0.55, 0.9) * (floor - top)
    hops = rng.uniform(0.7, 1.2)  # per second
    travel = rng.uniform(0.3, 0.7) * (x1 - x0) * rng.choice([-1, 1])
    sx = _spot(x0 + max(0, -travel), x1 - max(0, travel), rng)
    y = floor - height * np.abs(np.sin(np.pi * hops * t))
    return _track(t, sx + travel * t / _duration(t), y, size)


def _pulse(t, st, rng) -> Track:
    lo, hi = st.limits()
    depth, rate = rng.uniform(0.25, 0.35), rng.uniform(1.0, 2.0)  # relative amplitude, Hz
    size = rng.uniform(lo / (1 - depth), hi / (1 + depth))
    x0, x1, y0, y1 = st.free(size * (1 + depth))
    return _track(t, _spot(x0, x1, rng), _spot(y0, y1, rng),
                  size * (1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))))


def _orbit(t, st, rng) -> Track:
    size = rng.uniform(*st.size)
    x0, x1, y0, y1 = st.free(size)
    radius = min(rng.uniform(0.2, 0.32) * min(st.h, st.w), (x1 - x0) / 2, (y1 - y0) / 2)
    cx, cy = _spot(x0 + radius, x1 - radius, rng), _spot(y0 + radius, y1 - radius, rng)
    phase = rng.uniform(0, 2 * np.pi) + rng.choice([-1, 1]) * 2 * np.pi * t / rng.uniform(2.5, 5.0)
    return _track(t, cx + radius * np.cos(phase), cy + radius * np.sin(phase), size)


def _zigzag(t, st, rng) -> Track:
    size = rng.uniform(*st.size)
    x0, x1, y0, y1 = st.free(size)
    travel = rng.uniform(0.6, 1.0) * (x1 - x0) * rng.choice([-1, 1])
    sx = x0 if travel > 0 else x1
    amp = min(rng.uniform(0.12, 0.2) * st.h, (y1 - y0) / 2)
    cy = _spot(y0 + amp, y1 - amp, rng)
    u = t / rng.uniform(1.2, 2.4)
    tri = 2 * np.abs(2 * (u - np.floor(u + 0.5))) - 1
    return _track(t, sx + travel * t / _duration(t), cy + amp * tri, size)


def _fall(t, st, rng) -> Track:
    size = rng.uniform(*st.size)
    x0, x1, y0, y1 = st.free(size)
    top = y0 + rng.uniform(0, 0.1) * (y1 - y0)
    drop, dur = y1 - top, _duration(t)
    v0 = 0.05 * drop / dur
    g = 2 * (drop - v0 * dur) / dur**2
    return _track(t, _spot(x0, x1, rng), top + v0 * t + g * t**2 / 2, size)


def _sway(t, st, rng) -> Track:
    size = rng.uniform(*st.size)
    x0, x1, y0, y1 = st.free(size)
    amp = min(rng.uniform(0.1, 0.18) * st.w, (x1 - x0) / 2)
    swing = np.sin(2 * np.pi * rng.uniform(0.4, 0.8) * t + rng.uniform(0, 2 * np.pi))
    return _track(t, _spot(x0 + amp, x1 - amp, rng) + amp * swing, _spot(y0, y1, rng), size, 6 * swing)


def _wobble(t, st, rng) -> Track:
    """Tilts to and fro about its centre, in place (added after the freeze, for the test variants)."""
    size = rng.uniform(*st.size)
    x0, x1, y0, y1 = st.free(size)
    tilt = rng.uniform(20, 35) * np.sin(2 * np.pi * rng.uniform(0.8, 1.5) * t + rng.uniform(0, 2 * np.pi))
    return _track(t, _spot(x0, x1, rng), _spot(y0, y1, rng), size, tilt)


def _still(t, st, rng) -> Track:
    size = rng.uniform(*st.size)
    x0, x1, y0, y1 = st.free(size)
    return _track(t, _spot(x0, x1, rng), _spot(y0, y1, rng), size)


MOTIONS: dict[str, MotionFn] = {
    "left": _translate(-1, 0), "right": _translate(1, 0), "up": _translate(0, -1), "down": _translate(0, 1),
    "up-left": _translate(-1, -1), "up-right": _translate(1, -1),
    "down-left": _translate(-1, 1), "down-right": _translate(1, 1),
    "spin": _spin, "grow": _resize(True), "shrink": _resize(False), "bounce": _bounce, "pulse": _pulse,
    "orbit": _orbit, "zigzag": _zigzag, "fall": _fall, "sway": _sway, "still": _still, "wobble": _wobble,
}


# ----------------------------------------------------------------------------------------- backgrounds
def _noise(h: int, w: int, rng: np.random.Generator, cell: float, octaves: int = 3) -> np.ndarray:
    """Smooth value noise in [0, 1]: random grids upsampled by cubic interpolation, summed over octaves."""
    out, total = np.zeros((h, w), np.float32), 0.0
    for o in range(octaves):
        c = max(2.0, cell / 2**o)
        gh, gw = int(h / c) + 3, int(w / c) + 3
        grid = rng.random((gh, gw), dtype=np.float32)
        out += 0.5**o * cv2.resize(grid, (int(gw * c), int(gh * c)), interpolation=cv2.INTER_CUBIC)[:h, :w]
        total += 0.5**o
    return np.clip(out / total, 0, 1)


def _column(h: int, w: int, top, bottom) -> np.ndarray:
    """Vertical blend from colour `top` to colour `bottom`."""
    k = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.asarray(top, np.float32) * (1 - k) + np.asarray(bottom, np.float32) * k
    return np.broadcast_to(img, (h, w, 3)).copy()


def _tint(rng: np.random.Generator, rgb, spread: float = 0.1) -> np.ndarray:
    return np.asarray(rgb, np.float32) * rng.uniform(1 - spread, 1 + spread, 3).astype(np.float32)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:h, 0:w].astype(np.float32)


def _sky(h, w, rng):  # the classic: light blue, brighter towards the horizon
    return _column(h, w, _tint(rng, (82, 128, 176)), _tint(rng, (110, 170, 235)))


def _grass(h, w, rng):  # the classic: green with horizontal stripes, plus some noise
    y, _ = _grid(h, w)
    shade = 0.85 + 0.15 * np.sin(y / h * 40) + 0.1 * (_noise(h, w, rng, h / 8) - 0.5)
    return _tint(rng, (60, 130, 50)) * shade[..., None]


def _stars(img: np.ndarray, rng: np.random.Generator, per_px: float) -> np.ndarray:
    h, w = img.shape[:2]
    layer = np.zeros((h, w), np.float32)
    n = int(h * w * per_px)
    layer[rng.integers(0, h, n), rng.integers(0, w, n)] = rng.uniform(120, 255, n)
    layer = cv2.GaussianBlur(layer, (0, 0), 0.7) * 2.5
    return img + layer[..., None]


def _night(h, w, rng):  # the classic: dark navy with stars
    return _stars(_column(h, w, (15, 20, 50), (15, 20, 50)), rng, 1 / 700)


def _sand(h, w, rng):  # the classic: beige with a diagonal ripple
    y, x = _grid(h, w)
    return _tint(rng, (210, 185, 130), 0.05) * (0.9 + 0.1 * np.sin((x / w + y / h) * 30))[..., None]


def _clouds(h, w, rng):
    sky = _column(h, w, _tint(rng, (60, 115, 200)), _tint(rng, (150, 195, 240)))
    n = _noise(h, w, rng, h / 2.5, octaves=4)
    cover = np.clip((n - rng.uniform(0.45, 0.55)) / 0.15, 0, 1)[..., None] * 0.9
    return sky * (1 - cover) + np.float32(240) * cover


def _meadow(h, w, rng):
    blades = cv2.resize(rng.random((h // 12 + 2, w // 2 + 2), dtype=np.float32), (w, h))
    shade = 0.65 + 0.45 * _noise(h, w, rng, h / 4) + 0.25 * (blades - 0.5)
    return _tint(rng, (70, 135, 45)) * shade[..., None]


def _brick(h, w, rng):
    y, x = _grid(h, w)
    bh = h / rng.uniform(7, 11)
    bw = bh * rng.uniform(2.0, 2.6)
    row = np.floor(y / bh)
    xs = x + (row % 2) * bw / 2
    col = np.floor(xs / bw)
    tint = rng.uniform(0.8, 1.15, (int(row.max()) + 2, int(col.max()) + 2)).astype(np.float32)
    img = _tint(rng, (150, 68, 48)) * tint[row.astype(int), col.astype(int)][..., None]
    mortar = ((y % bh) < max(1.5, bh * 0.1)) | ((xs % bw) < max(1.5, bh * 0.1))
    img[mortar] = _tint(rng, (185, 180, 170), 0.05)
    return img * (0.9 + 0.2 * _noise(h, w, rng, 3))[..., None]


def _wood(h, w, rng):
    y, x = _grid(h, w)
    plank = h / rng.uniform(3, 6)
    grain = 0.5 + 0.5 * np.sin(2 * np.pi * (y / plank * rng.uniform(4, 7) + 2.5 * _noise(h, w, rng, h / 3)))
    img = _tint(rng, (150, 100, 60)) * (0.75 + 0.3 * grain)[..., None]
    img[(y % plank) < max(1.5, plank * 0.04)] *= 0.55
    return img


def _tiles(h, w, rng):
    y, x = _grid(h, w)
    side = h / rng.uniform(4, 7)
    a, b = _tint(rng, (205, 200, 185)), _tint(rng, (170, 160, 140))
    img = np.where(((np.floor(y / side) + np.floor(x / side)) % 2 > 0)[..., None], a, b)
    grout = ((y % side) < max(1.5, side * 0.05)) | ((x % side) < max(1.5, side * 0.05))
    img[grout] = (110, 105, 100)
    return img * (0.93 + 0.1 * _noise(h, w, rng, side / 2))[..., None]


def _starry_night(h, w, rng):
    return _stars(_column(h, w, _tint(rng, (5, 8, 25)), _tint(rng, (25, 30, 65))), rng, 1 / 250)


def _bokeh(h, w, rng):
    img = _column(h, w, _tint(rng, (40, 35, 45), 0.3), _tint(rng, (70, 60, 55), 0.3))
    layer = np.zeros_like(img)
    for _ in range(int(30 * w / max(h, 1) / 1.3)):
        r = int(rng.uniform(0.03, 0.09) * h) + 1
        warm = np.array([(255, 190, 120), (255, 230, 170), (200, 220, 255)][int(rng.integers(3))])
        light = (255 + (warm - 255) * rng.uniform(0, 0.6)) * rng.uniform(0.6, 1.0)  # pale lamps, no pool colour
        cv2.circle(layer, (int(rng.integers(0, w)), int(rng.integers(0, h))), r, light.tolist(), -1)
    layer = cv2.GaussianBlur(layer, (0, 0), 0.02 * h + 1)
    return img + 0.55 * layer


def _studio(h, w, rng):
    y, x = _grid(h, w)
    r2 = ((x - w / 2) / w) ** 2 + ((y - h / 2) / h) ** 2
    return np.float32(rng.uniform(120, 175)) * (1 - 0.9 * r2)[..., None].repeat(3, 2)


def _dunes(h, w, rng):
    y, x = _grid(h, w)
    img = _column(h, w, _tint(rng, (120, 170, 220)), _tint(rng, (200, 215, 230)))
    for k, level in enumerate(np.sort(rng.uniform(0.25, 0.75, 3))):
        edge = h * (level + 0.06 * np.sin(x[0] / w * rng.uniform(3, 8) + rng.uniform(0, 6)))
        sand = _tint(rng, (215, 175, 115), 0.06) * (0.8 + 0.1 * k)
        below = y > edge[None, :]
        lit = np.clip(1.1 - (y - edge[None, :]) / h, 0.75, 1.1)
        img[below] = (sand[None, :] * lit[below][:, None])
    return img


def _water(h, w, rng):
    y, x = _grid(h, w)
    base = _column(h, w, _tint(rng, (25, 80, 120)), _tint(rng, (20, 60, 100)))
    wobble = 0.3 * np.sin(2 * np.pi * x / (w * rng.uniform(0.15, 0.3))) + _noise(h, w, rng, h / 4)
    ripple = np.sin(2 * np.pi * (y / (h * rng.uniform(0.04, 0.08)) + wobble))
    return base * (0.85 + 0.15 * ripple)[..., None] + 60 * np.clip(ripple - 0.85, 0, 1)[..., None] / 0.15


def _room(h, w, rng):
    y, x = _grid(h, w)
    img = np.broadcast_to(_tint(rng, (200, 190, 165), 0.12), (h, w, 3)).copy()
    floor = int(h * rng.uniform(0.6, 0.72))
    img[floor:] = _wood(h - floor, w, rng)
    img[floor - max(2, h // 60): floor] = (90, 80, 70)
    wx0, wy0 = int(w * rng.uniform(0.05, 0.55)), int(h * rng.uniform(0.08, 0.18))
    wx1, wy1 = wx0 + int(w * rng.uniform(0.2, 0.35)), int(floor * rng.uniform(0.55, 0.75))
    img[wy0:wy1, wx0:wx1] = _column(wy1 - wy0, wx1 - wx0, (150, 190, 230), (210, 225, 235))
    frame = max(2, h // 80)
    cv2.rectangle(img, (wx0, wy0), (wx1, wy1), (235, 230, 220), frame)
    return img * (0.95 + 0.08 * _noise(h, w, rng, h / 3))[..., None]


def _forest(h, w, rng):  # added for the test variants: dark trunks over green undergrowth
    y, x = _grid(h, w)
    img = _column(h, w, _tint(rng, (70, 110, 60)), _tint(rng, (40, 70, 35))) * (0.8 + 0.3 * _noise(h, w, rng, h / 6))[..., None]
    for _ in range(int(rng.integers(5, 9))):
        cx, half = rng.uniform(0, w), rng.uniform(0.015, 0.04) * w
        img[:, max(0, int(cx - half)): int(cx + half)] = _tint(rng, (70, 50, 35), 0.15)
    return img


def _sunset(h, w, rng):  # added for the test variants: an orange-to-violet sky over a dark horizon
    y, x = _grid(h, w)
    img = _column(h, w, _tint(rng, (110, 70, 130)), _tint(rng, (245, 150, 70)))
    sun = ((x - w * rng.uniform(0.2, 0.8)) ** 2 + (y - h * 0.7) ** 2) < (0.08 * h) ** 2
    img[sun] = (255, 220, 150)
    img[int(h * rng.uniform(0.72, 0.82)):] = _tint(rng, (45, 35, 40))
    return img


@dataclass(frozen=True)
class Background:
    draw: Callable[[int, int, np.random.Generator], np.ndarray]  # (h, w, rng) -> float32 RGB image
    drift: tuple[float, float] = (0.0, 0.0)  # horizontal drift speed range, frame widths per second


BACKGROUNDS: dict[str, Background] = {
    "sky": Background(_sky), "grass": Background(_grass), "night": Background(_night), "sand": Background(_sand),
    "clouds": Background(_clouds, (0.015, 0.04)), "meadow": Background(_meadow), "brick": Background(_brick),
    "wood": Background(_wood), "tiles": Background(_tiles), "starry-night": Background(_starry_night),
    "bokeh": Background(_bokeh, (0.005, 0.02)), "studio": Background(_studio), "dunes": Background(_dunes),
    "water": Background(_water, (0.02, 0.05)), "room": Background(_room),
    "forest": Background(_forest), "sunset": Background(_sunset),
}


def contrast(rgb: np.ndarray, image: np.ndarray) -> float:
    """RGB distance between a colour and an image's mean colour."""
    return float(np.linalg.norm(np.asarray(rgb, np.float32) - image.reshape(-1, 3).mean(0)))


# -------------------------------------------------------------------------------------------- cameras
CameraPath = tuple[np.ndarray, np.ndarray, np.ndarray]  # per frame: offset (n, 2) px, zoom (n,), roll (n,) deg


def _static(n, fps, margin, rng) -> CameraPath:
    return np.zeros((n, 2)), np.ones(n), np.zeros(n)


def _pan(n, fps, margin, rng) -> CameraPath:
    a = rng.uniform(0, 2 * np.pi)
    d = np.array([math.cos(a), math.sin(a)])
    reach = 0.85 * min(margin[0] / max(abs(d[0]), 1e-6), margin[1] / max(abs(d[1]), 1e-6))
    p = np.linspace(-1, 1, n)[:, None]
    return p * reach * d, np.ones(n), np.zeros(n)


def _zoom(zoom_in: bool):
    """Zoom between the frame (zoom 1) and most of the canvas around it, so the object never leaves the view."""
    def camera(n, fps, margin, rng) -> CameraPath:
        p = np.linspace(0, 1, n) if zoom_in else np.linspace(1, 0, n)
        widest = rng.uniform(1 / (1 + 0.85 * CAMERA_MARGIN), 1 / (1 + 0.6 * CAMERA_MARGIN))
        return np.zeros((n, 2)), widest + (1 - widest) * p, np.zeros(n)

    return camera


def _shake(n, fps, margin, rng) -> CameraPath:
    k = max(3, int(fps / 3))
    window = np.hanning(k + 2)[1:-1]

    def smooth(m: int) -> np.ndarray:
        walk = np.stack([np.convolve(rng.normal(0, 1, n + k), window, "same")[k // 2: k // 2 + n]
                         for _ in range(m)], 1)
        return walk / max(walk.std(), 1e-6)

    reach = np.asarray(margin)
    offset = np.clip(smooth(2) * 0.12 * reach, -0.8 * reach, 0.8 * reach)
    return offset, np.full(n, 1.02), 0.6 * smooth(1)[:, 0]


CAMERAS: dict[str, Callable[[int, float, tuple[float, float], np.random.Generator], CameraPath]] = {
    "static": _static, "pan": _pan, "zoom-in": _zoom(True), "zoom-out": _zoom(False), "shake": _shake,
}


# ------------------------------------------------------------------------------------------- the scene
@dataclass(frozen=True)
class Look:
    """What one scene shows: the renderer's input, drawn by the caller from a variant's pools."""

    shape: str  # SHAPES key
    rgb: tuple[int, int, int]  # object colour after the per-scene jitter
    texture: str  # TEXTURES key
    motion: str  # MOTIONS key
    background: str  # BACKGROUNDS key, first choice: re-drawn from the caller's list if it lacks contrast
    camera: str  # CAMERAS key
    size: tuple[float, float]  # object size range, fraction of frame height (clipped to SIZE_LIMITS)
    clutter: int  # number of small static clutter items
    drifter: bool  # a smaller greyish blob drifts slowly behind the object


def _pyramid(sprite: np.ndarray) -> list[np.ndarray]:
    """The sprite at halving sizes, so a strongly shrunk object is drawn smooth, not aliased."""
    levels = [sprite]
    while levels[-1].shape[0] >= 16:
        side = levels[-1].shape[0] // 2
        levels.append(cv2.resize(levels[-1], (side, side), interpolation=cv2.INTER_AREA))
    return levels


def _blit(canvas: np.ndarray, levels: list[np.ndarray], cx: float, cy: float, size: float,
          angle: float) -> tuple[int, int, np.ndarray] | None:
    """Alpha-blend the RGBA sprite centred at (cx, cy), `size` px across, rotated; returns its placed alpha."""
    level = int(np.clip(math.floor(math.log2(max(levels[0].shape[0] / max(size, 1e-3), 1.0))), 0, len(levels) - 1))
    sprite = levels[level]
    side = sprite.shape[0]
    half = size / 2 + 2
    h, w = canvas.shape[:2]
    x0, y0 = max(int(cx - half), 0), max(int(cy - half), 0)
    x1, y1 = min(int(cx + half) + 2, w), min(int(cy + half) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return None
    m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, size / side)
    m[:, 2] += (cx - x0 - side / 2, cy - y0 - side / 2)
    patch = cv2.warpAffine(sprite, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = patch[..., 3:4].astype(np.float32) / 255
    roi = canvas[y0:y1, x0:x1]
    roi[:] = (roi + (patch[..., :3] - roi.astype(np.float32)) * alpha + 0.5).astype(np.uint8)
    return x0, y0, patch[..., 3]


class SceneRenderer:
    """One scene: background, clutter, distractor, object and camera, drawn frame by frame on demand.

    Construction draws every random choice (track, background, camera), so the truth is known before
    any frame is made and a video can be streamed to the encoder scene after scene.
    """

    def __init__(self, look: Look, hw: tuple[int, int], fps: float, n_frames: int, rng: np.random.Generator,
                 backgrounds: Sequence[str] = ()):
        h, w = self.hw = hw
        self.look, self.n, self.fps = look, n_frames, fps
        lo, hi = np.clip(look.size, *SIZE_LIMITS) * h
        self.track = MOTIONS[look.motion](np.arange(n_frames) / fps, Stage(h, w, (lo, hi)), rng)
        self.tilt = rng.uniform(-TILT, TILT)
        self.jitter = rng.normal(0, POSITION_JITTER, (n_frames, 2))
        margin = CAMERA_MARGIN if look.camera != "static" else 0.0
        ch, cw = self.canvas_hw = (2 * round(h * (1 + margin) / 2), 2 * round(w * (1 + margin) / 2))
        self.origin = ((cw - w) / 2, (ch - h) / 2)  # where the frame's (0, 0) lies on the canvas, camera at rest
        self.background, self.texture, self.offsets = self._backdrop(look, backgrounds, fps, rng)
        side = int(math.ceil(self.track.size.max())) + 1
        rgba = np.dstack([np.clip(TEXTURES[look.texture](side, np.float32(look.rgb), rng), 0, 255).astype(np.uint8),
                          shape_mask(look.shape, side)])
        self.levels = _pyramid(rgba)
        self.clutter = [self._clutter_item(rng) for _ in range(look.clutter)]
        self.drifter = self._drifter(fps, rng) if look.drifter else None
        self.camera = self._camera(fps, rng) if margin else None

    def _backdrop(self, look: Look, backgrounds: Sequence[str], fps: float, rng: np.random.Generator):
        """Draw the background (wide enough for its drift); re-draw another if it hides the object."""
        ch, cw = self.canvas_hw
        best = None
        for attempt in range(BACKGROUND_TRIES if backgrounds else 1):
            name = look.background if attempt == 0 else str(rng.choice(list(backgrounds)))
            speed = rng.uniform(*BACKGROUNDS[name].drift) * self.hw[1] / fps  # px per frame
            image = BACKGROUNDS[name].draw(ch, cw + int(math.ceil(speed * self.n)) + 1, rng)
            score = contrast(np.float32(look.rgb), image[:, :cw])
            if best is None or score > best[0]:
                best = (score, name, image, speed)
            if score >= MIN_CONTRAST:
                break
        _, name, image, speed = best
        image = np.clip(cv2.GaussianBlur(image, (0, 0), 0.6), 0, 255).astype(np.uint8)
        offsets = np.round(np.arange(self.n) * speed).astype(int)
        if rng.random() < 0.5:  # drift the other way
            offsets = offsets[-1] - offsets
        return name, image, offsets

    def _clutter_item(self, rng: np.random.Generator) -> tuple[str, tuple[int, int], int, tuple[float, ...]]:
        ch, cw = self.canvas_hw
        grey = rng.uniform(50, 210)
        colour = tuple(float(c) for c in np.clip(grey + rng.uniform(-15, 15, 3), 0, 255))
        size = max(2, int(rng.uniform(0.015, 0.04) * self.hw[0]))
        return str(rng.choice(["box", "dot"])), (int(rng.integers(0, cw)), int(rng.integers(0, ch))), size, colour

    def _drifter(self, fps: float, rng: np.random.Generator):
        """A smaller, greyish blob (never a pool colour at full saturation) drifting slowly."""
        h, w = self.hw
        side = max(6, int(rng.uniform(0.4, 0.6) * self.track.size.min()))
        grey = rng.uniform(95, 170)
        rgb = np.clip(grey + rng.uniform(-1, 1, 3) * rng.uniform(8, 22), 0, 255)
        sprite = np.dstack([np.broadcast_to(rgb.astype(np.uint8), (side, side, 3)), blob_mask(side, rng)])
        start = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h]) + self.origin
        a = rng.uniform(0, 2 * np.pi)
        velocity = rng.uniform(0.02, 0.05) * w / fps * np.array([math.cos(a), math.sin(a)])
        return _pyramid(np.ascontiguousarray(sprite)), start, velocity, side

    def _camera(self, fps: float, rng: np.random.Generator) -> np.ndarray:
        """Per frame 2x3 matrices from canvas to frame pixels: pan, zoom or shake the whole picture."""
        h, w = self.hw
        ch, cw = self.canvas_hw
        offset, zoom, roll = CAMERAS[self.look.camera](self.n, fps, ((cw - w) / 2, (ch - h) / 2), rng)
        r = np.deg2rad(roll)
        a = zoom[:, None, None] * np.stack([np.stack([np.cos(r), np.sin(r)], 1),
                                             np.stack([-np.sin(r), np.cos(r)], 1)], 1)
        centre = np.array([cw / 2, ch / 2]) + offset
        t = np.array([w / 2, h / 2]) - np.einsum("nij,nj->ni", a, centre)
        return np.concatenate([a, t[:, :, None]], 2)

    def facts(self) -> dict:
        """The scene's nuisances as truth: initial size and position, mean speed."""
        h, w = self.hw
        tr = self.track
        path = np.hypot(np.diff(tr.x), np.diff(tr.y)).sum()
        return {"size": round(float(tr.size[0] / h), 3),
                "position": [round(float(tr.x[0] / w), 3), round(float(tr.y[0] / h), 3)],
                "speed": round(float(path / h / max(self.n - 1, 1) * self.fps), 3)}  # frame heights per second

    def frames(self, masks: bool = False) -> Iterator:
        """RGB uint8 frames; with masks=True (frame, object alpha on the canvas) pairs (canvas = frame when
        the camera is static)."""
        h, w = self.hw
        ch, cw = self.canvas_hw
        tr, ox, oy = self.track, *self.origin
        for i in range(self.n):
            canvas = self.texture[:, self.offsets[i]: self.offsets[i] + cw].copy()
            for kind, (x, y), size, colour in self.clutter:
                if kind == "box":
                    cv2.rectangle(canvas, (x, y), (x + size, y + 2 * size), colour, -1)
                else:
                    cv2.circle(canvas, (x, y), size // 2 + 1, colour, -1, cv2.LINE_AA)
            if self.drifter is not None:
                levels, start, velocity, side = self.drifter
                _blit(canvas, levels, *(start + velocity * i), side, 0.0)
            placed = _blit(canvas, self.levels, tr.x[i] + ox + self.jitter[i, 0], tr.y[i] + oy + self.jitter[i, 1],
                           tr.size[i], self.tilt + tr.angle[i])
            frame = canvas if self.camera is None else cv2.warpAffine(
                canvas, self.camera[i], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            if not masks:
                yield frame
                continue
            mask = np.zeros((ch, cw), np.uint8)
            if placed is not None:
                x0, y0, alpha = placed
                mask[y0: y0 + alpha.shape[0], x0: x0 + alpha.shape[1]] = alpha
            yield frame, mask


def add_noise(frames: Iterable[np.ndarray], sigma: float, hw: tuple[int, int],
              rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Sensor-like pixel noise: a few noise frames made once, picked at random per frame (cheap)."""
    if sigma <= 0:
        yield from frames
        return
    bank = [rng.standard_normal((*hw, 3), dtype=np.float32) * sigma for _ in range(NOISE_FRAMES)]
    up = [np.clip(b, 0, 255).astype(np.uint8) for b in bank]
    down = [np.clip(-b, 0, 255).astype(np.uint8) for b in bank]
    for frame in frames:
        k = int(rng.integers(NOISE_FRAMES))
        yield cv2.subtract(cv2.add(frame, up[k]), down[k])
