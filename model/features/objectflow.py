"""`objectflow`: a weights-free clip descriptor of what footage shows, from optical flow and image
statistics (OpenCV and numpy; no learned weights).

Groups (one visual word each in the factored vocabulary; each group's norm about 1):
- colour (69): the frame's colours over perceptual bins (model.features.subject).
- layout (48): opponent colour on a 4x4 grid.
- edges (40): edge-orientation histograms of the frame and its quadrants.
- object_colour (69): the subject's colours, same bins (the subject: model.features.subject).
- object_shape (13): the subject's outline, invariant to its size, place and rotation.
- object_motion (25): the subject's own motion, from its outline frame to frame: direction, speed,
  bouncing, swaying, orbiting, falling, growing, shrinking, pulsing, spinning (model.features.kinematics).
- region_motion (25): the same description of the moving region's residual optical flow (affine fit).
- camera (12): pan, zoom, roll and shake of the camera (model.features.opticalflow).
- flow_hist (25): HOF and MBH histograms of the motion relative to the scene (dense trajectories' descriptors).

The whole-frame groups say where the footage is; the subject's say what is in it and what it does, which
is what a query names. Nothing is tuned to a corpus: bins are uniform, scales physical (shares of the frame,
frame widths per second, rates per second).
"""

from __future__ import annotations

import numpy as np

from model.features import ClipFeatureExtractor
from model.features.imagestats import LAYOUT_DIM, ORIENT_DIM, layout_features, luma, orientation_features
from model.features.kinematics import KINEMATICS_DIM, kinematics_features, stack_trajectories
from model.features.opticalflow import (
    CAMERA_DIM,
    FLOW_HIST_DIM,
    camera_features,
    clip_motion,
    flow_histograms,
    trajectory,
)
from model.features.subject import COLOUR_DIM, SHAPE_DIM, colour_histogram, describe_subject

INPUT_SIZE = (160, 120)  # (width, height) clips are decoded at
BATCH_SIZE = 16  # clips per call
COLOUR_FRAME_STEP = 3  # every 3rd frame for the frame's colours and layout
COLOUR_PIXEL_STEP = 2  # and every 2nd pixel each way

GROUP_DIMS = {
    "colour": COLOUR_DIM,
    "layout": LAYOUT_DIM,
    "edges": ORIENT_DIM,
    "object_colour": COLOUR_DIM,
    "object_shape": SHAPE_DIM,
    "object_motion": KINEMATICS_DIM,
    "region_motion": KINEMATICS_DIM,
    "camera": CAMERA_DIM,
    "flow_hist": FLOW_HIST_DIM,
}


def _group_slices() -> dict[str, tuple[int, int]]:
    out, start = {}, 0
    for name, n in GROUP_DIMS.items():
        out[name] = (start, start + n)
        start += n
    return out


class ObjectFlow(ClipFeatureExtractor):
    name = "objectflow"
    dim = sum(GROUP_DIMS.values())
    groups = _group_slices()
    input_size = INPUT_SIZE
    batch_size = BATCH_SIZE

    def __call__(self, clips: np.ndarray, x_scale: float = 1.0) -> np.ndarray:
        """`x_scale`: how much wider than decoded a pixel is in the source (its aspect was changed by the
        resize to INPUT_SIZE); outlines and motions are measured in the source's proportions."""
        if clips.ndim != 5 or clips.shape[-1] != 3 or clips.shape[1] < 6:
            raise ValueError(f"expected (B, T>=6, H, W, 3) clips, got shape {clips.shape}")
        out = [self._batch(clips[i: i + self.batch_size], x_scale) for i in range(0, len(clips), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def _batch(self, clips: np.ndarray, x_scale: float) -> np.ndarray:
        b, t = clips.shape[:2]
        sample = clips[:, ::COLOUR_FRAME_STEP, ::COLOUR_PIXEL_STEP, ::COLOUR_PIXEL_STEP]
        colour = np.stack([colour_histogram(s.reshape(-1, 3)) for s in sample])
        edges = orientation_features(luma(clips[:, [0, t // 2, t - 1]].astype(np.float32), 255.0))
        motion = clip_motion(clips)
        region = trajectory(motion)
        subjects = [describe_subject(clips[i, motion.pairs], motion.moving[i], motion.residual[i], motion.camera[i],
                                     x_scale, region.step_s)
                    for i in range(b)]
        own = stack_trajectories([s.trajectory for s in subjects])
        parts = [colour, layout_features(sample), edges, np.stack([s.colour for s in subjects]),
                 np.stack([s.shape for s in subjects]), kinematics_features(own), kinematics_features(region),
                 camera_features(motion.camera, motion.residual.shape[3]), flow_histograms(motion)]
        return np.concatenate(parts, axis=1).astype(np.float32)
