"""Exports: CSV/JSON content, and every editing-tool format read back by OpenTimelineIO's own readers."""

import csv
import io
import json
import subprocess
from fractions import Fraction
from pathlib import Path
from xml.etree import ElementTree

import opentimelineio as otio
import pytest
from opentimelineio.opentime import from_seconds, to_timecode

from indexer.discover import probe
from search.export import TIMELINE_ADAPTERS, ExportError, edit_rate, export, format_of
from search.hits import Hit, clock

NTSC = 30000 / 1001

HITS = [
    Hit("/archive/a b.mp4", 12.5, 18.0, 0.91, "a red ball\nrolls", "vid_a", "p1", fps=25.0),
    Hit("/archive/c.mov", 3661.04, 3670.0, 0.5, "", "vid_c", "p2", fps=25.0),
    Hit("/archive/a b.mp4", 40.0, 41.0, 0.2, "again", "vid_a", "p3", fps=25.0),
]


def _video(path: Path, rate: str, timecode: str | None) -> Path:
    """A 2-second test clip; `timecode` makes ffmpeg write a tmcd track (mov/mp4) or a TIMECODE tag (mkv)."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=64x48:rate={rate}", "-t", "2",
           "-pix_fmt", "yuv420p"]
    if timecode:
        cmd += ["-timecode", timecode]
    subprocess.run([*cmd, str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media with spaces")
    return {"tc": _video(root / "tape 10h.mov", "30000/1001", "10:00:00;00"),
            "plain": _video(root / "plain.mp4", "30000/1001", None),
            "pal": _video(root / "pal.mkv", "25", "01:02:03:04")}


def _hit(path: Path, start: float, end: float, n: int) -> Hit:
    info = probe(path)  # the facts ingest stores: frame rate and start timecode
    return Hit(str(path), start, end, 1.0 / n, f"moment {n}", info.video_id, f"p{n}", fps=info.fps,
               timecode=info.timecode or None)


def test_probe_reads_the_start_timecode(media):
    assert probe(media["tc"]).timecode == "10:00:00;00"  # tmcd track (and the stream's tag)
    assert probe(media["pal"]).timecode == "01:02:03:04"  # Matroska keeps it as a file tag
    assert probe(media["plain"]).timecode == ""
    assert abs(probe(media["tc"]).fps - NTSC) < 1e-6


def _read_back(text: str, fmt: str, rate: float):
    kw = {"rate": rate} if fmt == "edl" else {}
    return otio.adapters.read_from_string(text, TIMELINE_ADAPTERS[fmt], **kw)


def _tc(t, rate: float) -> str:
    """A read-back time as timecode at the file's rate (readers may hold it at another rate)."""
    return to_timecode(from_seconds(t.to_seconds(), rate).round(), rate)


@pytest.mark.parametrize("fmt", ["edl", "xml", "fcpxml", "otio"])
def test_timeline_exports_round_trip_in_the_files_own_timecode(media, fmt):
    hits = [_hit(media["tc"], 12.5, 18.0, 1), _hit(media["plain"], 61.04, 70.0, 2), _hit(media["tc"], 40.0, 41.0, 3)]
    rate = edit_rate(hits[0].fps)
    assert rate == pytest.approx(NTSC)
    timeline = _read_back(export(hits, fmt), fmt, rate)
    video = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video]
    assert len(video) == 1
    clips = list(video[0].find_clips())
    assert [c.name for c in clips] == ["tape 10h.mov", "plain.mp4", "tape 10h.mov"]
    paths = [otio.url_utils.filepath_from_url(c.media_reference.target_url)
             if "://" in c.media_reference.target_url else c.media_reference.target_url for c in clips]
    assert paths == [h.video for h in hits]
    # 12.5 s at 29.97 is frame 375 = 12 s 15 frames after 10:00:00;00 (no frames are dropped in minute 0);
    # 18.0 s is frame 539.46 -> 539 = 17;29. 61.04 s from zero: frame 1829 -> 00:01:01;01 with the two
    # frame numbers dropped at minute 1. 40.0 s -> frame 1199 = 39;29.
    expected = [("10:00:12;15", "10:00:17;29"), ("00:01:01;01", "00:01:10;00"), ("10:00:39;29", "10:00:40;29")]
    got = [(_tc(c.source_range.start_time, rate), _tc(c.source_range.end_time_exclusive(), rate)) for c in clips]
    if fmt == "fcpxml":
        # OTIO's FCPXML reader (otio-fcpx-xml-adapter 1.0) reads 29.97 as 29 frames per second, so its
        # frames are a little off; the file itself holds exact rational times, checked below.
        for (s, e), c in zip(expected, clips, strict=True):
            assert abs(c.source_range.start_time.to_seconds() - otio.opentime.from_timecode(s, rate).to_seconds()) < 0.1
            assert abs(c.source_range.end_time_exclusive().to_seconds()
                       - otio.opentime.from_timecode(e, rate).to_seconds()) < 0.1
    else:
        assert got == expected
        assert clips[0].source_range.start_time.rate == pytest.approx(NTSC)


def test_fcpxml_holds_exact_ntsc_times(media):
    hits = [_hit(media["tc"], 12.5, 18.0, 1)]
    root = ElementTree.fromstring(export(hits, "fcpxml").split("\n", 2)[2])
    assert {f.get("frameDuration") for f in root.iter("format")} == {"1001/30000s"}
    clip = next(c for c in root.iter("clip") if c.find("video") is not None)
    start = Fraction(clip.get("start").rstrip("s"))
    frame = 1078920 + 375  # 10:00:00;00 at 29.97 drop-frame is frame 1,078,920
    assert start == Fraction(frame * 1001, 30000)


