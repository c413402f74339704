"""The HTTP search service (search/service.py) and its client (search/client.py).

Live tests run `vbsearch serve` in a subprocess on a free port over a private copy of the shared indexed
archive (the embedded store admits one process: the service's), and talk to it with httpx; a
schemathesis run against its OpenAPI document (all checks) must find nothing. In-process tests drive create_app with
stand-in engines for what a real index cannot easily show: internal errors, an index that appears
later, files gone from the catalog, serialised forward passes.
"""

from __future__ import annotations

import csv
import io
import math
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import polars as pl
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from search.client import ApiClient
from search.engine import EngineError, IndexInfo, NoIndexError, RankingOptions
from search.guards import ServiceLimits
from search.hits import Hit
from search.owner import find as find_service
from search.service import TOKEN_ENV, EngineHolder, create_app
from vbsearch.cli import main
from vbsearch.config import Settings

TOKEN = "test-token-4f1c"
STARTUP_S = 420  # on a busy shared machine: the model loads and the store opens before the service answers ready
EXAMPLES_PER_OPERATION = 25  # per operation and generation mode (valid, invalid)
HIT_KEYS = {"video", "start", "end", "score", "text", "video_id", "segment_id", "thumbnail", "fps", "scores",
            "timecode", "why"}


# -- the live service ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Live:
    url: str
    archive: object  # tests.conftest.IndexedArchive (a private copy)
    proc: subprocess.Popen
    auth: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {TOKEN}"})

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.auth, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def live(indexed_archive, tmp_path_factory):
    archive = indexed_archive.copy_to(tmp_path_factory.mktemp("service"))
    port = _free_port()
    env = {**os.environ, TOKEN_ENV: TOKEN}
    log = open(archive.data_dir / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "vbsearch.cli", "serve", "--port", str(port),
                             "--data-dir", str(archive.data_dir)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    try:
        while True:
            assert proc.poll() is None, (archive.data_dir / "serve.log").read_text()
            try:
                if httpx.get(url + "/health", timeout=2).json().get("ready"):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.3)
        yield Live(url, archive, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0 or proc.returncode == -15, (archive.data_dir / "serve.log").read_text()
    assert "Traceback" not in (archive.data_dir / "serve.log").read_text()
    assert find_service(archive.data_dir) is None  # a stopped service no longer announces itself


@pytest.fixture(scope="module")
def first_hits(live):
    with live.client() as c:
        r = c.post("/search", json={"query": "a red circle moving left", "top_k": 5})
    assert r.status_code == 200, r.text
    return r.json()["hits"]


def test_health_needs_no_token_and_says_ready(live):
    r = httpx.get(live.url + "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "ready": True, "state": "ready", "detail": None}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
def test_every_data_endpoint_needs_the_token(live, headers):
    some = str(uuid.uuid4())
    with httpx.Client(base_url=live.url, headers=headers) as c:
        for r in (c.post("/search", json={"query": "ball"}), c.post("/more-like-this", json={"segment_id": some}),
                  c.get(f"/segments/{some}"), c.get(f"/segments/{some}/thumbnail"),
                  c.get(f"/segments/{some}/preview"), c.get("/videos"), c.get("/index"),
                  c.post("/export", json={"segment_ids": [some], "format": "edl"})):
            assert r.status_code == 401, (r.request.url, r.text)
            assert r.json() == {"detail": "missing or wrong bearer token"}
            assert r.headers["www-authenticate"] == "Bearer"


def test_search_hits_carry_the_cli_fields_and_media_urls(live, first_hits):
    assert 1 <= len(first_hits) <= 5
    videos = {str(p) for p in (live.archive.archive_dir / "videos").iterdir()}
    for h in first_hits:
        assert HIT_KEYS | {"thumbnail_url", "preview_url"} == set(h)
        assert h["video"] in videos and 0 <= h["start"] < h["end"]
        assert h["preview_url"] == f"/segments/{h['segment_id']}/preview"
        assert h["timecode"] is None  # these generated files carry no start timecode
        assert h["thumbnail_url"] == (f"/segments/{h['segment_id']}/thumbnail" if h["thumbnail"] else None)
    scores = [h["score"] for h in first_hits]
    assert scores == sorted(scores, reverse=True)


def test_filters_restrict_hits(live, first_hits):
    video_id = first_hits[0]["video_id"]
    with live.client() as c:
        only = c.post("/search", json={"query": "a red circle moving left", "top_k": 20,
                                       "filters": {"video": video_id}}).json()["hits"]
        by_path = c.post("/search", json={"query": "a red circle moving left", "top_k": 20,
                                          "filters": {"video": first_hits[0]["video"]}}).json()["hits"]
        long = c.post("/search", json={"query": "a red circle moving left", "top_k": 20,
                                       "filters": {"min_duration": 4.0}}).json()["hits"]
        future = c.post("/search", json={"query": "a red circle moving left",
                                         "filters": {"indexed_after": "2999-01-01T00:00"}}).json()["hits"]
        past = c.post("/search", json={"query": "a red circle moving left", "top_k": 3,
                                       "filters": {"indexed_after": 0}}).json()["hits"]
    assert only and {h["video_id"] for h in only} == {video_id}
    assert [h["segment_id"] for h in by_path] == [h["segment_id"] for h in only]
    assert all(h["end"] - h["start"] >= 4.0 - 1e-6 for h in long)
    assert future == [] and len(past) == 3


def test_no_rerank_changes_scores_not_the_contract(live):
    with live.client() as c:
        hits = c.post("/search", json={"query": "someone speaks", "top_k": 3, "rerank": False}).json()["hits"]
    assert len(hits) == 3 and all("align" not in h["scores"] or h["scores"]["align"] == 0.0 for h in hits)


@pytest.mark.parametrize("body, where", [
    ({"query": ""}, "query"),
    ({"query": "  \t\n "}, "query"),
    ({"query": "x" * 1001}, "query"),
    ({"query": "ball", "top_k": 0}, "top_k"),
    ({"query": "ball", "top_k": 201}, "top_k"),
    ({"query": "ball", "top_k": "many"}, "top_k"),
    ({"query": "ball", "filters": {"colour": "red"}}, "filters.colour"),
    ({"query": "ball", "filters": {"min_duration": -1}}, "filters.min_duration"),
    ({"query": "ball", "filters": {"indexed_after": "yesterday"}}, "filters.indexed_after"),
    ({"query": "ball", "limit": 3}, "limit"),
    ({"top_k": 3}, "query"),
])
def test_bad_search_requests_are_clear_422s(live, body, where):
    with live.client() as c:
        r = c.post("/search", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert f"body.{where}" in detail and "Traceback" not in detail


def test_malformed_json_is_a_422(live):
    with live.client() as c:
        r = c.post("/search", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "Traceback" not in r.text


def test_more_like_this(live, first_hits):
    seed = first_hits[0]
    with live.client() as c:
        r = c.post("/more-like-this", json={"segment_id": seed["segment_id"], "top_k": 4})
        unknown = c.post("/more-like-this", json={"segment_id": str(uuid.uuid4())})
        bad = c.post("/more-like-this", json={"segment_id": "../../etc/passwd"})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert 1 <= len(hits) <= 4 and seed["segment_id"] not in {h["segment_id"] for h in hits}
    assert unknown.status_code == 404 and "unknown segment" in unknown.json()["detail"]
    assert bad.status_code == 422


def test_export_hands_the_selection_over_in_the_order_given(live, first_hits):
    import opentimelineio as otio

    chosen = [first_hits[2], first_hits[0]]
    ids = [h["segment_id"] for h in chosen]
    with live.client() as c:
        r = c.post("/export", json={"segment_ids": ids, "format": "otio", "title": "picks"})
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"] == 'attachment; filename="vbsearch-selection.otio"'
        timeline = otio.adapters.read_from_string(r.text, "otio_json")
        assert timeline.name == "picks"
        clips = list(timeline.tracks[0].find_clips())
        assert [otio.url_utils.filepath_from_url(c.media_reference.target_url) for c in clips] == \
            [h["video"] for h in chosen]
        assert [c.metadata["vbsearch"]["segment_id"] for c in clips] == ids
        r = c.post("/export", json={"segment_ids": ids, "format": "csv"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [(row["segment_id"], float(row["start"])) for row in rows] == [(h["segment_id"], h["start"]) for h in chosen]
        missing = str(uuid.uuid4())
        r = c.post("/export", json={"segment_ids": [ids[0], missing], "format": "edl"})
        assert r.status_code == 404 and missing in r.json()["detail"]
        assert c.post("/export", json={"segment_ids": ids, "format": "docx"}).status_code == 422
        assert c.post("/export", json={"segment_ids": [], "format": "edl"}).status_code == 422


def test_segment_details(live, first_hits):
    h = first_hits[0]
    with live.client() as c:
        r = c.get(f"/segments/{h['segment_id']}")
        missing = c.get(f"/segments/{uuid.uuid4()}")
        bad = c.get("/segments/not-a-uuid")
    assert r.status_code == 200, r.text
    seg = r.json()
    assert (seg["segment_id"], seg["video"], seg["video_id"]) == (h["segment_id"], h["video"], h["video_id"])
    assert (seg["start"], seg["end"], seg["text"]) == (h["start"], h["end"], h["text"])
    assert seg["duration"] == pytest.approx(h["end"] - h["start"], abs=1e-3)
    assert seg["preview_url"] == h["preview_url"] and seg["thumbnail_url"] == h["thumbnail_url"]
    assert missing.status_code == 404 and bad.status_code == 422


def test_thumbnail_and_preview(live, first_hits):
    h = next(h for h in first_hits if h["thumbnail_url"])
    with live.client() as c:
        thumb = c.get(h["thumbnail_url"])
        pv = c.get(h["preview_url"])
        again = c.get(h["preview_url"])  # from the cache
        missing = c.get(f"/segments/{uuid.uuid4()}/preview")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff"
    assert pv.status_code == 200 and pv.headers["content-type"] == "video/mp4", pv.text
    assert pv.content[4:8] == b"ftyp" and again.content == pv.content
    start, end, lead = (float(pv.headers[k]) for k in ("x-window-start", "x-window-end", "x-lead-in"))
    assert start == pytest.approx(max(0.0, h["start"] - lead), abs=1e-3) and end <= h["end"] + 1e-3
    assert missing.status_code == 404


def test_index_and_videos(live):
    with live.client() as c:
        info = c.get("/index").json()
        videos = c.get("/videos").json()
    assert info["videos"] == 2 == len(videos) and info["segments"] > 0 and info["clips"] > 0
    assert info["model_id"] and info["failed"] == [] and info["last_indexed"] > 0
    assert {v["path"] for v in videos} == {str(p) for p in (live.archive.archive_dir / "videos").iterdir()}
    assert all(v["duration"] > 0 for v in videos)


def test_openapi_documents_every_endpoint_and_the_bearer_scheme(live):
    doc = httpx.get(live.url + "/openapi.json").json()
    assert set(doc["paths"]) == {"/health", "/search", "/more-like-this", "/segments/{segment_id}",
                                 "/segments/{segment_id}/thumbnail", "/segments/{segment_id}/preview",
                                 "/videos", "/index", "/export"}
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    req = doc["components"]["schemas"]["SearchRequest"]
    assert req["additionalProperties"] is False
    assert req["properties"]["top_k"]["maximum"] == 200


def test_unknown_route_is_a_json_404(live):
    r = httpx.get(live.url + "/nope", headers=live.auth)
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_concurrent_searches_all_succeed(live):
    """Eight clients at once: every answer is the same as the one a lone client gets."""
    body = {"query": "a blue square", "top_k": 5}
    with live.client() as c:
        alone = [h["segment_id"] for h in c.post("/search", json=body).json()["hits"]]
    results: list[list[str]] = []

    def worker() -> None:
        with live.client() as c:
            for _ in range(3):
                r = c.post("/search", json=body)
                assert r.status_code == 200
                results.append([h["segment_id"] for h in r.json()["hits"]])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 24 and all(r == alone for r in results)


def test_client_behaves_like_the_engine(live, first_hits):
    with ApiClient(live.url, token=TOKEN) as client:
        hits = client.search("a red circle moving left", top_k=5)
        assert [(h.segment_id, h.video, h.start, h.text) for h in hits] == \
            [(h["segment_id"], h["video"], h["start"], h["text"]) for h in first_hits]
        assert all(isinstance(h, Hit) for h in hits)
        assert client.search("   ") == []
        assert client.search("x " * 1000, top_k=1)  # cut to the longest query, as the CLI does
        like = client.more_like_this(hits[0].segment_id, top_k=3)
        assert like and hits[0].segment_id not in {h.segment_id for h in like}
        videos = client.videos()
        assert isinstance(videos, pl.DataFrame) and videos.height == 2
        info = client.index_info()
        assert isinstance(info, IndexInfo) and info.videos == 2
        assert client.is_catalogued(hits[0].video) and not client.is_catalogued("/etc/passwd")
        with_thumb = next(h for h in hits if h.thumbnail)
        assert client.thumbnail_bytes(with_thumb)[:3] == b"\xff\xd8\xff"
        pv = client.preview_clip(with_thumb)
        assert pv.data[4:8] == b"ftyp" and pv.lead_in >= 0
        with pytest.raises(EngineError, match="404"):
            client.more_like_this(str(uuid.uuid4()))
    with ApiClient(live.url, token="wrong") as client, pytest.raises(EngineError, match="401"):
        client.search("ball")
    with ApiClient(f"http://127.0.0.1:{_free_port()}", timeout=2) as client, \
            pytest.raises(EngineError, match="cannot reach"):
        client.index_info()


def test_cli_search_asks_the_running_service_and_gets_the_same_hits(live, monkeypatch, capsys):
    import json

    from search.engine import SearchEngine
    from vbsearch.cli import main

    data = live.archive.data_dir
    assert find_service(data) == live.url  # `vbsearch serve` announced itself in the data dir
    opened = []
    real_open = SearchEngine.open.__func__
    monkeypatch.setattr(SearchEngine, "open", classmethod(lambda cls, *a, **k: opened.append(1) or real_open(cls, *a, **k)))
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    argv = ["search", "a red circle moving left", "--data-dir", str(data), "--json", "--top-k", "4"]
    assert main(argv) == 0
    asked = json.loads(capsys.readouterr().out)
    assert opened == []  # no model loaded in this process: the service answered
    monkeypatch.setattr("search.owner.find", lambda data_dir: None)  # as with no service running
    assert main(argv) == 0
    here = json.loads(capsys.readouterr().out)
    assert opened == [1]
    assert [h["segment_id"] for h in asked] == [h["segment_id"] for h in here]
    assert [h["score"] for h in asked] == pytest.approx([h["score"] for h in here], abs=1e-4)
    monkeypatch.undo()
    monkeypatch.delenv(TOKEN_ENV, raising=False)  # a service that refuses us: this process searches by itself
    assert main(argv) == 0 and [h["segment_id"] for h in json.loads(capsys.readouterr().out)] == \
        [h["segment_id"] for h in here]


def test_ui_searches_through_the_service(live, monkeypatch):
    """`vbsearch ui --api URL`: the page's results, thumbnails and previews all come over HTTP."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from ui.launch import streamlit_command

    app = Path(__file__).resolve().parents[1] / "ui" / "app.py"
    elsewhere = live.archive.data_dir.parent / "no-data-here"  # the page must not need the data dir
    cmd = streamlit_command(Settings(data_dir=elsewhere), "127.0.0.1", 8599, live.url)
    monkeypatch.setattr(sys, "argv", [str(app), *cmd[cmd.index("--") + 1:]])
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    st.cache_resource.clear()
    st.cache_data.clear()
    try:
        at = AppTest.from_file(str(app), default_timeout=120)
        at.query_params["q"] = "a red circle moving left"
        at.run()
        assert not at.exception, at.exception
        shown = [m.value for m in at.markdown if m.value.startswith("**") and "score" in m.value]
        assert len(shown) == 10 and len(at.image) >= 1
        at.button(key=next(b.key for b in at.button if b.key and b.key.startswith("play:"))).click().run()
        assert not at.exception and "Preview 00:" in "\n".join(c.value for c in at.caption)
        assert not elsewhere.exists()
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()


# -- property-based: no input makes the service fail ------------------------------------------------------------
def test_no_request_makes_a_server_error(live):
    """schemathesis draws requests from the service's own OpenAPI document (valid and invalid ones) for
    every operation and runs all its checks: no 5xx, every status and body as documented, valid data
    accepted, invalid data refused, auth not ignored. (Its pytest plugin's lazy fixtures do not run under this pytest,
    so each operation's strategy runs through hypothesis here.)"""
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9
    statuses: list[int] = []
    for op, mode in ((op, mode) for op in operations for mode in schemathesis.GenerationMode):
        if mode is schemathesis.GenerationMode.NEGATIVE and not (op.body.items or op.path_parameters.items):
            continue  # nothing to get wrong in a request without parameters

        @given(case=op.as_strategy(mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def no_5xx(case) -> None:
            statuses.append(case.call_and_validate(headers=live.auth).status_code)  # every check schemathesis has

        no_5xx()
    # It did explore: valid requests answered, invalid ones refused.
    assert len(statuses) >= 2 * len(operations) and {200, 422} <= set(statuses), sorted(set(statuses))


# -- in-process: failures a real index cannot easily show ------------------------------------------------------
class FakeStore:
    def __init__(self, payloads: dict[str, dict]):
        self.payloads = payloads

    def retrieve(self, ids, with_vectors=False):
        return [SimpleNamespace(id=i, payload=self.payloads[i]) for i in ids if i in self.payloads]

    def close(self) -> None:
        pass


class FakeInference:
    """Records how many calls run at once."""

    def __init__(self):
        self.active = self.most = 0
        self.guard = threading.Lock()

    def encode_text(self, texts):
        with self.guard:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.02)
        with self.guard:
            self.active -= 1
        return [[0.0]]


class FakeEngine:
    def __init__(self, data_dir: Path, payloads: dict[str, dict] | None = None, fail: Exception | None = None):
        self.data_dir = data_dir
        self.store = FakeStore(payloads or {})
        self.options = RankingOptions()
        self.inference = FakeInference()
        self.fail = fail
        self.closed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def search(self, query, top_k=10, filters=None, options=None):
        if self.fail:
            raise self.fail
        if query == "block":
            self.entered.set()
            assert self.release.wait(10)
        self.inference.encode_text([query])
        return []

    def more_like_this(self, segment_id, top_k=10, filters=None):
        if segment_id not in self.store.payloads:
            raise EngineError(f"unknown segment {segment_id!r}")
        return []

    def index_info(self):
        return IndexInfo(videos=0, hours=0.0, clips=0, segments=len(self.store.payloads), failed=[], model_id="m")

    def is_catalogued(self, path):
        return False

    def videos(self):
        return pl.DataFrame()

    def close(self):
        self.closed = True


def _in_process(factory, **limits):
    from fastapi.testclient import TestClient

    limits = ServiceLimits(**{"load_retry_s": (0.05,), "queue_wait_s": 5.0, **limits})
    return TestClient(create_app(engine_factory=factory, limits=limits), raise_server_exceptions=False,
                      base_url="http://localhost")


def test_internal_errors_are_500_without_details(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    engine = FakeEngine(tmp_path, fail=RuntimeError("secret /srv/path exploded"))
    with _in_process(lambda: engine) as c:
        r = c.post("/search", json={"query": "ball"})
    assert r.status_code == 500 and r.json() == {"detail": "internal error"}
    assert "secret" not in r.text and "Traceback" not in r.text
    assert "secret /srv/path exploded" in caplog.text  # logged on the server, where operators look
    assert engine.closed  # the lifespan closed the engine on shutdown


def test_service_comes_up_before_the_index_and_opens_it_later(tmp_path, monkeypatch):
    """The engine opens in the background, retried at spaced-out times; /health only reports (no paths),
    a request waits a bounded time and then gets 503 with Retry-After."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    engine = FakeEngine(tmp_path)
    attempts: list[float] = []
    index_built = threading.Event()

    def factory():
        attempts.append(time.monotonic())
        if not index_built.is_set():
            raise NoIndexError("no trained model in /x/model")
        return engine

    with _in_process(factory, load_retry_s=(0.2,), queue_wait_s=0.3) as c:
        health = c.get("/health").json()
        assert health["ready"] is False and health["state"] in ("loading", "no-index")
        assert "/x/model" not in str(health)
        r = c.post("/search", json={"query": "ball"})
        assert r.status_code == 503 and r.json()["detail"].startswith("no index yet")
        assert int(r.headers["Retry-After"]) >= 1
        tried = len(attempts)
        for _ in range(20):
            c.get("/health")  # asking does not make it try more often
        index_built.set()
        deadline = time.monotonic() + 10
        while not c.get("/health").json()["ready"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert c.get("/health").json() == {"status": "ok", "ready": True, "state": "ready", "detail": None}
        assert c.post("/search", json={"query": "ball"}).json()["hits"] == []
        gaps = np.diff(attempts)
        assert tried <= 4 and (gaps >= 0.15).all(), gaps  # spaced out, not one per request
        opened = len(attempts)
    assert len(attempts) == opened  # and not once more after it opened


def test_media_only_for_catalogued_videos(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    sid = str(uuid.uuid4())
    thumbs = tmp_path / "thumbnails" / "vid1"
    thumbs.mkdir(parents=True)
    (thumbs / "0.jpg").write_bytes(b"\xff\xd8\xff fake")
    payload = {"path": "/etc/passwd", "video_id": "vid1", "start": 0.0, "end": 2.0, "thumbnail": "thumbnails/vid1/0.jpg"}
    with _in_process(lambda: FakeEngine(tmp_path, {sid: payload})) as c:
        assert c.get(f"/segments/{sid}").status_code == 200  # details are fine: no file is opened
        for kind in ("thumbnail", "preview"):
            r = c.get(f"/segments/{sid}/{kind}")
            assert r.status_code == 404 and "no longer in the catalog" in r.json()["detail"]


def test_searches_run_concurrently_but_forward_passes_one_at_a_time(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    engine = FakeEngine(tmp_path)
    with _in_process(lambda: engine) as c:
        blocked = threading.Thread(target=lambda: c.post("/search", json={"query": "block"}))
        blocked.start()
        assert engine.entered.wait(10)
        # One search is stuck inside the engine; others are still answered.
        assert c.get("/health").status_code == 200
        threads = [threading.Thread(target=lambda: c.post("/search", json={"query": "ball"})) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        engine.release.set()
        blocked.join()
    assert engine.inference.most == 1


def test_holder_wraps_inference_under_one_lock():
    inner = FakeInference()
    holder = EngineHolder(lambda: SimpleNamespace(inference=inner, close=lambda: None))
    eng = holder.get(wait_s=10)
    threads = [threading.Thread(target=eng.inference.encode_text, args=(["x"],)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert inner.most == 1 and holder.get() is eng
    holder.close()


def test_token_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    with _in_process(lambda: FakeEngine(tmp_path)) as c:
        assert c.post("/search", json={"query": "ball"}).status_code == 401
        ok = c.post("/search", json={"query": "ball"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and c.get("/health").status_code == 200


# -- hardening: bounded requests, cheap health, load shedding, one error shape ----------------------------------
def test_an_oversized_body_is_refused_while_it_is_read_before_parsing_or_the_token(tmp_path, monkeypatch):
    import asyncio

    from search.guards import BodyLimit

    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    with _in_process(lambda: FakeEngine(tmp_path)) as c:
        r = c.post("/search", content=b"[" * 30_000_000, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json() == {"detail": "request body over 1000000 bytes"}  # not 401
        chunked = c.post("/search", content=iter([b"[" * 600_000] * 3), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413  # no Content-Length: refused once the cap is passed
        assert c.post("/search", json={"query": "ball"}).status_code == 401  # a small body still needs the token
    with _in_process(lambda: FakeEngine(tmp_path), max_body_bytes=100) as c:
        assert c.post("/search", json={"query": "x" * 200}).status_code == 413

    # At the ASGI level: a 30 MB chunked body is read no further than the cap.
    pulled: list[int] = []
    sent: list[dict] = []

    async def receive():
        pulled.append(65_536)
        return {"type": "http.request", "body": b"[" * 65_536, "more_body": sum(pulled) < 30_000_000}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):  # reads the whole body, as a JSON parser would
        while (await receive()).get("more_body"):
            pass

    scope = {"type": "http", "headers": [(b"content-type", b"application/json")]}
    asyncio.run(BodyLimit(app, max_bytes=1_000_000)(scope, receive, send))
    assert sent[0]["status"] == 413 and sum(pulled) <= 1_000_000 + 65_536


@pytest.mark.parametrize(("host", "status"), [("localhost:8080", 200), ("127.0.0.1", 200), ("[::1]:8080", 200),
                                              ("LOCALHOST", 200), ("evil.example", 400),
                                              ("localhost.evil.example:8080", 400), ("", 400)])
def test_requests_for_another_host_name_are_refused(tmp_path, monkeypatch, host, status):
    """A DNS-rebinding page reaches 127.0.0.1 under its own name, which the Host header carries."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with _in_process(lambda: FakeEngine(tmp_path)) as c:
        r = c.get("/health", headers={"Host": host})
        assert r.status_code == status and r.headers["content-type"] == "application/json"
        if status == 400:
            assert "host name" in r.json()["detail"]
    with _in_process(lambda: FakeEngine(tmp_path), allowed_hosts=("archive.example",)) as c:
        assert c.get("/health", headers={"Host": "archive.example:80"}).status_code == 200


def test_health_answers_at_once_while_the_engine_opens_and_under_overload(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    engine = FakeEngine(tmp_path)
    may_open = threading.Event()

    def slow_factory():
        assert may_open.wait(30)
        return engine

    with _in_process(slow_factory, max_concurrent=1, max_queued=0) as c:
        assert c.get("/health").json()["state"] == "loading"  # it does not wait for the model
        may_open.set()
        first = threading.Thread(target=lambda: c.post("/search", json={"query": "block"}))
        first.start()
        assert engine.entered.wait(10)  # one search holds the only turn, and none may wait
        over = c.post("/search", json={"query": "ball"})
        assert over.status_code == 503 and over.headers["Retry-After"] == "1" and "busy" in over.json()["detail"]
        health = c.get("/health")
        assert health.status_code == 200 and health.json()["ready"] is True
        engine.release.set()
        first.join()
        assert c.post("/search", json={"query": "ball"}).status_code == 200


def test_a_queued_request_runs_when_a_turn_frees_or_gives_up_after_the_wait(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    engine = FakeEngine(tmp_path)
    with _in_process(lambda: engine, max_concurrent=1, max_queued=4, queue_wait_s=0.3) as c:
        first = threading.Thread(target=lambda: c.post("/search", json={"query": "block"}))
        first.start()
        assert engine.entered.wait(10)
        r = c.post("/search", json={"query": "ball"})
        assert r.status_code == 503 and "no turn within 0.3 s" in r.json()["detail"]
        queued = []
        second = threading.Thread(target=lambda: queued.append(c.post("/search", json={"query": "ball"})))
        second.start()
        engine.release.set()
        first.join()
        second.join()
        assert queued[0].status_code == 200


@pytest.mark.parametrize("bad", [math.nan, math.inf, None])
def test_a_stored_time_that_is_not_a_number_is_a_clear_422(tmp_path, monkeypatch, bad):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    sid = str(uuid.uuid4())
    payload = {"path": "/a.mp4", "video_id": "vid1", "start": 0.0, "end": bad}
    with _in_process(lambda: FakeEngine(tmp_path, {sid: payload})) as c:
        for url in (f"/segments/{sid}", f"/segments/{sid}/preview"):
            r = c.get(url)
            assert r.status_code == 422 and "not numbers" in r.json()["detail"], (url, r.text)


@pytest.mark.parametrize("body", [{"query": "ball", "top_k": "5"}, {"query": "ball", "top_k": 5.5},
                                  {"query": "ball", "top_k": True},
                                  {"query": "ball", "rerank": 1}, {"query": "ball", "rerank": "true"},
                                  {"query": "ball", "filters": {"min_duration": False}},
                                  {"query": "ball", "filters": {"max_duration": "3"}}])
def test_request_types_are_strict(tmp_path, monkeypatch, body):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with _in_process(lambda: FakeEngine(tmp_path)) as c:
        r = c.post("/search", json=body)
        assert r.status_code == 422 and set(r.json()) == {"detail", "errors"}, r.text
        empty_range = c.post("/search", json={"query": "ball", "filters": {"min_duration": 5, "max_duration": 2}})
        assert empty_range.status_code == 200  # schema-valid: a range with nothing in it finds nothing
        unprintable = c.post("/search", json={"query": "\x90\u200b \t"})  # schema-valid: not only white space
        assert unprintable.status_code == 200 and unprintable.json()["hits"] == []
        assert c.post("/search", json={"query": " \t\x1c\u3000"}).status_code == 422  # only white space
        assert c.post("/search", json={"query": "ball", "top_k": 5, "rerank": False,
                                       "filters": {"min_duration": 1, "indexed_after": "2020-01-01T00:00:00"}}
                      ).status_code == 200


def test_every_error_the_service_sends_is_documented_as_a_problem(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with _in_process(lambda: FakeEngine(tmp_path)) as c:
        doc = c.get("/openapi.json").json()
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = {int(k) for k in op["responses"] if k != "200"}
            assert {400, 413, 422} <= codes, (method, path)
            if path != "/health":
                assert {401, 503} <= codes, (method, path)
            for code in codes:
                assert op["responses"][str(code)]["content"]["application/json"]["schema"] == problem, (path, code)
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_docs_load_without_the_internet(tmp_path, monkeypatch):
    """/docs and /redoc use only assets this service serves itself (no CDN)."""
    import re

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with _in_process(lambda: FakeEngine(tmp_path)) as c:
        for page in ("/docs", "/redoc"):
            html = c.get(page)
            assert html.status_code == 200
            urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""", html.text)
            urls = [a or b for a, b in urls]
            assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
            for u in urls:
                assert c.get(u).status_code == 200, u


def test_forward_passes_leave_a_core_to_the_event_loop(tmp_path, capsys):
    from search.service import forward_threads

    assert [forward_threads(n) for n in (1, 2, 16)] == [1, 1, 15]
    assert main(["serve", "--data-dir", str(tmp_path), "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_the_query_rule_is_one_set_of_white_space_for_every_regex_engine():
    """The query's schema pattern refuses exactly the characters Python calls white space, whether Python's re
    reads it (schemathesis draws with hypothesis, itself on re) or Rust's regex (pydantic validates with it)."""
    import re

    from pydantic import ValidationError

    from search.api_models import SearchRequest
    from search.query import QUERY_PATTERN

    assert "\\s" not in QUERY_PATTERN  # ECMA-262's \s (OpenAPI's pattern dialect) is another set: no U+0085
    spaces = [chr(c) for c in range(0x3001) if chr(c).isspace()]
    assert "\u0085" in spaces and "\u3000" in spaces
    for ch in spaces:
        assert re.search(QUERY_PATTERN, ch) is None
        with pytest.raises(ValidationError):
            SearchRequest(query=ch)
    for ch in ("a", "\u200b", "\x00", "é"):  # schema-valid (unprintable ones then find nothing)
        assert re.search(QUERY_PATTERN, ch)
        SearchRequest(query=ch)
