"""Clip feature extractors: one small interface, chosen by name (`--features`).

A clip is 30 RGB frames sampled at 20 fps (1.5 s), decoded at the extractor's
`input_size`. An extractor turns a batch of clips into one vector per clip:

    extractor = create_extractor("colormotion")
    feats = extractor(clips)  # (B, T, H, W, 3) uint8 -> (B, extractor.dim) float32

`groups` names contiguous slices of the vector (e.g. colour / layout / shape /
motion) so the visual vocabulary can quantise each group on its own; an
extractor without meaningful parts has a single group covering all dims.

Nothing here knows about files on disk beyond loading weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

EXTRACTORS = ("s3d", "colormotion", "objectflow")
SAMPLE_FPS = 20  # frames per second every clip is sampled at (indexer/decode.py)
CLIP_FRAMES = 30  # frames per clip: 1.5 s


class ClipFeatureExtractor(ABC):
    name: str  # registry name, stored in the catalog with every video
    dim: int  # length of one clip's feature vector
    groups: dict[str, tuple[int, int]]  # group name -> [start, end) dims; covers 0..dim in order
    input_size: tuple[int, int]  # (width, height) frames are decoded at
    batch_size: int  # clips per call that fits the device comfortably

    @abstractmethod
    def __call__(self, clips: np.ndarray, x_scale: float = 1.0) -> np.ndarray:
        """(B, T, H, W, 3) uint8 RGB clips -> (B, dim) float32 features. `x_scale`: how much wider a decoded
        pixel is in the source picture (decoding to `input_size` may change the aspect); extractors that
        measure outlines or directions use it, the others ignore it."""

    def _in_batches(self, clips: np.ndarray, batch: Callable[..., np.ndarray], *args: object) -> np.ndarray:
        """`batch(clips[i:i + batch_size], *args)` over the clips, stacked; (0, dim) for no clips."""
        out = [batch(clips[i: i + self.batch_size], *args) for i in range(0, len(clips), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def group_slices(dims: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Group name -> its [start, end) dims, the groups laid out in order."""
    out, start = {}, 0
    for name, n in dims.items():
        out[name] = (start, start + n)
        start += n
    return out


def feature_groups(name: str) -> dict[str, tuple[int, int]]:
    """An extractor's named dimension groups, without building it (no weights needed)."""
    if name == "colormotion":
        from model.features.colormotion import ColorMotion

        return dict(ColorMotion.groups)
    if name == "objectflow":
        from model.features.objectflow import ObjectFlow

        return dict(ObjectFlow.groups)
    if name == "s3d":
        from model.features.s3d import S3DExtractor

        return dict(S3DExtractor.groups)
    raise ValueError(f"unknown feature extractor {name!r} (known: {', '.join(EXTRACTORS)})")


# Readable names of the extractors' feature groups (and the vocabulary's), for "why it matched" lines.
GROUP_LABELS = {
    "colour": "colour", "object_colour": "colour",  # colormotion's frame colours, objectflow's object's
    "shape": "shape", "object_shape": "shape", "silhouette": "shape",
    "motion": "motion", "object_motion": "motion", "flow_hist": "motion", "heading": "motion",
    "layout": "layout", "scene": "scene",
    "subject": "moving subject",  # colormotion: colour and edges where things move
    "s3d": "appearance and motion", "all": "appearance and motion",  # S3D's vector; paper mode's one codebook
}


def group_label(name: str) -> str:
    """A feature group's readable label: "object_colour" -> "colour", "flow_hist" -> "motion", an S3D
    subspace ("sub0", model.vocab.SUBSPACE_PREFIX) -> "appearance and motion"; unknown names as written,
    underscores as spaces."""
    if name in GROUP_LABELS:
        return GROUP_LABELS[name]
    if name.startswith("sub") and name[3:].isdigit():
        return "appearance and motion"  # one slice of a single-group vector (S3D): a mix of everything
    return name.replace("_", " ")


def create_extractor(name: str, *, device: str = "cpu", s3d_weights: str | Path | None = None) -> ClipFeatureExtractor:
    """Build the extractor `name`; `device` and `s3d_weights` matter only for s3d."""
    if name == "colormotion":
        from model.features.colormotion import ColorMotion

        return ColorMotion()
    if name == "objectflow":
        from model.features.objectflow import ObjectFlow

        return ObjectFlow()
    if name == "s3d":
        from model.features.s3d import S3DExtractor

        return S3DExtractor(weights_path=s3d_weights, device=device)
    raise ValueError(f"unknown feature extractor {name!r} (known: {', '.join(EXTRACTORS)})")
