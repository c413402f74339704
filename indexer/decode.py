"""Decode a video into non-overlapping 1.5 s clips of 30 frames sampled at 20 fps.

Sampling: sample k shows the frame on screen at time k / SAMPLE_FPS (the last frame whose
presentation time is <= that), counted from the first frame, so any source frame rate,
including a variable one, maps onto the same 20 fps grid. Samples exist for every
k / SAMPLE_FPS before the end of the last frame (the decoded duration).

Clips: clip i holds samples 30i .. 30i+29 and spans [1.5 i, min(1.5 (i+1), duration)).
The tail rule: samples left over after the last full clip become one more clip when there
are at least MIN_TAIL_FRAMES of them (>= 0.75 s), padded to 30 frames by repeating its last
frame, its end the decoded duration; a shorter tail is dropped. A video shorter than one
clip always gives one (padded) clip, so every decodable video is searchable.

Frames are resized by the decoder itself to the extractor's input size and handed out in
batches of `chunk_clips` clips, so memory does not grow with the video's length.

Decoders: decord first (fast, frame-accurate); PyAV when decord cannot open or read a file
(AV1, odd containers, broken timestamps). When decord fails part-way, PyAV resumes at the
first clip decord did not deliver. `ClipReader.decoder` says which one served the file.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.features import CLIP_FRAMES, SAMPLE_FPS  # the extractors' contract: 30 frames sampled at 20 fps

log = logging.getLogger(__name__)

CLIP_SECONDS = CLIP_FRAMES / SAMPLE_FPS  # 1.5 s
MIN_TAIL_FRAMES = 15  # 0.75 s: shorter tails after the last full clip are dropped
CHUNK_CLIPS = 8  # clips per batch: 8 x 30 frames x 256x256x3 = 47 MB at the largest input size
DECODERS = ("auto", "decord", "pyav")
MAX_BAD_PACKETS = 100  # PyAV: corrupt packets skipped before a file counts as unreadable
_EPS = 1e-6  # s: float slack when comparing times
_DECORD_LOCATION = re.compile(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ")  # "[01:16:54] /src/x.cc:61: " before decord's message


class DecodeError(RuntimeError):
    """No decoder could read the file's frames."""


@dataclass(frozen=True)
class DecodeOptions:
    width: int  # output frame width in pixels (the extractor's input size)
    height: int  # output frame height in pixels
    chunk_clips: int = CHUNK_CLIPS  # clips per ClipBatch; bounds memory
    decoder: str = "auto"  # auto = decord with PyAV fallback | decord | pyav


@dataclass(frozen=True)
class ClipBatch:
    first_index: int  # clip index of frames[0]
    frames: np.ndarray  # (B, CLIP_FRAMES, H, W, 3) uint8 RGB
    starts: np.ndarray  # (B,) float64 seconds
    ends: np.ndarray  # (B,) float64 seconds
    valid: np.ndarray  # (B,) int: real (not padded) frames per clip

    def __len__(self) -> int:
        return len(self.frames)


def n_samples(duration: float) -> int:
    """Samples on the 20 fps grid before `duration` seconds."""
    return max(0, math.ceil(duration * SAMPLE_FPS - _EPS))


def clip_count(samples: int) -> int:
    """Clips made from `samples` samples under the tail rule (see module doc)."""
    full, tail = divmod(samples, CLIP_FRAMES)
    return full + (1 if tail >= MIN_TAIL_FRAMES or (full == 0 and tail > 0) else 0)


# A sample source yields consecutive (n, H, W, 3) uint8 arrays from its `skip`-th sample on and
# returns the decoded duration in seconds.
SampleSource = Generator[np.ndarray, None, float]


def _quiet_decord(decord) -> None:
    """decord's FFmpeg prints every damaged packet to stderr; its errors still raise, so keep stderr for
    our one line per file (FFmpeg's own chatter returns with -v)."""
    level = decord.logging.INFO if log.isEnabledFor(logging.DEBUG) else decord.logging.QUIET
    decord.logging.set_level(level)


def _decord_samples(path: Path, opts: DecodeOptions, skip: int) -> SampleSource:
    import decord

    _quiet_decord(decord)
    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), width=opts.width, height=opts.height)
    n = len(vr)
    if n == 0:
        raise DecodeError("decord found no frames")
    ts = np.asarray(vr.get_frame_timestamp(np.arange(n)), dtype=np.float64)  # (n, 2) start, end
    starts = ts[:, 0] - ts[0, 0]
    if np.any(np.diff(starts) < 0):
        raise DecodeError("decord reports non-monotonic frame times")
    end = ts[-1, 1] - ts[0, 0]
    if end <= starts[-1]:  # no frame duration in the container: assume the average frame period
        fps = vr.get_avg_fps()
        end = starts[-1] + (1.0 / fps if fps > 0 else 1.0 / SAMPLE_FPS)
    total = n_samples(end)
    index = np.searchsorted(starts, np.arange(total) / SAMPLE_FPS + _EPS, side="right") - 1
    index = np.clip(index, 0, n - 1)
    step = opts.chunk_clips * CLIP_FRAMES
    for s in range(skip, total, step):
        yield vr.get_batch(index[s : s + step].tolist()).asnumpy()
    return float(end)


