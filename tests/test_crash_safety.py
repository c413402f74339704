"""Crash safety of `vbsearch index`: SIGKILL at random points and while building the next index
generation, Ctrl-C, torn store writes.

A small archive (synthetic videos with subtitle sidecars, so no ASR model loads) is indexed with
the session's trained vocabulary and model (copied, as IndexedArchive.copy_to does, so no run
trains). A clean run is the reference; each trial kills a `vbsearch index` subprocess at a seeded
random moment after one of its stages began, runs the same command again to completion (in this
process: no second interpreter start-up), and must end with the reference's index: the same
catalog, the same point ids, no duplicates, every catalog file readable, no temporary files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from ingest_media import moving_texture

from indexer.catalog import TABLES, Catalog
from indexer.embed import STAMP_FIELDS, sync_store
from search.store import COMPLETE_FIELD, SegmentStore, StorePoint
from vbsearch.synth import write_video

N_VIDEOS = 5
VIDEO_SECONDS = 6.0  # four clips each
FPS = 20
KILL_TRIALS = 3
SEED = 10
RUN_TIMEOUT_S = 240
# Where a kill lands: a random delay (up to KILL_DELAY_S) after the first file of one of these appears
# in the data dir: ingest begun, first video committed, embedding begun.
TRIGGERS = ("thumbnails", "catalog/videos", "index/build")
KILL_DELAY_S = 0.5


def write_archive(folder: Path) -> list[Path]:
    """N_VIDEOS short videos, each with an .srt sidecar of two sentences."""
    folder.mkdir(parents=True)
    colours = ((220, 60, 60), (60, 200, 80), (70, 90, 230), (230, 200, 40), (200, 80, 220))
    words = ("red", "green", "blue", "yellow", "purple")
    paths = []
    for i in range(N_VIDEOS):
        frames = moving_texture(int(VIDEO_SECONDS * FPS), colours[i], 1.5 * (i + 1), seed=i, size=(48, 64))
        path = write_video(folder / f"video {i}.mp4", frames, fps=FPS)
        path.with_suffix(".srt").write_text(
            f"1\n00:00:00,500 --> 00:00:02,500\nA {words[i]} texture slides across the frame.\n\n"
            f"2\n00:00:03,500 --> 00:00:05,500\nThe {words[i]} pattern keeps moving.\n\n", encoding="utf-8")
        paths.append(path)
    return paths


def fresh_data_dir(dest: Path, learned_from: Path) -> Path:
    """A data dir holding only a trained vocabulary and model (no run trains)."""
    for learned in ("vocab", "model"):
        shutil.copytree(learned_from / learned, dest / learned)
    return dest


def index_cmd(archive: Path, data: Path) -> list[str]:
    return [sys.executable, "-m", "vbsearch.cli", "index", str(archive), "--data-dir", str(data)]


def run_index(archive: Path, data: Path) -> subprocess.CompletedProcess:
    return subprocess.run(index_cmd(archive, data), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def index_here(archive: Path, data: Path) -> int:
    """`vbsearch index` in this process (an exception would fail the test: no traceback slips by)."""
    from vbsearch.cli import main

    return main(["index", str(archive), "--data-dir", str(data)])


@dataclass(frozen=True)
class Snapshot:
    videos: list[tuple]  # (video_id, path, n_clips, duration) sorted
    clips: list[tuple]  # (video_id, clip_index, start, end)
    sentences: list[tuple]  # (video_id, start, end, text)
    errors: int
    points: list[tuple]  # (point id, video_id, start, end, kind, text)


def snapshot(data: Path) -> Snapshot:
    """Everything an index run leaves, read strictly: any unreadable catalog file fails the test."""
    catalog = Catalog(data)
    for table in TABLES:
        for file in catalog.files(table):
            pl.read_parquet(file)  # raises on a torn or damaged file (Catalog.read_table would skip it)
    leftovers = [p for p in (data / "catalog").rglob(".*") if p.is_file()]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    videos = catalog.read_table("videos")
    clips = catalog.read_table("clips")
    sentences = catalog.read_table("sentences")
    with SegmentStore.open(data) as store:
        points = [(str(p.id), p.payload["video_id"], p.payload["start"], p.payload["end"], p.payload["kind"],
                   p.payload["text"]) for p in store.scroll(["video_id", "start", "end", "kind", "text"])]
    ids = [p[0] for p in points]
    assert len(ids) == len(set(ids)), "duplicate point ids"
    assert len({(p[1], p[2]) for p in points}) == len(points), "two points for one segment"
    return Snapshot(
        videos=sorted(videos.select("video_id", "path", "n_clips", "duration").rows()),
        clips=sorted(clips.select("video_id", "clip_index", "start", "end").rows()),
        sentences=sorted(sentences.select("video_id", "start", "end", "text").rows()) if sentences.height else [],
        errors=catalog.read_table("errors").height,
        points=sorted(points),
    )


@dataclass(frozen=True)
class Reference:
    archive: Path
    learned: Path  # data dir with the trained vocab and model
    clean: Snapshot


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("crash") / "archive"
    write_archive(folder)
    return folder


@pytest.fixture(scope="module")
def reference(archive, tmp_path_factory, indexed_archive) -> Reference:
    data = fresh_data_dir(tmp_path_factory.mktemp("clean") / "data", indexed_archive.data_dir)
    assert index_here(archive, data) == 0
    clean = snapshot(data)
    assert len(clean.videos) == N_VIDEOS and clean.sentences and clean.points and clean.errors == 0
    return Reference(archive, indexed_archive.data_dir, clean)


def _wait_for(data: Path, trigger: str, proc: subprocess.Popen, limit_s: float) -> None:
    folder = data / trigger.split("/")[0]
    pattern = {"thumbnails": "*", "catalog/videos": "videos/*.parquet",
               "index/build": "g*.build"}[trigger]
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        if folder.is_dir() and any(folder.glob(pattern)):
            return
        time.sleep(0.005)


@pytest.mark.slow
def test_sigkill_at_random_points_then_rerun_equals_a_clean_run(reference, tmp_path):
    rng = np.random.default_rng(SEED)
    outcomes = []
    for trial in range(KILL_TRIALS):
        data = fresh_data_dir(tmp_path / f"trial{trial}", reference.learned)
        trigger = TRIGGERS[trial % len(TRIGGERS)]
        delay = float(rng.uniform(0.0, KILL_DELAY_S))
        proc = subprocess.Popen(index_cmd(reference.archive, data), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _wait_for(data, trigger, proc, RUN_TIMEOUT_S)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        finally:
            rc = proc.wait(timeout=RUN_TIMEOUT_S)
        outcomes.append((trigger, round(delay, 2), "killed" if rc == -signal.SIGKILL else f"finished {rc}"))
        assert index_here(reference.archive, data) == 0, outcomes
        assert snapshot(data) == reference.clean, outcomes
    assert sum(o[2] == "killed" for o in outcomes) >= KILL_TRIALS - 1, outcomes  # most trials really were killed


@pytest.mark.slow
def test_ctrl_c_stops_after_the_current_file_then_rerun_completes(reference, tmp_path, capsys):
    data = fresh_data_dir(tmp_path / "data", reference.learned)
    proc = subprocess.Popen(index_cmd(reference.archive, data), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        # The first file's visual stage has begun once its thumbnail folder appears.
        _wait_for_path(data / "thumbnails", proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopping after the current file" in err
    assert "(interrupted)" in out and "run the same command again" in err
    catalog = Catalog(data)
    done = catalog.video_ids()
    assert 1 <= len(done) < N_VIDEOS  # the file being ingested was finished, the rest not started
    assert {r[0] for r in catalog.read_table("clips").select("video_id").unique().rows()} == done
    assert not (data / "index").exists()  # stopped before the search index step
    capsys.readouterr()
    assert index_here(reference.archive, data) == 0
    assert f"files: {N_VIDEOS - len(done)} ok, 0 failed, {len(done)} skipped" in capsys.readouterr().out
    assert snapshot(data) == reference.clean


def _published_points(data: Path) -> list[tuple]:
    with SegmentStore.open(data) as store:
        assert store.search("video", [1.0] * store.dim(), 3)  # it answers
        return sorted((str(p.id), p.payload["video_id"], p.payload["start"]) for p in store.scroll(["video_id", "start"]))


@pytest.mark.slow
def test_sigkill_while_embedding_or_publishing_keeps_the_published_index(reference, tmp_path):
    """From a published index, a run that has a new video to embed is killed at several points between
    beginning its next generation and publishing it: each time the published index answers and equals
    the last published one, and the next run completes and leaves no build folder behind."""
    archive = tmp_path / "archive"
    shutil.copytree(reference.archive, archive)
    base = fresh_data_dir(tmp_path / "base", reference.learned)
    assert index_here(archive, base) == 0
    old = _published_points(base)
    write_video(archive / "new.mp4", moving_texture(80, (40, 160, 200), 2.0, seed=7, size=(48, 64)), fps=20)

    def start(name: str) -> tuple[Path, subprocess.Popen, float]:
        data = tmp_path / name
        shutil.copytree(base, data)
        proc = subprocess.Popen(index_cmd(archive, data), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(data, "index/build", proc, RUN_TIMEOUT_S)
        return data, proc, time.monotonic()

    data, proc, began = start("timing")  # how long building the next generation takes, unkilled
    while (data / "index" / "CURRENT").read_text().strip() == "g000001" and proc.poll() is None:
        time.sleep(0.002)
    window = time.monotonic() - began  # from beginning the build to publishing it
    assert proc.wait(timeout=RUN_TIMEOUT_S) == 0
    new = _published_points(data)
    assert set(old) < set(new)
    outcomes = []
    for i, share in enumerate((0.0, 0.45, 0.9)):
        data, proc, began = start(f"trial{i}")
        time.sleep(max(0.0, began + share * window - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=RUN_TIMEOUT_S)
        published = _published_points(data)
        outcomes.append((share, "killed" if rc == -signal.SIGKILL else f"finished {rc}",
                         "old" if published == old else "new" if published == new else "neither"))
        assert published in (old, new), outcomes
        assert index_here(archive, data) == 0 and _published_points(data) == new, outcomes
        root = data / "index"
        assert not [p for p in root.iterdir() if p.name.endswith(".build")], outcomes
        assert len([p for p in root.iterdir() if p.name.startswith("g")]) <= 2, outcomes
    assert sum(o[1] == "killed" and o[2] == "old" for o in outcomes) >= 2, outcomes


def _wait_for_path(path: Path, proc: subprocess.Popen, limit_s: float = RUN_TIMEOUT_S) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.is_dir() and any(path.iterdir()):
            return
        time.sleep(0.002)
    raise AssertionError(f"{path} never appeared (exit status {proc.poll()})")


class _Inference:
    """Just enough of VideoBertInference for sync_store: fixed vectors, so the test is about the store."""

    embed_dim = 4

    def encode_video(self, videos):
        return np.ones((len(videos), self.embed_dim), np.float32)

    def encode_text(self, texts):
        return np.ones((len(texts), self.embed_dim), np.float32)


class _Vocab:
    def tokenize(self, features):
        return np.zeros((len(features), 1), np.int64)


def _server_store() -> SegmentStore:
    """A store on the server backend (qdrant-client's local mode standing in for a server)."""
    from qdrant_client import QdrantClient

    from search.store_server import ServerBackend

    return SegmentStore(ServerBackend(QdrantClient(location=":memory:")))


def test_a_torn_video_write_reads_as_stale_and_is_embedded_again(archive, tmp_path):
    """A server commits point by point: a run killed part-way through a video's points leaves some of
    them. They must not pass for the finished video. (The embedded index publishes nothing of a dead run.)"""
    from vbsearch.cli import main

    data = tmp_path / "data"
    assert main(["index", str(archive), "--data-dir", str(data), "--catalog-only"]) == 0
    with _server_store() as store:
        first = sync_store(data, store, _Inference(), _Vocab(), "m1", progress=False)
        assert first.embedded == N_VIDEOS
        points = list(store.scroll(True))
        assert all(p.payload[COMPLETE_FIELD] >= 1 for p in points)
        victim = points[0].payload["video_id"]
        mine = [p for p in points if p.payload["video_id"] == victim]
        client = store.backend.client
        client.delete("segments", points_selector=[mine[0].id], wait=True)  # as if killed before it
        indexed = store.indexed_videos(STAMP_FIELDS)
        assert indexed[victim] == dict.fromkeys(STAMP_FIELDS)  # stale: re-embed it
        assert all(v["model_id"] == "m1" for k, v in indexed.items() if k != victim)
        second = sync_store(data, store, _Inference(), _Vocab(), "m1", progress=False)
        assert (second.embedded, second.unchanged) == (1, N_VIDEOS - 1)
        assert store.count() == len(points)
        assert sync_store(data, store, _Inference(), _Vocab(), "m1", progress=False).embedded == 0


def test_a_catalog_stamp_the_embedded_store_shortens_still_reads_as_up_to_date(archive, tmp_path):
    """Qdrant Edge gives back a float payload with 16 significant digits; a catalog time such as
    1796314629.7952607 must not make every run embed its video again."""
    import polars as pl

    from indexer.catalog import Catalog
    from vbsearch.cli import main

    data = tmp_path / "data"
    assert main(["index", str(archive), "--data-dir", str(data), "--catalog-only"]) == 0
    catalog = Catalog(data)
    videos = catalog.read_table("videos")
    row = videos.head(1).with_columns(pl.lit(1796314629.7952607).alias("indexed_at"))
    catalog.put("videos", row["video_id"][0], row)
    with SegmentStore.update(data) as store:
        assert sync_store(data, store, _Inference(), _Vocab(), "m1", progress=False).embedded == N_VIDEOS
    with SegmentStore.update(data) as store:
        stamps = store.indexed_videos(STAMP_FIELDS)
        assert stamps[row["video_id"][0]]["catalog_stamp"] != 1796314629.7952607  # what Edge gives back
        again = sync_store(data, store, _Inference(), _Vocab(), "m1", progress=False)
        assert (again.embedded, again.unchanged) == (0, N_VIDEOS)


def test_upsert_counts_each_videos_points(tmp_path):
    with SegmentStore.update(tmp_path) as store:
        store.ensure(2)
        store.upsert([StorePoint("a", float(i), {"video": [1.0, 0.0]}) for i in range(3)]
                     + [StorePoint("b", 0.0, {"video": [0.0, 1.0]})])
        counts = {p.payload["video_id"]: p.payload[COMPLETE_FIELD] for p in store.scroll(True)}
        assert counts == {"a": 3, "b": 1}
        assert store.indexed_videos(("video_id",)) == {"a": {"video_id": "a"}, "b": {"video_id": "b"}}


def test_a_second_index_run_on_the_same_data_dir_is_busy(archive, tmp_path):
    from indexer.catalog import writer_lock
    from vbsearch.cli import main

    data = tmp_path / "data"
    with writer_lock(data):
        run = run_index(archive, data)
        assert run.returncode == 2 and "Traceback" not in run.stderr
        assert f"index busy: {data} is being indexed by vbsearch index (pid {os.getpid()})" in run.stderr
        assert not (data / "catalog").exists()  # it wrote nothing
    assert main(["index", str(archive), "--data-dir", str(data), "--catalog-only"]) == 0


def test_temporary_files_of_a_killed_writer_are_swept(archive, tmp_path):
    from vbsearch.cli import main

    data = tmp_path / "data"
    leftover = data / "catalog" / "videos" / ".abc.parquet.x1y2.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a parquet file")
    assert main(["index", str(archive), "--data-dir", str(data), "--catalog-only"]) == 0
    assert not leftover.exists() and len(Catalog(data).video_ids()) == N_VIDEOS
