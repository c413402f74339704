"""ui/preview.py: the preview of a moment starts a lead-in before it, ends at its end, and is cached."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest

from ui import preview as pv
from vbsearch.synth import write_video

FPS = 25
SECONDS = 8
SIZE = (120, 200)  # (H, W)


def brightness(t: float) -> float:
    """The test clip's frame brightness at t seconds: a ramp, so a frame tells its own time."""
    return (int(round(t * FPS)) % (SECONDS * FPS)) * 255 / (SECONDS * FPS)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("preview-src")
    n = SECONDS * FPS
    frames = [np.full((*SIZE, 3), int(i * 255 / n), np.uint8) for i in range(n)]
    t = np.arange(SECONDS * 16_000) / 16_000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return write_video(folder / "ramp.mp4", frames, fps=FPS, audio=audio)


def decode(path):
    with av.open(str(path)) as c:
        video = [(f.time, f.to_ndarray(format="rgb24").mean()) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = [f for f in c.decode(audio=0)]
        vstream = c.streams.video[0]
        codec, width = vstream.codec_context.name, vstream.codec_context.width
    return video, sum(f.samples for f in audio) / audio[0].sample_rate, codec, width


def test_window_adds_the_lead_in_and_clamps_to_the_file():
    assert pv.window(10.0, 14.0) == (10.0 - pv.LEAD_IN_S, 14.0)
    assert pv.window(0.5, 3.0) == (0.0, 3.0)  # no time before the file's start
    assert pv.window(5.0, 9.0, duration=8.0) == (5.0 - pv.LEAD_IN_S, 8.0)
    assert pv.window(100.0, 500.0) == (100.0 - pv.LEAD_IN_S, 100.0 + pv.MAX_PREVIEW_S)
    with pytest.raises(pv.PreviewError, match="empty moment"):
        pv.window(3.0, 3.0)


def test_preview_plays_from_the_lead_in_to_the_end(source, tmp_path):
    p = pv.preview(source, "vid1", 3.0, 5.0, tmp_path)
    assert p.path == tmp_path / "previews" / "vid1" / "3000-5000.mp4"
    assert (p.window_start, p.window_end, p.lead_in) == (1.5, 5.0, 1.5)
    video, audio_s, codec, width = decode(p.path)
    assert codec == "h264" and width == SIZE[1]
    assert len(video) == pytest.approx(3.5 * FPS, abs=1)
    # The first frame is the source's frame at 1.5 s, the last the one just before 5.0 s.
    assert video[0][1] == pytest.approx(brightness(1.5), abs=3)
    assert video[-1][1] == pytest.approx(brightness(5.0 - 1 / FPS), abs=3)
    assert audio_s == pytest.approx(3.5, abs=0.1)


def test_preview_at_the_file_start_and_end(source, tmp_path):
    p = pv.preview(source, "vid1", 0.4, 2.0, tmp_path)
    video, *_ = decode(p.path)
    assert p.window_start == 0.0 and video[0][1] == pytest.approx(brightness(0.0), abs=3)
    p = pv.preview(source, "vid1", 7.0, 9.5, tmp_path, duration=SECONDS)
    video, audio_s, *_ = decode(p.path)
    assert len(video) == pytest.approx(2.5 * FPS, abs=1) and audio_s == pytest.approx(2.5, abs=0.1)


def test_cache_is_reused_and_pruned(source, tmp_path, monkeypatch):
    first = pv.preview(source, "vid1", 3.0, 5.0, tmp_path)
    stamp = first.path.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("cut again although cached")

    monkeypatch.setattr(pv, "cut", fail)
    again = pv.preview(source, "vid1", 3.0, 5.0, tmp_path)
    assert again == first and first.path.stat().st_mtime_ns == stamp
    monkeypatch.undo()

    second = pv.preview(source, "vid1", 1.0, 2.0, tmp_path)
    old = first.path.stat()
    os.utime(first.path, (old.st_atime - 100, old.st_mtime - 100))  # least recently used
    removed = pv.prune(tmp_path / "previews", max_bytes=second.path.stat().st_size)
    assert removed == 1 and not first.path.exists() and second.path.exists()
    assert not list((tmp_path / "previews").rglob(".*.mp4"))  # no temporary files left behind


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(pv.PreviewError, match="not a video id"):
        pv.preview(tmp_path / "x.mp4", "../../etc", 1.0, 2.0, tmp_path)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    with pytest.raises(pv.PreviewError, match="cannot open"):
        pv.preview(broken, "vid2", 1.0, 2.0, tmp_path)
    assert not list((tmp_path / "previews").rglob("*.mp4"))  # nothing half-written stays in the cache


def test_preview_past_the_last_frame_fails_cleanly(source, tmp_path):
    with pytest.raises(pv.PreviewError, match="no video frames"):
        pv.preview(source, "vid1", 20.0, 22.0, tmp_path)
