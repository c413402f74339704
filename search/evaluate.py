"""`vbsearch eval ARCHIVE`: retrieval quality on a sample archive whose truth is known.

Reads ARCHIVE/truth.json and ARCHIVE/queries.json (written by `python -m vbsearch.samplegen`),
runs every query through the engine in several configurations side by side, and prints
R@1, R@5, R@10, MRR and median rank. A hit counts when it overlaps a relevant scene (same
file, overlapping time). "visual-only R@10" is R@10 over the queries whose relevant scenes
are all narrated by chatter: only the pictures can find them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

DEPTH = 50  # ranks looked at; a query with no hit in them gets rank DEPTH + 1

# name -> how the engine ranks (the ablations of the issue, side by side)
CONFIGS: dict[str, dict] = {
    "transcript only": {"channels": ("text",), "rerank": False, "text_weight": 1.0},
    "encoder vectors only": {"channels": ("video",), "rerank": False},
    "+ word matching": {"channels": ("video",), "rerank": True, "align_weight": 0.0, "lexicon_weight": 0.0},
    "+ narration lexicon": {"channels": ("video",), "rerank": True, "align_weight": 0.0},
    "+ alignment rerank": {"channels": ("video",), "rerank": True},
    "full system": {},
}


# Zero-shot masked-word prediction (the paper's Task 2): VideoBERT fills the template from the
# scene's visual tokens alone; the object slot should name the shape, the action slot the motion.
MASKED_TEMPLATE = "now a [MASK] is going [MASK]"
ACTION_WORDS = {"left": ("left",), "right": ("right",), "up": ("up", "upwards"), "down": ("down", "downwards")}


@dataclass(frozen=True)
class MaskedAccuracy:
    scenes: int
    object_top1: float
    object_top5: float
    action_top1: float
    action_top5: float


@dataclass(frozen=True)
class Quality:
    config: str
    queries: int
    r1: float
    r5: float
    r10: float
    mrr: float
    median_rank: float
    visual_only_queries: int
    visual_only_r10: float


def first_relevant_rank(hits, relevant: list[dict]) -> int:
    for rank, h in enumerate(hits, 1):
        name = Path(h.video).name
        if any(s["video"] == name and h.start < s["end"] and h.end > s["start"] for s in relevant):
            return rank
    return DEPTH + 1


def evaluate(engine, archive: Path, configs: dict[str, dict] | None = None) -> list[Quality]:
    truth = {s["scene_id"]: s for s in json.loads((archive / "truth.json").read_text())}
    queries = json.loads((archive / "queries.json").read_text())
    out = []
    for name, changes in (configs or CONFIGS).items():
        options = replace(engine.options, **changes)
        ranks, visual = [], []
        for q in queries:
            hits = engine.search(q["text"], DEPTH, options=options)
            rank = first_relevant_rank(hits, [truth[r] for r in q["relevant"]])
            ranks.append(rank)
            if q["visual_only"]:
                visual.append(rank)
        r = np.array(ranks)
        v = np.array(visual)
        out.append(Quality(name, len(r), float(np.mean(r <= 1)), float(np.mean(r <= 5)), float(np.mean(r <= 10)),
                           float(np.mean(np.where(r <= DEPTH, 1.0 / r, 0.0))), float(np.median(r)),
                           len(v), float(np.mean(v <= 10)) if len(v) else float("nan")))
    return out


def masked_accuracy(inference, vocab, data_dir: Path, archive: Path) -> MaskedAccuracy:
    """Top-1/top-5 accuracy of the template's [MASK]s over every scene of the archive's truth."""
    from indexer.catalog import Catalog
    from indexer.classify import window_tokens

    catalog = Catalog(data_dir)
    hits = {"o1": 0, "o5": 0, "a1": 0, "a5": 0}
    n = 0
    video_ids: dict[str, str | None] = {}  # file name -> catalogued id, looked up once per video
    for scene in json.loads((archive / "truth.json").read_text()):
        if scene["video"] not in video_ids:
            video_ids[scene["video"]] = catalog.find_video(str(archive / "videos" / scene["video"]))
        video_id = video_ids[scene["video"]]
        if video_id is None:
            continue
        tokens = window_tokens(catalog, vocab, video_id, scene["start"], scene["end"])
        obj, act = ([g.word for g in gs] for gs in inference.predict_masked(MASKED_TEMPLATE, tokens, top_k=5))
        actions = ACTION_WORDS[scene["direction"]]
        hits["o1"] += obj[0] == scene["shape"]
        hits["o5"] += scene["shape"] in obj
        hits["a1"] += act[0] in actions
        hits["a5"] += any(w in actions for w in act)
        n += 1
    f = {k: v / max(n, 1) for k, v in hits.items()}
    return MaskedAccuracy(n, f["o1"], f["o5"], f["a1"], f["a5"])


def masked_table(m: MaskedAccuracy) -> str:
    return (f"zero-shot masked words ({MASKED_TEMPLATE!r}, {m.scenes} scenes): "
            f"object top-1 {m.object_top1:.2f}, top-5 {m.object_top5:.2f}; "
            f"action top-1 {m.action_top1:.2f}, top-5 {m.action_top5:.2f}")


def table(rows: list[Quality]) -> str:
    head = f"| {'configuration':<22} | R@1  | R@5  | R@10 | MRR  | median rank | visual-only R@10 |"
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for q in rows:
        lines.append(f"| {q.config:<22} | {q.r1:.2f} | {q.r5:.2f} | {q.r10:.2f} | {q.mrr:.2f} | "
                     f"{q.median_rank:>11.1f} | {q.visual_only_r10:>11.2f} (n={q.visual_only_queries}) |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", type=Path, help="a sample archive folder (truth.json, queries.json)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--downstream", action="store_true", help="also score the fine-tuned classifier and "
                        "captioner on the archive's truth (a second table; with --json a second JSON document)")


def run(args: argparse.Namespace, settings) -> int:
    from search.engine import NoIndexError, SearchEngine
    from search.store import StoreBusyError

    for name in ("truth.json", "queries.json"):
        if not (args.archive / name).is_file():
            print(f"vbsearch eval: {args.archive / name} is missing (make one with python -m vbsearch.samplegen)",
                  file=sys.stderr)
            return 2
    try:
        engine = SearchEngine.open(settings)
    except (NoIndexError, StoreBusyError) as exc:
        print(f"vbsearch eval: {exc}", file=sys.stderr)
        return 1
    try:
        from model.vocab import VisualVocab

        rows = evaluate(engine, args.archive)
        masked = masked_accuracy(engine.inference, VisualVocab.load(settings.vocab_path), settings.data_dir,
                                 args.archive)
    finally:
        engine.close()
    if args.json:
        print(json.dumps({"retrieval": [asdict(r) for r in rows], "masked_words": asdict(masked)}, indent=2))
    else:
        print(table(rows) + "\n\n" + masked_table(masked))
    if args.downstream:
        from search.downstream_eval import report

        print("\n" + report(settings, args.archive, args.json))
    return 0
