"""The embedded store: Qdrant's engine in-process (qdrant-edge-py), one shard per published generation.

Readers (PublishedStore) open the generation named by DATA_DIR/index/CURRENT and move to a newer one
on their next call; writers (NextGeneration) copy it on their first write and publish the copy
(search/generations.py). Shards are written without a write-ahead log: a build is made durable by one
flush before it is published, and a published shard, never written again, opens in many processes.

Exact search below EXACT_BELOW points per segment, HNSW above it, searched with HNSW_EF; both were
chosen with bench/bench_query.py on this project's vectors (README, "The store at archive scale").
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from search import generations
from search.store import (
    DENSE,
    VISUAL,
    Condition,
    Record,
    SegmentStore,
    StoreBusyError,
    StoreError,
    sparse_items,
)

log = logging.getLogger(__name__)

EXACT_BELOW = 20_000  # points per segment searched exactly; larger segments get an HNSW graph
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
HNSW_EF = 256  # candidates an HNSW search keeps: recall@50 vs exact 0.992 at 1M of our vectors (128: 0.966; README)
CONFIG_FILE = "edge_config.json"
LAST_OP_FILE = "vbsearch_last_op.json"  # ours, not Qdrant's: the last operation number a build used
_PROBE_ID = "00000000-0000-4000-8000-0000000000ff"  # a point that lives for two operations (see `_op_number`)


def _edge():
    try:
        import qdrant_edge
    except ImportError as exc:  # a broken install, not a user error: say what is missing
        raise StoreError("the embedded store needs qdrant-edge-py (pip install qdrant-edge-py)") from exc
    return qdrant_edge


def _filter(where: list[Condition]):
    if not where:
        return None
    q = _edge()
    return q.Filter(must=[q.FieldCondition(c.key, match=q.MatchValue(c.value)) if c.value is not None else
                          q.FieldCondition(c.key, range=q.RangeFloat(gte=c.gte, gt=c.gt, lte=c.lte)) for c in where])


def _record(p, score: float = 0.0) -> Record:
    vector: dict[str, Any] = {}
    for name, v in (p.vector or {}).items():
        vector[name] = dict(zip(v.indices, v.values, strict=True)) if name == VISUAL else v
    return Record(str(p.id), p.payload or {}, vector, score)


def _vectors(vectors: dict[str, Any]) -> dict[str, Any]:
    q = _edge()
    return {k: (q.SparseVector(*sparse_items(v)) if k == VISUAL else v) for k, v in vectors.items()}


class EdgeBackend:
    """One Qdrant Edge shard in `path` (which may not hold one yet: `create` makes it)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.shard = None
        self._size: int | None = None
        self._sparse: set[str] = set()
        if (self.path / CONFIG_FILE).is_file():
            self._load()

    def _load(self) -> None:
        try:
            config = json.loads((self.path / CONFIG_FILE).read_text())
            with generations.shard_files(self.path):
                self.shard = _edge().EdgeShard.load(str(self.path))
        except Exception as exc:  # qdrant-edge raises plain Exception
            if "WouldBlock" in str(exc):
                raise StoreBusyError(f"the index in {self.path} is open for writing in another process") from exc
            raise StoreError(f"cannot open the index in {self.path}: {exc}") from exc
        self._size = int(config["vectors"]["video"]["size"])
        self._sparse = set(config.get("sparse_vectors") or {})

    def close(self) -> None:
        if self.shard is not None:
            with generations.shard_files(self.path):
                self.shard.close()
            self.shard = None

    def finish(self) -> None:
        """Before publishing: build what the optimizers plan (HNSW graphs, merged segments), flush, close, and
        settle: the first two loads of a shard compact its journals and rewrite its state; after them a load
        only rewrites two JSON files, atomically and with the same content (tests/test_generations.py), which
        is what makes a published shard safe to open in several processes at once."""
        if self.shard is None:
            return
        last_op = self._op_number() + 1  # the probe's delete
        self.shard.optimize()
        self.shard.flush()
        self.close()
        for _ in range(2):
            self._load()
            self.close()
        tmp = self.path / f"{LAST_OP_FILE}.tmp"
        tmp.write_text(json.dumps({"last_op": last_op}))
        tmp.replace(self.path / LAST_OP_FILE)

    def continue_operations(self) -> None:
        """Before writing to a loaded copy: number the next operation above every one the shard has applied.

        Without a write-ahead log, Qdrant Edge numbers operations on from the version its segments recorded,
        and that record was seen stale after a build (16 where points carried 20); Qdrant skips an operation
        numbered at or below a point's version, so the next build's updates of those points were silently
        lost (a caption set, then gone). The number a build ended with is recorded beside the shard; no-op
        operations (about 0.3 us each) close the gap."""
        if self.shard is None:
            return
        try:
            last = int(json.loads((self.path / LAST_OP_FILE).read_text())["last_op"])
        except (OSError, ValueError, KeyError):  # a shard published before the record existed
            last = self._max_version()
        next_op = self._op_number() + 2
        if next_op <= last:
            log.info("index %s: operation numbers resume at %d, not %d", self.path.name, last + 1, next_op)
            noop = _edge().UpdateOperation.delete_points([_PROBE_ID])
            for _ in range(last + 1 - next_op):
                self.shard.update(noop)

    def _op_number(self) -> int:
        """The number the shard gives its next operation (it takes two: a probe point is written and deleted)."""
        q = _edge()
        self.shard.update(q.UpdateOperation.upsert_points([q.Point(_PROBE_ID, {"video": [1.0] * self._size}, {})]))
        found = self.shard.query(q.QueryRequest(limit=1, query=q.Query.Nearest([1.0] * self._size, using="video"),
                                                filter=q.Filter(must=[q.HasIdCondition({_PROBE_ID})])))
        self.shard.update(q.UpdateOperation.delete_points([_PROBE_ID]))
        return found[0].version

    def _max_version(self) -> int:
        """The highest operation number on any point: every point is read once (only without a record)."""
        q = _edge()
        n = self.count([])
        found = self.shard.query(q.QueryRequest(limit=n, query=q.Query.Nearest([1.0] * self._size, using="video"))) \
            if n else []
        return max((p.version for p in found), default=0)

    def exists(self) -> bool:
        return self.shard is not None

    def vector_size(self) -> int | None:
        return self._size

    def has_sparse(self, name: str) -> bool:
        return name in self._sparse

    def create(self, dim: int) -> None:
        q = _edge()
        self.close()
        if self.path.exists():
            shutil.rmtree(self.path)
        threshold_kb = max(1, EXACT_BELOW * dim * 4 // 1024)  # Qdrant sizes these thresholds in KB of vectors
        params = q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine)
        config = q.EdgeConfig(
            vectors={c: params for c in DENSE}, sparse_vectors={VISUAL: q.EdgeSparseVectorParams()},
            hnsw_config=q.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=threshold_kb),
            optimizers=q.EdgeOptimizersConfig(indexing_threshold=threshold_kb),
            wal_enabled=False)  # see the module doc
        self.shard = q.EdgeShard.create(str(self.path), config)
        self._size, self._sparse = dim, {VISUAL}

    def create_payload_index(self, name: str, kind: str) -> None:
        q = _edge()
        schema = q.PayloadSchemaType.Keyword if kind == "keyword" else q.PayloadSchemaType.Float
        self.shard.update(q.UpdateOperation.create_field_index(name, schema))

    def upsert(self, points: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        q = _edge()
        self.shard.update(q.UpdateOperation.upsert_points(
            [q.Point(pid, _vectors(vectors), payload) for pid, vectors, payload in points]))

    def set_payloads(self, updates: dict[str, dict[str, Any]]) -> None:
        q = _edge()
        for pid, fields in updates.items():
            self.shard.update(q.UpdateOperation.set_payload([pid], fields))

    def set_vectors(self, updates: dict[str, dict[str, list[float]]]) -> None:
        q = _edge()
        self.shard.update(q.UpdateOperation.update_vectors(
            [q.PointVectors(pid, _vectors(vectors)) for pid, vectors in updates.items()]))

    def delete(self, where: list[Condition]) -> None:
        self.shard.update(_edge().UpdateOperation.delete_points_by_filter(_filter(where)))

    def count(self, where: list[Condition]) -> int:
        return self.shard.count(_edge().CountRequest(exact=True, filter=_filter(where)))

    def scroll(self, where, fields, with_vectors, offset, limit):
        page, offset = self.shard.scroll(_edge().ScrollRequest(offset=offset, limit=limit, filter=_filter(where),
                                                                with_payload=fields, with_vector=with_vectors))
        return [_record(p) for p in page], offset

    def query(self, channel, vector, limit, where) -> list[Record]:
        q = _edge()
        if channel == VISUAL:
            query, params = q.Query.Nearest(q.SparseVector(*sparse_items(vector)), using=VISUAL), None
        else:
            query, params = q.Query.Nearest(list(vector), using=channel), q.SearchParams(hnsw_ef=HNSW_EF)
        found = self.shard.query(q.QueryRequest(limit=limit, query=query, filter=_filter(where), params=params,
                                                with_payload=True))
        return [_record(p, p.score) for p in found]

    def retrieve(self, ids: list[str], with_vectors) -> list[Record]:
        return [_record(p) for p in self.shard.retrieve(ids, with_payload=True, with_vector=with_vectors)]


class PublishedStore(SegmentStore):
    """A reader of the data dir's published generation; it moves to a newer one on its next call."""

    def __init__(self, data_dir: Path):
        super().__init__(None)
        self.data_dir = Path(data_dir)
        self._loaded: Path | None = None
        self._retired: EdgeBackend | None = None  # the generation before: a concurrent call may still use it
        self._swap_lock = threading.Lock()

    @property
    def backend(self) -> EdgeBackend | None:
        current = generations.published(self.data_dir)
        if current != self._loaded:
            with self._swap_lock:
                if current != self._loaded:
                    fresh = EdgeBackend(current) if current is not None else None
                    if self._retired is not None:
                        self._retired.close()
                    self._retired, self._backend, self._loaded = self._backend, fresh, current
                    self.location = str(current or "")
                    log.debug("reading generation %s", current)
        return self._backend

    def close(self) -> None:
        with self._swap_lock:
            for backend in (self._retired, self._backend):
                if backend is not None:
                    backend.close()
            self._retired = self._backend = None
            self._loaded = None

    @property
    def generation(self) -> str | None:
        return self._loaded.name if self.backend is not None and self._loaded else None


class NextGeneration(SegmentStore):
    """A writer: reads the published generation until its first write, which copies it into a build folder
    that takes every later read and write; `publish` makes the build the published generation."""

    def __init__(self, data_dir: Path):
        super().__init__(None)
        self.data_dir = Path(data_dir)
        self._reader = PublishedStore(self.data_dir)
        self._build: Path | None = None
        if legacy := generations.unreplaced_legacy(self.data_dir):
            log.info("rebuilding the search index from the catalog: %s is an older vbsearch's store (qdrant-client's "
                     "local mode), replaced by Qdrant Edge in %s; no video is decoded again",
                     legacy, generations.root(self.data_dir))

    @property
    def backend(self) -> EdgeBackend | None:
        return self._backend if self._build is not None else self._reader.backend

    def _writable(self) -> EdgeBackend:
        if self._build is None:
            self._reader.close()  # the build is the copy it would read
            self._build = generations.begin(self.data_dir)
            self._backend = EdgeBackend(self._build)
            self._backend.continue_operations()
            self.location = str(self._build)
        return self._backend

    def publish(self) -> Path | None:
        """Publish what was written (nothing when nothing was); returns the new generation's folder."""
        if self._build is None:
            self._reader.close()
            return None
        self._backend.finish()
        if not (self._build / CONFIG_FILE).is_file():  # nothing was ever created: nothing to publish
            generations.discard(self._build)
            return None
        final = generations.publish(self.data_dir, self._build)
        log.info("published search index generation %s", final.name)
        return final

    def discard(self) -> None:
        self.close()
        if self._build is not None:
            generations.discard(self._build)

    def close(self) -> None:
        self._reader.close()
        super().close()
