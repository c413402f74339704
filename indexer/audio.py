"""Audio track -> 16 kHz mono float32, decoded and resampled with PyAV (no ffmpeg program needed).

Frames are decoded and resampled one at a time, so memory holds only the 16 kHz output
(64 kB per second of media), whatever the source rate, layout or codec.
Sample 0 is the first video frame's time, the origin indexer/decode.py gives clips, so
sentence times line up with clip times even when the audio starts late or early (MPEG-TS,
edited MP4s); audio-only files start at the container's start time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # Hz: what Whisper models consume
MAX_LEAD_S = 600.0  # seconds; an audio start offset beyond this is a broken timestamp, ignored
MAX_BAD_PACKETS = 50  # undecodable audio packets tolerated before the file counts as broken


class AudioError(RuntimeError):
    """The file's audio could not be decoded."""


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # (N,) float32 mono at sample_rate, in [-1, 1]; empty when skipped
    sample_rate: int  # Hz
    skipped_reason: str | None = None  # why there are no samples (e.g. "no audio stream"); None if decoded

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return len(self.samples) / self.sample_rate


def _timeline_origin(container, time_base: int) -> float:
    """Seconds of the media's time zero: the video stream's start, else the container's."""
    for stream in container.streams.video:
        if stream.start_time is not None and stream.time_base is not None:
            return float(stream.start_time * stream.time_base)
    return (container.start_time or 0) / time_base


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> Audio:
    """Decode the first audio stream of any container PyAV/FFmpeg reads."""
    import av

    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise AudioError(f"{path}: cannot open: {exc}") from exc
    with container:
        if not container.streams.audio:
            return Audio(np.zeros(0, np.float32), sample_rate, "no audio stream")
        stream = container.streams.audio[0]
        stream.codec_context.thread_type = "AUTO"  # decode with several threads where the codec can
        origin = _timeline_origin(container, av.time_base)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        bad = 0
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:  # one damaged packet: skip it, as players do
                    bad += 1
                    log.debug("%s: skipping undecodable audio packet: %s", path, exc)
                    if bad > MAX_BAD_PACKETS:
                        raise AudioError(f"{path}: audio stream is damaged ({bad} undecodable packets)") from exc
                    continue
                for frame in frames:
                    if first_time is None and frame.pts is not None and frame.time_base is not None:
                        first_time = float(frame.pts * frame.time_base)
                    for out in resampler.resample(frame):
                        chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise AudioError(f"{path}: audio decoding failed: {exc}") from exc
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        return Audio(samples, sample_rate, "audio stream has no decodable samples")
    lead = (first_time - origin) if first_time is not None else 0.0
    if 0 < lead <= MAX_LEAD_S:  # audio starts after the video: pad so times stay on the file's clock
        samples = np.concatenate([np.zeros(int(round(lead * sample_rate)), np.float32), samples])
    elif -MAX_LEAD_S <= lead < 0:  # encoder priming before time 0: not part of the timeline
        samples = samples[int(round(-lead * sample_rate)):]
    if bad:
        log.warning("%s: skipped %d undecodable audio packets", path, bad)
    return Audio(np.clip(samples, -1.0, 1.0), sample_rate)
