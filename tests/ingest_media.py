"""Tiny generated videos for the ingest tests (discover, decode, features, ingest).

Every file is made with vbsearch.synth.write_video (PyAV), so the tests need no media on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vbsearch.synth import SAMPLE_RATE, write_video

FRAME_SIZE = (96, 128)  # (height, width) of generated videos: 4:3, small and fast


@dataclass(frozen=True)
class Spec:
    name: str  # file name; the container follows the extension
    codec: str  # PyAV encoder
    fps: float  # nominal frame rate
    n_frames: int  # frames written
    audio: bool  # with a tone track
    expected_clips: int | None  # by the tail rule, worked out by hand; None: from the decoded duration
    frame_times: tuple[float, ...] | None = None  # variable frame rate: each frame's time


def _vfr_times(n: int) -> tuple[float, ...]:
    steps = np.random.default_rng(7).uniform(0.02, 0.12, n - 1)
    return tuple(float(t) for t in np.concatenate([[0.0], np.cumsum(steps)]))


VFR_TIMES = _vfr_times(60)

SPECS = (
    Spec("h264_25.mp4", "libx264", 25, 100, True, 3),  # 4.0 s: 2 full clips + 1.0 s tail (kept)
    Spec("h264_24.mkv", "libx264", 24, 79, False, 2),  # 3.29 s: 2 full clips + 0.29 s tail (dropped)
    Spec("vp9_30.webm", "libvpx-vp9", 30, 60, True, 1),  # 2.0 s: 1 full clip + 0.5 s tail (dropped)
    Spec("mpeg4_25.avi", "mpeg4", 25, 75, False, 2),  # 3.0 s: exactly 2 clips
    Spec("short.mp4", "libx264", 25, 25, False, 1),  # 1.0 s: shorter than a clip -> 1 padded clip
    Spec("vfr.mp4", "libx264", 25, 60, False, None, frame_times=VFR_TIMES),  # ~4.1 s, frames 0.02-0.12 s apart
    Spec("av1_24.mkv", "libsvtav1", 24, 48, False, 1),  # 2.0 s; decord cannot read AV1 -> PyAV
)


def moving_texture(n_frames: int, colour: tuple[int, int, int], velocity: float, seed: int,
                   size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A random blocky texture in `colour` scrolling horizontally at `velocity` px/frame (+ = right)."""
    h, w = size
    rng = np.random.default_rng(seed)
    margin = int(abs(velocity) * n_frames) + 4
    span = w + 2 * margin
    cells = rng.random((h // 4 + 1, span // 4 + 1)) > 0.5
    tex = np.kron(cells, np.ones((4, 4), bool))[:h, :span]
    bright = np.asarray(colour, np.float32)
    img = np.where(tex[..., None], bright, bright * 0.35).astype(np.uint8)  # (h, span, 3)
    # Content moving right = the window sliding left over the texture.
    xs = np.clip(np.round(margin - velocity * np.arange(n_frames)).astype(int), 0, span - w)
    frames = [img[:, x : x + w] for x in xs]
    return np.stack(frames)


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def spec_frames(spec: Spec) -> np.ndarray:
    """Frames whose brightness counts up, on a moving texture, so decoded frames can be told apart."""
    base = moving_texture(spec.n_frames, (200, 120, 60), 2.0, seed=len(spec.name))
    ramp = (np.arange(spec.n_frames) * 3 % 60).astype(np.int16)[:, None, None, None]
    return np.clip(base.astype(np.int16) - 30 + ramp, 0, 255).astype(np.uint8)


def write_spec(folder: Path, spec: Spec) -> Path:
    duration = (spec.frame_times[-1] + 0.04) if spec.frame_times else spec.n_frames / spec.fps
    return write_video(
        folder / spec.name, spec_frames(spec), fps=spec.fps, codec=spec.codec,
        audio=tone(duration) if spec.audio else None, frame_times=spec.frame_times,
    )


def write_corpus(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {spec.name: write_spec(folder, spec) for spec in SPECS}


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An .mp4 with an AAC track and no video stream."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=SAMPLE_RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone(seconds).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = 0
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=SAMPLE_RATE, frame_size=1024)
        for chunk in (*resampler.resample(frame), *resampler.resample(None)):
            for packet in stream.encode(chunk):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_bad_files(folder: Path, good: Path) -> dict[str, Path]:
    """Files that must fail, each for its own reason; `good` is a valid video to truncate."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = {
        "zero.mp4": b"",
        "random.mp4": np.random.default_rng(3).integers(0, 256, 20_000, dtype=np.uint8).tobytes(),
        "text.mkv": b"this is a text file, not a video\n" * 50,
        "truncated.mp4": good.read_bytes()[: good.stat().st_size // 2],
    }
    out = {}
    for name, data in bad.items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    out["audio_only.mp4"] = write_audio_only(folder / "audio_only.mp4")
    return out
