"""finetune-classify, tag and search --label on the tiny indexed archive, and the labels CSV format.

The end-to-end tests work on a private copy of the fixture's data dir (the catalog still names the
fixture's video files, which these tests only read through the catalog's features): a full
`copy_to` re-ingests the videos, which costs about a minute on two cores.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from indexer.finetune import stratified_split
from indexer.labels import LABELS_FILE, LabelsError, labels_from_truth, read_labels
from vbsearch.cli import main
from vbsearch.config import load_settings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def private_data(indexed_archive, dest: Path):
    shutil.copytree(indexed_archive.data_dir, dest, ignore=shutil.ignore_patterns("optimizer.safetensors"))
    return load_settings({"data_dir": str(dest)})


# -- labels and the split -------------------------------------------------------------------------------

def test_stratified_split_holds_out_each_label_never_all():
    labels = ["a"] * 8 + ["b"] * 3 + ["c"]
    train, held = stratified_split(labels, 0.25, seed=3)
    assert sorted([*train, *held]) == list(range(len(labels)))
    held_labels = Counter(labels[i] for i in held)
    assert held_labels == {"a": 2, "b": 1}  # round(8 * .25), at least one of b, never the lone c
    again, _ = stratified_split(labels, 0.25, seed=3)
    assert list(again) == list(train)  # seeded
    assert stratified_split(labels, 0.0, seed=3)[1].size == 0


def test_labels_csv_round_trip_and_errors(tmp_path):
    good = tmp_path / "labels.csv"
    good.write_text("video,start,end,label\nvideos/a.mp4,0,7.5,up\nabc123,7.5,15,left\n")
    rows = read_labels(good)
    assert [(r.video, r.start, r.end, r.label) for r in rows] == [("videos/a.mp4", 0.0, 7.5, "up"),
                                                                  ("abc123", 7.5, 15.0, "left")]
    for body, msg in [("video,start,label\nx,0,up\n", "missing column"),
                      ("video,start,end,label\nx,5,5,up\n", "start < end"),
                      ("video,start,end,label\nx,zero,5,up\n", "numbers"),
                      ("video,start,end,label\nx,0,5,\n", "empty"),
                      ("video,start,end,label\n", "no rows")]:
        bad = tmp_path / "bad.csv"
        bad.write_text(body)
        with pytest.raises(LabelsError, match=msg):
            read_labels(bad)


def test_sample_archive_has_labels_from_its_truth(indexed_archive):
    truth = json.loads((indexed_archive.archive_dir / "truth.json").read_text())
    with open(indexed_archive.archive_dir / LABELS_FILE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["label"] for r in rows] == [s["direction"] for s in truth]
    assert [r["video"] for r in rows] == [f"videos/{s['video']}" for s in truth]
    assert [r.label for r in labels_from_truth(truth, "shape")] == [s["shape"] for s in truth]


# -- end to end -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tagged(indexed_archive, tmp_path_factory):
    """A private data dir with a classifier trained on the archive's labels.csv, and `vbsearch tag` run."""
    settings = private_data(indexed_archive, tmp_path_factory.mktemp("classify") / "data")
    labels_csv = indexed_archive.archive_dir / LABELS_FILE
    code = main(["finetune-classify", str(labels_csv), "--data-dir", str(settings.data_dir), "--seed", "0"])
    assert code == 0
    assert main(["tag", "--data-dir", str(settings.data_dir)]) == 0
    return settings, labels_csv


def test_finetune_classify_saves_and_fits_better_than_the_majority(tagged, capsys):
    from model.classifier import CONFIG_FILE, WEIGHTS_FILE
    from search.engine import model_id_of

    settings, labels_csv = tagged
    folder = settings.model_path / "classifier"
    assert (folder / WEIGHTS_FILE).is_file()
    data = json.loads((folder / CONFIG_FILE).read_text())
    rows = read_labels(labels_csv)
    assert data["labels"] == sorted({r.label for r in rows})
    assert data["base_model_id"] == model_id_of(settings.model_path)
    meta = data["meta"]
    held = {(h["video_id"], h["start"]) for h in meta["held_out_rows"]}
    assert len(held) == len(rows) - meta["n_train"] > 0
    # 16 scenes leave 4 held-out windows: too few to tell a classifier from chance, so the check that can
    # fail honestly here is the fit: training accuracy well above always answering the commonest label.
    train_labels = Counter(r.label for r in rows) - Counter(h["label"] for h in meta["held_out_rows"])
    majority_share = max(train_labels.values()) / meta["n_train"]
    assert meta["train_accuracy"] >= majority_share + 0.25, (meta["train_accuracy"], majority_share)
    assert meta["held_out_accuracy"] is not None and meta["majority_accuracy"] is not None


def test_tag_labels_every_segment_and_is_incremental(tagged, capsys):
    from indexer.tag import load_classifier, tag_store
    from search.store import SegmentStore

    settings, _ = tagged
    classifier = load_classifier(settings)
    with SegmentStore.open(settings.data_dir) as store:
        points = list(store.scroll(["label", "label_prob", "label_model"]))
        assert points and all(p.payload["label"] in classifier.labels for p in points)
        assert all(0 < p.payload["label_prob"] <= 1 and p.payload["label_model"] == classifier.id for p in points)
        assert tag_store(store, classifier).tagged == 0  # nothing new
        store.set_payloads({str(points[0].id): {"label_model": None}})  # as if (re-)embedded since
        again = tag_store(store, classifier)
        assert (again.tagged, again.skipped) == (1, len(points) - 1)


def test_search_label_filters_hits(tagged, capsys):
    from search.store import SegmentStore

    settings, _ = tagged
    with SegmentStore.open(settings.data_dir) as store:
        by_label = Counter(p.payload["label"] for p in store.scroll(["label"]))
    label, n = by_label.most_common(1)[0]
    capsys.readouterr()
    assert main(["search", "a shape moving", "--data-dir", str(settings.data_dir), "--json", "--top-k", "50",
                 "--label", label]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert 0 < len(hits) <= n
    with SegmentStore.open(settings.data_dir) as store:
        found = store.retrieve([h["segment_id"] for h in hits])
    assert {p.payload["label"] for p in found} == {label}
    if len(by_label) > 1:  # without the filter, other labels come back too
        assert main(["search", "a shape moving", "--data-dir", str(settings.data_dir), "--json", "--top-k", "50"]) == 0
        assert len(json.loads(capsys.readouterr().out)) > len(hits)
    assert main(["search", "a shape moving", "--data-dir", str(settings.data_dir), "--json",
                 "--label", "no-such-label"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_classifier_refuses_another_base_model(tagged, tmp_path):
    from model.checkpoint import CheckpointError
    from model.classifier import ClassifierInference

    settings, _ = tagged
    with pytest.raises(CheckpointError, match="finetune-classify"):
        ClassifierInference.load(settings.model_path / "classifier", settings.model_path, "0" * 16)


def test_classifier_probabilities_sum_to_one(tagged):
    from indexer.tag import load_classifier

    settings, _ = tagged
    classifier = load_classifier(settings)
    probs = classifier.probabilities([np.zeros((3, classifier.tok.tokens_per_clip), dtype=np.int64)])
    assert probs.shape == (1, len(classifier.labels)) and abs(float(probs.sum()) - 1) < 1e-5
