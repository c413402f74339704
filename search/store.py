"""The vector store: one SegmentStore over two Qdrant backends.

    embedded (default)  Qdrant's engine in-process (qdrant-edge-py, search/store_edge.py), in published
                        generations under DATA_DIR/index (search/generations.py): any number of processes
                        read the published one while an index run builds the next beside it
    --qdrant-url        a Qdrant server or cluster through qdrant-client (search/store_server.py)

One collection of segments, one named vector per searchable channel:
    "video"   dense: the joint encoder's vector of the segment's visual tokens (video-only input)
    "text"    dense: the joint encoder's vector of the segment's transcript (text-only input; absent without speech)
    "visual"  sparse: the segment's visual words, each weighted by the share of its clips that show it; a
              query reaches it through the narration lexicon (an inverted index over visual words, as
              Video Google's; model.lexicon)
Payload: video_id, path, start, end, duration, text, kind, thumbnail, tokens, model_id, indexed_at
(indexed on the fields filters use). Point ids are UUIDv5 of (video_id, start), so re-indexing a
video overwrites its points instead of duplicating them.

Readers: `SegmentStore.open` (the engine, `vbsearch status`); an embedded reader follows each new
published generation on its next call, without a restart. Writers: `SegmentStore.update`, a context
that, embedded, copies the published generation on the first write and publishes the copy when the
block ends without an error (nothing is published otherwise); against a server it writes in place.

Torn writes (a server only: an embedded run that dies publishes nothing): each point of an upsert
carries `video_points`, how many points its video has, and `indexed_videos` reports a video with
fewer points than that with None fields, so it reads as stale and is embedded again.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

COLLECTION = "segments"
DENSE = ("video", "text")  # dense channels: the encoder's vectors
VISUAL = "visual"  # the sparse channel: visual words
CHANNELS = (*DENSE, VISUAL)
UPSERT_BATCH = 256  # points per upsert request
COMPLETE_FIELD = "video_points"  # payload: how many points the point's video has (see the module doc)
_ID_NAMESPACE = uuid.UUID("5b0c1e0e-7a53-4a5e-9f55-3c0d7b1e2f10")  # fixed: ids must survive restarts
# payload field -> Qdrant index type
PAYLOAD_INDEXES = {
    "video_id": "keyword",
    "path": "keyword",
    "model_id": "keyword",
    "kind": "keyword",
    "duration": "float",
    "start": "float",
    "indexed_at": "float",
    "label": "keyword",  # written by `vbsearch tag` (indexer/tag.py)
}


class StoreError(RuntimeError):
    """The vector store cannot be used as asked."""


class StoreBusyError(StoreError):
    """The store cannot be opened now because another process holds it."""


@dataclass(frozen=True)
class StorePoint:
    video_id: str
    start: float  # s
    vectors: dict[str, list[float]]  # dense channel -> vector (missing channels are simply absent)
    payload: dict[str, Any] = field(default_factory=dict)
    visual_words: dict[int, float] = field(default_factory=dict)  # the "visual" channel: word id -> share of clips

    @property
    def id(self) -> str:
        return point_id(self.video_id, self.start)


@dataclass(frozen=True)
class Record:
    """A stored point as either backend returns it."""

    id: str
    payload: dict[str, Any]
    vector: dict[str, Any] = field(default_factory=dict)  # dense channel -> list; "visual" -> {word: weight}
    score: float = 0.0  # similarity, for search results


@dataclass(frozen=True)
class Filters:
    video: str | None = None  # a video_id or an absolute path
    min_duration: float | None = None  # s, segment length
    max_duration: float | None = None  # s
    indexed_after: float | None = None  # unix time
    label: str | None = None  # the classifier's label (`vbsearch tag`)


@dataclass(frozen=True)
class Condition:
    """One payload condition, in neither backend's types: `key` equals `value`, or lies in a range."""

    key: str
    value: str | None = None
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None


def conditions(filters: Filters | None) -> list[Condition]:
    """What `filters` asks of a point's payload (all must hold)."""
    if filters is None:
        return []
    out = []
    if filters.video:
        out.append(Condition("path" if filters.video.startswith("/") else "video_id", value=filters.video))
    if filters.min_duration is not None or filters.max_duration is not None:
        out.append(Condition("duration", gte=filters.min_duration, lte=filters.max_duration))
    if filters.indexed_after is not None:
        out.append(Condition("indexed_at", gt=filters.indexed_after))
    if filters.label:
        out.append(Condition("label", value=filters.label))
    return out


