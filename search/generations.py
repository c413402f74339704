"""Published generations of the embedded index: search goes on while an index run builds the next one.

    DATA_DIR/index/
        CURRENT          the published generation's name, e.g. "g000007" (replaced atomically)
        g000007/         published: a Qdrant Edge shard without a write-ahead log, never written again,
                         so any number of processes open it at once (a shard with a WAL locks it)
        g000006/         the one before, kept while a reader may still hold it; removed by the next run
        g000008.build/   the next, while a writer builds it: a copy of the published one plus its changes
        gNNNNNN/.files.lock   taken shared while a process loads or closes the shard, alone while it is copied
        gNNNNNN/vbsearch_last_op.json   the last operation number its build used (search/store_edge.py)

Publishing is one rename of the build folder and one atomic replace of CURRENT. A writer killed
anywhere leaves CURRENT naming a whole, unchanged generation; the next writer removes what the dead
one left (build folders, a generation CURRENT never named). Only the holder of the data dir's writer
lock (indexer.catalog.writer_lock) builds, publishes or sweeps.

Why a full copy and not a delta shard merged at query time: at 10^6 segments the copy takes seconds to
a minute (bench/bench_query.py prints it), an index run takes far longer, and queries then search one
shard with one HNSW graph instead of merging two.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

INDEX_DIR = "index"
CURRENT = "CURRENT"
BUILD_SUFFIX = ".build"
LEGACY_DIR = "qdrant"  # qdrant-client's local mode, before Qdrant Edge: rebuilt from the catalog, then removed
_NAME = re.compile(r"^g(\d{6})$")


@dataclass(frozen=True)
class GenerationInfo:
    published: str | None  # the published generation's name
    building: str | None  # the generation a running index run builds (None when no run holds the lock)
    leftovers: list[str]  # build folders of a run that died (removed by the next run)


def root(data_dir: Path) -> Path:
    return Path(data_dir) / INDEX_DIR


def published(data_dir: Path) -> Path | None:
    """The published generation's folder, or None before the first publish."""
    try:
        name = (root(data_dir) / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    if not _NAME.match(name):
        raise OSError(f"{root(data_dir) / CURRENT} names no generation ({name[:40]!r})")
    return root(data_dir) / name


def unreplaced_legacy(data_dir: Path) -> Path | None:
    """The local-mode store an older vbsearch left in the data dir, while no generation replaces it yet."""
    legacy = Path(data_dir) / LEGACY_DIR
    return legacy if published(data_dir) is None and legacy.is_dir() else None


def _numbers(folder: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name.removesuffix(BUILD_SUFFIX))))


FILES_LOCK = ".files.lock"


@contextmanager
def shard_files(folder: Path, exclusive: bool = False) -> Iterator[None]:
    """Hold a generation's files still. Qdrant Edge rewrites a shard's memory-mapped flags and trackers and its
    JSON state, with the same content, when a process loads or closes it: harmless to other processes doing the
    same (they share this lock), but a copy taken meanwhile read files mid-rewrite (a vanished temp file failed
    the copy; lost points are the suspected cause of the index run in tests/test_concurrency.py re-embedding old
    videos). So `begin` copies holding it alone."""
    try:
        fd = os.open(Path(folder) / FILES_LOCK, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:  # a folder that is gone (the shard's load then says so) or that we may not write
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # and with it the lock


def begin(data_dir: Path) -> Path:
    """A new build folder: a copy of the published generation, or no folder yet (the first build creates it)."""
    folder = root(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    sweep(data_dir)
    build = folder / f"g{max(_numbers(folder), default=0) + 1:06d}{BUILD_SUFFIX}"
    current = published(data_dir)
    if current is not None:
        with shard_files(current, exclusive=True):
            shutil.copytree(current, build, ignore=shutil.ignore_patterns(FILES_LOCK))
    return build


def publish(data_dir: Path, build: Path) -> Path:
    """Make the finished build folder the published generation; returns its folder."""
    final = build.with_name(build.name.removesuffix(BUILD_SUFFIX))
    os.rename(build, final)
    _fsync(final.parent)
    tmp = final.parent / f"{CURRENT}.tmp"
    with open(tmp, "w") as f:
        f.write(final.name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final.parent / CURRENT)
    _fsync(final.parent)
    sweep(data_dir)
    legacy = Path(data_dir) / LEGACY_DIR
    if legacy.is_dir():  # the local-mode store this generation replaces
        shutil.rmtree(legacy, ignore_errors=True)
    return final


def discard(build: Path) -> None:
    shutil.rmtree(build, ignore_errors=True)


def sweep(data_dir: Path) -> int:
    """Remove build folders and generations other than the published one and the one before it; returns
    how many went. The caller holds the writer lock."""
    folder = root(data_dir)
    if not folder.is_dir():
        return 0
    current = published(data_dir)
    keep: set[str] = set()
    if current is not None:
        keep.add(current.name)
        older = [k for k in _numbers(folder) if k < int(current.name[1:]) and (folder / f"g{k:06d}").is_dir()]
        if older:
            keep.add(f"g{older[-1]:06d}")
    removed = 0
    for p in folder.iterdir():
        if p.name in keep or p.name == CURRENT or not (p.name.endswith(BUILD_SUFFIX) or _NAME.match(p.name)
                                                         or p.name == f"{CURRENT}.tmp"):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("removed %d index folders left by earlier runs", removed)
    return removed


def info(data_dir: Path, lock_file: Path) -> GenerationInfo:
    """What `vbsearch status` shows: the published generation, and whether a run builds the next."""
    current = published(data_dir)
    folder = root(data_dir)
    builds = sorted(p.name for p in folder.iterdir() if p.name.endswith(BUILD_SUFFIX)) if folder.is_dir() else []
    running = lock_held(lock_file)
    return GenerationInfo(current.name if current else None,
                          builds[-1].removesuffix(BUILD_SUFFIX) if running and builds else None,
                          [] if running else builds)


def lock_held(lock_file: Path) -> bool:
    """Whether a process holds a lock file alone: the writer lock, or a generation's FILES_LOCK while it is
    copied (a shared probe, released at once)."""
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _fsync(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
