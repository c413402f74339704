"""The visual stage of ingest: decode a video into clips, extract clip features, write thumbnails.

Catalog schema written by ingest (see indexer/catalog.py for the files and atomic writes):

`videos` (one row per video; written last, so its presence means "complete")
    video_id      str      content id: blake2b of size + first and last MiB (indexer/discover.py)
    path          str      absolute path of the file when it was indexed
    size          int64    bytes
    mtime         float64  modification time, seconds since the epoch
    duration      float64  seconds, as decoded (end of the last frame); clips cover [0, duration)
    fps           float64  the container's average frame rate (clips always sample at 20 fps)
    width         int64    source frame width, pixels
    height        int64    source frame height, pixels
    has_audio     bool     the container has an audio stream
    codec         str      video codec, e.g. h264
    timecode      str      the file's own start timecode, e.g. 10:00:00;00 (';' drop-frame); "" when none
    decoder       str      "decord" or "pyav": which decoder delivered the clips
    features      str      feature extractor name (model/features), e.g. objectflow
    feature_dim   int64    length of each clip's feature vector
    feature_groups str     JSON {group: [start, stop)} of the extractor's named dimension groups
    n_clips       int64    rows in `clips` for this video
    indexed_at    float64  when the row was written, seconds since the epoch

`clips` (one row per 1.5 s clip, clip_index 0..n_clips-1 in time order)
    video_id      str
    clip_index    int32    clip i spans [1.5 i, 1.5 (i+1)); the last may be a padded tail clip
    start         float64  seconds from the first frame
    end           float64  seconds; min(start + 1.5, duration)
    feature       list[f32] the extractor's clip feature, feature_dim long
    thumbnail     str      JPEG of the clip's middle frame, relative to the data dir

Tail rule and sampling: indexer/decode.py. Errors are the catalog's `errors` table
(path, stage, error, time), written by the runner (indexer/run.py).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from indexer import thumbnails
from indexer.decode import CHUNK_CLIPS, CLIP_SECONDS, ClipReader, DecodeOptions
from indexer.pipeline import FileJob, StageTimer, prefetch
from model.features import ClipFeatureExtractor

log = logging.getLogger(__name__)

TRUNCATED_FRACTION = 0.9  # decoded duration below this share of the container's: warn (truncated file?)


@dataclass(frozen=True)
class IngestOptions:
    decoder: str = "auto"  # auto (decord, PyAV fallback) | decord | pyav
    chunk_clips: int = CHUNK_CLIPS  # clips decoded per batch; bounds memory
    thumbnails: bool = True  # write one JPEG per clip
    progress: bool = True  # a per-file progress bar (tqdm hides it when stderr is not a terminal)


def clips_frame(video_id: str, starts: np.ndarray, ends: np.ndarray, features: np.ndarray,
                thumbs: list[str | None]) -> pl.DataFrame:
    n, dim = features.shape
    return pl.DataFrame(
        {
            "video_id": [video_id] * n,
            "clip_index": pl.Series(np.arange(n), dtype=pl.Int32),
            "start": pl.Series(starts, dtype=pl.Float64),
            "end": pl.Series(ends, dtype=pl.Float64),
            "feature": pl.Series(features.astype(np.float32)).cast(pl.List(pl.Float32)),
            "thumbnail": pl.Series(thumbs, dtype=pl.String),
        }
    )


class VisualStage:
    """Decode -> clip features + thumbnails -> job.tables["clips"] and the visual columns of job.row."""

    name = "visual"

    def __init__(self, extractor: ClipFeatureExtractor, data_dir: str | Path, options: IngestOptions = IngestOptions()):
        self.extractor = extractor
        self.data_dir = Path(data_dir)
        self.options = options

    def __call__(self, job: FileJob, timer: StageTimer) -> None:
        info, ex = job.info, self.extractor
        width, height = ex.input_size
        reader = ClipReader(info.path, DecodeOptions(width, height, self.options.chunk_clips, self.options.decoder))
        tsize = thumbnails.thumb_size(info.width, info.height)
        # the source's aspect over the decoded one: outlines are measured in the picture's own proportions
        x_scale = (info.width / info.height) / (width / height) if info.width > 0 and info.height > 0 else 1.0
        if self.options.thumbnails:
            thumbnails.remove(self.data_dir, info.video_id)  # stale ones from an older version of the file
        feats, starts, ends, thumbs = [], [], [], []
        bar = tqdm(total=max(1, round(info.duration / CLIP_SECONDS)), unit="clip", desc=info.path.name[:30],
                   leave=False, position=1, disable=None if self.options.progress else True)
        with bar:
            for batch in prefetch(reader, timer, "decode"):
                with timer.time("features"):
                    feats.append(ex(batch.frames, x_scale=x_scale))
                if self.options.thumbnails:
                    with timer.time("thumbnails"):
                        for j in range(len(batch)):
                            middle = batch.frames[j, batch.valid[j] // 2]
                            thumbs.append(thumbnails.write(self.data_dir, info.video_id, batch.first_index + j, middle, tsize))
                else:
                    thumbs.extend([None] * len(batch))
                starts.append(batch.starts)
                ends.append(batch.ends)
                bar.update(len(batch))
        features = np.concatenate(feats)
        if features.shape[1] != ex.dim:
            raise RuntimeError(f"extractor {ex.name} returned {features.shape[1]} dims, expected {ex.dim}")
        duration = float(reader.duration)
        if info.duration > 0 and duration < TRUNCATED_FRACTION * info.duration - CLIP_SECONDS:
            log.warning("%s: decoded %.1f s of the %.1f s the container declares (truncated or damaged?)",
                        info.path, duration, info.duration)
        job.tables["clips"] = clips_frame(info.video_id, np.concatenate(starts), np.concatenate(ends), features, thumbs)
        job.row.update(
            duration=duration, decoder=reader.decoder, features=ex.name, feature_dim=int(ex.dim),
            feature_groups=groups_json(ex.groups), n_clips=len(features),
        )


def groups_json(groups: dict[str, tuple[int, int]]) -> str:
    """The catalog's `feature_groups` value: JSON {group: [start, stop)} in the extractor's order."""
    return json.dumps({k: list(v) for k, v in groups.items()})


def video_row(job: FileJob) -> dict:
    """The complete `videos` row: the probe's facts, then what the stages found (they win on overlap)."""
    info = job.info
    row = {
        "video_id": info.video_id, "path": str(info.path), "size": int(info.size), "mtime": float(info.mtime),
        "duration": float(info.duration), "fps": float(info.fps), "width": int(info.width),
        "height": int(info.height), "has_audio": bool(info.has_audio), "codec": info.codec,
        "timecode": info.timecode,
    }
    row.update(job.row)
    row["indexed_at"] = time.time()
    return row
