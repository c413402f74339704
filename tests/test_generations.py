"""Published generations of the embedded index (search/generations.py, search/store_edge.py): readers in
any number of processes, a writer building the next generation beside them, atomic publish, and cleanup
of what a dead writer left."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search import generations
from search.store import SegmentStore, StorePoint


def _points(video_id: str, n: int, dim: int = 8, seed: int = 0) -> list[StorePoint]:
    rng = np.random.default_rng(seed)
    return [StorePoint(video_id, 6.0 * i, {"video": rng.normal(size=dim).tolist()},
                       {"path": f"/archive/{video_id}.mp4", "end": 6.0 * i + 3, "model_id": "m"}, {i: 1.0})
            for i in range(n)]


def _publish(data: Path, *videos: tuple[str, int]) -> None:
    with SegmentStore.update(data) as store:
        store.ensure(8)
        for video_id, n in videos:
            store.delete_video(video_id)
            store.upsert(_points(video_id, n))


def _digest(folder: Path) -> dict[str, object]:
    """Each file's content; JSON files parsed (a load rewrites edge_config.json and segment.json atomically,
    same content, other key order)."""
    return {str(p.relative_to(folder)): json.loads(p.read_text()) if p.suffix == ".json" else
            hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_reader_follows_each_publish_without_reopening(tmp_path):
    reader = SegmentStore.open(tmp_path)
    assert not reader.exists() and reader.count() == 0  # nothing published yet
    _publish(tmp_path, ("a", 3))
    assert reader.count() == 3 and reader.generation == "g000001"
    with SegmentStore.update(tmp_path) as writer:
        writer.upsert(_points("b", 4))
        assert writer.count() == 7  # the writer reads its own build
        assert reader.count() == 3  # readers keep the published generation until the publish
    assert reader.count() == 7 and reader.generation == "g000002"
    assert generations.published(tmp_path).name == "g000002"
    reader.close()


def test_a_failed_writer_publishes_nothing_and_leaves_no_build(tmp_path):
    _publish(tmp_path, ("a", 3))
    before = _digest(generations.published(tmp_path))
    with pytest.raises(RuntimeError), SegmentStore.update(tmp_path) as writer:
        writer.delete_video("a")
        raise RuntimeError("killed")
    assert _digest(generations.published(tmp_path)) == before
    assert sorted(p.name for p in generations.root(tmp_path).iterdir()) == ["CURRENT", "g000001"]


def test_a_writer_that_changes_nothing_publishes_nothing(tmp_path):
    _publish(tmp_path, ("a", 3))
    with SegmentStore.update(tmp_path) as writer:
        writer.ensure(8)  # same size and channels: no write
        assert writer.indexed_videos() == {"a": {"model_id": "m"}}
    assert generations.published(tmp_path).name == "g000001"
    assert not any(p.name.endswith(".build") for p in generations.root(tmp_path).iterdir())


def test_leftovers_of_a_dead_writer_are_swept_and_one_older_generation_kept(tmp_path):
    _publish(tmp_path, ("a", 3))
    _publish(tmp_path, ("b", 2))
    root = generations.root(tmp_path)
    (root / "g000003.build" / "segments").mkdir(parents=True)  # killed while building
    (root / "g000004").mkdir()  # killed between the rename and the CURRENT replace
    _publish(tmp_path, ("c", 1))
    assert sorted(p.name for p in root.iterdir()) == ["CURRENT", "g000002", "g000003"]  # numbers of unpublished leftovers are reused
    assert SegmentStore.open(tmp_path).count() == 6


def test_published_generations_are_read_by_several_processes_while_the_next_is_built(tmp_path):
    _publish(tmp_path, ("a", 5))
    published = generations.published(tmp_path)
    before = _digest(published)
    code = ("import sys\nfrom search.store import SegmentStore\n"
            "s = SegmentStore.open(sys.argv[1])\nprint(s.count(), len(s.search('video', [1.0] * 8, 3)))\n")
    with SegmentStore.open(tmp_path) as reader, SegmentStore.update(tmp_path) as writer:
        writer.upsert(_points("b", 2))
        assert reader.count() == 5
        procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
                 for _ in range(3)]
        outs = [p.communicate(timeout=120)[0].split() for p in procs]
        assert outs == [["5", "3"]] * 3
    assert _digest(published) == before  # readers never write a published generation
    assert SegmentStore.open(tmp_path).count() == 7


class _Bomb:
    """Unpickling this creates a file: what a crafted store of qdrant-client's local mode could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _crafted_local_mode_store(data: Path, marker: Path) -> Path:
    """DATA_DIR/qdrant/ laid out as qdrant-client's local mode writes it, every point a pickle bomb."""
    import pickle
    import sqlite3

    legacy = data / generations.LEGACY_DIR
    folder = legacy / "collection" / "segments"
    folder.mkdir(parents=True)
    (legacy / "meta.json").write_text(json.dumps({"collections": {"segments": {"vectors": {}}}, "aliases": {}}))
    with sqlite3.connect(folder / "storage.sqlite") as db:
        db.execute("CREATE TABLE points (id TEXT PRIMARY KEY, point BLOB)")
        db.execute("INSERT INTO points VALUES (?, ?)", ("1", pickle.dumps(_Bomb(marker))))
    return legacy


