"""The vector store: Qdrant through qdrant-client, embedded (a folder) or a server (a URL), one code path.

One collection of segments, one named vector per searchable channel:
    "video"   dense: the joint encoder's vector of the segment's visual tokens (video-only input)
    "text"    dense: the joint encoder's vector of the segment's transcript (text-only input; absent without speech)
    "visual"  sparse: the segment's visual words, each weighted by the share of its clips that show it; a
              query reaches it through the narration lexicon (an inverted index over visual words, as
              Video Google's; model.lexicon)
Payload: video_id, path, start, end, duration, text, kind, thumbnail, tokens, model_id, indexed_at
(indexed on the fields filters use). Point ids are UUIDv5 of (video_id, start), so re-indexing a
video overwrites its points instead of duplicating them.

Torn writes: each point of an upsert also carries `video_points`, how many points its video has,
and `indexed_videos` reports a video with fewer points than that (a run killed between deleting a
video's points and writing all the new ones; the embedded store commits point by point) with
None fields, so it reads as stale and is embedded again.

The embedded store locks its folder to one process; a second opener gets StoreBusyError.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """The embedded store is open in another process (an index run, the UI, a search)."""


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
class Filters:
    video: str | None = None  # a video_id or an absolute path
    min_duration: float | None = None  # s, segment length
    max_duration: float | None = None  # s
    indexed_after: float | None = None  # unix time
    label: str | None = None  # the classifier's label (`vbsearch tag`)


def point_id(video_id: str, start: float) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{video_id}:{start:.3f}"))


def remote_client(url: str, api_key: str | None = None, timeout: int = 30):
    """A client of the Qdrant server at `url` (http:// or https://), sending `api_key` with every request.
    Makes no request: qdrant-client's version check would run in a thread whose failure prints a
    traceback, and `connect` checks the server itself."""
    from qdrant_client import QdrantClient

    return QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)


def connect(data_dir: Path, url: str | None = None, api_key: str | None = None, timeout: int = 30):
    """A QdrantClient: the server at `url` if given, else the embedded store in data_dir/qdrant."""
    from qdrant_client import QdrantClient

    if url:
        from qdrant_client.http.exceptions import ApiException

        client = remote_client(url, api_key, timeout)
        try:  # one round trip now: an unreachable server or a refused key is one clear error, not a traceback later
            client.get_collections()
        except ApiException as exc:
            client.close()
            reason = " ".join(str(exc).split("Raw response content")[0].split()) or type(exc).__name__
            raise StoreError(f"cannot use the Qdrant server at {url}: {reason}") from exc
        return client
    folder = Path(data_dir) / "qdrant"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=str(folder))
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise StoreBusyError(
                f"the index in {folder} is in use by another vbsearch process (an index run, the UI or a search); "
                "wait for it to finish, or use a Qdrant server (--qdrant-url) for concurrent access") from exc
        raise


def point_tokens(payload: dict) -> np.ndarray:
    """(n_clips, tokens_per_clip) visual tokens stored with a point."""
    per_clip = int(payload.get("tokens_per_clip", 1))
    return np.asarray(payload["tokens"], dtype=np.int64).reshape(-1, per_clip)


class SegmentStore:
    def __init__(self, client, collection: str = COLLECTION):
        self.client = client
        self.collection = collection

    @classmethod
    def open(cls, data_dir: Path, url: str | None = None, api_key: str | None = None) -> SegmentStore:
        return cls(connect(data_dir, url, api_key))

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> SegmentStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def dim(self) -> int | None:
        if not self.exists():
            return None
        vectors = self.client.get_collection(self.collection).config.params.vectors
        return int(vectors["video"].size)

    def has_visual_channel(self) -> bool:
        sparse = self.client.get_collection(self.collection).config.params.sparse_vectors or {}
        return VISUAL in sparse

    def ensure(self, dim: int) -> None:
        """Create the collection for `dim`-d vectors; a different existing dim (a new model), or a collection
        made before the visual-word channel, is recreated: the next sync embeds every video again."""
        from qdrant_client import models

        current = self.dim()
        if current == dim and self.has_visual_channel():
            return
        if current is not None:
            if current != dim:
                log.info("vector size changed (%d -> %d): recreating the collection", current, dim)
            else:
                log.info("the collection predates the visual-word channel: recreating it (every video is embedded "
                         "again from the catalog)")
            self.client.delete_collection(self.collection)
        params = models.VectorParams(size=dim, distance=models.Distance.COSINE)
        self.client.create_collection(self.collection, vectors_config={c: params for c in DENSE},
                                      sparse_vectors_config={VISUAL: models.SparseVectorParams()})
        for name in PAYLOAD_INDEXES:
            self.ensure_payload_index(name)

    def ensure_payload_index(self, name: str) -> None:
        """Index a field of PAYLOAD_INDEXES (also on a collection made before the field was added)."""
        from qdrant_client import models

        schema = models.PayloadSchemaType.KEYWORD if PAYLOAD_INDEXES[name] == "keyword" else models.PayloadSchemaType.FLOAT
        with warnings.catch_warnings():  # the embedded store ignores payload indexes, and says so
            warnings.simplefilter("ignore")
            self.client.create_payload_index(self.collection, name, field_schema=schema)

    # -- writing ----------------------------------------------------------------------------------------
    def upsert(self, points: Iterable[StorePoint]) -> int:
        """Write points; every point of a video must be in the same call (its count marks it complete)."""
        from qdrant_client import models

        points = list(points)
        per_video = Counter(p.video_id for p in points)
        n = 0
        batch: list = []
        for p in points:
            payload = {"video_id": p.video_id, "start": p.start, **p.payload, COMPLETE_FIELD: per_video[p.video_id]}
            vector: dict[str, Any] = dict(p.vectors)
            if p.visual_words:
                vector[VISUAL] = sparse_vector(p.visual_words)
            batch.append(models.PointStruct(id=p.id, vector=vector, payload=payload))
            if len(batch) >= UPSERT_BATCH:
                self.client.upsert(self.collection, points=batch, wait=True)
                n, batch = n + len(batch), []
        if batch:
            self.client.upsert(self.collection, points=batch, wait=True)
            n += len(batch)
        return n

    def set_payloads(self, updates: dict[str, dict[str, Any]]) -> None:
        """Merge fields into existing points' payloads: point id -> fields (other fields are kept)."""
        from qdrant_client import models

        ops = [models.SetPayloadOperation(set_payload=models.SetPayload(payload=fields, points=[pid]))
               for pid, fields in updates.items()]
        for lo in range(0, len(ops), UPSERT_BATCH):
            self.client.batch_update_points(self.collection, ops[lo: lo + UPSERT_BATCH], wait=True)

    def set_vectors(self, updates: dict[str, dict[str, list[float]]]) -> None:
        """Set channels of existing points: point id -> channel -> vector (other channels are kept)."""
        from qdrant_client import models

        points = [models.PointVectors(id=pid, vector=vectors) for pid, vectors in updates.items()]
        for lo in range(0, len(points), UPSERT_BATCH):
            self.client.update_vectors(self.collection, points=points[lo: lo + UPSERT_BATCH], wait=True)

    def delete_video(self, video_id: str) -> None:
        from qdrant_client import models

        if self.exists():
            selector = models.FilterSelector(filter=_match("video_id", video_id))
            self.client.delete(self.collection, points_selector=selector, wait=True)

    # -- reading ----------------------------------------------------------------------------------------
    def count(self, filters: Filters | None = None) -> int:
        if not self.exists():
            return 0
        return self.client.count(self.collection, count_filter=build_filter(filters), exact=True).count

    def scroll(self, fields: list[str] | bool = True, with_vectors: bool | list[str] = False,
               filters: Filters | None = None) -> Iterator:
        """Every point (payload fields as asked), page by page."""
        if not self.exists():
            return
        offset = None
        while True:
            page, offset = self.client.scroll(self.collection, scroll_filter=build_filter(filters), limit=1024,
                                              offset=offset, with_payload=fields, with_vectors=with_vectors)
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
               filters: Filters | None = None) -> list:
        """The `limit` best points of a channel: a dense vector for "video" and "text", {visual word: weight}
        for "visual" (scored by the dot product with each point's visual words)."""
        if channel not in CHANNELS:
            raise StoreError(f"unknown channel {channel!r}")
        if not self.exists() or (channel == VISUAL and not vector):
            return []
        query = sparse_vector(vector) if channel == VISUAL else vector
        return self.client.query_points(self.collection, query=query, using=channel, limit=limit,
                                        query_filter=build_filter(filters), with_payload=True).points

    def retrieve(self, ids: list[str], with_vectors: bool | list[str] = False) -> list:
        if not ids or not self.exists():
            return []
        return self.client.retrieve(self.collection, ids=ids, with_payload=True, with_vectors=with_vectors)


def sparse_vector(weights: dict[int, float]):
    from qdrant_client import models

    ids = sorted(weights)
    return models.SparseVector(indices=[int(i) for i in ids], values=[float(weights[i]) for i in ids])


def _match(key: str, value: str):
    from qdrant_client import models

    return models.Filter(must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))])


def build_filter(filters: Filters | None):
    from qdrant_client import models

    if filters is None:
        return None
    must = []
    if filters.video:
        key = "path" if filters.video.startswith("/") else "video_id"
        must.append(models.FieldCondition(key=key, match=models.MatchValue(value=filters.video)))
    if filters.min_duration is not None or filters.max_duration is not None:
        must.append(models.FieldCondition(key="duration", range=models.Range(gte=filters.min_duration,
                                                                             lte=filters.max_duration)))
    if filters.indexed_after is not None:
        must.append(models.FieldCondition(key="indexed_at", range=models.Range(gt=filters.indexed_after)))
    if filters.label:
        must.append(models.FieldCondition(key="label", match=models.MatchValue(value=filters.label)))
    return models.Filter(must=must) if must else None
