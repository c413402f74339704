"""Export a selection of hits as CSV, JSON or a CMX3600 EDL for editing tools."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

from search.hits import Hit, clock, timecode

EDL_FPS = 25.0  # record timeline rate when hits carry no fps
EDL_RECORD_START = 3600.0  # s: record timecode starts at 01:00:00:00, the editing convention
CSV_COLUMNS = ("rank", "video", "start", "end", "start_tc", "end_tc", "score", "text", "video_id", "segment_id")
FORMATS = ("csv", "json", "edl")


def to_csv(hits: Sequence[Hit]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rank, h in enumerate(hits, 1):
        writer.writerow([rank, h.video, f"{h.start:.3f}", f"{h.end:.3f}", clock(h.start), clock(h.end),
                         f"{h.score:.4f}", h.text, h.video_id, h.segment_id])
    return buf.getvalue()


def to_json(hits: Sequence[Hit]) -> str:
    return json.dumps([h.to_json() for h in hits], indent=2, ensure_ascii=False)


def _reel(index: int) -> str:
    # Reels are at most 8 characters in CMX3600; the clip name comment carries the file.
    return f"R{index:03d}"


def _comment(text: str) -> str:
    return re.sub(r"[\x00-\x1f]+", " ", text).strip()


def to_edl(hits: Sequence[Hit], title: str = "vbsearch selection", fps: float | None = None) -> str:
    """CMX3600: one cut event per hit, laid end to end on the record timeline."""
    rate = fps or next((h.fps for h in hits if h.fps), None) or EDL_FPS
    reels: dict[str, str] = {}
    lines = [f"TITLE: {_comment(title)[:70]}", "FCM: NON-DROP FRAME", ""]
    record = EDL_RECORD_START
    for n, h in enumerate(hits, 1):
        reel = reels.setdefault(h.video, _reel(len(reels) + 1))
        length = max(0.0, h.end - h.start)
        lines.append(f"{n:03d}  {reel:<8} AA/V  C        {timecode(h.start, rate)} {timecode(h.end, rate)} "
                     f"{timecode(record, rate)} {timecode(record + length, rate)}")
        lines.append(f"* FROM CLIP NAME: {_comment(Path(h.video).name)}")
        lines.append(f"* SOURCE FILE: {_comment(h.video)}")
        if h.text:
            lines.append(f"* COMMENT: {_comment(h.text)[:200]}")
        lines.append("")
        record += length
    return "\n".join(lines)


def export(hits: Sequence[Hit], fmt: str) -> str:
    if fmt == "csv":
        return to_csv(hits)
    if fmt == "json":
        return to_json(hits)
    if fmt == "edl":
        return to_edl(hits)
    raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