def test_a_crafted_legacy_store_is_never_unpickled_and_is_replaced(tmp_path, caplog, capsys):
    """Nothing in a data dir is unpickled: `search`, `status` and the index run never open qdrant/."""
    from vbsearch.cli import main

    marker = tmp_path / "pwned"
    data = tmp_path / "data"
    legacy = _crafted_local_mode_store(data, marker)
    assert main(["status", "--data-dir", str(data)]) in (0, 1)
    assert main(["search", "ball", "--data-dir", str(data)]) != 0  # no index yet: it says to run index
    assert not marker.exists()
    with caplog.at_level("INFO"):
        _publish(data, ("a", 2))
    assert [r for r in caplog.records if "rebuilding the search index from the catalog" in r.message]
    assert not legacy.exists() and SegmentStore.open(data).count() == 2
    assert not marker.exists()


def test_a_copy_waits_for_a_load_and_a_load_for_a_copy(tmp_path):
    # Qdrant Edge rewrites a shard's files as a process loads or closes it: copying meanwhile once failed
    # (a temp file vanished mid-copy), so the copy that starts a build holds the generation's files alone
    import threading

    _publish(tmp_path, ("a", 3))
    current = generations.published(tmp_path)
    copied = threading.Event()
    with generations.shard_files(current):  # a process loading (or closing) the published shard
        worker = threading.Thread(target=lambda: (generations.begin(tmp_path), copied.set()))
        worker.start()
        assert not copied.wait(1.0)  # the copy waits for the load
    assert copied.wait(30)
    worker.join()
    build = next(p for p in generations.root(tmp_path).iterdir() if p.name.endswith(generations.BUILD_SUFFIX))
    assert not (build / generations.FILES_LOCK).exists()  # the lock file is not part of the shard
    assert _digest(build) == {k: v for k, v in _digest(current).items() if k != generations.FILES_LOCK}

    loaded = threading.Event()

    def load() -> None:
        with generations.shard_files(current):
            loaded.set()

    with generations.shard_files(current, exclusive=True):  # a run copying the published shard
        loader = threading.Thread(target=load)
        loader.start()
        assert not loaded.wait(1.0)  # a process opening it waits for the copy
    assert loaded.wait(30)
    loader.join()


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "published-before-the-record"])
def test_updates_after_a_stale_segment_version_are_kept(tmp_path, recorded):
    """Qdrant Edge numbers a loaded shard's operations on from the version its segments recorded; that record
    was seen stale after a build (so an update numbered at or below a point's version was silently dropped:
    test_captioning's stored captions vanished 2 runs in 12). The next build numbers above the last operation."""
    from search.store_edge import LAST_OP_FILE

    _publish(tmp_path, ("a", 3), ("b", 3))
    folder = generations.published(tmp_path)
    if not recorded:
        (folder / LAST_OP_FILE).unlink()
    for segment in (folder / "segments").iterdir():  # what Edge was seen to leave behind
        state = json.loads((segment / "segment.json").read_text())
        (segment / "segment.json").write_text(json.dumps({**state, "version": 1}))
    with SegmentStore.update(tmp_path) as writer:
        ids = [p.id for p in writer.scroll([])]
        writer.set_payloads({i: {"caption": "a red circle"} for i in ids})
    with SegmentStore.open(tmp_path) as reader:
        assert [p.payload.get("caption") for p in reader.scroll(["caption"])] == ["a red circle"] * 6
