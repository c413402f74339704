"""Export a selection of hits: CSV and JSON with every fact, and editing-tool timelines through OpenTimelineIO.

A timeline lays the hits end to end, one clip per hit (a video track, and an audio track where the format
holds one), each clip naming its media file and its source in/out in the file's own timecode and frame
rate: the start timecode read at ingest (a tmcd track or a timecode tag; 00:00:00:00 without one) plus the
moment's offset, at the nearest SMPTE rate to the file's (29.97 and 59.94 are drop-frame, as OTIO has them).
OpenTimelineIO's adapters write it as CMX3600 EDL, Final Cut Pro 7 XML, FCPXML or its own `.otio`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

from search.hits import Hit, clock

log = logging.getLogger(__name__)

CSV_COLUMNS = ("rank", "video", "start", "end", "start_tc", "end_tc", "score", "text", "video_id", "segment_id")
TIMELINE_ADAPTERS = {"edl": "cmx_3600", "xml": "fcp_xml", "fcpxml": "fcpx_xml", "otio": "otio_json"}
FORMATS = ("csv", "json", *TIMELINE_ADAPTERS)
MEDIA_TYPES = {"csv": "text/csv", "json": "application/json", "edl": "text/plain", "xml": "application/xml",
               "fcpxml": "application/xml", "otio": "application/json"}
DEFAULT_FPS = 25.0  # a hit whose file rate is unknown (points embedded before rates were stored)
RECORD_START_S = 3600.0  # the timeline starts at 01:00:00:00, the editing convention
DEFAULT_TITLE = "vbsearch selection"
MAX_TITLE = 70  # characters of a timeline's name (a CMX3600 TITLE line holds about that many)


class ExportError(ValueError):
    """The selection cannot be written in the asked format (the reason says which one can)."""


def format_of(path: str | Path) -> str:
    """The export format a file name asks for, by its extension."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ExportError(f"cannot export to {Path(path).name!r}: the extension must be one of "
                          + ", ".join(f".{f}" for f in FORMATS))
    return fmt


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


# Rates OpenTimelineIO can write timecode at (SMPTE): whole rates, and the NTSC ones (x 1000/1001)
SMPTE_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 24000 / 1001, 30000 / 1001, 48000 / 1001, 60000 / 1001)


def edit_rate(fps: float | None) -> float:
    """The timecode rate for a file's frame rate: its own when SMPTE has it (30000/1001 for 29.97), else the
    lowest SMPTE rate that is a whole multiple of it (15 -> 30, 12.5 -> 25: every frame starts on a timecode
    frame, as an editor conforms it), else the nearest."""
    usable = fps if fps and math.isfinite(fps) and fps > 0 else DEFAULT_FPS

    def near(a: float, b: float) -> bool:
        return abs(a - b) <= 0.0005 * b  # tighter than 1000/1001, so 29.97 and 30 stay apart

    same = [r for r in SMPTE_RATES if near(usable, r)]
    if same:
        return same[0]
    multiples = sorted(r for r in SMPTE_RATES if r >= usable and near(r / usable, round(r / usable)))
    return multiples[0] if multiples else min(SMPTE_RATES, key=lambda r: abs(r - usable))


def source_start(timecode: str | None, rate: float):
    """The file's first frame as a RationalTime at `rate`: its start timecode, or zero without a usable one."""
    from opentimelineio.opentime import RationalTime, from_timecode

    if timecode:
        tc = re.sub(r"[.,]", ";", timecode.strip())  # some tools write drop-frame as HH:MM:SS.FF
        for form in (tc, tc.replace(";", ":")):  # a drop-frame mark at a rate without drop-frame: read it plain
            try:
                return from_timecode(form, rate)
            except ValueError:
                continue
        log.warning("start timecode %r does not fit %.3f fps: exporting from 00:00:00:00", timecode, rate)
    return RationalTime(0, rate)


