"""`vbsearch train` and `vbsearch classify` on a catalog written directly (no media decoding)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from indexer.catalog import Catalog
from model.lexicon import Lexicon
from search.engine import model_id_of
from vbsearch.cli import main

WORDS = ("red", "blue", "green")
DIM = 16  # two feature groups of 8 dims: colour-ish and motion-ish


def _write_catalog(data_dir, n_videos=3, n_clips=40, pad: int = 0):
    """`pad` extra zero dims in a third group: the same catalog as a newer extractor version writes it."""
    rng = np.random.default_rng(0)
    cat = Catalog(data_dir)
    for v in range(n_videos):
        vid = f"vid{v}"
        labels = rng.integers(0, len(WORDS), size=n_clips // 2)
        centres = np.eye(DIM, dtype=np.float32)
        feats = np.stack([centres[labels[i // 2]] + centres[8 + labels[i // 2]] + 0.05 * rng.normal(size=DIM)
                          for i in range(n_clips)]).astype(np.float32)
        feats = np.pad(feats, [(0, 0), (0, pad)])
        starts = np.arange(n_clips) * 1.5
        clips = pl.DataFrame({"video_id": [vid] * n_clips, "clip_index": np.arange(n_clips, dtype=np.int32),
                              "start": starts, "end": starts + 1.5,
                              "feature": pl.Series(feats).cast(pl.List(pl.Float32))})
        sentences = pl.DataFrame({"video_id": [vid] * (n_clips // 2 - 2),
                                  "sentence_index": np.arange(n_clips // 2 - 2, dtype=np.int32),
                                  "start": starts[: n_clips - 4 : 2], "end": starts[: n_clips - 4 : 2] + 3.0,
                                  "text": [f"the {WORDS[k]} thing moves" for k in labels[: n_clips // 2 - 2]]})
        groups = {"colour": [0, 8], "motion": [8, 16], **({"extra": [16, 16 + pad]} if pad else {})}
        row = {"video_id": vid, "path": str(data_dir / f"{vid}.mp4"), "features": "synthetic",
               "feature_dim": DIM + pad, "feature_groups": json.dumps(groups), "n_clips": n_clips}
        cat.put_video(vid, row, clips=clips, sentences=sentences)


@pytest.mark.slow
def test_train_then_classify(tmp_path, capsys):
    data = tmp_path / "data"
    _write_catalog(data)
    args = ["train", "--data-dir", str(data), "--device", "cpu", "--steps", "2", "--batch-size", "3",
            "--max-len", "24", "--checkpoint-every", "1", "--threads", "1"]
    assert main(args) == 0
    model_dir = data / "model"
    assert (model_dir / "model.safetensors").is_file() and (data / "vocab" / "vocab.json").is_file()
    state = json.loads((model_dir / "trainer_state.json").read_text())
    assert state["step"] == 2 and len(state["history"]) == 2
    first_two = state["history"]
    # the narration lexicon is written beside the model: colour words tied to visual words, "the" hardly
    lexicon = Lexicon.load(model_dir, model_id_of(model_dir))
    assert lexicon.row("red").max() > 0.5 > lexicon.row("the").max()
    # asking for more steps resumes from the saved state instead of starting over
    three_steps = [*args[:-8], "--steps", "3", "--batch-size", "3", "--max-len", "24", "--threads", "1"]
    assert main(three_steps) == 0
    state = json.loads((model_dir / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["history"][:2] == first_two
    # a lexicon from a version with other word rules: re-running train refits it and trains nothing
    config = model_dir / "lexicon.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "terms": "exact-words"}))
    weights = (model_dir / "model.safetensors").read_bytes()
    assert main(three_steps) == 0
    assert Lexicon.load(model_dir, model_id_of(model_dir)).row("red").max() > 0.5
    assert (model_dir / "model.safetensors").read_bytes() == weights
    assert json.loads((model_dir / "trainer_state.json").read_text())["step"] == 3
    capsys.readouterr()

    assert main(["classify", "vid0", "--data-dir", str(data), "--device", "cpu", "--start", "0", "--end", "6",
                 "--top-k", "3", "--json"]) == 0
    guesses = json.loads(capsys.readouterr().out)
    assert len(guesses) == 2 and all(len(g) == 3 for g in guesses)
    assert all(isinstance(g["word"], str) and 0 <= g["prob"] <= 1 for gs in guesses for g in gs)

    assert main(["classify", str(data / "vid1.mp4"), "--data-dir", str(data), "--device", "cpu",
                 "--start", "3", "--end", "9"]) == 0
    assert "[MASK] 2:" in capsys.readouterr().out
    assert main(["classify", "nope", "--data-dir", str(data), "--start", "0", "--end", "3"]) == 1
    assert main(["classify", "vid0", "--data-dir", str(data), "--start", "500", "--end", "503"]) == 1
    assert "no clip" in capsys.readouterr().err


def test_train_on_an_empty_data_dir_fails_clearly(tmp_path, capsys):
    assert main(["train", "--data-dir", str(tmp_path), "--device", "cpu"]) == 1
    assert "vbsearch index" in capsys.readouterr().err


def test_fresh_training_refits_a_vocabulary_the_features_outgrew(tmp_path, capsys):
    data = tmp_path / "data"
    _write_catalog(data)
    args = ["train", "--data-dir", str(data), "--device", "cpu", "--steps", "1", "--batch-size", "3",
            "--max-len", "24", "--threads", "1"]
    assert main(args) == 0
    assert json.loads((data / "vocab" / "vocab.json").read_text())["dim"] == DIM
    _write_catalog(data, pad=4)  # re-indexed with an extractor that gained a group
    capsys.readouterr()
    assert main(args) == 1
    assert "vbsearch train --fresh" in capsys.readouterr().err  # says how to get out
    assert main([*args, "--fresh"]) == 0
    assert json.loads((data / "vocab" / "vocab.json").read_text())["dim"] == DIM + 4
