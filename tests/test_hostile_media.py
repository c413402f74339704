"""Hostile media: an archive of broken, odd and unusual files made here, indexed in one run.

Every file is either indexed correctly or yields exactly one clear error: one `FAILED` line on
stderr naming it, one row in the catalog's errors table, and never a traceback. The good files
of the same run are indexed.

The unreadable file: root reads files whatever their mode bits, and CI runs these tests as root.
Under root the `vbsearch index` subprocess runs without the capabilities that grant that
(`setpriv --bounding-set=-dac_override,-dac_read_search`), so a chmod 000 file is unreadable
to it as to any user; without setpriv that one case is left out of the corpus (and said so).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest
from ingest_media import moving_texture, tone, write_audio_only

from indexer.catalog import Catalog
from search.store import SegmentStore
from vbsearch.synth import write_video

RUN_TIMEOUT_S = 300
DROP_FILE_CAPS = "--bounding-set=-dac_override,-dac_read_search"  # root without its read-anything powers
UNREADABLE_POSSIBLE = os.geteuid() != 0 or shutil.which("setpriv") is not None
NOT_UTF8 = os.fsdecode(b"caf\xe9 latin-1.mp4")  # a name that is not UTF-8 (ISO 8859-1 bytes)


@dataclass(frozen=True)
class Case:
    name: str  # file name in the corpus
    error: str | None  # None: must be indexed; else a fragment of its one error message
    stage: str | None = None  # the error's stage
    clips: int | None = None  # clips expected when indexed (None: at least one)


def _frames(n: int, seed: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Distinct content per file (the catalog keys videos by content)."""
    colour = tuple(int(c) for c in np.random.default_rng(seed).integers(40, 255, 3))
    return moving_texture(n, colour, 2.0, seed=seed, size=size)


def _renamed(tmp_name: str, final: Path, **kwargs) -> Path:
    """Write a video under a name whose extension picks the container, then give it `final`'s name."""
    return write_video(final.parent / tmp_name, **kwargs).rename(final)


