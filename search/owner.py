"""The search service announces itself in the data dir, so that `vbsearch search` asks it instead of
starting a model of its own: a CLI search then costs an HTTP round trip, not a process's imports, model
load and index open (bench/bench_query.py times both).

    DATA_DIR/serve.json   {"url": "http://127.0.0.1:8080", "pid": 1234}, written atomically by `vbsearch serve`
                          while it runs, removed when it stops; a stale file (its process gone) is ignored

Nothing secret is written: a service that wants a token gets it from the CLI's $VBSEARCH_API_TOKEN.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OWNER_FILE = "serve.json"


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "localhost") else "::1" if host == "::" else host


@contextmanager
def announce(data_dir: Path, host: str, port: int) -> Iterator[None]:
    """Name this process as the data dir's search service for the block."""
    host = _loopback(host)
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    path = Path(data_dir) / OWNER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{OWNER_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    os.replace(tmp, path)
    try:
        yield
    finally:
        entry = _entry(data_dir)
        if entry is not None and entry[0] == os.getpid():  # a later service may have taken over
            path.unlink(missing_ok=True)


def _entry(data_dir: Path) -> tuple[int, str] | None:
    """(pid, url) from the data dir's announcement, None without a readable one."""
    try:
        entry = json.loads((Path(data_dir) / OWNER_FILE).read_text())
        return int(entry["pid"]), str(entry["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find(data_dir: Path) -> str | None:
    """The URL of the running search service of this data dir, if one announced itself and still runs."""
    entry = _entry(data_dir)
    if entry is None:
        return None
    pid, url = entry
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # another user's process: alive
        pass
    return url if url.startswith(("http://127.", "http://[::1]", "http://localhost")) else None
