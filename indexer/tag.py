"""`vbsearch tag`: label every indexed segment with the fine-tuned classifier, in the store's payload.

Each point gets `label`, `label_prob` (the softmax probability of that label) and `label_model`
(the classifier's id); the visual tokens (and, for a classifier trained with the transcript, the
text) come from the point's own payload, so no media or catalog is read. Points already tagged by
this classifier are skipped: `vbsearch index` writes fresh points without a label whenever it
(re-)embeds a video, and re-running `vbsearch tag` labels just those. `--all` re-tags everything.
`vbsearch search QUERY --label up` then keeps only segments labelled "up".
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from search.store import point_tokens

BATCH = 256  # points per classification batch and payload update

TAG_FIELDS = ("label", "label_prob", "label_model")  # what a tag writes into a point's payload


@dataclass(frozen=True)
class TagSummary:
    tagged: int  # points (re-)labelled now
    skipped: int  # points already labelled by this classifier
    counts: dict[str, int] = field(default_factory=dict)  # label -> points labelled so now
    seconds: float = 0.0


def load_addon(settings, inference_cls, subdir: str, config_file: str, train_with: str):
    """A fine-tuned add-on of the data dir's model (DATA_DIR/model/SUBDIR), loaded over that model."""
    from search.engine import model_id_of

    folder = settings.model_path / subdir
    if not (folder / config_file).is_file():
        raise FileNotFoundError(f"no {subdir} in {folder}: train one with `{train_with}`")
    return inference_cls.load(folder, settings.model_path, model_id_of(settings.model_path), settings.torch_device)


def load_classifier(settings):
    """The data dir's classifier over its model (model.classifier.ClassifierInference)."""
    from indexer.finetune import CLASSIFIER_DIR
    from model.classifier import CONFIG_FILE, ClassifierInference

    return load_addon(settings, ClassifierInference, CLASSIFIER_DIR, CONFIG_FILE,
                      "vbsearch finetune-classify LABELS.csv")


def tag_store(store, classifier, retag: bool = False) -> TagSummary:
    """Label the store's points that this classifier has not labelled yet (all of them with `retag`)."""
    t0 = time.perf_counter()
    if not store.exists():
        return TagSummary(0, 0, {}, time.perf_counter() - t0)
    store.ensure_payload_index("label")
    todo, skipped = [], 0
    for p in store.scroll(["tokens", "tokens_per_clip", "text", "label_model"]):
        if not retag and p.payload.get("label_model") == classifier.id:
            skipped += 1
        elif p.payload.get("tokens"):
            todo.append(p)
    counts: Counter[str] = Counter()
    for lo in range(0, len(todo), BATCH):
        batch = todo[lo: lo + BATCH]
        preds = classifier.predict([point_tokens(p.payload) for p in batch],
                                   [p.payload.get("text") or "" for p in batch])
        store.set_payloads({str(p.id): {"label": r.label, "label_prob": round(r.prob, 4), "label_model": classifier.id}
                            for p, r in zip(batch, preds, strict=True)})
        counts.update(r.label for r in preds)
    return TagSummary(len(todo), skipped, dict(sorted(counts.items())), time.perf_counter() - t0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="re-tag every segment, not only those this "
                        "classifier has not labelled yet")


def run(args: argparse.Namespace, settings) -> int:
    from indexer.catalog import CatalogBusyError
    from indexer.searchindex import store_writer
    from model.checkpoint import CheckpointError
    from search.store import StoreError

    try:
        classifier = load_classifier(settings)
        with store_writer(settings, "vbsearch tag") as store:
            summary = tag_store(store, classifier, retag=args.all)
    except (FileNotFoundError, CheckpointError, StoreError, ValueError, CatalogBusyError) as exc:
        print(f"vbsearch tag: {exc}", file=sys.stderr)
        return 1
    labels = ", ".join(f"{k} {v}" for k, v in summary.counts.items()) or "none"
    print(f"tagged {summary.tagged} segments ({labels}); {summary.skipped} already tagged by classifier "
          f"{classifier.id}; {summary.seconds:.1f} s")
    return 0
