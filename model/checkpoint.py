"""VideoBERT checkpoints: safetensors weights + JSON, nothing pickled.

A checkpoint folder holds
    model.safetensors       the model's weights
    tokenizer/              the text WordPiece tokenizer files (so the folder is self-contained)
    config.json             model config, tokenizer settings, SHA-256 of every weights file (written last)
    optimizer.safetensors   AdamW moments (training checkpoints only)
    trainer_state.json      step, schedule, options, loss history, optimizer param groups (training only)
    lexicon.safetensors     the narration lexicon, with lexicon.json (model/lexicon.py; `vbsearch train`)
Files are written to a temporary name and renamed; config.json / trainer_state.json carry the
hashes, so a torn or tampered weights file is refused with a clear error instead of loading.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from model.atomic import atomic_write
from model.atomic import file_sha256 as sha256
from model.tokenization import VideoBertTokenizer
from model.videobert import VideoBert, VideoBertConfig

FORMAT = "vbsearch-videobert"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, tampered with or does not fit the model."""


def _write_json(path: Path, data: dict) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")

    atomic_write(path, write)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp))
    return sha256(path)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: not a VideoBERT checkpoint (no {path.name})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: damaged JSON ({exc})") from exc


def _load_tensors(path: Path, expected_sha: str | None) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    if expected_sha is None or sha256(path) != expected_sha:
        raise CheckpointError(f"{path}: checksum mismatch (damaged or modified after it was saved)")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc


# -- model -------------------------------------------------------------------------------------------

def save_model(folder: str | Path, model: VideoBert, tokenizer: VideoBertTokenizer,
               meta: dict[str, Any] | None = None) -> None:
    """Write model weights, tokenizer files and config.json (last) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer.text_vocab_size != model.cfg.text_vocab_size or tokenizer.n_visual_words != model.cfg.n_visual_words:
        raise CheckpointError("tokenizer and model disagree on the vocabulary")
    digest = _save_tensors(folder / MODEL_FILE, model.state_dict())
    tokenizer.save_text_tokenizer(folder / TOKENIZER_DIR)
    _write_json(folder / CONFIG_FILE, {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": model.cfg.to_dict(),
        "tokenizer": tokenizer.settings(), "sha256": {MODEL_FILE: digest}, "meta": meta or {},
    })


def read_config(folder: str | Path) -> dict:
    data = _read_json(Path(folder) / CONFIG_FILE)
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{folder}: not a VideoBERT checkpoint (format {data.get('format')!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{folder}: checkpoint format version {data.get('format_version')} "
                              f"is not the supported {FORMAT_VERSION}")
    return data


def load_state_into(model: VideoBert, folder: str | Path) -> None:
    """Load a checkpoint's weights into an existing model of the same config."""
    folder = Path(folder)
    data = read_config(folder)
    if data["model"] != model.cfg.to_dict():
        diff = {k: (v, data["model"].get(k)) for k, v in model.cfg.to_dict().items() if data["model"].get(k) != v}
        raise CheckpointError(f"{folder}: checkpoint config does not match the model: {diff}")
    state = _load_tensors(folder / MODEL_FILE, data.get("sha256", {}).get(MODEL_FILE))
    _check_fits(model, state, folder)
    model.load_state_dict(state, strict=True)


def _check_fits(model: VideoBert, state: dict[str, torch.Tensor], folder: Path) -> None:
    """Raise CheckpointError, in one line, when `state` is not `model`'s set of tensors and shapes."""
    problem = shape_mismatch({k: tuple(v.shape) for k, v in model.state_dict().items()},
                             {k: tuple(v.shape) for k, v in state.items()})
    if problem:
        raise CheckpointError(f"{folder}: weights do not fit the config: {problem}; a model saved by another "
                              "vbsearch version is retrained with `vbsearch train --fresh`, then `vbsearch index`")


def shape_mismatch(expected: dict[str, tuple], found: dict[str, tuple]) -> str | None:
    """One line on how a weights file's tensors differ from a model's, or None when they fit."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    resized = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if resized:
        k = resized[0]
        parts.append(f"{len(resized)} of another shape (e.g. {k}: file {list(found[k])}, config {list(expected[k])})")
    return "; ".join(parts) or None


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[VideoBert, VideoBertTokenizer]:
    """A checkpoint's model (eval mode, on `device`) and its tokenizer."""
    from model.tokenization import WordPieces

    folder = Path(folder)
    data = read_config(folder)
    try:
        cfg = VideoBertConfig.from_dict(data["model"])
        tok_settings = dict(data["tokenizer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder}: bad config.json ({exc})") from exc
    tok_dir = folder / TOKENIZER_DIR
    if not tok_dir.is_dir():
        raise CheckpointError(f"{folder}: tokenizer folder missing")
    try:
        tokenizer = VideoBertTokenizer(WordPieces(tok_dir), **tok_settings)
    except Exception as exc:  # tokenizers raises its own Exception for a bad tokenizer.json, OSError if it is gone
        raise CheckpointError(f"{folder}: tokenizer unreadable ({' '.join(str(exc).split())[:300]})") from exc
    if tokenizer.text_vocab_size != cfg.text_vocab_size or tokenizer.n_visual_words != cfg.n_visual_words:
        raise CheckpointError(f"{folder}: tokenizer ({tokenizer.text_vocab_size} words) does not match "
                              f"the model ({cfg.text_vocab_size})")
    state = _load_tensors(folder / MODEL_FILE, data.get("sha256", {}).get(MODEL_FILE))
    # A config.json edited to absurd sizes must fail here, not allocate them: the sizes that set the
    # model's size must be the weights' own (already in memory), then every tensor is checked.
    main = _main_shapes(cfg)
    problem = shape_mismatch(main, {k: tuple(v.shape) for k, v in state.items() if k in main})
    if problem:
        raise CheckpointError(f"{folder}: weights do not fit the config: {problem}")
    model = VideoBert(cfg)
    _check_fits(model, state, folder)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), tokenizer


