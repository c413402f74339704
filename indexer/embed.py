"""Embed catalogued videos into the vector store, incrementally.

For each complete video in the catalog: visual tokens from the vocabulary, segments
(indexer/segments.py), a "video" vector per segment (the joint encoder on its visual
tokens), a "text" vector where someone speaks (the encoder on the transcript), and its
visual words as the sparse "visual" vector.

A video's points carry the model id and the catalog row's `indexed_at` stamp; a video is
(re-)embedded when either differs from the store's, so re-running changes nothing, a
re-ingested file is re-embedded, and a new model re-embeds everything. Points of videos
that left the catalog are deleted. Each video's old points are deleted before the new
ones are written: a crash in between leaves the video absent, and the next run embeds it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from indexer.catalog import Catalog
from indexer.segments import Segment, make_segments
from search.store import SegmentStore, StorePoint

log = logging.getLogger(__name__)

STAMP_FIELDS = ("model_id", "catalog_stamp")


@dataclass(frozen=True)
class EmbedSummary:
    embedded: int  # videos (re-)embedded
    unchanged: int  # videos already up to date
    removed: int  # videos whose points were deleted (no longer catalogued)
    segments: int  # points written
    seconds: float


def video_tokens(vocab, clips: pl.DataFrame) -> np.ndarray:
    """(n_clips, tokens_per_clip) visual tokens in clip order."""
    features = np.asarray(clips["feature"].to_list(), dtype=np.float32)
    return vocab.tokenize(features)


def _segment_points(video: dict, clips: pl.DataFrame, sentences: pl.DataFrame, tokens: np.ndarray,
                    inference, model_id: str) -> list[StorePoint]:
    position = {int(c): i for i, c in enumerate(clips["clip_index"].to_list())}
    spoken = [(float(s), float(e), str(t)) for s, e, t in
              zip(sentences["start"], sentences["end"], sentences["text"], strict=False)] if sentences.height else []
    segments: list[Segment] = make_segments(clips["start"].to_numpy(), clips["end"].to_numpy(),
                                            clips["clip_index"].to_numpy(), spoken)
    if not segments:
        return []
    seg_tokens = [tokens[[position[c] for c in seg.clip_indices]] for seg in segments]
    video_vecs = inference.encode_video(seg_tokens)
    speech = [i for i, seg in enumerate(segments) if seg.text]
    text_vecs = inference.encode_text([segments[i].text for i in speech]) if speech else np.zeros((0, 0))
    text_of = dict(zip(speech, text_vecs, strict=False))
    thumbs = clips["thumbnail"].to_list() if "thumbnail" in clips.columns else [None] * clips.height
    points = []
    for i, (seg, toks) in enumerate(zip(segments, seg_tokens, strict=False)):
        vectors = {"video": video_vecs[i].tolist()}
        if i in text_of:
            vectors["text"] = text_of[i].tolist()
        middle = seg.clip_indices[len(seg.clip_indices) // 2]
        thumb = thumbs[position[middle]]
        points.append(StorePoint(video["video_id"], round(seg.start, 3), vectors, {
            "path": video["path"],
            "end": round(seg.end, 3),
            "duration": round(seg.end - seg.start, 3),
            "text": seg.text,
            "kind": seg.kind,
            "thumbnail": thumb,  # relative to the data dir, so a moved data dir keeps working
            "tokens": toks.reshape(-1).tolist(),
            "tokens_per_clip": int(toks.shape[1]),
            "fps": video.get("fps"),
            "timecode": video.get("timecode") or None,  # absent from catalogs written before it was read
            "model_id": model_id,
            "catalog_stamp": video["indexed_at"],
            "indexed_at": video["indexed_at"],
        }, visual_words(toks)))
    return points


def visual_words(tokens: np.ndarray) -> dict[int, float]:
    """(n_clips, tokens_per_clip) -> {visual word: share of the clips showing it}: the "visual" channel."""
    ids, counts = np.unique(tokens, return_counts=True)
    return {int(i): round(float(c) / len(tokens), 4) for i, c in zip(ids, counts, strict=True)}


def up_to_date(stamps: dict | None, model_id: str, indexed_at: float) -> bool:
    """Whether a video's points (their STAMP_FIELDS) were embedded by this model from this catalog row. The
    stamp is compared to a millisecond: Qdrant Edge returns a float payload with 16 significant digits
    (1796314629.7952607 comes back as 1796314629.795261), and an exact test re-embedded such a video, and
    dropped its stored captions, on every run."""
    stamp = (stamps or {}).get("catalog_stamp")
    return (stamps or {}).get("model_id") == model_id and stamp is not None and abs(stamp - indexed_at) < 1e-3


def sync_store(data_dir: Path, store: SegmentStore, inference, vocab, model_id: str,
               progress: bool = True) -> EmbedSummary:
    """Bring the store in line with the catalog (see the module docstring)."""
    t0 = time.perf_counter()
    catalog = Catalog(data_dir)
    videos = catalog.read_table("videos")
    store.ensure(inference.embed_dim)
    indexed = store.indexed_videos(STAMP_FIELDS)
    current = {r["video_id"]: r for r in videos.to_dicts()} if videos.height else {}

    removed = 0
    for video_id in set(indexed) - set(current):
        store.delete_video(video_id)
        removed += 1
    todo = [v for vid, v in current.items() if not up_to_date(indexed.get(vid), model_id, v["indexed_at"])]
    written = 0
    for video in tqdm(todo, desc="embedding", unit="video", disable=not progress or not todo):
        clips = catalog.read_video(video["video_id"], "clips").sort("clip_index")
        sentences = catalog.read_video(video["video_id"], "sentences")
        tokens = video_tokens(vocab, clips) if clips.height else np.zeros((0, 1), dtype=np.int64)
        points = _segment_points(video, clips, sentences, tokens, inference, model_id)
        store.delete_video(video["video_id"])
        written += store.upsert(points)
    return EmbedSummary(len(todo), len(current) - len(todo), removed, written, time.perf_counter() - t0)
