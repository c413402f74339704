"""`vbsearch search "QUERY"`: ranked moments, as a table or (with --json) a JSON array on stdout."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime
from pathlib import Path

from search.query import MAX_QUERY_CHARS

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="what to look for, in plain words")
    parser.add_argument("--top-k", type=int, default=10, help="number of moments (default 10)")
    parser.add_argument("--json", action="store_true",
                        help="print only a JSON array of hits (video, start, end, score, text, ...)")
    parser.add_argument("--video", help="only this video (absolute path or video id)")
    parser.add_argument("--min-duration", type=float, help="only moments at least this long (s)")
    parser.add_argument("--max-duration", type=float, help="only moments at most this long (s)")
    parser.add_argument("--indexed-after", help="only videos indexed after this date (YYYY-MM-DD[THH:MM])")
    parser.add_argument("--label", help="only moments `vbsearch tag` labelled so (the fine-tuned classifier's label)")
    parser.add_argument("--no-rerank", action="store_true", help="skip the rerank (word match and alignment head)")
    parser.add_argument("--like", metavar="SEGMENT_ID", help="more like this segment (the query is ignored)")
    parser.add_argument("--export", metavar="FILE",
                        help="also write the moments to FILE, in the format its extension names: .edl (CMX3600), "
                             ".xml (Final Cut Pro 7), .fcpxml, .otio (OpenTimelineIO), .csv or .json; timelines use "
                             "each file's own start timecode and frame rate")


def run(args: argparse.Namespace, settings) -> int:
    from search.export import ExportError, format_of
    from search.hits import clock
    from search.store import Filters

    if args.top_k < 1:
        print("vbsearch search: --top-k must be at least 1", file=sys.stderr)
        return 2
    try:
        fmt = format_of(args.export) if args.export else None
    except ExportError as exc:
        print(f"vbsearch search: --export: {exc}", file=sys.stderr)
        return 2
    try:
        after = datetime.fromisoformat(args.indexed_after).timestamp() if args.indexed_after else None
    except ValueError:
        print(f"vbsearch search: --indexed-after: not a date: {args.indexed_after!r}", file=sys.stderr)
        return 2
    video = str(Path(args.video).resolve()) if args.video and ("/" in args.video or Path(args.video).exists()) \
        else args.video
    filters = Filters(video=video, min_duration=args.min_duration, max_duration=args.max_duration,
                      indexed_after=after, label=args.label)
    query = args.query[:MAX_QUERY_CHARS]  # the engine cleans control characters and spacing
    hits = _ask_service(settings, args, query, filters)
    if hits is None:
        hits = _search_here(settings, args, query, filters)
    if isinstance(hits, int):
        return hits
    if fmt is not None and (status := _export(hits, fmt, args)):
        return status
    if args.json:
        print(json.dumps([h.to_json() for h in hits], ensure_ascii=False))
        return 0
    if not hits:
        print("no results")
        return 0
    for rank, h in enumerate(hits, 1):
        snippet = (h.text[:70] + "...") if len(h.text) > 70 else h.text
        print(f"{rank:>3}. {h.score:6.3f}  {Path(h.video).name}  {clock(h.start)}-{clock(h.end)}  {snippet}")
        if h.why is not None:
            print(f"{'':12}{h.why.text()}")
    return 0


def _export(hits: list, fmt: str, args: argparse.Namespace) -> int:
    """Write the hits to args.export (atomically); 0, or 1 with a one-line error."""
    from model.atomic import atomic_write
    from search.export import ExportError, export

    title = f"vbsearch: like {args.like}" if args.like else f"vbsearch: {args.query}"
    try:
        text = export(hits, fmt, title)
        atomic_write(args.export, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), mode=0o644)
    except (ExportError, OSError) as exc:
        print(f"vbsearch search: --export {args.export}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(hits)} moments to {args.export}", file=sys.stderr)
    return 0


def _ask_service(settings, args: argparse.Namespace, query: str, filters) -> list | None:
    """The hits from this data dir's running `vbsearch serve` (search/owner.py), or None to search here."""
    from search.owner import find

    url = None if settings.qdrant_url else find(settings.data_dir)
    if url is None:
        return None
    from search.client import ApiClient
    from search.engine import EngineError, RankingOptions

    try:
        with ApiClient(url, timeout=30.0) as client:
            if args.like:
                return client.more_like_this(args.like, args.top_k, filters)
            return client.search(query, args.top_k, filters, RankingOptions(rerank=not args.no_rerank))
    except EngineError as exc:  # not answering (starting, stopped, a token we lack): search here instead
        log.info("the search service at %s did not answer (%s): searching in this process", url, exc)
        return None


def _search_here(settings, args: argparse.Namespace, query: str, filters) -> list | int:
    """The hits from an engine opened in this process, or the exit status of a one-line error."""
    from dataclasses import replace

    from model.checkpoint import CheckpointError
    from search.engine import EngineError, NoIndexError, SearchEngine
    from search.store import StoreBusyError, StoreError

    try:
        engine = SearchEngine.open(settings)
    except (NoIndexError, CheckpointError) as exc:  # no model yet, or a damaged or tampered one
        print(f"vbsearch search: {exc}", file=sys.stderr)
        return 1
    except StoreBusyError as exc:
        print(f"vbsearch search: index busy: {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:  # e.g. a Qdrant server that is down or refuses the API key
        print(f"vbsearch search: {exc}", file=sys.stderr)
        return 1
    try:
        if args.like:
            hits = engine.more_like_this(args.like, args.top_k, filters)
        else:
            options = replace(engine.options, rerank=False) if args.no_rerank else None
            hits = engine.search(query, args.top_k, filters, options)
    except EngineError as exc:
        print(f"vbsearch search: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    return hits
