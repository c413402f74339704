import os
import shutil

import pytest
from ingest_media import SPECS, write_audio_only, write_spec

from indexer.discover import HASH_CHUNK, ProbeError, discover, probe, video_id

SPEC = {s.name: s for s in SPECS}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {name: write_spec(folder, SPEC[name]) for name in ("h264_25.mp4", "vp9_30.webm", "h264_24.mkv")}


def test_discover_walks_folders_and_keeps_video_extensions(tmp_path):
    for rel in ["a.mp4", "b.MKV", "sub/c.webm", "sub/deeper/d.ts", "notes.txt", "sub/e.srt", "sub/f.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    odd = tmp_path / "clip.bin"  # named explicitly: kept whatever its extension
    odd.write_bytes(b"x")
    found = discover([tmp_path, tmp_path / "a.mp4", odd, tmp_path / "missing.mp4"])
    paths = [f.path for f in found]
    assert paths[:4] == [tmp_path / "a.mp4", tmp_path / "b.MKV", tmp_path / "sub/c.webm", tmp_path / "sub/deeper/d.ts"]
    assert paths[4:] == [odd, tmp_path / "missing.mp4"]  # a.mp4 given twice appears once
    assert all(p.is_absolute() for p in paths)
    errors = {f.path.name: f.error for f in found if f.error}
    assert errors == {"missing.mp4": "no such file or directory"}


def test_discover_makes_relative_paths_absolute(tmp_path, monkeypatch):
    (tmp_path / "v.mp4").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert [f.path for f in discover(["v.mp4", "."])] == [tmp_path / "v.mp4"]


def test_video_id_follows_content_not_name(tmp_path, videos):
    src = videos["h264_25.mp4"]
    copy = tmp_path / "renamed copy.mov"
    shutil.copy(src, copy)
    assert video_id(copy) == video_id(src)
    assert video_id(videos["vp9_30.webm"]) != video_id(src)
    assert len(video_id(src)) == 20 and int(video_id(src), 16) >= 0


def test_video_id_reads_only_head_and_tail(tmp_path):
    big = tmp_path / "big.mp4"
    size = 8 * HASH_CHUNK
    with open(big, "wb") as fh:  # sparse: no 8 MiB written
        fh.truncate(size)
    base = video_id(big)

    def poke(offset: int) -> str:
        with open(big, "r+b") as fh:
            fh.seek(offset)
            old = fh.read(1)
            fh.seek(offset)
            fh.write(bytes([old[0] ^ 0xFF]))
        try:
            return video_id(big)
        finally:
            with open(big, "r+b") as fh:
                fh.seek(offset)
                fh.write(old)

    assert poke(size // 2) == base  # the middle is never read
    assert poke(10) != base  # the head is
    assert poke(size - 10) != base  # and the tail
    with open(big, "ab") as fh:  # and the size counts
        fh.write(b"\0")
    assert video_id(big) != base


def test_probe_reports_container_facts(videos):
    info = probe(videos["h264_25.mp4"])
    assert info.path == videos["h264_25.mp4"] and info.size == os.path.getsize(info.path)
    assert info.mtime == os.path.getmtime(info.path)
    assert info.duration == pytest.approx(4.0, abs=0.05)
    assert info.fps == pytest.approx(25) and (info.width, info.height) == (128, 96)
    assert info.has_audio and info.codec == "h264" and info.video_id == video_id(info.path)
    webm = probe(videos["vp9_30.webm"])
    assert webm.fps == pytest.approx(30) and webm.duration == pytest.approx(2.0, abs=0.05) and webm.codec == "vp9"
    mkv = probe(videos["h264_24.mkv"])
    assert not mkv.has_audio and mkv.fps == pytest.approx(24)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("zero.mp4", b"", "empty file"),
        ("random.mp4", bytes(range(256)) * 40, "not a readable media file"),
        ("text.mkv", b"hello, not a video\n" * 40, "not a readable media file"),
    ],
)
def test_probe_rejects_non_videos_with_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ProbeError, match=message) as err:
        probe(path)
    assert "\n" not in str(err.value)


def test_probe_rejects_audio_only_and_truncated(tmp_path, videos):
    with pytest.raises(ProbeError, match="no video stream .*audio-only"):
        probe(write_audio_only(tmp_path / "speech.mp4"))
    data = videos["h264_25.mp4"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the moov atom is at the end: gone
    with pytest.raises(ProbeError):
        probe(cut)
    with pytest.raises(ProbeError, match="cannot stat"):
        probe(tmp_path / "nothing-here.mp4")
