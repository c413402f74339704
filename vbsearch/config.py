"""Settings: one frozen dataclass, filled from defaults < vbsearch.toml < environment < CLI flags."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomllib

CONFIG_FILE = "vbsearch.toml"  # lives in the data dir
DEFAULT_DATA_DIR = "vbsearch-data"  # relative to the working directory
MODEL_DIR = "model"  # in the data dir: the VideoBERT checkpoint and its training state
VOCAB_DIR = "vocab"  # in the data dir: the visual vocabulary

FEATURES = ("s3d", "colormotion", "objectflow")
ASR_BACKENDS = ("auto", "faster-whisper", "whisper-timestamped", "sidecar", "none")
DEVICES = ("auto", "cpu", "cuda")

# environment variable -> settings field
ENV_VARS = {
    "VBSEARCH_DATA_DIR": "data_dir",
    "VBSEARCH_QDRANT_URL": "qdrant_url",
    "VBSEARCH_QDRANT_API_KEY": "qdrant_api_key",
}


class ConfigError(ValueError):
    """A setting is unknown or has a bad value."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(DEFAULT_DATA_DIR)  # catalog, thumbnails, vocabulary, model, embedded Qdrant store
    features: str = "objectflow"  # clip feature extractor: objectflow | colormotion | s3d
    asr: str = "auto"  # auto = sidecar subtitles when present, else faster-whisper
    asr_model: str | None = None  # whisper model name or path; None = offline tiny.en when installed
    model_dir: Path | None = None  # a trained VideoBERT checkpoint to load instead of training one
    s3d_weights: Path | None = None  # local S3D Kinetics-400 weights (safetensors or a torch state dict)
    qdrant_url: str | None = None  # a Qdrant server; None = the embedded Qdrant Edge index in data_dir/index
    qdrant_api_key: str | None = None  # only ever read from the environment or vbsearch.toml
    device: str = "auto"  # auto = cuda when available

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ConfigError(f"features must be one of {', '.join(FEATURES)}, not {self.features!r}")
        if self.asr not in ASR_BACKENDS:
            raise ConfigError(f"asr must be one of {', '.join(ASR_BACKENDS)}, not {self.asr!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")

    @property
    def model_path(self) -> Path:
        """The VideoBERT checkpoint in use: --model, else the data dir's."""
        return Path(self.model_dir) if self.model_dir else self.data_dir / MODEL_DIR

    @property
    def vocab_path(self) -> Path:
        return self.data_dir / VOCAB_DIR

    @property
    def torch_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def __repr__(self) -> str:  # never print the API key
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if shown["qdrant_api_key"]:
            shown["qdrant_api_key"] = "***"
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


_PATH_FIELDS = {"data_dir", "model_dir", "s3d_weights"}
_FIELD_NAMES = {f.name for f in fields(Settings)}


def _coerce(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _FIELD_NAMES:
            raise ConfigError(f"{source}: unknown setting {key!r} (known: {', '.join(sorted(_FIELD_NAMES))})")
        if value is not None and key in _PATH_FIELDS:
            value = Path(value).expanduser()
        out[key] = value
    return out


def load_settings(cli: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings. `cli` holds flags the user gave (None values mean "not given")."""
    environ = os.environ if environ is None else environ
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    env = {field: environ[var] for var, field in ENV_VARS.items() if environ.get(var)}

    # The data dir decides where vbsearch.toml is, so resolve it first.
    data_dir = Path(cli.get("data_dir") or env.get("data_dir") or DEFAULT_DATA_DIR).expanduser()
    file_values: dict[str, Any] = {}
    config_path = data_dir / CONFIG_FILE
    if config_path.is_file():
        try:
            file_values = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: {exc}") from exc
        if "data_dir" in file_values:
            raise ConfigError(f"{config_path}: data_dir cannot be set inside the data dir's own config")

    merged: dict[str, Any] = {}
    for source, values in ((str(config_path), file_values), ("environment", env), ("command line", cli)):
        merged.update(_coerce(values, source))
    merged["data_dir"] = data_dir
    return Settings(**merged)


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)