def _main_shapes(cfg: VideoBertConfig) -> dict[str, tuple]:
    """The shapes of the tensors that bound a model's size: its tables, its widths and its last layer."""
    last = f"bert.encoder.layer.{cfg.num_hidden_layers - 1}"
    return {"bert.embeddings.word_embeddings.weight": (cfg.visual_offset, cfg.hidden_size),
            "bert.embeddings.position_embeddings.weight": (cfg.max_position_embeddings, cfg.hidden_size),
            "bert.embeddings.token_type_embeddings.weight": (cfg.type_vocab_size, cfg.hidden_size),
            "visual_embeddings.weight": (cfg.n_visual_words, cfg.hidden_size),
            "group_embeddings.weight": (cfg.tokens_per_clip + 1, cfg.hidden_size),
            f"{last}.intermediate.dense.weight": (cfg.intermediate_size, cfg.hidden_size),
            "proj.weight": (cfg.embed_dim, cfg.hidden_size)}


# -- fine-tuned add-ons (classifier, captioner): weights + a JSON naming their format and base model ---

def save_addon(folder: str | Path, weights_file: str, config_file: str, tensors: dict[str, torch.Tensor],
               config: dict[str, Any]) -> str:
    """Write the weights, then the JSON (with their sha256) last; returns the add-on's id (a digest prefix)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digest = _save_tensors(folder / weights_file, tensors)
    _write_json(folder / config_file, {**config, "sha256": {weights_file: digest}})
    return digest[:16]


def load_addon(folder: str | Path, weights_file: str, config_file: str, fmt: str, base_model_id: str,
               retrain: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, tensors) of an add-on saved by `save_addon`, refused when its format or base model differs."""
    folder = Path(folder)
    data = read_addon_config(folder, config_file, fmt)
    if data["base_model_id"] != base_model_id:
        raise CheckpointError(f"{folder} was trained on model {data['base_model_id']}, but the model is now "
                              f"{base_model_id}: run `{retrain}` again")
    return data, _load_tensors(folder / weights_file, data.get("sha256", {}).get(weights_file))


def read_addon_config(folder: str | Path, config_file: str, fmt: str) -> dict[str, Any]:
    data = _read_json(Path(folder) / config_file)
    if data.get("format") != fmt:
        raise CheckpointError(f"{folder}: not a {fmt} (format {data.get('format')!r})")
    return data


# -- training state ----------------------------------------------------------------------------------

def save_training_state(folder: str | Path, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """AdamW moments as safetensors; step, schedule, param groups and `state` as JSON (written last)."""
    folder = Path(folder)
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, per_param in opt["state"].items():
        for name, value in per_param.items():
            tensors[f"{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    digest = _save_tensors(folder / OPTIMIZER_FILE, tensors)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt["param_groups"]]
    _write_json(folder / TRAINER_STATE_FILE, {**state, "param_groups": groups,
                                              "sha256": {OPTIMIZER_FILE: digest}})


def load_training_state(folder: str | Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the optimizer in place; return the JSON state saved with it."""
    folder = Path(folder)
    data = _read_json(folder / TRAINER_STATE_FILE)
    tensors = _load_tensors(folder / OPTIMIZER_FILE, data.get("sha256", {}).get(OPTIMIZER_FILE))
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        per_param.setdefault(int(idx), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in data["param_groups"]]
    try:
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{folder}: optimizer state does not fit the model: {exc}") from exc
    return {k: v for k, v in data.items() if k not in ("param_groups", "sha256")}


def training_progress(folder: str | Path) -> tuple[int, int] | None:
    """(steps done, steps the run is scheduled for) of the training state in `folder`, None without one."""
    folder = Path(folder)
    if not has_training_state(folder):
        return None
    state = _read_json(folder / TRAINER_STATE_FILE)
    return int(state.get("step", 0)), int(state.get("schedule", {}).get("total_steps", 0))


def has_training_state(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / TRAINER_STATE_FILE).is_file() and (folder / CONFIG_FILE).is_file()
