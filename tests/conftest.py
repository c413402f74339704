"""Shared fixtures. `indexed_archive`: a small narrated sample archive, indexed once per session."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from vbsearch.cli import main
from vbsearch.config import Settings, load_settings

# Small enough for CI on 2 cores, large enough that the model learns something:
# 2 videos x 8 scenes, a 2-layer model cut from MiniLM, a few dozen pretraining steps.
ARCHIVE_MINUTES = 1.5
# Seed 0 (the generator's default) names every colour, shape and direction it shows in some narration;
# seed 7 never said "circle" or "left", and no model can ground a word it never hears
# (test_search_e2e checks this precondition).
ARCHIVE_SEED = 0
TRAIN_STEPS = 80
TRAIN_LAYERS = 2


@dataclass(frozen=True)
class IndexedArchive:
    archive_dir: Path  # the generated videos live in archive_dir/videos; truth.json, queries.json beside
    data_dir: Path  # the vbsearch data dir (catalog, vocab, model, embedded Qdrant store)
    settings: Settings

    def copy_to(self, dest: Path) -> IndexedArchive:
        """A private copy: the videos, and a new data dir indexed from them with this archive's trained
        vocabulary and model (catalog paths are absolute, so a copied catalog would point at these files)."""
        shutil.copytree(self.archive_dir, dest / "archive", symlinks=True)
        for learned in ("vocab", "model"):
            shutil.copytree(self.data_dir / learned, dest / "data" / learned)
        assert main(["index", str(dest / "archive" / "videos"), "--data-dir", str(dest / "data")]) == 0
        return IndexedArchive(dest / "archive", dest / "data", load_settings({"data_dir": str(dest / "data")}))


def build_indexed_archive(root: Path) -> IndexedArchive:
    from vbsearch.samplegen import generate

    archive, data = root / "archive", root / "data"
    generate(archive, minutes=ARCHIVE_MINUTES, seed=ARCHIVE_SEED)
    videos = str(archive / "videos")
    assert main(["index", videos, "--data-dir", str(data), "--catalog-only"]) == 0
    assert main(["train", "--data-dir", str(data), "--steps", str(TRAIN_STEPS), "--layers", str(TRAIN_LAYERS),
                 "--checkpoint-every", "0"]) == 0
    assert main(["index", videos, "--data-dir", str(data)]) == 0
    return IndexedArchive(archive, data, load_settings({"data_dir": str(data)}))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module: small training steps on a busy two-core machine ran up to ~50x
    slower with two threads (spin-waiting)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def indexed_archive(tmp_path_factory) -> IndexedArchive:
    return build_indexed_archive(tmp_path_factory.mktemp("indexed"))
