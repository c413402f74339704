"""ui/launch.py: `vbsearch ui` hands its settings to the Streamlit app and passes its exit status on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ui import launch
from vbsearch.cli import main
from vbsearch.config import Settings, load_settings


def test_settings_survive_the_trip_to_the_app(tmp_path):
    settings = load_settings({"data_dir": str(tmp_path / "data"), "qdrant_url": "http://q:6333", "device": "cpu",
                              "model_dir": str(tmp_path / "model")}, environ={"VBSEARCH_QDRANT_API_KEY": "secret"})
    argv = launch.app_argv(settings)
    assert "secret" not in " ".join(argv)  # the key travels in the environment, not on a command line
    assert argv[:2] == ["--data-dir", str((tmp_path / "data").resolve())]
    back = launch.settings_from_argv(["-q", "tests/x.py", *argv])  # a test runner's own flags are ignored
    assert back.data_dir == (tmp_path / "data").resolve()
    assert (back.qdrant_url, back.device, back.model_dir) == ("http://q:6333", "cpu", (tmp_path / "model").resolve())
    assert (back.features, back.asr) == (settings.features, settings.asr)


def test_app_without_flags_uses_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VBSEARCH_DATA_DIR", str(tmp_path))
    assert launch.settings_from_argv([]).data_dir == tmp_path


def test_streamlit_command():
    cmd = launch.streamlit_command(Settings(data_dir=Path("/d")), "0.0.0.0", 8600)
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"] and Path(cmd[4]) == launch.APP
    flags = dict(zip(cmd[5:15:2], cmd[6:15:2], strict=True))
    assert flags == {"--server.headless": "true", "--server.address": "0.0.0.0", "--server.port": "8600",
                     "--browser.gatherUsageStats": "false", "--client.toolbarMode": "minimal"}
    assert cmd[15:18] == ["--", "--data-dir", "/d"]


class FakeProcess:
    def __init__(self, cmd, *args, **kwargs):
        FakeProcess.cmd = cmd

    def wait(self, timeout=None):
        return 7

    def poll(self):
        return 7


@pytest.mark.parametrize("argv", [["ui", "--no-browser"], ["ui", "--host", "0.0.0.0", "--port", "8502"]])
def test_vbsearch_ui_passes_the_exit_status_through(argv, tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "Popen", FakeProcess)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main([*argv, "--data-dir", str(tmp_path)]) == 7
    cmd = FakeProcess.cmd
    assert cmd[cmd.index("--server.port") + 1] == ("8502" if "--port" in argv else "8501")
    assert cmd[cmd.index("--server.address") + 1] == ("0.0.0.0" if "--host" in argv else "127.0.0.1")
    assert cmd[cmd.index("--data-dir") + 1] == str(tmp_path.resolve())
