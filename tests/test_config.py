from pathlib import Path

import pytest

from vbsearch.config import ConfigError, Settings, load_settings


def test_defaults_without_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings({}, environ={})
    assert s.data_dir == Path("vbsearch-data")
    assert s.features == "objectflow" and s.asr == "auto" and s.qdrant_url is None


def test_precedence_defaults_file_env_cli(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "vbsearch.toml").write_text('features = "s3d"\nasr = "none"\nqdrant_url = "http://file:6333"\n')
    env = {"VBSEARCH_DATA_DIR": str(data), "VBSEARCH_QDRANT_URL": "https://env:6333", "VBSEARCH_QDRANT_API_KEY": "k"}

    s = load_settings({}, environ=env)
    assert s.data_dir == data
    assert s.features == "s3d" and s.asr == "none"  # from the file
    assert s.qdrant_url == "https://env:6333" and s.qdrant_api_key == "k"  # env beats file

    s = load_settings({"asr": "sidecar", "qdrant_url": "http://cli:6333", "features": None}, environ=env)
    assert s.asr == "sidecar" and s.qdrant_url == "http://cli:6333"  # flags beat env and file
    assert s.features == "s3d"  # a flag not given (None) does not override


def test_cli_data_dir_beats_env(tmp_path):
    s = load_settings({"data_dir": str(tmp_path / "a")}, environ={"VBSEARCH_DATA_DIR": str(tmp_path / "b")})
    assert s.data_dir == tmp_path / "a"


def test_unknown_key_in_file_is_an_error(tmp_path):
    (tmp_path / "vbsearch.toml").write_text('featurez = "s3d"\n')
    with pytest.raises(ConfigError, match="unknown setting 'featurez'"):
        load_settings({"data_dir": str(tmp_path)}, environ={})


def test_bad_values_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="features must be one of"):
        Settings(features="sift")
    (tmp_path / "vbsearch.toml").write_text("features = \n")
    with pytest.raises(ConfigError, match="vbsearch.toml"):
        load_settings({"data_dir": str(tmp_path)}, environ={})


def test_api_key_is_not_printed():
    assert "secret" not in repr(Settings(qdrant_api_key="secret"))
