"""finetune-caption, caption (a window; --store-missing) and eval --downstream on the tiny indexed archive.

Like tests/test_classifier.py, the end-to-end tests use a private copy of the fixture's data dir.
Torch runs on one thread here: on a busy two-core machine two threads made these small steps
~50x slower (spin-waiting), one thread keeps the module well under a minute.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import pytest

from vbsearch.cli import main
from vbsearch.config import load_settings


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def captioned(indexed_archive, tmp_path_factory):
    """A private data dir with a captioner (CLI, 150 steps, a quarter of the sentences held out)."""
    dest = tmp_path_factory.mktemp("caption") / "data"
    shutil.copytree(indexed_archive.data_dir, dest, ignore=shutil.ignore_patterns("optimizer.safetensors"))
    settings = load_settings({"data_dir": str(dest)})
    assert main(["finetune-caption", "--data-dir", str(dest), "--steps", "150", "--seed", "0"]) == 0
    return settings


def test_decoder_memorises_the_windows_it_trains_on(captioned):
    """The overfit check: three windows with different tokens, trained alone, are captioned word for word."""
    from indexer.finetune_caption import CaptionTrainOptions, caption_data, train_captioner
    from model.captioner import CaptionerInference
    from model.checkpoint import load_model
    from model.vocab import VisualVocab

    data = caption_data(captioned.data_dir, VisualVocab.load(captioned.vocab_path), 0.0, 0)
    pick, seen = [], set()
    for p in data.train:
        key = data.tokens[p.rows].tobytes()
        if key not in seen and p.text not in {q.text for q in pick}:
            seen.add(key)
            pick.append(p)
    pick = pick[:3]
    assert len(pick) == 3
    model, tok = load_model(captioned.model_path)
    small = dataclasses.replace(data, train=pick, held_out=[])
    captioner, vocab_ids, loss = train_captioner(model, tok, small, CaptionTrainOptions(steps=200, batch_size=3,
                                                                                        widen_clips=0))
    captions = CaptionerInference(captioner, tok, vocab_ids, "").caption([data.tokens[p.rows] for p in pick])
    assert [_words(c) for c in captions] == [_words(p.text) for p in pick]
    beam = CaptionerInference(captioner, tok, vocab_ids, "").caption([data.tokens[p.rows] for p in pick], beam=3)
    assert [_words(c) for c in beam] == [_words(p.text) for p in pick]


def test_finetune_caption_saves_a_captioner_with_its_held_out_windows(captioned):
    from model.captioner import CONFIG_FILE, WEIGHTS_FILE
    from search.engine import model_id_of

    folder = captioned.model_path / "captioner"
    data = json.loads((folder / CONFIG_FILE).read_text())
    assert (folder / WEIGHTS_FILE).is_file() and data["base_model_id"] == model_id_of(captioned.model_path)
    held = data["meta"]["held_out_windows"]
    assert len(held) == 4 and data["meta"]["n_train"] == 12  # 16 sentences, a quarter held out
    assert data["meta"]["final_loss"] < 2.0  # from ~4 at the start (log of the caption vocabulary)


def test_caption_command_prints_a_caption_from_the_training_words(captioned, indexed_archive, capsys):
    truth = json.loads((indexed_archive.archive_dir / "truth.json").read_text())
    scene = next(s for s in truth if s["narration_kind"] == "full")
    video = str(indexed_archive.archive_dir / "videos" / scene["video"])
    capsys.readouterr()
    assert main(["caption", video, "--start", str(scene["start"]), "--end", str(scene["end"]),
                 "--data-dir", str(captioned.data_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["caption"].strip() and out["start"] == scene["start"]
    from indexer.catalog import Catalog

    spoken = {w for text in Catalog(captioned.data_dir).read_table("sentences")["text"].to_list()
              for w in _words(text)}
    assert set(_words(out["caption"])) <= spoken  # the decoder writes with its training captions' words
    assert main(["caption", video, "--start", "5", "--end", "4", "--data-dir", str(captioned.data_dir)]) == 1
    assert main(["caption", "--data-dir", str(captioned.data_dir)]) == 2


def silent_video(folder):
    """A 15 s video of two scenes and no audio track (the narrated archive has speech in every scene)."""
    import numpy as np

    from vbsearch import samplegen, synth

    rng = np.random.default_rng(1)
    frames = [*samplegen._render_scene("red", "circle", "left", "sky", 150, rng),
              *samplegen._render_scene("blue", "square", "down", "grass", 150, rng)]
    folder.mkdir()
    synth.write_video(folder / "silent.mp4", frames, fps=samplegen.FPS)
    return folder


def test_store_missing_makes_silent_segments_searchable(captioned, tmp_path, capsys):
    from search.store import SegmentStore

    d = str(captioned.data_dir)
    assert main(["index", str(silent_video(tmp_path / "silent")), "--data-dir", d]) == 0
    capsys.readouterr()
    assert main(["caption", "--store-missing", "--data-dir", d, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    with SegmentStore.open(captioned.data_dir) as store:
        points = list(store.scroll(["kind", "text", "caption"], with_vectors=True))
    silent = [p for p in points if not p.payload.get("text")]
    assert silent and first["captioned"] == len(silent)
    assert all(p.payload["caption"] and "text" in p.vector for p in silent)
    assert all("caption" not in p.payload for p in points if p.payload.get("text"))  # speech keeps its transcript
    assert main(["index", str(tmp_path / "silent"), "--data-dir", d]) == 0  # unchanged: nothing re-embedded
    capsys.readouterr()
    assert main(["caption", "--store-missing", "--data-dir", d, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"captioned": 0, "skipped": len(silent)}
    # the caption's words now find the silent moment through the transcript channel
    target = silent[0]
    assert main(["search", target.payload["caption"], "--data-dir", d, "--json", "--top-k", "50", "--no-rerank"]) == 0
    hits = json.loads(capsys.readouterr().out)
    # the caption is a training sentence, so spoken segments with the same words tie with it at the top
    exact = [h["segment_id"] for h in hits if h["scores"]["text"] > 0.99]
    assert str(target.id) in exact and hits[0]["segment_id"] in exact


def test_eval_downstream_reports_both_tasks(captioned, indexed_archive, capsys):
    from indexer.finetune import ClassifyTrainOptions, finetune_classify, stratified_split
    from indexer.labels import LABELS_FILE
    from search.downstream_eval import PAPER_YOUCOOK2, evaluate_downstream

    finetune_classify(captioned, indexed_archive.archive_dir / LABELS_FILE)
    q = evaluate_downstream(captioned, indexed_archive.archive_dir, meteor=False)
    assert q.notes == []
    c = q.classification
    directions = [s["direction"] for s in json.loads((indexed_archive.archive_dir / "truth.json").read_text())]
    held = stratified_split(directions, ClassifyTrainOptions().held_out, ClassifyTrainOptions().seed)[1]
    assert c.attribute == "direction" and c.held_out == len(held) > 0 and c.scenes == 16
    assert 0 <= c.held_out_accuracy <= 1 and 0 <= c.majority_accuracy <= 1 and c.all_accuracy >= c.held_out_accuracy
    k = q.captioning
    assert k.windows == 4 and k.scores.n == 4 and k.scores.meteor is None
    assert 0 <= k.scores.bleu4 <= 100 and 0 <= k.scores.rouge_l <= 100 and k.scores.cider >= 0
    assert k.baseline is not None and k.baseline_caption
    capsys.readouterr()
    assert main(["eval", str(indexed_archive.archive_dir), "--data-dir", str(captioned.data_dir), "--downstream"]) == 0
    out = capsys.readouterr().out
    assert "R@10" in out and "held-out scenes" in out and "BLEU-4" in out and f"{PAPER_YOUCOOK2['bleu4']:.2f}" in out
