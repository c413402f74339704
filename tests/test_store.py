"""The store's contract, run against both backends: Qdrant Edge (the embedded default, written as the next
generation of a data dir) and qdrant-client (a server; its local mode stands in, as in qdrant-client's own
tests)."""

import numpy as np
import pytest

from search.store import Filters, SegmentStore, StorePoint, point_id
from search.store_server import ServerBackend


def _points(video_id, n, dim=8, seed=0, t0=0.0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = rng.normal(size=dim).tolist()
        vectors = {"video": v} if i % 2 else {"video": v, "text": rng.normal(size=dim).tolist()}
        out.append(StorePoint(video_id, t0 + 6.0 * i, vectors,
                              {"path": f"/archive/{video_id}.mp4", "end": t0 + 6.0 * i + 3 + i, "duration": 3.0 + i,
                               "model_id": "m1", "indexed_at": 1000.0 + i, "text": f"s{i}"}))
    return out


@pytest.fixture(params=["edge", "server"])
def store(request, tmp_path):
    if request.param == "edge":
        with SegmentStore.update(tmp_path) as s:
            s.ensure(8)
            yield s
        return
    from qdrant_client import QdrantClient

    s = SegmentStore(ServerBackend(QdrantClient(location=":memory:")))
    s.ensure(8)
    yield s
    s.close()


def test_upsert_is_idempotent_and_ids_deterministic(store):
    pts = _points("a", 5)
    assert store.upsert(pts) == 5
    store.upsert(pts)
    assert store.count() == 5
    assert pts[0].id == point_id("a", 0.0) and point_id("a", 0.0) != point_id("b", 0.0)
    assert store.indexed_videos() == {"a": {"model_id": "m1"}}


def test_search_channels_and_filters(store):
    store.upsert(_points("a", 6) + _points("b", 6, seed=1))
    target = _points("b", 6, seed=1)[3]
    hits = store.search("video", target.vectors["video"], limit=3)
    assert hits[0].id == target.id and hits[0].score == pytest.approx(1.0, abs=1e-5)
    # Only segments with speech carry a text vector.
    assert {h.payload["start"] for h in store.search("text", target.vectors["video"], limit=50)} == {0.0, 12.0, 24.0}
    only_a = store.search("video", target.vectors["video"], limit=50, filters=Filters(video="a"))
    assert {h.payload["video_id"] for h in only_a} == {"a"}
    by_path = store.count(Filters(video="/archive/b.mp4"))
    assert by_path == 6
    assert store.count(Filters(min_duration=5.0)) == 8  # durations 3..8: i >= 2, 4 per video
    assert store.count(Filters(min_duration=4.0, max_duration=5.0)) == 4
    assert store.count(Filters(indexed_after=1003.5)) == 4


def test_delete_video_and_recreate_on_new_dim(store):
    store.upsert(_points("a", 3) + _points("b", 2))
    store.delete_video("a")
    assert store.indexed_videos(("model_id", "path")) == {"b": {"model_id": "m1", "path": "/archive/b.mp4"}}
    store.ensure(16)
    assert store.dim() == 16 and store.count() == 0


def test_the_visual_channel_ranks_by_the_visual_words_a_query_asks_for(store):
    # three segments of four clips: the words each shows, and on how many of its clips
    words = {0.0: {3: 1.0, 17: 0.5, 40: 0.25}, 6.0: {3: 0.25, 18: 1.0}, 12.0: {41: 1.0}}
    store.upsert([StorePoint("v", t, {"video": [1.0] * 8}, {"path": "/archive/v.mp4", "end": t + 6}, w)
                  for t, w in words.items()])
    hits = store.search("visual", {3: 2.0, 17: 1.0}, limit=10)
    assert [h.payload["start"] for h in hits] == [0.0, 6.0]  # 2*1 + 1*0.5 = 2.5; 2*0.25 = 0.5; none shared
    assert hits[0].score == pytest.approx(2.5)
    assert store.search("visual", {}, limit=10) == []  # a query the lexicon cannot put in pictures


def test_a_collection_without_the_visual_channel_is_rebuilt():
    from qdrant_client import QdrantClient, models

    backend = ServerBackend(QdrantClient(location=":memory:"))
    with SegmentStore(backend) as old:  # as versions before the visual channel made it
        backend.client.create_collection("segments", vectors_config={
            c: models.VectorParams(size=8, distance=models.Distance.COSINE) for c in ("video", "text")})
        old.upsert(_points("a", 2))
        assert not old.has_visual_channel()
        old.ensure(8)
        assert old.has_visual_channel() and old.count() == 0  # emptied: the next sync embeds every video


def test_payload_and_vector_updates_keep_the_rest(store):
    pts = _points("a", 2)
    store.upsert(pts)
    store.set_payloads({pts[0].id: {"label": "dog", "text": "new"}})
    store.set_vectors({pts[1].id: {"text": [1.0] * 8}})
    first, second = sorted(store.retrieve([pts[0].id, pts[1].id], with_vectors=["video", "text"]),
                           key=lambda r: r.payload["start"])
    assert first.payload["label"] == "dog" and first.payload["text"] == "new" and first.payload["path"] == "/archive/a.mp4"
    assert np.allclose(second.vector["text"], np.full(8, 8 ** -0.5), atol=1e-6)  # cosine: stored normalised
    assert np.allclose(second.vector["video"], np.asarray(pts[1].vectors["video"]) / np.linalg.norm(pts[1].vectors["video"]), atol=1e-6)
    assert store.count(Filters(label="dog")) == 1


def test_scroll_pages_through_every_point(store):
    store.upsert(_points("a", 700) + _points("b", 700, seed=2))  # more than one page of 1024
    seen = [p.payload["video_id"] for p in store.scroll(["video_id"])]
    assert len(seen) == 1400 and seen.count("a") == 700
    assert [p.vector for p in store.scroll(["video_id"], filters=Filters(video="b"))][:1] == [{}]
