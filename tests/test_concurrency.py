"""Searching while indexing: the embedded store is single-writer, and says so.

The embedded Qdrant store (DATA_DIR/qdrant) locks its folder to one process. An index run holds it
only while it embeds; a search, the UI or `vbsearch serve` hold it while they are open. Whoever
comes second gets a one-line "index busy" answer and a non-zero status, never a traceback, and
nothing is corrupted: an index run that finds the store busy keeps its catalog work, and the next
run embeds. The catalog itself is read without a lock while an index run writes it: every file is
replaced atomically and a video's row is written last, so a reader sees whole videos only.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
from ingest_media import moving_texture
from test_crash_safety import N_VIDEOS, RUN_TIMEOUT_S, fresh_data_dir, index_cmd, snapshot, write_archive

from indexer.catalog import TABLES, Catalog
from search.engine import SearchEngine
from search.store import SegmentStore, StoreBusyError
from vbsearch.cli import main
from vbsearch.config import load_settings
from vbsearch.synth import write_video


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, indexed_archive) -> tuple[Path, Path]:
    """A small archive and a data dir with it fully indexed (the session's trained vocabulary and model)."""
    root = tmp_path_factory.mktemp("concurrent")
    archive = root / "archive"
    write_archive(archive)
    data = fresh_data_dir(root / "data", indexed_archive.data_dir)
    assert main(["index", str(archive), "--data-dir", str(data)]) == 0
    return archive, data


def _copy(indexed, dest: Path, new_videos: int = 0) -> tuple[Path, Path]:
    """A private copy of the archive (plus `new_videos` new files) and of its data dir."""
    archive, data = indexed
    shutil.copytree(archive, dest / "archive")
    shutil.copytree(data, dest / "data")
    for i in range(new_videos):
        frames = moving_texture(60, (90 + 40 * i, 160, 30), -2.0, seed=100 + i, size=(48, 64))
        write_video(dest / "archive" / f"new {i}.mp4", frames, fps=20)
    return dest / "archive", dest / "data"


def _holds(pid: int, lock: Path) -> bool:
    """Whether process `pid` holds a lock on file `lock` (Linux: /proc/locks lists "... PID MAJ:MIN:INODE ...")."""
    try:
        inode = lock.stat().st_ino
    except FileNotFoundError:
        return False
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if str(pid) in fields and any(f.endswith(f":{inode}") for f in fields):
            return True
    return False


def _catalog_is_whole(data: Path) -> int:
    """Every catalogued video has all its clips; every catalog file reads. Returns the video count."""
    catalog = Catalog(data)
    videos = catalog.read_table("videos")
    if videos.is_empty():
        return 0
    clips = catalog.read_table("clips", set(videos["video_id"].to_list()))
    per_video = dict(clips.group_by("video_id").len().rows())
    for row in videos.iter_rows(named=True):
        assert per_video.get(row["video_id"]) == row["n_clips"], row
    return videos.height


def test_search_while_an_index_run_holds_the_store_is_busy(indexed, tmp_path, capsys):
    archive, data = _copy(indexed, tmp_path)
    with SegmentStore.open(data) as store:
        store.client.delete_collection(store.collection)  # the run has every video to embed again
    lock = data / "qdrant" / ".lock"
    proc = subprocess.Popen(index_cmd(archive, data), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not _holds(proc.pid, lock):  # wait until the run is embedding, then freeze it there
            assert proc.poll() is None and time.monotonic() < deadline, "the index run never opened the store"
            time.sleep(0.002)
        proc.send_signal(signal.SIGSTOP)
        capsys.readouterr()
        assert main(["search", "a red texture", "--data-dir", str(data), "--json"]) == 1
        out, err = capsys.readouterr()
        assert out == ""  # no half answer on stdout
        assert err.count("\n") == 1 and err.startswith("vbsearch search: index busy: ")
        assert "in use by another vbsearch process" in err
        with pytest.raises(StoreBusyError):  # what the UI and `vbsearch serve` get (and show as "busy")
            SearchEngine.open(load_settings({"data_dir": str(data)}))
        assert main(["status", "--data-dir", str(data)]) == 0  # status needs no store
        assert f"videos        {N_VIDEOS}" in capsys.readouterr().out
    finally:
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert f"search index: {N_VIDEOS} videos embedded" in out
    assert snapshot(data) == snapshot(indexed[1])  # the interrupted reader changed nothing


def test_index_while_a_searcher_holds_the_store_is_busy_then_the_next_run_completes(indexed, tmp_path, capsys):
    archive, data = _copy(indexed, tmp_path, new_videos=1)
    before = snapshot(data)
    # The searcher: this process, as the UI or `vbsearch serve` hold it; the index run below opens the
    # store separately, and the embedded store's lock refuses a second opener in any process.
    engine = SearchEngine.open(load_settings({"data_dir": str(data)}))
    try:
        capsys.readouterr()
        assert main(["index", str(archive), "--data-dir", str(data)]) == 2
        out, err = capsys.readouterr()
        busy = [ln for ln in err.splitlines() if "index busy" in ln]
        assert len(busy) == 1 and "run `vbsearch index` again" in busy[0]
        assert f"files: 1 ok, 0 failed, {N_VIDEOS} skipped" in out  # the catalog work was done
        assert _catalog_is_whole(data) == N_VIDEOS + 1
        for table in TABLES:
            for file in Catalog(data).files(table):
                pl.read_parquet(file)
        assert engine.search("a red texture slides", top_k=3)  # the searcher is unaffected
    finally:
        engine.close()
    assert main(["index", str(archive), "--data-dir", str(data)]) == 0
    after = snapshot(data)
    assert set(before.points) < set(after.points) and len(after.videos) == N_VIDEOS + 1
    new_id = next(v[0] for v in after.videos if v[1].endswith("new 0.mp4"))
    assert any(p[1] == new_id for p in after.points)


def test_searching_and_reading_the_catalog_while_an_index_run_writes(indexed, tmp_path):
    archive, data = _copy(indexed, tmp_path, new_videos=3)
    engine = SearchEngine.open(load_settings({"data_dir": str(data)}))
    proc = subprocess.Popen([*index_cmd(archive, data), "--catalog-only"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen, rounds = set(), 0
    try:
        while proc.poll() is None or rounds == 0:
            seen.add(_catalog_is_whole(data))
            assert engine.search("the blue pattern keeps moving", top_k=2)
            assert engine.index_info().videos >= N_VIDEOS
            rounds += 1
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        engine.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "files: 3 ok" in out
    assert _catalog_is_whole(data) == N_VIDEOS + 3
    assert seen <= set(range(N_VIDEOS, N_VIDEOS + 4)) and rounds >= 1
