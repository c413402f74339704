"""The Streamlit page (ui/app.py) through streamlit.testing.v1.AppTest, over a stand-in engine.

The stand-in answers like search.engine.SearchEngine and records what the page asked, so these
tests check the page's side of the contract: what it sends (queries, filters, segment ids, page
sizes) and what it shows (results, highlights, empty states, exports, previews). The real engine
behind the real server is exercised by tests/test_ui_browser.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from pathlib import Path

import numpy as np
import opentimelineio as otio
import polars as pl
import pytest
import streamlit as st
from opentimelineio.opentime import to_timecode
from streamlit.testing.v1 import AppTest

from search.engine import IndexInfo, NoIndexError, SearchEngine
from search.hits import Hit, Seen, Why
from search.store import StoreBusyError
from vbsearch.synth import moving_square, write_video

APP = str(Path(__file__).resolve().parents[1] / "ui" / "app.py")
RUN_TIMEOUT_S = 60  # the first run imports the search stack


class FakeEngine:
    def __init__(self, hits: list[Hit], videos: list[dict], catalogued: set[str]):
        self.hits = hits
        self._videos = videos
        self.catalogued = catalogued
        self.calls: list[tuple] = []

    def search(self, query, top_k=10, filters=None):
        self.calls.append(("search", query, top_k, filters))
        return self.hits[:top_k]

    def more_like_this(self, segment_id, top_k=10, filters=None):
        self.calls.append(("like", segment_id, top_k, filters))
        return [h for h in self.hits if h.segment_id != segment_id][:top_k]

    def videos(self):
        return pl.DataFrame(self._videos)

    def is_catalogued(self, path):
        return str(path) in self.catalogued

    def index_info(self):
        return IndexInfo(videos=len(self._videos), hours=0.01, clips=42, segments=len(self.hits),
                         failed=[{"path": "/archive/broken.mp4", "stage": "decode", "error": "moov atom not found"}],
                         model_id="abc123def4567890", vocab_lines=["mode factored", "words 144"],
                         last_indexed=time.time())

    def close(self):
        pass


@pytest.fixture
def archive(tmp_path, monkeypatch):
    """A data dir with two small real videos, thumbnails, and a stand-in engine over them."""
    data = tmp_path / "data"
    media = tmp_path / "archive"
    media.mkdir()
    red = write_video(media / "red_ball.mp4", moving_square(10 * 10, color=(220, 30, 30)), fps=10)
    blue = write_video(media / "blue_box.mp4", moving_square(10 * 10, color=(30, 30, 220)), fps=10)
    thumbs = data / "thumbnails" / "vidred"
    thumbs.mkdir(parents=True)
    from PIL import Image

    Image.fromarray(np.full((9, 16, 3), 200, np.uint8)).save(thumbs / "0.jpg")
    outside = tmp_path / "elsewhere.jpg"  # a thumbnail path outside the data dir is never read
    Image.fromarray(np.zeros((9, 16, 3), np.uint8)).save(outside)
    why = Why(("red", "ball"), (Seen("red", "colour", "lexicon", 2.1), Seen("rolling", "motion", "model", 0.41)))
    hits = [Hit(str(red), 3.0, 6.0, 0.91, "A red ball rolls to the left.", "vidred", "seg-red-1",
                str(thumbs / "0.jpg"), 10.0, {"video": 0.42, "text": 0.8}, why=why),
            Hit(str(blue), 1.5, 4.5, 0.55, "", "vidblue", "seg-blue-1", str(outside), 10.0)]
    hits += [Hit(str(blue), 10.0 + i, 11.0 + i, 0.5 - i / 100, f"filler {i}", "vidblue", f"seg-blue-f{i}", None, 10.0)
             for i in range(23)]
    videos = [{"video_id": "vidred", "path": str(red), "duration": 10.0, "fps": 10.0, "width": 96, "height": 64,
               "indexed_at": time.time()},
              {"video_id": "vidblue", "path": str(blue), "duration": 10.0, "fps": 10.0, "width": 96, "height": 64,
               "indexed_at": time.time()}]
    engine = FakeEngine(hits, videos, {str(red)})  # blue_box.mp4 is not (any more) in the catalog
    monkeypatch.setenv("VBSEARCH_DATA_DIR", str(data))
    monkeypatch.setattr(SearchEngine, "open", classmethod(lambda cls, settings, *a, **k: engine))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield engine, data
    st.cache_resource.clear()
    st.cache_data.clear()


def start(query: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S)
    if query is not None:
        at.query_params["q"] = query
    return at.run()


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def cards(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**") and "score" in m.value]


def test_search_shows_ranked_moments_with_timecodes_thumbnails_and_highlights(archive):
    engine, _ = archive
    at = start()
    assert not at.exception
    assert "Type what you are looking for" in texts(at)
    assert engine.calls == []
    at.text_input(key="q").input("red ball rolling").run()
    assert not at.exception
    assert engine.calls == [("search", "red ball rolling", 10, None)]
    shown = cards(at)
    assert len(shown) == 10
    assert shown[0].startswith("**1. red&#95;ball&#46;mp4**") and "`00:00:03.0 – 00:00:06.0`" in shown[0]
    assert shown[0].endswith("score 0.910")
    assert "<mark>red</mark> <mark>ball</mark> <mark>rolls</mark> to the left" in texts(at)
    assert "(no speech in this moment)" in texts(at)
    assert len(at.image) == 1  # the outside-the-data-dir thumbnail is not shown
    assert at.query_params["q"] == "red ball rolling"  # the address bar links to this search


def test_a_card_says_why_it_matched_and_shows_scores_on_request(archive):
    import html

    engine, _ = archive
    at = start("red ball rolling")
    assert not at.exception
    lines = [html.unescape(m.value) for m in at.markdown]
    assert "<small>said: red, ball · seen: red (colour), rolling (motion)</small>" in lines
    assert len([v for v in lines if "said:" in v or "seen:" in v]) == 1  # the other hits carry no explanation
    assert not any("scores:" in v for v in lines)  # the raw scores are behind the card's toggle
    at.toggle(key="scores:seg-red-1").set_value(True).run()
    lines = [html.unescape(m.value) for m in at.markdown]
    assert "<small>scores: video 0.42 · text 0.80</small>" in lines
    at.toggle(key="scores:seg-red-1").set_value(False).run()
    assert not any("scores:" in html.unescape(m.value) for m in at.markdown)
    # a moment without speech has no transcript score to show
    engine.hits[0] = Hit(engine.hits[0].video, 3.0, 6.0, 0.9, "", "vidred", "seg-red-1", None, 10.0,
                         {"video": 0.42, "text": -1.0, "lexicon": 1.5}, why=Why(seen=(Seen("red", "colour", "lexicon", 2.0),)))
    at = start("red ball")
    at.toggle(key="scores:seg-red-1").set_value(True).run()
    lines = [html.unescape(m.value) for m in at.markdown]
    assert "<small>scores: video 0.42 · lexicon 1.50</small>" in lines
    assert "<small>seen: red (colour)</small>" in lines


def test_an_explanation_is_escaped(archive):
    engine, _ = archive
    engine.hits[0] = Hit(engine.hits[0].video, 3.0, 6.0, 0.9, "", "vidred", "seg-red-1",
                         why=Why(("<b>x</b>", "[a](javascript:alert(1))"), (Seen("**y**", "$z$", "model", 0.5),)))
    at = start("x")
    line = next(m.value for m in at.markdown if "said" in m.value)
    assert "<b>" not in line and "](" not in line and "**" not in line and "$z$" not in line


def test_query_parameter_runs_the_search(archive):
    engine, _ = archive
    at = start("red ball")
    assert engine.calls == [("search", "red ball", 10, None)]
    assert at.text_input(key="q").value == "red ball"
    assert len(cards(at)) == 10


def test_filters_reach_the_engine(archive):
    engine, _ = archive
    at = start("ball")
    at.sidebar.selectbox(key="f_video").select("vidblue").run()
    filters = engine.calls[-1][3]
    assert engine.calls[-1][:3] == ("search", "ball", 10) and filters.video == "vidblue"
    assert filters.min_duration is None and filters.max_duration is None
    at.sidebar.slider(key="f_length").set_range(2.0, 10.0).run()
    filters = engine.calls[-1][3]
    assert (filters.video, filters.min_duration, filters.max_duration) == ("vidblue", 2.0, 10.0)
    at.sidebar.date_input(key="f_after").set_value(dt.date(2024, 5, 1)).run()
    assert engine.calls[-1][3].indexed_after == time.mktime(dt.date(2024, 5, 1).timetuple())
    labels = at.sidebar.selectbox(key="f_video").options
    assert labels == ["All videos", "blue_box.mp4", "red_ball.mp4"]


def test_more_like_this_and_back(archive):
    engine, _ = archive
    at = start("red ball")
    at.button(key="like:seg-red-1").click().run()
    assert engine.calls[-1] == ("like", "seg-red-1", 10, None)
    assert any(m.value.startswith("Moments like **red&#95;ball&#46;mp4**") for m in at.markdown)
    shown = cards(at)
    assert len(shown) == 10 and not any("red&#95;ball" in c for c in shown)
    at.button(key="back").click().run()
    assert engine.calls[-1] == ("search", "red ball", 10, None)
    assert not any(m.value.startswith("Moments like") for m in at.markdown)


def test_show_more_pages_and_stops_at_the_end(archive):
    engine, _ = archive
    at = start("ball")
    at.button(key="more").click().run()
    assert engine.calls[-1][2] == 20 and len(cards(at)) == 20
    at.button(key="more").click().run()
    assert engine.calls[-1][2] == 30 and len(cards(at)) == 25  # all 25 hits: nothing more to show
    assert not [b for b in at.button if b.key == "more"]
    n_calls = len(engine.calls)
    at.checkbox(key="pick:seg-red-1").check().run()
    assert len(engine.calls) == n_calls  # reruns reuse the session's results instead of searching again


@pytest.fixture
def downloads(monkeypatch):
    """What the page hands to st.download_button, by label."""
    seen: dict[str, dict] = {}
    real = st.download_button

    def spy(label, data, *args, **kwargs):
        seen[label] = {"data": data, **kwargs}
        return real(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", spy)
    return seen


def test_exports_all_results_or_only_the_selected(archive, downloads):
    at = start("red ball")
    assert set(downloads) == {"Download CSV", "Download JSON", "Download EDL", "Download FCP 7 XML",
                              "Download FCPXML", "Download OTIO"}
    assert downloads["Download CSV"]["file_name"] == "vbsearch-red-ball.csv"
    rows = list(csv.DictReader(io.StringIO(downloads["Download CSV"]["data"])))
    assert len(rows) == 10 and rows[0]["video"].endswith("red_ball.mp4")
    assert (rows[0]["start_tc"], rows[0]["end_tc"], rows[0]["text"]) == ("00:00:03.0", "00:00:06.0",
                                                                          "A red ball rolls to the left.")

    at.checkbox(key="pick:seg-blue-1").check().run()
    at.checkbox(key="pick:seg-red-1").check().run()
    assert "The 2 selected result(s)." in texts(at)
    rows = list(csv.DictReader(io.StringIO(downloads["Download CSV"]["data"])))
    assert [r["segment_id"] for r in rows] == ["seg-red-1", "seg-blue-1"]  # in rank order
    doc = json.loads(downloads["Download JSON"]["data"])
    assert [(d["start"], d["end"], d["score"]) for d in doc] == [(3.0, 6.0, 0.91), (1.5, 4.5, 0.55)]
    assert downloads["Download JSON"]["mime"] == "application/json"
    edl = downloads["Download EDL"]["data"]
    assert edl.splitlines()[0] == "TITLE: vbsearch: red ball"
    clips = list(otio.adapters.read_from_string(edl, "cmx_3600", rate=30).tracks[0].find_clips())
    # 10 fps files on a 30 fps timecode (the lowest SMPTE rate that is a multiple): 3.0 s = 00:00:03:00
    assert [(c.name, to_timecode(c.source_range.start_time, 30), to_timecode(c.source_range.end_time_exclusive(), 30))
            for c in clips] == [("red_ball.mp4", "00:00:03:00", "00:00:06:00"), ("blue_box.mp4", "00:00:01:15", "00:00:04:15")]
    otio_doc = otio.adapters.read_from_string(downloads["Download OTIO"]["data"], "otio_json")
    assert [c.name for c in otio_doc.tracks[0].find_clips()] == ["red_ball.mp4", "blue_box.mp4"]
    assert downloads["Download FCP 7 XML"]["file_name"] == "vbsearch-red-ball.xml"


def test_preview_is_cut_from_the_moment_for_catalogued_files_only(archive):
    engine, data = archive
    at = start("ball")
    at.button(key="play:seg-red-1").click().run()
    assert not at.exception and not at.error
    previews = list((data / "previews" / "vidred").glob("*.mp4"))
    assert [p.name for p in previews] == ["3000-6000.mp4"]
    assert "Preview 00:00:01.5 – 00:00:06.0: the moment starts 1.5 s in." in texts(at)
    assert [c.value for c in at.code if c.value.endswith("red_ball.mp4")]

    at.button(key="play:seg-blue-1").click().run()  # blue_box.mp4 is not in the catalog
    assert "no longer in the catalog" in at.error[0].value
    assert not (data / "previews" / "vidblue").exists()


def test_user_text_is_escaped(archive):
    engine, _ = archive
    engine.hits[0] = Hit(engine.hits[0].video, 3.0, 6.0, 0.9,
                         "<script>alert(1)</script> [click](javascript:alert(2)) $x$ :red[boom] **bold** red",
                         "vidred", "seg-red-1")
    at = start("red")
    snippet = next(m.value for m in at.markdown if "alert" in m.value)
    assert "<script" not in snippet and "](" not in snippet and "$x$" not in snippet
    assert ":red[" not in snippet and "**" not in snippet
    assert snippet.endswith("<mark>red</mark>")


def test_error_messages_show_paths_and_errors_as_plain_text(archive, monkeypatch):
    import ui.preview

    weird = "/media/**bold**_[x](javascript:alert(1))_$y$.mp4"

    def fails(*args, **kwargs):
        raise ui.preview.PreviewError(f"cannot decode {weird}")

    monkeypatch.setattr(ui.preview, "preview", fails)
    at = start("ball")
    at.button(key="play:seg-red-1").click().run()
    shown = at.error[0].value
    assert shown.startswith("Cannot preview this moment: cannot decode ")
    assert "**" not in shown and "](" not in shown and "$y$" not in shown and "&#42;&#42;bold" in shown

    def broken(cls, settings, *a, **k):
        raise RuntimeError(f"cannot read {weird}")

    monkeypatch.setattr(SearchEngine, "open", classmethod(broken))
    st.cache_resource.clear()
    shown = start("ball").error[0].value
    assert shown.startswith("Cannot open the index in ") and "**" not in shown and "](" not in shown


def test_no_results(archive):
    engine, _ = archive
    engine.hits = []
    at = start("unicorn")
    assert "No moments match “unicorn”. Try other words." in at.info[0].value
    at.sidebar.selectbox(key="f_video").select("vidred").run()
    assert "Loosen the filters" in at.info[0].value


def test_no_index_yet_shows_the_command(tmp_path, monkeypatch):
    def no_index(cls, settings, *a, **k):
        raise NoIndexError("no trained model")

    monkeypatch.setenv("VBSEARCH_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(SearchEngine, "open", classmethod(no_index))
    st.cache_resource.clear()
    at = start("anything")
    assert not at.exception
    assert "No index yet" in at.info[0].value
    assert at.code[0].value == f"vbsearch index PATH... --data-dir {tmp_path.resolve()}"
    assert not at.text_input  # nothing to search yet


def test_store_busy(tmp_path, monkeypatch):
    calls = []

    def busy(cls, settings, *a, **k):
        calls.append(1)
        raise StoreBusyError("the index in /x/qdrant is in use by another vbsearch process")

    monkeypatch.setenv("VBSEARCH_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(SearchEngine, "open", classmethod(busy))
    st.cache_resource.clear()
    at = start()
    assert "The index is busy" in at.warning[0].value
    assert "in use by another vbsearch process" in texts(at)
    at.button(key="retry_busy").click().run()
    assert len(calls) == 2  # a failure is not cached: "Try again" really tries


def test_index_tab(archive):
    at = start()
    assert [m.label for m in at.metric] == ["Videos", "Hours", "Clips", "Segments"]
    assert [m.value for m in at.metric] == ["2", "0.01", "42", "25"]
    assert at.code[0].value == "mode factored\nwords 144"
    assert any("abc123def4567890" in m.value for m in at.markdown)
    failed = at.dataframe[0].value
    assert list(failed["error"]) == ["moov atom not found"]
    videos = at.dataframe[1].value
    assert sorted(Path(p).name for p in videos["path"]) == ["blue_box.mp4", "red_ball.mp4"]


def test_thumbnails_come_from_this_data_dir_only(archive):
    engine, data = archive
    red = engine.hits[0]
    # A data dir that moved: the stored path names the old place; the file is found in this one.
    engine.hits[0] = Hit(red.video, red.start, red.end, red.score, red.text, red.video_id, red.segment_id,
                         "/old/place/thumbnails/vidred/0.jpg", red.fps)
    engine.hits[1] = Hit(red.video, 1.0, 2.0, 0.5, "", "vidred", "seg-escape", "/etc/../etc/passwd", 10.0)
    at = start("red")
    assert len(at.image) == 1
