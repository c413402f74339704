"""The shape of an index run: per file, a reader feeds mappers, a writer commits the result.

    FileJob(info)                     reader: probe (discover.probe) + decode (decode.ClipReader)
      -> stages, in order             mappers: each adds columns to job.row and tables to job.tables
      -> writer                       Catalog.put_video(video_id, job.row, **job.tables)

A stage is any callable `stage(job, timer)` with a `name`; it raises to fail the file (the
runner records the error under the stage's name). Within the visual stage, decoding runs
one chunk ahead in a thread (`prefetch`) so it overlaps feature extraction.
`StageTimer` adds up wall seconds per named step across the run, for the summary.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from indexer.discover import VideoInfo

PREFETCH_DEPTH = 2  # decoded chunks waiting for the mapper; bounds memory (see decode.CHUNK_CLIPS)
_POLL_S = 0.1  # how often a blocked producer checks whether the consumer went away


@dataclass
class FileJob:
    info: VideoInfo  # what discovery and the probe found
    row: dict[str, Any] = field(default_factory=dict)  # the `videos` row, filled by the stages
    tables: dict[str, Any] = field(default_factory=dict)  # table name -> polars DataFrame for this video


class Stage(Protocol):
    name: str  # names the stage in error lines, the catalog's error table and the timings

    def __call__(self, job: FileJob, timer: StageTimer) -> None: ...


class StageTimer:
    """Wall seconds per named step, summed over a run; safe to use from the prefetch thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] += seconds

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t)

    def summary(self) -> str:
        return ", ".join(f"{name} {s:.1f} s" for name, s in self.seconds.items())


def prefetch(items: Iterable[Any], timer: StageTimer | None = None, name: str = "decode",
             depth: int = PREFETCH_DEPTH) -> Iterator[Any]:
    """Iterate `items` in a background thread, at most `depth` items ahead; errors re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(items)
        try:
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    break
                if timer is not None:
                    timer.add(name, time.perf_counter() - t)
                if not put((True, item)):
                    return
            put((True, done))
        except BaseException as exc:  # handed to the consumer, who decides
            put((False, exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=f"prefetch-{name}", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()
