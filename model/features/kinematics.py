"""How a thing moves over a clip, as a trajectory and as a fixed-length description.

A `Trajectory` is a short series of measurements of one moving thing, in physical units (frame widths and
seconds): here, the clip's subject followed outline to outline (model.features.subject). `kinematics_features`
describes it:

    net direction (8 soft bins, weighted by net speed), speed, straightness,
    oscillation along x and along y (swaying, bouncing) and how often each reverses,
    turning (orbiting: steady, signed) and its magnitude, acceleration (falling),
    growth rate (growing +, shrinking -), its oscillation and reversals (pulsing),
    rotation rate (spinning), its magnitude, and how much of the clip the thing is seen moving.

Each value is squashed by tanh at a physical scale, so a slow and a fast version of the same motion
differ in degree, not in kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.features.imagestats import per_clip_hist

DIR_BINS = 8  # directions, 45 degrees each, centred on right, down-right, down, ... (image y points down)
SPEED_SCALE = 0.1  # frame widths per second: crossing the frame in 10 s
RATE_SCALE = 0.15  # per second: growth rate of the linear size (a 2.5x growth over 6 s is 0.15)
PULSE_SCALE = 1.0  # per second: its swings (a +-30 % pulse at 1 Hz swings at 1.9; a ragged outline at ~0.2)
TURN_SCALE = 1.0  # radians per second: turning of the heading, and rotation of the thing itself
NOISE_SPEED = 0.03  # frame widths per second a still thing seems to move (a jittery camera, a ragged outline)
KINEMATICS_DIM = DIR_BINS + 2 + 4 + 2 + 2 + 3 + 2 + 2


@dataclass(frozen=True)
class Trajectory:
    """One thing's motion in each of P steps of each of B clips."""

    velocity: np.ndarray  # (B, P, 2) frame widths per second, (x right, y down)
    growth: np.ndarray  # (B, P) per second: d log(linear size) / dt
    rotation: np.ndarray  # (B, P) radians per second, positive clockwise on screen
    active: np.ndarray  # (B, P) bool: the thing was measured (and moving, for flow) in that step
    step_s: float  # seconds between steps


def stack_trajectories(parts: list[Trajectory]) -> Trajectory:
    """One trajectory of B clips from B trajectories of one clip each (same steps)."""
    return Trajectory(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("velocity", "growth", "rotation",
                                                                                  "active")),
                      parts[0].step_s)


def direction_histogram(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, N, 2) vectors, (B, N) weights -> (B, DIR_BINS): weight per direction, soft between the two nearest
    bins so a direction on a bin edge does not flip between words."""
    b = vectors.shape[0]
    pos = (np.arctan2(vectors[..., 1], vectors[..., 0]) % (2 * np.pi)) / (2 * np.pi) * DIR_BINS
    lo = np.floor(pos).astype(np.int64) % DIR_BINS
    frac = pos - np.floor(pos)
    return (per_clip_hist(lo.reshape(b, -1), (weights * (1 - frac)).reshape(b, -1), DIR_BINS)
            + per_clip_hist(((lo + 1) % DIR_BINS).reshape(b, -1), (weights * frac).reshape(b, -1), DIR_BINS))


def _reversals(x: np.ndarray, active: np.ndarray, floor: float) -> np.ndarray:
    """(B, P) -> (B,) share of consecutive measured steps whose values (beyond +-floor) change sign."""
    s = np.where(np.abs(x) > floor, np.sign(x), 0.0)
    both = active[:, 1:] & active[:, :-1] & (s[:, 1:] != 0) & (s[:, :-1] != 0)
    flips = (s[:, 1:] * s[:, :-1] < 0) & both
    return flips.sum(1) / np.maximum(both.sum(1), 1)


def _mean(x: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Mean over the measured steps (axis 1), 0 where none was measured."""
    a = active.reshape(active.shape + (1,) * (x.ndim - active.ndim))
    return (x * a).sum(1) / np.maximum(a.sum(1), 1)


def kinematics_features(tr: Trajectory) -> np.ndarray:
    """(B, KINEMATICS_DIM), norm about 1 (see the module doc)."""
    v, act = tr.velocity, tr.active
    speed = np.hypot(v[..., 0], v[..., 1])
    mean_v = _mean(v, act)
    mean_speed = _mean(speed, act)
    net = np.hypot(mean_v[:, 0], mean_v[:, 1])
    seen = act.mean(1)
    heading = direction_histogram(mean_v[:, None], np.tanh(net / SPEED_SCALE)[:, None])
    straight = net / np.maximum(mean_speed, 1e-9) * (mean_speed > 2 * NOISE_SPEED)
    osc = np.stack([_mean(np.abs(v[..., k] - mean_v[:, None, k]), act) for k in (0, 1)], 1)
    flips = np.stack([_reversals(v[..., k], act, NOISE_SPEED) for k in (0, 1)], 1)
    # the heading's turn between successive steps where the thing moves
    ang = np.arctan2(v[..., 1], v[..., 0])
    turn = np.angle(np.exp(1j * (ang[:, 1:] - ang[:, :-1]))) / tr.step_s
    moving = (speed > 2 * NOISE_SPEED) & act
    both = moving[:, 1:] & moving[:, :-1]
    turn_signed = _mean(turn, both)
    turn_abs = _mean(np.abs(turn), both)
    # acceleration: least-squares slope of speed, and of the downward velocity, over the clip
    tt = (np.arange(v.shape[1]) - (v.shape[1] - 1) / 2) * tr.step_s
    tc = act * (tt[None] - _mean(np.broadcast_to(tt, act.shape), act)[:, None])
    var = np.maximum((tc**2).sum(1), 1e-9)
    accel = (tc * speed).sum(1) / var
    fall = (tc * v[..., 1]).sum(1) / var
    growth = _mean(tr.growth, act)
    growth_osc = _mean(np.abs(tr.growth - growth[:, None]), act)
    rotation = _mean(tr.rotation, act)
    t = np.tanh
    parts = [
        heading,
        t(mean_speed / SPEED_SCALE)[:, None], straight[:, None],
        t(osc / SPEED_SCALE), flips,
        t(turn_signed / TURN_SCALE)[:, None], t(turn_abs / TURN_SCALE)[:, None],
        t(accel / SPEED_SCALE)[:, None], t(fall / SPEED_SCALE)[:, None],
        t(growth / RATE_SCALE)[:, None], t(growth_osc / PULSE_SCALE)[:, None],
        _reversals(tr.growth, act, 0.3 * PULSE_SCALE)[:, None],
        t(rotation / TURN_SCALE)[:, None], t(_mean(np.abs(tr.rotation), act) / TURN_SCALE)[:, None],
        seen[:, None], 1 - seen[:, None],
    ]
    return np.concatenate(parts, 1) / np.sqrt(4)