def _corrupt_audio(path: Path, seed: int = 0) -> None:
    """Overwrite every audio packet's bytes with noise; the video packets stay intact."""
    with av.open(str(path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(c.streams.audio[0]) if p.size and p.pos is not None and p.pos >= 0]
    assert spans
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for pos, size in spans:
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def build_corpus(folder: Path) -> list[Case]:
    """The hostile archive in `folder` and what indexing each file must give."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    good = write_video(folder / "good.mp4", _frames(75, 1), fps=25, audio=tone(3.0))
    cases.append(Case("good.mp4", None, clips=2))  # 3.0 s: two clips
    write_video(folder / "good two.mkv", _frames(60, 2), fps=20)
    cases.append(Case("good two.mkv", None, clips=2))

    (folder / "zero.mp4").write_bytes(b"")
    cases.append(Case("zero.mp4", "empty file", "probe"))
    # PyAV's MP4s keep their index (moov) at the end: cut in half, nothing says where the frames are.
    (folder / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases.append(Case("truncated.mp4", "not a readable media file", "probe"))
    # Matroska streams: cut mid-stream, the frames before the cut decode (with a warning).
    whole = write_video(folder / "whole.mkv", _frames(150, 3), fps=25, audio=tone(6.0)).read_bytes()
    (folder / "whole.mkv").unlink()
    (folder / "truncated.mkv").write_bytes(whole[: int(len(whole) * 0.6)])
    cases.append(Case("truncated.mkv", None))
    _renamed("tmp_matroska.mkv", folder / "wrong extension.avi", frames=_frames(30, 4), fps=25)
    cases.append(Case("wrong extension.avi", None, clips=1))  # the probe reads content, not names
    (folder / "random.mp4").write_bytes(np.random.default_rng(5).integers(0, 256, 30_000, dtype=np.uint8).tobytes())
    cases.append(Case("random.mp4", "not a readable media file", "probe"))
    (folder / "notes.mkv").write_bytes(b"minutes of the meeting, not a video\n" * 40)
    cases.append(Case("notes.mkv", "not a readable media file", "probe"))
    write_audio_only(folder / "audio only.m4v")
    cases.append(Case("audio only.m4v", "no video stream", "probe"))

    write_video(folder / "one frame.mp4", _frames(1, 6), fps=25)
    cases.append(Case("one frame.mp4", None, clips=1))
    write_video(folder / "half second.mp4", _frames(10, 7), fps=20)
    cases.append(Case("half second.mp4", None, clips=1))
    write_video(folder / "tall.mp4", _frames(20, 8, size=(1024, 16)), fps=25)  # 16 x 1024: aspect 1:64
    cases.append(Case("tall.mp4", None, clips=1))
    write_video(folder / "uhd.mp4", _frames(3, 9, size=(2160, 4096)), fps=25)  # 4096 x 2160, 0.12 s
    cases.append(Case("uhd.mp4", None, clips=1))
    gaps = np.random.default_rng(10).uniform(0.02, 0.2, 29)  # 30 frames, 0.02-0.2 s apart: ~3.3 s
    write_video(folder / "vfr.mp4", _frames(30, 10), fps=25, frame_times=np.concatenate([[0.0], np.cumsum(gaps)]))
    cases.append(Case("vfr.mp4", None, clips=2))
    corrupt = write_video(folder / "corrupt audio.mp4", _frames(75, 11), fps=25, audio=tone(5.0))
    _corrupt_audio(corrupt)
    cases.append(Case("corrupt audio.mp4", None, clips=2))  # the pictures are indexed, without speech

    for i, name in enumerate(("ünïcode vidéo 名前.mp4", "  spaces  and 'quotes' .mp4", "new\nline.mp4")):
        write_video(folder / name, _frames(30, 20 + i), fps=25)
        cases.append(Case(name, None, clips=1))
    write_video(folder / NOT_UTF8, _frames(30, 30), fps=25)
    cases.append(Case(NOT_UTF8, "not valid UTF-8", "discover"))

    os.symlink("loop b.mp4", folder / "loop a.mp4")
    os.symlink("loop a.mp4", folder / "loop b.mp4")
    cases += [Case("loop a.mp4", "symbolic link loop", "discover"), Case("loop b.mp4", "symbolic link loop", "discover")]
    os.symlink("/nonexistent/video.mp4", folder / "dangling.mp4")
    cases.append(Case("dangling.mp4", "broken symbolic link", "discover"))
    (folder / "nested").mkdir()
    os.symlink("..", folder / "nested" / "up")  # a folder loop: the walk must not follow it
    os.mkfifo(folder / "pipe.mp4")  # opening it would block for ever
    cases.append(Case("pipe.mp4", "not a regular file", "discover"))
    if UNREADABLE_POSSIBLE:
        locked = write_video(folder / "locked.mp4", _frames(30, 40), fps=25)
        locked.chmod(0)
        cases.append(Case("locked.mp4", "permission denied", "discover"))
    return cases


def vbsearch(*args: str | Path) -> subprocess.CompletedProcess:
    """`vbsearch ARGS` in a subprocess (so stderr is exactly what an operator sees)."""
    cmd = [sys.executable, "-m", "vbsearch.cli", *map(str, args)]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        cmd = ["setpriv", DROP_FILE_CAPS, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, errors="backslashreplace", timeout=RUN_TIMEOUT_S)


@dataclass(frozen=True)
class Indexed:
    folder: Path
    data: Path
    cases: list[Case]
    run: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Indexed:
    root = tmp_path_factory.mktemp("hostile")
    folder, data = root / "archive", root / "data"
    cases = build_corpus(folder)
    run = vbsearch("index", folder, "--catalog-only", "--data-dir", data)  # default speech: faster-whisper
    return Indexed(folder, data, cases, run)


def _failed_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "FAILED" in ln]


def test_no_traceback_and_the_summary_counts_every_file(hostile):
    assert hostile.run.returncode == 1, hostile.run.stderr  # some files failed, the run finished
    assert "Traceback" not in hostile.run.stderr
    good = [c for c in hostile.cases if c.error is None]
    bad = [c for c in hostile.cases if c.error is not None]
    assert f"files: {len(good)} ok, {len(bad)} failed, 0 skipped" in hostile.run.stdout


def test_each_bad_file_gives_one_clear_error(hostile):
    lines = _failed_lines(hostile.run.stderr)
    errors = Catalog(hostile.data).read_table("errors")
    bad = [c for c in hostile.cases if c.error is not None]
    assert len(lines) == len(bad) and errors.height == len(bad)
    for case in bad:
        shown = str(hostile.folder / case.name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        mine = [ln for ln in lines if f"FAILED {shown}: " in ln]
        assert len(mine) == 1, (case, lines)
        assert f": {case.stage}: " in mine[0] and case.error in mine[0]
        row = errors.filter(pl.col("path") == shown)
        assert row.height == 1 and row["stage"][0] == case.stage and case.error in row["error"][0]
    if not UNREADABLE_POSSIBLE:
        pytest.skip("running as root without setpriv: the unreadable-file case was left out")


def test_good_and_odd_files_are_indexed(hostile):
    videos = Catalog(hostile.data).read_table("videos")
    by_path = {row["path"]: row for row in videos.iter_rows(named=True)}
    good = [c for c in hostile.cases if c.error is None]
    assert sorted(by_path) == sorted(str(hostile.folder / c.name) for c in good)  # names kept exactly
    clips = Catalog(hostile.data).read_table("clips")
    for case in good:
        row = by_path[str(hostile.folder / case.name)]
        mine = clips.filter(pl.col("video_id") == row["video_id"])
        assert mine.height == row["n_clips"] >= 1
        if case.clips is not None:
            assert row["n_clips"] == case.clips, case
        assert np.isfinite(np.asarray(mine["feature"].to_list(), dtype=np.float32)).all()
        for rel in mine["thumbnail"].to_list():
            assert (hostile.data / rel).is_file()
    assert (by_path[str(hostile.folder / "uhd.mp4")]["width"], by_path[str(hostile.folder / "uhd.mp4")]["height"]) \
        == (4096, 2160)
    assert by_path[str(hostile.folder / "tall.mp4")]["width"] == 16


def test_truncated_stream_and_corrupt_audio_are_indexed_with_a_warning(hostile):
    videos = Catalog(hostile.data).read_table("videos")
    row = {r["path"]: r for r in videos.iter_rows(named=True)}
    cut = row[str(hostile.folder / "truncated.mkv")]
    assert 1.5 <= cut["duration"] < 6.0 * 0.9  # the part before the cut
    assert "truncated.mkv: decoded" in hostile.run.stderr and "truncated or damaged" in hostile.run.stderr
    damaged = row[str(hostile.folder / "corrupt audio.mp4")]
    assert damaged["has_audio"] and damaged["asr_skipped"].startswith("audio unreadable")
    warning = [ln for ln in hostile.run.stderr.splitlines() if "corrupt audio.mp4" in ln]
    assert len(warning) == 1 and "indexed without speech" in warning[0]
    assert Catalog(hostile.data).read_video(damaged["video_id"], "sentences").is_empty()


def test_thumbnails_of_extreme_shapes_stay_small(hostile):
    from PIL import Image

    videos = Catalog(hostile.data).read_table("videos")
    clips = Catalog(hostile.data).read_table("clips")
    for name in ("tall.mp4", "uhd.mp4"):
        video_id = videos.filter(pl.col("path") == str(hostile.folder / name))["video_id"][0]
        rel = clips.filter(pl.col("video_id") == video_id)["thumbnail"][0]
        with Image.open(hostile.data / rel) as im:
            assert max(im.size) <= 320 and min(im.size) >= 2


def test_rerun_skips_everything_indexed_and_reports_the_bad_again(hostile):
    again = vbsearch("index", hostile.folder, "--catalog-only", "--data-dir", hostile.data)
    good = [c for c in hostile.cases if c.error is None]
    bad = [c for c in hostile.cases if c.error is not None]
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert f"files: 0 ok, {len(bad)} failed, {len(good)} skipped" in again.stdout
    assert len(_failed_lines(again.stderr)) == len(bad)
    assert Catalog(hostile.data).read_table("errors").height == len(bad)


@pytest.mark.slow
def test_full_index_embeds_the_good_files(hostile, indexed_archive, tmp_path):
    """The whole pipeline (speech, embedding into the store) over the same corpus, with a trained model."""
    data = tmp_path / "data"
    for learned in ("vocab", "model"):
        shutil.copytree(indexed_archive.data_dir / learned, data / learned)
    run = vbsearch("index", hostile.folder, "--data-dir", data)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    good = [c for c in hostile.cases if c.error is None]
    assert f"search index: {len(good)} videos embedded" in run.stdout
    with SegmentStore.open(data) as store:
        paths = {p.payload["path"] for p in store.scroll(["path"])}
    assert paths == {str(hostile.folder / c.name) for c in good}