def _pyav_samples(path: Path, opts: DecodeOptions, skip: int) -> SampleSource:
    import av

    step = opts.chunk_clips * CLIP_FRAMES
    buf: list[np.ndarray] = []
    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        period = 1.0 / float(rate) if rate else 1.0 / SAMPLE_FPS
        t0: float | None = None
        k = 0  # next sample to emit
        held = None  # the frame on screen: (av frame, start time, rgb or None until first needed)
        bad = 0

        def emit_until(t: float) -> Iterator[np.ndarray]:
            """Emit the held frame for every sample before time t."""
            nonlocal k, held
            while k / SAMPLE_FPS < t - _EPS:
                if k >= skip:
                    if held[2] is None:  # convert lazily: frames between samples are never converted
                        rgb = held[0].to_ndarray(width=opts.width, height=opts.height, format="rgb24")
                        held = (held[0], held[1], rgb)
                    buf.append(held[2])
                    if len(buf) == step:
                        yield np.stack(buf)
                        buf.clear()
                k += 1

        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as exc:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise DecodeError(f"more than {MAX_BAD_PACKETS} corrupt packets ({exc})") from exc
                continue
            for frame in frames:
                t = frame.time
                if t is None:
                    t = (held[1] + period) if held else 0.0
                if t0 is None:
                    t0 = t
                t = t - t0
                if held is not None:
                    t = max(t, held[1])  # a backwards timestamp: keep time monotonic
                    yield from emit_until(t)
                held = (frame, t, None)
                if frame.duration:
                    period = float(frame.duration * frame.time_base)
        if held is None:
            raise DecodeError("PyAV decoded no frames")
        end = held[1] + period
        yield from emit_until(end)
        if buf:
            yield np.stack(buf)
        return float(end)


_BACKENDS = {"decord": _decord_samples, "pyav": _pyav_samples}


class ClipReader:
    """Iterate a video's clips in batches; afterwards `decoder`, `duration`, `n_clips` describe the run."""

    def __init__(self, path: str | Path, options: DecodeOptions):
        if options.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, not {options.decoder!r}")
        self.path = Path(path)
        self.options = options
        self.decoder: str | None = None  # decoder that delivered the last clip ("decord" or "pyav")
        self.duration: float | None = None  # decoded duration in seconds, once iteration finished
        self.n_clips = 0  # clips delivered so far
        self.fallback_reason: str | None = None  # why decord was given up on, when it was

    def __iter__(self) -> Iterator[ClipBatch]:
        order = ["decord", "pyav"] if self.options.decoder == "auto" else [self.options.decoder]
        errors = []
        for i, name in enumerate(order):
            try:
                yield from self._run(name)
                return
            except Exception as exc:  # decord and PyAV raise their own error types; any means "this decoder failed"
                errors.append(f"{name}: {_one_line(exc)}")
                if i == len(order) - 1:
                    raise DecodeError("; ".join(errors)) from exc
                self.fallback_reason = errors[-1]
                log.info("%s: %s; trying %s from clip %d", self.path.name, errors[-1], order[i + 1], self.n_clips)

    def _run(self, name: str) -> Iterator[ClipBatch]:
        source = _BACKENDS[name](self.path, self.options, self.n_clips * CLIP_FRAMES)
        pending: list[np.ndarray] = []  # samples not yet in a delivered clip
        held = 0
        while True:
            try:
                chunk = next(source)
            except StopIteration as stop:
                duration = stop.value
                break
            pending.append(chunk)
            held += len(chunk)
            full = held // CLIP_FRAMES
            if full >= self.options.chunk_clips:
                samples = np.concatenate(pending)
                pending = [samples[full * CLIP_FRAMES :]]
                held = len(pending[0])
                self.decoder = name
                yield self._batch(samples[: full * CLIP_FRAMES], full, duration=None)
        samples = np.concatenate(pending) if pending else np.zeros((0, 0, 0, 3), np.uint8)
        total = self.n_clips * CLIP_FRAMES + len(samples)
        n_final = clip_count(total) - self.n_clips
        if self.n_clips == 0 and n_final == 0:
            raise DecodeError("no frames decoded")
        if n_final > 0:
            need = n_final * CLIP_FRAMES
            if len(samples) < need:  # the tail clip: repeat its last frame
                pad = np.repeat(samples[-1:], need - len(samples), axis=0)
                valid_last = len(samples) - (n_final - 1) * CLIP_FRAMES
                samples = np.concatenate([samples, pad])
            else:
                samples, valid_last = samples[:need], CLIP_FRAMES
            self.decoder = name
            yield self._batch(samples, n_final, duration=duration, valid_last=valid_last)
        self.duration = duration
        self.decoder = name

    def _batch(self, samples: np.ndarray, n: int, duration: float | None, valid_last: int = CLIP_FRAMES) -> ClipBatch:
        first = self.n_clips
        index = np.arange(first, first + n)
        starts = index * CLIP_SECONDS
        ends = (index + 1) * CLIP_SECONDS
        valid = np.full(n, CLIP_FRAMES)
        if duration is not None:  # the final batch: the last clip ends where the video ends
            ends[-1] = min(ends[-1], duration) if valid_last == CLIP_FRAMES else duration
            valid[-1] = valid_last
        self.n_clips += n
        frames = samples.reshape(n, CLIP_FRAMES, *samples.shape[1:])
        return ClipBatch(first_index=first, frames=frames, starts=starts, ends=ends, valid=valid)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # decord prefixes errors with a C++ source location and appends a stack trace.
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("Stack trace")]
    msg = lines[0] if lines else type(exc).__name__
    if "ERROR" in msg:
        msg = msg[msg.index("ERROR") :]
    msg = _DECORD_LOCATION.sub("", msg)
    return msg[:300]
