"""The catalog: Parquet tables (polars) in data_dir/catalog, partitioned by video.

Layout (one file per video and table, so a video is replaced or dropped without
rewriting the archive, and a crash can only lose the video being written):

    catalog/videos/<video_id>.parquet     one row; written LAST, so its presence means "complete"
    catalog/clips/<video_id>.parquet      one row per 1.5 s clip
    catalog/sentences/<video_id>.parquet  one row per transcript sentence
    catalog/errors/<path_key>.parquet     one row per file that failed, keyed by its path

Every file is written to a temporary name in the same folder, fsynced and renamed
over the target (atomic on POSIX), so a reader never sees a half-written file.

One writer at a time: `writer_lock(data_dir)` holds an exclusive lock on data_dir/index.lock
for an index run (the kernel drops it when the process dies, even by SIGKILL); readers (search,
UI, status) take no lock, since every file they read is complete. The holder sweeps the
temporary files a killed writer left behind (`sweep_temporary`).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from model.atomic import atomic_write

log = logging.getLogger(__name__)

TABLES = ("videos", "clips", "sentences", "errors")
LOCK_FILE = "index.lock"  # in the data dir: held by the one process writing the catalog and the index


class CatalogBusyError(RuntimeError):
    """Another process holds the data dir's writer lock (an index run)."""


@contextmanager
def writer_lock(data_dir: str | Path, who: str = "vbsearch index") -> Iterator[None]:
    """Hold data_dir's writer lock for the block, or raise CatalogBusyError at once (never waits)."""
    path = Path(data_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 100, 0).decode("utf-8", "replace").strip() or "another process"
            raise CatalogBusyError(f"{Path(data_dir)} is being indexed by {holder}; "
                                   "wait for that run to finish (one index run per data dir)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{who} (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def atomic_write_parquet(df: pl.DataFrame, path: Path) -> None:
    """Write `df` to `path` so that `path` is either the old file or the complete new one."""
    atomic_write(path, df.write_parquet)


def text_path(path: str | Path) -> str:
    """`path` as valid UTF-8 text: bytes of a non-UTF-8 file name become backslash escapes (Parquet holds UTF-8)."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def path_key(path: str | Path) -> str:
    """A file-name-safe key for an input path (errors are keyed by path: a bad file may have no id)."""
    return hashlib.sha1(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:20]


@dataclass(frozen=True)
class CatalogSummary:
    videos: int  # complete videos
    hours: float  # their total duration
    clips: int
    sentences: int
    failed: list[dict] = field(default_factory=list)  # files that failed: path, stage, error
    last_indexed: float | None = None  # unix time of the newest videos row


class Catalog:
    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir) / "catalog"

    def _file(self, table: str, key: str) -> Path:
        if table not in TABLES:
            raise ValueError(f"unknown catalog table {table!r}")
        return self.root / table / f"{key}.parquet"

    # -- writing ---------------------------------------------------------------------------------------
    def put(self, table: str, key: str, df: pl.DataFrame) -> None:
        atomic_write_parquet(df, self._file(table, key))

    def put_video(self, video_id: str, video_row: dict, **tables: pl.DataFrame) -> None:
        """Store one video's tables, then its `videos` row (the commit marker)."""
        for table, df in tables.items():
            self.put(table, video_id, df)
        self.put("videos", video_id, pl.DataFrame([video_row]))

    def remove_video(self, video_id: str) -> None:
        # The videos row goes first: a crash half-way leaves orphans that read_table ignores.
        for table in ("videos", "clips", "sentences"):
            self._file(table, video_id).unlink(missing_ok=True)

    def put_error(self, path: str | Path, stage: str, message: str) -> None:
        row = {"path": text_path(path), "stage": stage, "error": message, "time": time.time()}
        self.put("errors", path_key(path), pl.DataFrame([row]))

    def clear_error(self, path: str | Path) -> None:
        self._file("errors", path_key(path)).unlink(missing_ok=True)

    def sweep_temporary(self) -> int:
        """Delete temporary files a killed writer left (model/atomic.py names them .NAME.*.tmp); call it
        only under writer_lock, when no write can be in flight. Returns how many went."""
        gone = 0
        for table in TABLES:
            folder = self.root / table
            for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
                tmp.unlink(missing_ok=True)
                gone += 1
        return gone

    # -- reading ---------------------------------------------------------------------------------------
    def files(self, table: str) -> list[Path]:
        folder = self.root / table
        return sorted(folder.glob("*.parquet")) if folder.is_dir() else []

    def video_ids(self) -> set[str]:
        return {p.stem for p in self.files("videos")}

    def read_table(self, table: str, video_ids: set[str] | None = None) -> pl.DataFrame:
        """All rows of a table, limited to complete videos (those with a `videos` row)."""
        complete = self.video_ids() if table != "errors" else None
        keep = complete if video_ids is None else (video_ids & complete if complete is not None else video_ids)
        frames = []
        for file in self.files(table):
            if keep is not None and file.stem not in keep:
                continue
            try:
                frames.append(pl.read_parquet(file))
            except Exception as exc:  # a damaged file must not hide the rest of the archive
                log.warning("skipping unreadable catalog file %s: %s", file, exc)
        if not frames:
            return pl.DataFrame()
        return pl.concat(frames, how="diagonal_relaxed")

    def find_video(self, video: str) -> str | None:
        """The video_id of a complete video named by its id or by its file's path, else None."""
        videos = self.read_table("videos")
        if videos.is_empty():
            return None
        ids = videos["video_id"].to_list()
        if video in ids:
            return video
        wanted = Path(video).expanduser().resolve()
        for video_id, path in zip(ids, videos["path"].to_list(), strict=True):
            if path and Path(path).expanduser().resolve() == wanted:
                return video_id
        return None

    def count(self, table: str) -> int:
        """Rows of a table over complete videos, from the Parquet footers (no column data is read)."""
        keep = self.video_ids()
        total = 0
        for file in self.files(table):
            if file.stem in keep:
                try:
                    total += pl.scan_parquet(file).select(pl.len()).collect().item()
                except Exception as exc:  # as read_table: a damaged file is skipped, not fatal
                    log.warning("skipping unreadable catalog file %s: %s", file, exc)
        return total

    def summary(self) -> CatalogSummary:
        videos = self.read_table("videos")
        errors = self.read_table("errors")
        return CatalogSummary(
            videos=videos.height,
            hours=float(videos["duration"].sum()) / 3600 if "duration" in videos.columns else 0.0,
            clips=self.count("clips"),
            sentences=self.count("sentences"),
            failed=errors.select("path", "stage", "error").to_dicts() if errors.height else [],
            last_indexed=float(videos["indexed_at"].max()) if "indexed_at" in videos.columns else None,
        )

    def read_video(self, video_id: str, table: str) -> pl.DataFrame:
        return self.read_table(table, {video_id})
