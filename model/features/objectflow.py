"""`objectflow`: a weights-free clip descriptor of what footage shows, from optical flow and image
statistics (OpenCV and numpy; no learned weights).

Groups (one visual word each in the factored vocabulary; each group's norm about 1):
- scene (157): where the footage is: the frame's colours over perceptual bins (69, model.features.subject),
  opponent colour on a 4x4 grid (48) and edge-orientation histograms of the frame and its quadrants (40).
- object_colour (69): the subject's colours, same bins (the subject: model.features.subject).
- object_shape (13): the subject's outline, invariant to its size, place and rotation.
- object_motion (25): the subject's own motion relative to the scene, from its outline frame to frame:
  direction, speed, bouncing, swaying, orbiting, falling, growing, shrinking, pulsing, spinning
  (model.features.kinematics).
- flow_hist (25): HOF and MBH histograms of the motion relative to the scene (the descriptors of dense
  trajectories, Wang & Schmid 2013; model.features.opticalflow).

Why these five, measured with the narration lexicon alone on two sample-archive variants (no training
noise; README): without the subject's colour, outline or motion, R@10 fell by 0.07-0.24; the scene as three
groups (colour, layout, edges), the camera's motion and the moving region's flow kinematics as groups of their
own each added nothing or cost up to 0.07: a word of the background, or of the camera, met by chance in
narrated windows, links to the narration's words as strongly as the subject's own. One scene word keeps
where the footage is without three chances of such noise.

Nothing is tuned to a corpus: bins are uniform, scales physical (shares of the frame, frame widths per second,
rates per second).
"""

from __future__ import annotations

import numpy as np

from model.features import SAMPLE_FPS, ClipFeatureExtractor, group_slices
from model.features.imagestats import LAYOUT_DIM, ORIENT_DIM, layout_features, luma, orientation_features
from model.features.kinematics import KINEMATICS_DIM, kinematics_features, stack_trajectories
from model.features.opticalflow import FLOW_HIST_DIM, PAIR_EVERY, clip_motion, flow_histograms
from model.features.subject import COLOUR_DIM, SHAPE_DIM, colour_histogram, describe_subject

INPUT_SIZE = (160, 120)  # (width, height) clips are decoded at
BATCH_SIZE = 16  # clips per call
COLOUR_FRAME_STEP = 3  # every 3rd frame for the frame's colours and layout
COLOUR_PIXEL_STEP = 2  # and every 2nd pixel each way

GROUP_DIMS = {
    "scene": COLOUR_DIM + LAYOUT_DIM + ORIENT_DIM,
    "object_colour": COLOUR_DIM,
    "object_shape": SHAPE_DIM,
    "object_motion": KINEMATICS_DIM,
    "flow_hist": FLOW_HIST_DIM,
}


class ObjectFlow(ClipFeatureExtractor):
    name = "objectflow"
    dim = sum(GROUP_DIMS.values())
    groups = group_slices(GROUP_DIMS)
    input_size = INPUT_SIZE
    batch_size = BATCH_SIZE

    def __call__(self, clips: np.ndarray, x_scale: float = 1.0) -> np.ndarray:
        """`x_scale`: how much wider than decoded a pixel is in the source (its aspect was changed by the
        resize to INPUT_SIZE); outlines and motions are measured in the source's proportions."""
        if clips.ndim != 5 or clips.shape[-1] != 3 or clips.shape[1] < 6:
            raise ValueError(f"expected (B, T>=6, H, W, 3) clips, got shape {clips.shape}")
        return self._in_batches(clips, self._batch, x_scale)

    def _batch(self, clips: np.ndarray, x_scale: float) -> np.ndarray:
        b, t = clips.shape[:2]
        sample = clips[:, ::COLOUR_FRAME_STEP, ::COLOUR_PIXEL_STEP, ::COLOUR_PIXEL_STEP]
        colour = np.stack([colour_histogram(s.reshape(-1, 3)) for s in sample])
        edges = orientation_features(luma(clips[:, [0, t // 2, t - 1]].astype(np.float32), 255.0))
        motion = clip_motion(clips)
        subjects = [describe_subject(clips[i, motion.pairs], motion.moving[i], motion.residual[i], motion.camera[i],
                                     x_scale, PAIR_EVERY / SAMPLE_FPS) for i in range(b)]
        scene = np.concatenate([colour, layout_features(sample), edges], axis=1) / np.sqrt(3)  # three parts of norm ~1
        parts = [scene, np.stack([s.colour for s in subjects]),
                 np.stack([s.shape for s in subjects]), kinematics_features(stack_trajectories([s.trajectory for s in subjects])),
                 flow_histograms(motion)]
        return np.concatenate(parts, axis=1).astype(np.float32)
