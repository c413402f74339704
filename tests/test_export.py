import csv
import io
import json
import re

import pytest

from search.export import export, to_edl
from search.hits import Hit, clock, timecode

HITS = [
    Hit("/archive/a b.mp4", 12.5, 18.0, 0.91, "a red ball\nrolls", "vid_a", "p1", fps=25.0),
    Hit("/archive/c.mov", 3661.04, 3670.0, 0.5, "", "vid_c", "p2", fps=25.0),
    Hit("/archive/a b.mp4", 40.0, 41.0, 0.2, "again", "vid_a", "p3", fps=25.0),
]


def test_clock_and_timecode():
    assert clock(3725.26) == "01:02:05.3"
    assert timecode(3661.04, 25) == "01:01:01:01"
    assert timecode(1.0, 29.97) == "00:00:01:00"  # NDF at the nearest integer rate


def test_csv_round_trips_and_escapes():
    rows = list(csv.DictReader(io.StringIO(export(HITS, "csv"))))
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["video"] == "/archive/a b.mp4" and rows[0]["text"] == "a red ball\nrolls"
    assert rows[1]["start_tc"] == "01:01:01.0" and float(rows[1]["end"]) == 3670.0


def test_json_keeps_the_cli_contract_keys():
    data = json.loads(export(HITS, "json"))
    assert data[0]["video"] == "/archive/a b.mp4" and data[0]["start"] == 12.5 and data[0]["score"] == 0.91
    assert {"video", "start", "end", "score", "text"} <= set(data[1])


def test_edl_events_are_cmx3600():
    edl = to_edl(HITS)
    lines = edl.splitlines()
    assert lines[0] == "TITLE: vbsearch selection" and lines[1] == "FCM: NON-DROP FRAME"
    events = [ln for ln in lines if re.match(r"^\d{3}  ", ln)]
    assert len(events) == 3
    ev = re.compile(r"^(\d{3})  (\S{1,8}) +AA/V  C +(\S+) (\S+) (\S+) (\S+)$")
    parsed = [ev.match(e).groups() for e in events]
    assert parsed[0] == ("001", "R001", "00:00:12:13", "00:00:18:00", "01:00:00:00", "01:00:05:13")
    assert parsed[1][1] == "R002" and parsed[2][1] == "R001"  # same file, same reel
    # Record times are contiguous: each event starts where the previous ended.
    assert parsed[1][4] == parsed[0][5] and parsed[2][4] == parsed[1][5]
    assert "* FROM CLIP NAME: a b.mp4" in lines
    assert "* COMMENT: a red ball rolls" in lines  # control characters never break the line structure


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown export format"):
        export(HITS, "xml")
