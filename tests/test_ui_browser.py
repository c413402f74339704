"""`vbsearch ui` end to end: the real server over an indexed archive, driven in headless Chromium.

Chromium is driven over the Chrome DevTools protocol (a websocket; no driver binary, no browser
download). The test opens the page with `?q=...`, waits until result cards render, saves a
screenshot (to $VBSEARCH_SCREENSHOT as well when set: that is how docs/screenshot.png is made)
and checks the page shows results: a catalogued video's name, a timecode range and why it matched.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SERVER_START_S = 90  # s: the server answers its health check within this
RESULTS_S = 180  # s: the engine loads the model on the first session, then searches
WINDOW = (1400, 1700)  # browser viewport (width, height) in pixels
TIMECODE_RANGE = re.compile(r"\d\d:\d\d:\d\d\.\d – \d\d:\d\d:\d\d\.\d")
PREVIEW_CAPTION = re.compile(r"Preview (\d\d):(\d\d):(\d\d\.\d) – (\d\d):(\d\d):(\d\d\.\d)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian chromium (`make system-deps` installs it)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process this test started, with its process group (its own children)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def ui_server(data_dir: Path, log_path: Path):
    """`vbsearch ui` on a free port; yields its URL."""
    port = free_port()
    exe = Path(sys.executable).with_name("vbsearch")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "vbsearch.cli"]
    cmd += ["ui", "--no-browser", "--port", str(port), "--data-dir", str(data_dir)]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            def healthy() -> bool:
                assert proc.poll() is None, f"vbsearch ui exited ({proc.returncode}):\n{log_path.read_text()}"
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
                        return resp.status == 200
                return False

            wait_for(healthy, SERVER_START_S, "the UI server")
            yield url
        finally:
            _stop(proc)


class Browser:
    """Headless Chromium with one page, spoken to over the DevTools protocol."""

    def __init__(self, profile: Path, *extra_args: str):
        from websockets.sync.client import connect

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={WINDOW[0]},{WINDOW[1]}", *extra_args, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = profile / "DevToolsActivePort"
            wait_for(lambda: port_file.is_file() and port_file.read_text().count("\n") >= 1, 30, "Chromium")
            port, browser_path = port_file.read_text().split()[:2]
            self.browser_url = f"ws://127.0.0.1:{port}{browser_path}"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
                pages = [t for t in json.load(resp) if t["type"] == "page"]
            self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        except BaseException:
            _stop(self.proc)
            raise
        self._ids = itertools.count(1)
        # A fixed viewport, whatever the headless window's decorations take.
        self.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1,
                  mobile=False)

    def call(self, method: str, **params):
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:  # events in between are not needed
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(png)

    def close(self) -> None:
        from websockets.sync.client import connect

        with contextlib.suppress(Exception):
            self.ws.close()
        # Closing through the protocol lets Chromium reap its own helper processes.
        with contextlib.suppress(Exception), connect(self.browser_url, open_timeout=5) as ws:
            ws.send(json.dumps({"id": 1, "method": "Browser.close"}))
            self.proc.wait(timeout=10)
        _stop(self.proc)


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "chromium-profile")
    yield b
    b.close()


def open_page(browser: Browser, url: str) -> None:
    browser.call("Page.enable")
    browser.call("Page.navigate", url=url)


def test_ui_shows_results_for_a_query(indexed_archive, browser, tmp_path):
    from urllib.parse import quote

    archive = indexed_archive.copy_to(tmp_path)  # a private copy: no other test's open store can block ours
    queries = json.loads((archive.archive_dir / "queries.json").read_text())
    query = queries[0]["text"]
    names = {p.name for p in (archive.archive_dir / "videos").glob("*.mp4")}
    with ui_server(archive.data_dir, tmp_path / "ui.log") as url:
        open_page(browser, f"{url}/?q={quote(query)}")
        text = wait_for(lambda: (t := browser.text()) and TIMECODE_RANGE.search(t) and t, RESULTS_S,
                        "result cards")
        wait_for(lambda: browser.evaluate(  # thumbnails painted before the screenshot
            "(imgs => imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0))"
            "([...document.querySelectorAll('main img')])"), 30, "the thumbnails")
        time.sleep(0.5)
        shot = tmp_path / "ui.png"
        browser.screenshot(shot)
        text = browser.text()

        # Preview the first result: a short clip from the lead-in to the moment's end, playable here.
        browser.evaluate("[...document.querySelectorAll('button')].find(b => b.innerText.includes('Preview')).click()")
        video = wait_for(lambda: browser.evaluate(
            "(v => v && v.readyState >= 1 ? {duration: v.duration, src: v.currentSrc} : null)"
            "(document.querySelector('video'))"), RESULTS_S, "the preview player")
        caption = wait_for(lambda: PREVIEW_CAPTION.search(browser.text()), 30, "the preview caption")
    if os.environ.get("VBSEARCH_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["VBSEARCH_SCREENSHOT"])

    assert "moments in" in text, text[:2000]
    first_card = text[text.index("1. "):]
    assert any(first_card.startswith(f"1. {name}") for name in names), first_card[:300]
    assert TIMECODE_RANGE.search(first_card[:200])
    # the first card explains its match in words: query words its transcript said, or its pictures showed
    first_card = first_card[:first_card.find("\n2. ")] if "\n2. " in first_card else first_card
    assert re.search(r"(said|seen): \w+", first_card), first_card[:600]
    assert "scores:" not in text  # the raw component scores wait behind each card's toggle
    assert "More like this" in text and "Download EDL" in text
    h0, m0, s0, h1, m1, s1 = (float(x) for x in caption.groups())
    length = (h1 * 3600 + m1 * 60 + s1) - (h0 * 3600 + m0 * 60 + s0)
    assert video["src"].startswith("http") and video["duration"] == pytest.approx(length, abs=0.3)
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == WINDOW
        assert len(img.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50  # not a blank page


def test_ui_without_an_index_says_how_to_build_one(tmp_path, browser):
    data_dir = tmp_path / "empty-data"
    with ui_server(data_dir, tmp_path / "ui.log") as url:
        open_page(browser, url)
        command = f"vbsearch index PATH... --data-dir {data_dir.resolve()}"
        text = wait_for(lambda: (t := browser.text()) and command in t and t, RESULTS_S, "the empty state")
    assert "No index yet" in text
    assert "Deploy" not in text  # the developer toolbar is hidden


def test_api_docs_render_without_the_internet(tmp_path):
    """`vbsearch serve`'s /docs in Chromium with every host name but the loopback unresolvable: Swagger UI
    renders the operations from assets the service serves itself (no CDN)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "vbsearch.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path / "d")]
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        offline = Browser(tmp_path / "chromium-offline", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
        try:
            def up() -> bool:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                with contextlib.suppress(OSError), urllib.request.urlopen(url + "/health", timeout=2) as resp:
                    return resp.status == 200
                return False

            wait_for(up, SERVER_START_S, "vbsearch serve")
            open_page(offline, url + "/docs")
            text = wait_for(lambda: (t := offline.text()) and "/more-like-this" in t and t, 60, "Swagger UI")
            assert "vbsearch" in text and "/search" in text and "/health" in text
            # No asset came from anywhere but this service.
            sources = offline.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
            assert sources and all(s.startswith(url) for s in sources), sources
        finally:
            offline.close()
            _stop(proc)