def timeline(hits: Sequence[Hit], title: str = DEFAULT_TITLE, urls: bool = True):
    """An OTIO timeline of the hits end to end. `urls`: media as file:// URLs (OTIO's convention, what XML
    readers expect); else plain paths (an EDL's clip comments)."""
    import opentimelineio as otio
    from opentimelineio.opentime import RationalTime, TimeRange

    rate = edit_rate(next((h.fps for h in hits if h.fps), None))
    tl = otio.schema.Timeline(name=title[:MAX_TITLE], global_start_time=RationalTime(round(RECORD_START_S * rate), rate))
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    audio = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    reels: dict[str, str] = {}
    for h in hits:
        r = edit_rate(h.fps)
        base = source_start(h.timecode, r)
        first = math.floor(max(0.0, h.start) * r + 0.5)  # frame-accurate: half a frame rounds up
        last = max(math.floor(max(0.0, h.end) * r + 0.5), first + 1)
        in_point = base + RationalTime(first, r)
        duration = RationalTime(last - first, r)
        # CMX3600 reels are at most 8 characters: one per file, the clip's name and comment carry the file
        reel = reels.setdefault(h.video, f"R{len(reels) + 1:03d}")
        media = Path(h.video).as_uri() if urls and Path(h.video).is_absolute() else h.video
        for track in (video, audio):
            ref = otio.schema.ExternalReference(target_url=media,
                                                available_range=TimeRange(base, in_point + duration - base))
            track.append(otio.schema.Clip(
                name=Path(h.video).name, media_reference=ref, source_range=TimeRange(in_point, duration),
                metadata={"cmx_3600": {"reel": reel},
                          "vbsearch": {"segment_id": h.segment_id, "video_id": h.video_id, "score": h.score,
                                       "text": h.text}}))
    tl.tracks.append(video)
    tl.tracks.append(audio)
    return tl


def to_timeline(hits: Sequence[Hit], fmt: str, title: str = DEFAULT_TITLE) -> str:
    """The hits as an editing tool's file, written by OpenTimelineIO's adapter for `fmt`."""
    import opentimelineio as otio

    if not hits:
        raise ExportError("nothing to export: the selection is empty")
    rates = sorted({edit_rate(h.fps) for h in hits})
    if fmt == "edl":
        if len(rates) > 1:  # an EDL has one rate for its source and record timecodes
            raise ExportError(f"an EDL holds one frame rate and this selection mixes {_rates(rates)} fps: "
                              "export .xml, .fcpxml or .otio, or select moments of one rate")
        return otio.adapters.write_to_string(timeline(hits, title, urls=False), "cmx_3600", rate=rates[0])
    tl = timeline(hits, title)
    if fmt == "fcpxml":
        tl = _fcpx_rates(tl, rates)
    return otio.adapters.write_to_string(tl, TIMELINE_ADAPTERS[fmt])


# FCPXML's frame durations, keyed as OTIO's FCPXML adapter keys them (2-decimal NTSC rates)
FCPX_RATES = (23.98, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0)


def _fcpx_rates(tl, rates: list[float]):
    """A copy with every time at the rate the FCPXML adapter names (29.97 for 30000/1001): it writes times
    as rational seconds, which the rescale keeps, and finds the frame duration by that key."""
    from opentimelineio.opentime import TimeRange

    key = {r: next((k for k in FCPX_RATES if abs(k - r) < 0.01), None) for r in rates}
    if None in key.values():
        odd = [r for r, k in key.items() if k is None]
        raise ExportError(f"FCPXML has no frame rate {_rates(odd)} (its rates: {_rates(FCPX_RATES)}): "
                          "export .xml or .otio")

    def rescaled(tr, r):
        return TimeRange(tr.start_time.rescaled_to(r), tr.duration.rescaled_to(r))

    out = tl.deepcopy()
    for clip in out.find_clips():
        r = key[clip.source_range.start_time.rate]
        clip.source_range = rescaled(clip.source_range, r)
        clip.media_reference.available_range = rescaled(clip.media_reference.available_range, r)
    return out


def _rates(rates) -> str:
    return ", ".join(f"{r:.3f}".rstrip("0").rstrip(".") for r in rates)


def export(hits: Sequence[Hit], fmt: str, title: str = DEFAULT_TITLE) -> str:
    if fmt == "csv":
        return to_csv(hits)
    if fmt == "json":
        return to_json(hits)
    if fmt in TIMELINE_ADAPTERS:
        return to_timeline(hits, fmt, title)
    raise ExportError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
