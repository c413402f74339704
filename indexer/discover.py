"""Input discovery: which files to ingest, their content id, and what the container says about them.

`discover(paths)` walks files and folders (recursively, in sorted order, not into symlinked folders)
and keeps files with a video extension; a file named explicitly is kept whatever its extension (the
probe then decides). What cannot even be opened (a symlink loop or a broken link, a FIFO or device,
no read permission, a name that is not UTF-8) is kept with its reason, so it gets its one error line.
`video_id(path)` hashes the size plus the first and last HASH_CHUNK bytes: stable across renames
and copies, it reads 2 MiB of a 20 GB file, not 20 GB. `probe(path)` reads the container header
with PyAV (no decoding).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}
)
TIMECODE = re.compile(r"^\d{2}:\d{2}:\d{2}[:;.,]\d{2,3}$")  # HH:MM:SS:FF; ';' (or '.', ',') marks drop-frame
HASH_CHUNK = 1 << 20  # bytes read from each end of a file for its id
ID_BYTES = 10  # digest bytes -> a 20-character hex id


class ProbeError(RuntimeError):
    """The file is not a readable video (no container, no video stream, unreadable)."""


@dataclass(frozen=True)
class Found:
    path: Path  # absolute path of a candidate file
    error: str | None = None  # why it cannot be used (missing, unreadable); None = fine so far


@dataclass(frozen=True)
class VideoInfo:
    path: Path  # absolute path
    video_id: str  # content id (see video_id)
    size: int  # bytes
    mtime: float  # seconds since the epoch
    duration: float  # seconds, from the container (decoding may find a little more or less)
    fps: float  # average frame rate the container reports (0 if unknown)
    width: int  # pixels
    height: int  # pixels
    has_audio: bool  # the container has at least one audio stream
    codec: str  # video codec name, e.g. h264
    timecode: str = ""  # the file's own start timecode (a tmcd track or a timecode tag), "" when it has none


def is_video_name(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def unusable(path: Path) -> str | None:
    """Why `path` cannot be ingested before anything reads it, or None."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # the catalog, the store and the UI hold paths as UTF-8 text
        return "file name is not valid UTF-8 (rename the file)"
    try:
        st = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        if exc.errno == errno.ENOENT:
            return "broken symbolic link" if path.is_symlink() else "no such file or directory"
        return f"cannot stat: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def discover(paths: list[str | Path]) -> list[Found]:
    """Files to ingest under `paths`, deduplicated, each with an error if it cannot even be opened."""
    out: dict[Path, Found] = {}

    def add(path: Path, error: str | None = None) -> None:
        out.setdefault(path, Found(path, error))

    for given in paths:
        path = Path(given).expanduser().absolute()
        if path.is_dir():
            for root, dirs, files in os.walk(path, onerror=lambda e: add(Path(e.filename), f"cannot list: {e.strerror}")):
                dirs.sort()
                for name in sorted(files):
                    file = Path(root) / name
                    if is_video_name(file):
                        add(file, unusable(file))
        else:
            add(path, unusable(path))
    return list(out.values())


def video_id(path: str | Path, size: int | None = None) -> str:
    """Content id from the size and the first and last HASH_CHUNK bytes."""
    path = Path(path)
    size = path.stat().st_size if size is None else size
    h = hashlib.blake2b(digest_size=ID_BYTES)
    h.update(size.to_bytes(8, "little"))
    with open(path, "rb") as fh:
        h.update(fh.read(HASH_CHUNK))
        if size > HASH_CHUNK:
            fh.seek(max(HASH_CHUNK, size - HASH_CHUNK))
            h.update(fh.read(HASH_CHUNK))
    return h.hexdigest()


def probe(path: str | Path) -> VideoInfo:
    """Container facts for `path`; raises ProbeError with a one-line reason for anything unusable."""
    import av

    path = Path(path).absolute()
    try:
        st = path.stat()
    except OSError as exc:
        raise ProbeError(f"cannot stat: {exc.strerror}") from exc
    if st.st_size == 0:
        raise ProbeError("empty file (0 bytes)")
    try:
        vid = video_id(path, st.st_size)
    except OSError as exc:
        raise ProbeError(f"cannot read: {exc.strerror}") from exc
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ProbeError(f"not a readable media file: {_short(exc)}") from exc
    with container:
        if not container.streams.video:
            kind = "an audio-only file" if container.streams.audio else "a file without streams"
            raise ProbeError(f"no video stream ({kind})")
        stream = container.streams.video[0]
        if not stream.width or not stream.height:
            raise ProbeError("video stream has no frame size (corrupt header?)")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        if duration <= 0 and container.duration is not None:
            duration = container.duration / 1_000_000  # microseconds (AV_TIME_BASE)
        if duration <= 0 and stream.frames and fps:
            duration = stream.frames / fps
        return VideoInfo(
            path=path, video_id=vid, size=st.st_size, mtime=st.st_mtime, duration=max(duration, 0.0), fps=fps,
            width=stream.width, height=stream.height, has_audio=bool(container.streams.audio),
            codec=stream.codec_context.name, timecode=start_timecode(container),
        )


def start_timecode(container) -> str:
    """The container's start timecode: the video stream's tag, a timecode (tmcd) track's, then the file's
    (Matroska keeps it there, as TIMECODE); "" when none is a valid HH:MM:SS:FF."""
    streams = [*container.streams.video, *container.streams.data]
    for metadata in [s.metadata for s in streams] + [container.metadata]:
        for key, value in metadata.items():
            if key.lower() == "timecode" and TIMECODE.match(str(value).strip()):
                return str(value).strip()
    return ""


def _short(exc: BaseException) -> str:
    """One line of an exception (FFmpeg errors repeat the path; keep the reason)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:300]