def test_mixed_rates_go_to_xml_and_otio_but_not_to_one_edl(media):
    hits = [_hit(media["pal"], 1.0, 2.0, 1), _hit(media["tc"], 1.0, 2.0, 2)]
    with pytest.raises(ExportError, match="one frame rate"):
        export(hits, "edl")
    for fmt in ("xml", "otio"):
        clips = list(_read_back(export(hits, fmt), fmt, 25).tracks[0].find_clips())
        assert clips[0].source_range.start_time.rate == 25
        assert to_timecode(clips[0].source_range.start_time, 25) == "01:02:04:04"  # 01:02:03:04 + 1 s
        assert to_timecode(clips[1].source_range.start_time, clips[1].source_range.start_time.rate) == "10:00:01;00"


def test_edl_names_the_files_and_keeps_one_reel_per_file():
    edl = export(HITS, "edl")
    events = [ln.split() for ln in edl.splitlines() if ln[:3].isdigit()]
    assert [e[1] for e in events] == ["R001", "R002", "R001"]
    assert "* FROM CLIP: /archive/a b.mp4" in edl.splitlines()
    back = _read_back(edl, "edl", 25)
    assert [c.source_range.duration.value for c in back.tracks[0].find_clips()] == [137, 224, 25]  # frames 313-450 (12.5 s rounds up), 91526-91750, 1000-1025


def test_csv_round_trips_and_escapes():
    rows = list(csv.DictReader(io.StringIO(export(HITS, "csv"))))
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["video"] == "/archive/a b.mp4" and rows[0]["text"] == "a red ball\nrolls"
    assert rows[1]["start_tc"] == "01:01:01.0" and float(rows[1]["end"]) == 3670.0
    assert clock(3725.26) == "01:02:05.3"


def test_json_keeps_the_cli_contract_keys():
    data = json.loads(export(HITS, "json"))
    assert data[0]["video"] == "/archive/a b.mp4" and data[0]["start"] == 12.5 and data[0]["score"] == 0.91
    assert {"video", "start", "end", "score", "text", "video_id", "segment_id", "fps"} <= set(data[1])


def test_format_of_and_unknown_formats():
    assert format_of("sel.FCPXML") == "fcpxml" and format_of("a/b.otio") == "otio" and format_of("x.xml") == "xml"
    with pytest.raises(ExportError, match=r"\.edl"):
        format_of("selection.docx")
    with pytest.raises(ExportError, match="unknown export format"):
        export(HITS, "docx")
    with pytest.raises(ExportError, match="empty"):
        export([], "edl")


def test_cli_search_exports_what_it_found(indexed_archive, tmp_path, capsys):
    from vbsearch.cli import main

    args = ["search", "a red circle moving left", "--data-dir", str(indexed_archive.data_dir), "--top-k", "3"]
    assert main([*args, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    out = tmp_path / "picks" / "selection.otio"
    assert main([*args, "--export", str(out)]) == 0
    assert "wrote 3 moments" in capsys.readouterr().err
    clips = list(otio.adapters.read_from_file(str(out)).tracks[0].find_clips())
    assert [otio.url_utils.filepath_from_url(c.media_reference.target_url) for c in clips] == [h["video"] for h in found]
    rate = clips[0].source_range.start_time.rate
    assert [round(c.source_range.start_time.to_seconds() * rate) for c in clips] == \
        [round(h["start"] * rate) for h in found]  # no start timecode in these files: counted from zero
    assert main([*args, "--export", str(tmp_path / "selection.docx")]) == 2
    assert "the extension must be one of" in capsys.readouterr().err


def test_edit_rate_is_the_files_own_or_a_whole_multiple():
    assert edit_rate(29.97) == pytest.approx(NTSC) and edit_rate(NTSC) == pytest.approx(NTSC)
    assert edit_rate(30.0) == 30 and edit_rate(25.0) == 25 and edit_rate(59.94) == pytest.approx(60000 / 1001)
    assert edit_rate(15.0) == 30 and edit_rate(12.5) == 25 and edit_rate(10.0) == 30  # never 29.97 for 10
    assert edit_rate(None) == 25 and edit_rate(float("nan")) == 25


def test_the_start_timecode_travels_from_the_probe_to_the_hit(media, tmp_path):
    """ingest's catalog row -> the point's payload (indexer/embed.py copies the row's field) -> the hit."""
    from types import SimpleNamespace

    from indexer.ingest import video_row
    from indexer.pipeline import FileJob
    from search.engine import SearchEngine

    row = video_row(FileJob(probe(media["tc"])))
    assert row["timecode"] == "10:00:00;00" and row["fps"] == pytest.approx(NTSC)
    payload = {"path": row["path"], "start": 12.5, "end": 18.0, "video_id": row["video_id"], "fps": row["fps"],
               "timecode": row["timecode"]}
    engine = SimpleNamespace(data_dir=tmp_path, _text=SearchEngine._text)
    hit = SearchEngine._hit(engine, SimpleNamespace(id="p1", payload=payload), 0.5, {})
    assert hit.timecode == "10:00:00;00"
    clip = _read_back(export([hit], "otio"), "otio", NTSC).tracks[0].find_clips()[0]
    assert to_timecode(clip.source_range.start_time, NTSC) == "10:00:12;15"