class Backend(Protocol):
    """What SegmentStore needs of a Qdrant backend (search/store_edge.py, search/store_server.py)."""

    def exists(self) -> bool: ...
    def vector_size(self) -> int | None: ...
    def has_sparse(self, name: str) -> bool: ...
    def create(self, dim: int) -> None: ...  # drops what was there
    def create_payload_index(self, name: str, kind: str) -> None: ...
    def upsert(self, points: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None: ...
    def set_payloads(self, updates: dict[str, dict[str, Any]]) -> None: ...
    def set_vectors(self, updates: dict[str, dict[str, list[float]]]) -> None: ...
    def delete(self, where: list[Condition]) -> None: ...
    def count(self, where: list[Condition]) -> int: ...
    def scroll(self, where: list[Condition], fields: list[str] | bool, with_vectors: bool | list[str],
               offset: Any, limit: int) -> tuple[list[Record], Any]: ...
    def query(self, channel: str, vector: list[float] | dict[int, float], limit: int,
              where: list[Condition]) -> list[Record]: ...
    def retrieve(self, ids: list[str], with_vectors: bool | list[str]) -> list[Record]: ...
    def close(self) -> None: ...


def point_id(video_id: str, start: float) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{video_id}:{start:.3f}"))


def point_tokens(payload: dict) -> np.ndarray:
    """(n_clips, tokens_per_clip) visual tokens stored with a point."""
    per_clip = int(payload.get("tokens_per_clip", 1))
    return np.asarray(payload["tokens"], dtype=np.int64).reshape(-1, per_clip)


class SegmentStore:
    """The segments collection over a backend; `backend` may change under it (a newly published generation)."""

    def __init__(self, backend: Backend | None, location: str = ""):
        self._backend = backend
        self.location = location  # the embedded generation's folder or the server URL, for messages and status

    @classmethod
    def open(cls, data_dir: Path, url: str | None = None, api_key: str | None = None) -> SegmentStore:
        """A reader: the server at `url`, else the data dir's published generation (following new ones)."""
        if url:
            from search.store_server import ServerBackend

            return cls(ServerBackend.connect(url, api_key), url)
        from search import generations
        from search.store_edge import PublishedStore

        if legacy := generations.unreplaced_legacy(data_dir):
            log.warning("%s holds an index of an older vbsearch (qdrant-client's local mode): run `vbsearch index` "
                        "to rebuild it from the catalog", legacy)
        return PublishedStore(Path(data_dir))

    @classmethod
    @contextmanager
    def update(cls, data_dir: Path, url: str | None = None, api_key: str | None = None) -> Iterator[SegmentStore]:
        """A writer for the block. Embedded, the caller holds the data dir's writer lock (indexer.catalog):
        the writes go to a copy of the published generation, published when the block ends without error."""
        if url:
            with cls.open(data_dir, url, api_key) as store:
                yield store
            return
        from search.store_edge import NextGeneration

        store = NextGeneration(Path(data_dir))
        try:
            yield store
        except BaseException:
            store.discard()
            raise
        store.publish()

    @property
    def backend(self) -> Backend | None:
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> SegmentStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _writable(self) -> Backend:
        """The backend to write to (an embedded writer makes its next generation here)."""
        if self.backend is None:
            raise StoreError("this store is read-only")
        return self.backend

    # -- schema -----------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.backend is not None and self.backend.exists()

    def dim(self) -> int | None:
        return self.backend.vector_size() if self.exists() else None

    def has_visual_channel(self) -> bool:
        return self.exists() and self.backend.has_sparse(VISUAL)

    def ensure(self, dim: int) -> None:
        """Create the collection for `dim`-d vectors; a different existing dim (a new model), or a collection
        made before the visual-word channel, is recreated: the next sync embeds every video again."""
        current = self.dim()
        if current == dim and self.has_visual_channel():
            return
        if current is not None:
            if current != dim:
                log.info("vector size changed (%d -> %d): recreating the collection", current, dim)
            else:
                log.info("the collection predates the visual-word channel: recreating it (every video is embedded "
                         "again from the catalog)")
        backend = self._writable()
        backend.create(dim)
        for name, kind in PAYLOAD_INDEXES.items():
            backend.create_payload_index(name, kind)

    def ensure_payload_index(self, name: str) -> None:
        """Index a field of PAYLOAD_INDEXES (also on a collection made before the field was added)."""
        self._writable().create_payload_index(name, PAYLOAD_INDEXES[name])

    # -- writing ----------------------------------------------------------------------------------------
    def upsert(self, points: Iterable[StorePoint]) -> int:
        """Write points; every point of a video must be in the same call (its count marks it complete)."""
        points = list(points)
        if not points:
            return 0
        backend = self._writable()
        per_video = Counter(p.video_id for p in points)
        rows = []
        for p in points:
            payload = {"video_id": p.video_id, "start": p.start, **p.payload, COMPLETE_FIELD: per_video[p.video_id]}
            vectors: dict[str, Any] = dict(p.vectors)
            if p.visual_words:
                vectors[VISUAL] = dict(p.visual_words)
            rows.append((p.id, vectors, payload))
        for lo in range(0, len(rows), UPSERT_BATCH):
            backend.upsert(rows[lo: lo + UPSERT_BATCH])
        return len(rows)

    def set_payloads(self, updates: dict[str, dict[str, Any]]) -> None:
        """Merge fields into existing points' payloads: point id -> fields (other fields are kept)."""
        if updates:
            self._writable().set_payloads(updates)

    def set_vectors(self, updates: dict[str, dict[str, list[float]]]) -> None:
        """Set channels of existing points: point id -> channel -> vector (other channels are kept)."""
        if updates:
            self._writable().set_vectors(updates)

    def delete_video(self, video_id: str) -> None:
        if self.exists():
            self._writable().delete([Condition("video_id", value=video_id)])

    # -- reading ----------------------------------------------------------------------------------------
    def count(self, filters: Filters | None = None) -> int:
        return self.backend.count(conditions(filters)) if self.exists() else 0

    def scroll(self, fields: list[str] | bool = True, with_vectors: bool | list[str] = False,
               filters: Filters | None = None) -> Iterator[Record]:
        """Every point (payload fields as asked), page by page."""
        if not self.exists():
            return
        backend, where, offset = self.backend, conditions(filters), None
        while True:
            page, offset = backend.scroll(where, fields, with_vectors, offset, 1024)
            yield from page
            if offset is None:
                return

    def indexed_videos(self, fields: tuple[str, ...] = ("model_id",)) -> dict[str, dict[str, Any]]:
        """video_id -> the asked payload fields of (one of) its points; all None for a torn video."""
        found: dict[str, dict[str, Any]] = {}
        counted: Counter[str] = Counter()
        expected: dict[str, int | None] = {}
        for p in self.scroll(["video_id", COMPLETE_FIELD, *fields]):
            video_id = p.payload["video_id"]
            found.setdefault(video_id, {f: p.payload.get(f) for f in fields})
            counted[video_id] += 1
            expected.setdefault(video_id, p.payload.get(COMPLETE_FIELD))
        for video_id, want in expected.items():
            if want is not None and counted[video_id] != want:
                log.info("video %s has %d of its %d points in the store (an interrupted write): stale",
                         video_id, counted[video_id], want)
                found[video_id] = dict.fromkeys(fields)
        return found

    def search(self, channel: str, vector: list[float] | dict[int, float], limit: int,
               filters: Filters | None = None) -> list[Record]:
        """The `limit` best points of a channel: a dense vector for "video" and "text", {visual word: weight}
        for "visual" (scored by the dot product with each point's visual words)."""
        if channel not in CHANNELS:
            raise StoreError(f"unknown channel {channel!r}")
        if not self.exists() or (channel == VISUAL and not vector):
            return []
        return self.backend.query(channel, vector, limit, conditions(filters))

    def retrieve(self, ids: list[str], with_vectors: bool | list[str] = False) -> list[Record]:
        if not ids or not self.exists():
            return []
        return self.backend.retrieve(ids, with_vectors)


def sparse_items(weights: dict[int, float]) -> tuple[list[int], list[float]]:
    """A sparse vector's (indices, values) in index order, as both backends take them."""
    ids = sorted(weights)
    return [int(i) for i in ids], [float(weights[i]) for i in ids]
