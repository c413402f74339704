"""Short preview clips of a moment, cut with PyAV into a cache in the data dir.

`st.video` loads a whole file into the server's memory and sends it to the browser, which is
fine for a few seconds of video and not for an hour-long master. So a hit is previewed from a
small H.264/AAC MP4 of its own window: from LEAD_IN_S before its start to its end.

The window is re-encoded rather than stream-copied: a copy can only start on a keyframe, which
may be many seconds before the moment. Files are cached by (video_id, start, end) under
data_dir/previews/<video_id>/, written atomically, and the cache is pruned oldest-first beyond
CACHE_MAX_BYTES.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from model.atomic import atomic_write

log = logging.getLogger(__name__)

PREVIEW_DIR = "previews"  # under the data dir
LEAD_IN_S = 1.5  # s of context played before the moment starts
MAX_PREVIEW_S = 60.0  # s: longer moments are previewed from their start for this long
MAX_WIDTH = 640  # pixels; smaller sources keep their size
CRF = 28  # x264 quality: small files, fine for judging a moment
X264_PRESET = "veryfast"
AUDIO_RATE = 44_100  # Hz, AAC output
AUDIO_BITRATE = 96_000  # bit/s
CACHE_MAX_BYTES = 512 * 1024 * 1024  # the preview cache is pruned oldest-first beyond this
_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # content ids: they become folder names


class PreviewError(RuntimeError):
    """The preview of a moment could not be made."""


@dataclass(frozen=True)
class Preview:
    path: Path  # the cached MP4
    window_start: float  # s in the source where the preview begins (the moment's start minus the lead-in)
    window_end: float  # s in the source where the preview ends
    lead_in: float  # s from the preview's start to the moment's start


def window(start: float, end: float, duration: float | None = None, lead_in: float = LEAD_IN_S,
           max_length: float = MAX_PREVIEW_S) -> tuple[float, float]:
    """(t0, t1) in the source: the moment with its lead-in, clamped to the file and to max_length."""
    if end <= start:
        raise PreviewError(f"empty moment {start:.3f}-{end:.3f} s")
    t0 = max(0.0, start - lead_in)
    t1 = min(end, start + max_length)
    if duration is not None and duration > 0:
        t1 = min(t1, duration)
        t0 = min(t0, max(0.0, t1 - lead_in))
    return t0, t1


def cache_path(data_dir: str | Path, video_id: str, start: float, end: float) -> Path:
    if not _VIDEO_ID.match(video_id):
        raise PreviewError(f"not a video id: {video_id!r}")
    return Path(data_dir) / PREVIEW_DIR / video_id / f"{round(start * 1000)}-{round(end * 1000)}.mp4"


def preview(video: str | Path, video_id: str, start: float, end: float, data_dir: str | Path,
            duration: float | None = None) -> Preview:
    """The cached preview of [start, end] of `video`, cut now if it is not cached yet.

    The caller vouches that `video` is a catalogued file: this function opens what it is given.
    """
    t0, t1 = window(start, end, duration)
    target = cache_path(data_dir, video_id, start, end)
    if not target.is_file():
        atomic_write(target, lambda tmp: cut(video, tmp, t0, t1), suffix=".mp4")  # the muxer needs the extension
        prune(Path(data_dir) / PREVIEW_DIR, keep=target)
    return Preview(target, t0, t1, start - t0)


def _even(n: float) -> int:
    return max(2, int(round(n / 2)) * 2)


def cut(src: str | Path, dst: str | Path, t0: float, t1: float) -> None:
    """Re-encode [t0, t1) s of `src` (times from its first video frame) as H.264/AAC MP4 at `dst`."""
    import av

    try:
        inp = av.open(str(src))
    except (av.FFmpegError, OSError) as exc:
        raise PreviewError(f"cannot open {src}: {exc}") from exc
    with inp:
        if not inp.streams.video:
            raise PreviewError(f"{src} has no video stream")
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        vin.thread_type = "AUTO"
        # Catalog times count from the first video frame, as the indexer decodes them.
        origin = float(vin.start_time * vin.time_base) if vin.start_time is not None and vin.time_base else 0.0
        rate = Fraction(vin.average_rate or vin.guessed_rate or 25).limit_denominator(1001)
        scale = min(1.0, MAX_WIDTH / max(1, vin.codec_context.width))
        width, height = _even(vin.codec_context.width * scale), _even(vin.codec_context.height * scale)

        # faststart: the index goes first, so the browser can play before the whole file arrives.
        with av.open(str(dst), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            vout = out.add_stream("libx264", rate=rate)
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            vout.options = {"preset": X264_PRESET, "crf": str(CRF)}
            vout.time_base = vout.codec_context.time_base = 1 / rate
            aout = None
            if ain is not None:
                aout = out.add_stream("aac", rate=AUDIO_RATE)
                aout.layout = "stereo" if (ain.codec_context.channels or 1) > 1 else "mono"
                aout.bit_rate = AUDIO_BITRATE
            try:
                _transcode(inp, vin, ain, out, vout, aout, origin + t0, origin + t1)
            except av.FFmpegError as exc:
                raise PreviewError(f"cannot cut {src} at {t0:.2f}-{t1:.2f} s: {exc}") from exc


def _transcode(inp, vin, ain, out, vout, aout, t0: float, t1: float) -> None:
    import av

    inp.seek(int(t0 * av.time_base), backward=True, any_frame=False)  # the keyframe at or before t0
    streams = [s for s in (vin, ain) if s is not None]
    resampler = None if aout is None else av.AudioResampler(
        format=aout.format.name, layout=aout.layout.name, rate=AUDIO_RATE, frame_size=aout.frame_size or 1024)
    frames_out = samples_out = 0
    video_done = False
    audio_done = ain is None
    for packet in inp.demux(streams):
        if video_done and audio_done:
            break
        is_video = packet.stream.type == "video"
        if (video_done if is_video else audio_done):
            continue
        for frame in packet.decode():
            t = frame.time
            if t is None:
                continue
            if is_video:
                if t >= t1:
                    video_done = True
                    break
                if t < t0 - 1e-6:
                    continue
                vf = frame.reformat(width=vout.width, height=vout.height, format="yuv420p")
                vf.pts, vf.time_base = frames_out, vout.codec_context.time_base
                frames_out += 1
                for p in vout.encode(vf):
                    out.mux(p)
            else:
                if t + frame.samples / frame.sample_rate >= t1:
                    audio_done = True
                chunk = _trim_audio(frame, t, t0, t1)
                if chunk is None or resampler is None:
                    continue
                for af in resampler.resample(chunk):
                    af.pts = samples_out
                    samples_out += af.samples
                    for p in aout.encode(af):
                        out.mux(p)
    if frames_out == 0:
        raise PreviewError(f"no video frames between {t0:.2f} and {t1:.2f} s")
    for p in vout.encode():
        out.mux(p)
    if aout is not None and resampler is not None:
        for af in resampler.resample(None):
            af.pts = samples_out
            samples_out += af.samples
            for p in aout.encode(af):
                out.mux(p)
        for p in aout.encode():
            out.mux(p)


def _trim_audio(frame, t: float, t0: float, t1: float):
    """The part of an audio frame inside [t0, t1), as a new frame (None when nothing is inside)."""
    import av

    rate = frame.sample_rate
    first = max(0, int(round((t0 - t) * rate)))
    last = min(frame.samples, int(round((t1 - t) * rate)))
    if last <= first:
        return None
    if first == 0 and last == frame.samples:
        frame.pts = None
        return frame
    planar = frame.format.is_planar
    data = frame.to_ndarray()  # planar: (channels, n); packed: (1, n * channels)
    channels = len(frame.layout.channels)
    if planar:
        data = data[:, first:last]
    else:
        data = data.reshape(-1, channels)[first:last].reshape(1, -1)
    part = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=frame.format.name,
                                      layout=frame.layout.name)
    part.sample_rate = rate
    return part


def prune(cache_dir: Path, keep: Path | None = None, max_bytes: int = CACHE_MAX_BYTES) -> int:
    """Delete the least recently used previews until the cache fits in max_bytes; returns how many."""
    files = []
    for f in cache_dir.glob("*/*.mp4"):
        try:
            st = f.stat()
        except FileNotFoundError:  # another session pruned it
            continue
        files.append((max(st.st_atime, st.st_mtime), st.st_size, f))
    total = sum(size for _, size, _ in files)
    removed = 0
    for _, size, f in sorted(files, key=lambda x: x[0]):
        if total <= max_bytes:
            break
        if keep is not None and f == keep:
            continue
        f.unlink(missing_ok=True)
        total -= size
        removed += 1
    return removed
