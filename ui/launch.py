"""`vbsearch ui`: start the Streamlit app (ui/app.py) with this command's settings.

The app runs in its own `python -m streamlit` process; settings reach it as flags after `--`
(see app_argv / settings_from_argv, the one place that maps between the two), and the API key
through the inherited environment, never on a command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import webbrowser
from pathlib import Path

from vbsearch.config import Settings, load_settings

log = logging.getLogger(__name__)

APP = Path(__file__).with_name("app.py")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
BROWSER_WAIT_S = 60.0  # how long to wait for the server before giving up on opening a browser
HEALTH_PATH = "/_stcore/health"

# Settings field -> the flag that carries it to the app (the same names as the vbsearch CLI's).
# qdrant_api_key is absent on purpose: it travels in the environment only.
SETTINGS_ARGS = {
    "data_dir": "--data-dir",
    "qdrant_url": "--qdrant-url",
    "device": "--device",
    "model_dir": "--model",
    "features": "--features",
    "asr": "--asr",
    "asr_model": "--asr-model",
    "s3d_weights": "--s3d-weights",
}


def app_argv(settings: Settings) -> list[str]:
    """The app's arguments for `settings` (paths made absolute: the app may run elsewhere)."""
    argv: list[str] = []
    for name, flag in SETTINGS_ARGS.items():
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, Path):
            value = value.expanduser().resolve()
        argv += [flag, str(value)]
    return argv


def settings_from_argv(argv: list[str]) -> Settings:
    """Settings from the app's arguments; flags it does not know (a test runner's) are ignored."""
    parser = argparse.ArgumentParser(add_help=False)
    for name, flag in SETTINGS_ARGS.items():
        parser.add_argument(flag, dest=name)
    known, _ = parser.parse_known_args(argv)
    return load_settings(vars(known))


def api_from_argv(argv: list[str]) -> str | None:
    """The search service URL given with --api (None: search in-process)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--api")
    return parser.parse_known_args(argv)[0].api or None


def streamlit_command(settings: Settings, host: str, port: int, api: str | None = None) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.headless", "true",  # no first-run e-mail prompt; we open the browser ourselves
            "--server.address", host,
            "--server.port", str(port),
            "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal",  # no "Deploy" or developer menu for archivists
            "--", *app_argv(settings), *(["--api", api] if api else [])]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 for all interfaces)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    parser.add_argument("--api", metavar="URL", help="search through this `vbsearch serve` service instead of "
                        "opening the index here (its token from $VBSEARCH_API_TOKEN)")


def _can_open_browser() -> bool:
    # Without a display, webbrowser would fall back to a text browser in this terminal.
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _open_when_ready(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + BROWSER_WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + HEALTH_PATH, timeout=2) as resp:
                if resp.status == 200:
                    webbrowser.open(url)
                    return
        except OSError:
            pass
        time.sleep(0.5)


def run(args: argparse.Namespace, settings: Settings) -> int:
    cmd = streamlit_command(settings, args.host, args.port, args.api)
    browse_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    url = f"http://{browse_host}:{args.port}"
    source = f"search service {args.api}" if args.api else f"data dir {settings.data_dir.resolve()}"
    print(f"vbsearch UI on {url} ({source}); Ctrl-C to stop", file=sys.stderr)
    log.debug("running %s", cmd)
    proc = subprocess.Popen(cmd)
    if not args.no_browser and _can_open_browser():
        threading.Thread(target=_open_when_ready, args=(url, proc), daemon=True).start()
    # A stop request (docker stop, a service manager) must reach the server, not orphan it.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # The terminal's Ctrl-C reaches streamlit too; give it a moment to shut down cleanly.
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
