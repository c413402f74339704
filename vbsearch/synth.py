"""Synthetic media: espeak-ng speech and PyAV-encoded videos.

Used by the tests (tiny generated media) and by the sample-archive generator, so
both make media the same way. Needs the `espeak-ng` program for speech.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from indexer.audio import SAMPLE_RATE  # what the ASR side consumes


class SynthError(RuntimeError):
    pass


def speak(text: str, voice: str = "en-us", words_per_minute: int = 150) -> np.ndarray:
    """Speech for `text` as float32 mono samples at SAMPLE_RATE, synthesised by espeak-ng."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SynthError("espeak-ng is not installed (Debian package espeak-ng; `make test` installs it)")
    proc = subprocess.run([exe, "-v", voice, "-s", str(words_per_minute), "--stdout", text],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise SynthError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
    with wave.open(io.BytesIO(proc.stdout)) as wav:
        rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    if width != 2 or channels != 1:
        raise SynthError(f"unexpected espeak-ng output: {width * 8} bit, {channels} channels")
    samples = pcm.astype(np.float32) / 32768.0
    return resample(samples, rate, SAMPLE_RATE)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Linear-interpolation resampling; enough for synthetic speech."""
    if src_rate == dst_rate or len(samples) == 0:
        return samples.astype(np.float32)
    n_out = int(round(len(samples) * dst_rate / src_rate))
    t_out = np.arange(n_out) * (src_rate / dst_rate)
    return np.interp(t_out, np.arange(len(samples)), samples).astype(np.float32)


def place(clips: Sequence[tuple[float, np.ndarray]], duration: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mix (offset seconds, samples) pieces into one track of `duration` seconds."""
    track = np.zeros(int(round(duration * rate)), dtype=np.float32)
    for offset, samples in clips:
        start = int(round(offset * rate))
        piece = samples[: max(0, len(track) - start)]
        track[start : start + len(piece)] += piece
    return np.clip(track, -1.0, 1.0)


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float = 25,
    audio: np.ndarray | None = None,
    audio_rate: int = SAMPLE_RATE,
    codec: str = "libx264",
    audio_codec: str | None = None,
    pix_fmt: str = "yuv420p",
    frame_times: Sequence[float] | None = None,
    crf: int = 23,
) -> Path:
    """Encode RGB uint8 frames (H, W, 3) and optional mono float audio into `path`.

    The container follows the file extension. `frame_times` (seconds, increasing)
    gives each frame its own timestamp, for variable-frame-rate files. `crf` is
    x264's quality (higher = smaller files).
    """
    import av

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = None
        time_base = Fraction(1, 90_000) if frame_times is not None else 1 / rate
        for i, frame in enumerate(frames):
            if stream is None:
                stream = container.add_stream(codec, rate=rate)
                stream.height, stream.width = frame.shape[0], frame.shape[1]
                stream.pix_fmt = pix_fmt
                stream.time_base = time_base
                stream.codec_context.time_base = time_base
                if codec == "libx264":
                    stream.options = {"preset": "ultrafast", "crf": str(crf)}
                if audio is not None:
                    a_codec = audio_codec or _default_audio_codec(path.suffix)
                    astream = container.add_stream(a_codec, rate=audio_rate)
                    astream.layout = "mono"
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = int(round(frame_times[i] / time_base)) if frame_times is not None else i
            vf.time_base = time_base
            for packet in stream.encode(vf):
                container.mux(packet)
        if stream is None:
            raise SynthError("write_video needs at least one frame")
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            _encode_audio(container, astream, audio, audio_rate)
    return path


def _default_audio_codec(suffix: str) -> str:
    return {".webm": "libopus", ".ogv": "libvorbis", ".avi": "mp3", ".mpg": "mp2", ".mpeg": "mp2"}.get(
        suffix.lower(), "aac")


def _encode_audio(container, stream, audio: np.ndarray, rate: int) -> None:
    import av

    pcm = np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(pcm, format="flt", layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    # The encoder wants its own sample format and frame size: let a resampler chunk it.
    resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=stream.rate,
                                  frame_size=stream.frame_size or 1024)
    for chunk in (*resampler.resample(frame), *resampler.resample(None)):
        for packet in stream.encode(chunk):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def moving_square(n_frames: int, size: tuple[int, int] = (64, 96), color=(220, 40, 40),
                  background=(20, 20, 20), velocity: tuple[float, float] = (2.0, 0.0), side: int = 16):
    """Frames of a square moving at `velocity` pixels/frame: a quick, deterministic test pattern."""
    h, w = size
    for i in range(n_frames):
        frame = np.empty((h, w, 3), dtype=np.uint8)
        frame[:] = background
        x = int(w / 2 - side / 2 + velocity[0] * i) % max(1, w - side)
        y = int(h / 2 - side / 2 + velocity[1] * i) % max(1, h - side)
        frame[y : y + side, x : x + side] = color
        yield frame
