"""One small JPEG per clip: its middle frame, at the source's aspect ratio.

Files live in data_dir/thumbnails/<video_id>/<clip_index>.jpg; the catalog stores the path
relative to the data dir (see THUMBNAIL_DIR), so a data dir can be moved as a whole.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from model.atomic import atomic_write

THUMBNAIL_DIR = "thumbnails"  # under the data dir
THUMB_WIDTH = 160  # pixels; height follows the source's aspect ratio
THUMB_MAX_HEIGHT = 2 * THUMB_WIDTH  # pixels: a very tall source is scaled down to this height instead
JPEG_QUALITY = 80  # PIL quality: ~4 KB per thumbnail at 160x90


def relative_path(video_id: str, clip_index: int) -> str:
    """The catalog's `thumbnail` value: a path relative to the data dir."""
    return f"{THUMBNAIL_DIR}/{video_id}/{clip_index}.jpg"


def video_dir(data_dir: str | Path, video_id: str) -> Path:
    return Path(data_dir) / THUMBNAIL_DIR / video_id


def remove(data_dir: str | Path, video_id: str) -> None:
    shutil.rmtree(video_dir(data_dir, video_id), ignore_errors=True)


def thumb_size(width: int, height: int) -> tuple[int, int]:
    """(w, h) of a thumbnail for a source of width x height pixels: THUMB_WIDTH wide, unless that makes
    it taller than THUMB_MAX_HEIGHT (a 16 x 1024 source would give 160 x 10240)."""
    width, height = max(width, 1), max(height, 1)
    if THUMB_WIDTH * height <= THUMB_MAX_HEIGHT * width:
        return THUMB_WIDTH, max(2, round(THUMB_WIDTH * height / width))
    return max(2, round(THUMB_MAX_HEIGHT * width / height)), THUMB_MAX_HEIGHT


def write(data_dir: str | Path, video_id: str, clip_index: int, frame: np.ndarray, size: tuple[int, int]) -> str:
    """Save `frame` (H, W, 3 uint8) resized to `size` as this clip's thumbnail; returns its relative path."""
    from PIL import Image

    rel = relative_path(video_id, clip_index)
    path = Path(data_dir) / rel
    image = Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR)
    atomic_write(path, lambda tmp: image.save(tmp, format="JPEG", quality=JPEG_QUALITY))
    return rel
