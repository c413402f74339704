"""`vbsearch eval ARCHIVE`: retrieval quality on a sample archive whose truth is known.

Reads ARCHIVE/truth.json and ARCHIVE/queries.json (written by `python -m vbsearch.samplegen`),
runs every query through the engine in several configurations side by side, and prints
R@1, R@5, R@10, MRR and median rank. A hit counts when it overlaps a relevant scene (same
file, overlapping time). "visual-only R@10" is R@10 over the queries whose relevant scenes
are all narrated by chatter (or by nobody): only the pictures can find them.

Beside the system, BM25 over the archive's true narration (what the generator said in each scene,
word for word, no ASR errors) ranks the scenes: the upper bound of any search that listens and does
not look. And the full system's recall is broken down by what each query names (colour, shape,
motion, and which motion), so a weakness shows where it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from model.terms import terms_of

DEPTH = 50  # ranks looked at; a query with no hit in them gets rank DEPTH + 1

# name -> how the engine ranks (the ablations of the issue, side by side)
CONFIGS: dict[str, dict] = {
    "transcript only": {"channels": ("text",), "rerank": False, "text_weight": 1.0},
    "encoder vectors only": {"channels": ("video",), "rerank": False},
    "+ word matching": {"channels": ("video",), "rerank": True, "align_weight": 0.0, "lexicon_weight": 0.0},
    "+ narration lexicon": {"channels": ("video", "visual"), "rerank": True, "align_weight": 0.0},
    "+ alignment rerank": {"channels": ("video", "visual"), "rerank": True},
    "full system": {},
}


# Zero-shot masked-word prediction (the paper's Task 2): VideoBERT fills the template from the
# scene's visual tokens alone; the object slot should name the shape, the action slot the motion.
MASKED_TEMPLATE = "now a [MASK] is going [MASK]"
ACTION_WORDS = {"left": ("left",), "right": ("right",), "up": ("up", "upwards"), "down": ("down", "downwards")}
BM25_ROW = "BM25, true narration"  # the speech-only upper bound's row
BM25_K1, BM25_B = 1.2, 0.75  # Robertson's usual constants
TIE_DRAWS = 200  # random orders of tied scenes averaged over (BM25 scores many scenes 0)
ATTRIBUTES = ("colour", "shape", "motion")  # what a sample archive's query can name


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


@dataclass(frozen=True)
class Breakdown:
    names: str  # what the queries name: "colour+shape+motion", or "motion = spin"
    queries: int
    r10: float  # R@10 of the full system over these queries
    visual_only_queries: int
    visual_only_r10: float  # nan when none is visual-only


def query_names(query: dict, truth: dict[str, dict]) -> dict[str, str]:
    """The attributes a query names: its own `names` (the generator family writes them), else the classic
    generator's three, read off its first relevant scene (whose `direction` is its motion)."""
    if "names" in query:
        return dict(query["names"])
    scene = truth[query["relevant"][0]]
    return {"colour": scene["colour"], "shape": scene["shape"], "motion": scene.get("motion", scene.get("direction"))}


def _summary(config: str, ranks: np.ndarray, visual: np.ndarray) -> Quality:
    """`ranks`: (n_queries, draws) first relevant ranks, averaged over the draws (one draw for the engine)."""
    v = ranks[visual]
    return Quality(config, len(ranks), float(np.mean(ranks <= 1)), float(np.mean(ranks <= 5)),
                   float(np.mean(ranks <= 10)), float(np.mean(np.where(ranks <= DEPTH, 1.0 / ranks, 0.0))),
                   float(np.median(ranks.mean(axis=1))), len(v), float(np.mean(v <= 10)) if len(v) else float("nan"))


def bm25_ranks(scenes: list[dict], queries: list[dict], seed: int = 0) -> np.ndarray:
    """(n_queries, TIE_DRAWS) rank of each query's first relevant scene when BM25 over the scenes' true
    narration ranks them, tied scenes in random order (the mean over draws is the expected rank)."""
    docs = [terms_of(s.get("narration") or "") for s in scenes]
    vocab = {t: i for i, t in enumerate(sorted({t for d in docs for t in d}))}
    tf = np.zeros((len(docs), len(vocab)))
    for i, d in enumerate(docs):
        for t in d:
            tf[i, vocab[t]] += 1
    length = tf.sum(1)
    df = (tf > 0).sum(0)
    idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
    norm = BM25_K1 * (1 - BM25_B + BM25_B * length / max(length.mean(), 1e-9))
    weight = idf * tf * (BM25_K1 + 1) / (tf + norm[:, None])  # (scenes, terms)
    index = {s["scene_id"]: i for i, s in enumerate(scenes)}
    rng = np.random.default_rng(seed)
    out = np.empty((len(queries), TIE_DRAWS))
    for qi, q in enumerate(queries):
        cols = [vocab[t] for t in dict.fromkeys(terms_of(q["text"])) if t in vocab]
        score = weight[:, cols].sum(1)
        relevant = np.zeros(len(scenes), bool)
        relevant[[index[r] for r in q["relevant"]]] = True
        for k in range(TIE_DRAWS):
            order = np.lexsort((rng.random(len(scenes)), -score))
            hit = np.flatnonzero(relevant[order])
            out[qi, k] = hit[0] + 1 if len(hit) and hit[0] < DEPTH else DEPTH + 1
    return out


def taught(truth: dict[str, dict]) -> dict[tuple[str, str], int] | None:
    """(attribute, value) -> how many scenes' narration names it; None when the truth does not say which
    attributes a narration names (the generator family's `named` does; the classic generator's does not)."""
    if not all("named" in s for s in truth.values()):
        return None
    counts: dict[tuple[str, str], int] = {}
    for s in truth.values():
        for a in s["named"]:
            counts[(a, s[a])] = counts.get((a, s[a]), 0) + 1
    return counts


def _taught_bucket(n: int) -> str:
    return "taught < 3 times" if n < 3 else "taught 3-5 times" if n <= 5 else "taught > 5 times"


def breakdown(queries: list[dict], truth: dict[str, dict], ranks: np.ndarray) -> list[Breakdown]:
    """R@10 by which attributes the queries name, by the motion they name, and (where the truth says) by how
    often the archive's narration names the least-named of them: a word no narration teaches can only be met
    through the text encoder's sense of it."""
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        names = query_names(q, truth)
        groups.setdefault("+".join(a for a in ATTRIBUTES if a in names), []).append(i)
    by_motion: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        motion = query_names(q, truth).get("motion")
        if motion is not None:
            by_motion.setdefault(f"motion = {motion}", []).append(i)
    by_taught: dict[str, list[int]] = {}
    counts = taught(truth)
    if counts is not None:
        for i, q in enumerate(queries):
            least = min(counts.get((a, v), 0) for a, v in query_names(q, truth).items())
            by_taught.setdefault(_taught_bucket(least), []).append(i)
    out = []
    for name, idx in [*sorted(groups.items()), *sorted(by_motion.items()), *sorted(by_taught.items())]:
        r = ranks[idx]
        v = r[[queries[i]["visual_only"] for i in idx]]
        out.append(Breakdown(name, len(r), float(np.mean(r <= 10)), len(v),
                             float(np.mean(v <= 10)) if len(v) else float("nan")))
    return out


def breakdown_table(rows: list[Breakdown]) -> str:
    lines = ["R@10 of the full system by what the query names",
             f"| {'the query names':<26} | queries | R@10 | visual-only R@10 |",
             f"|{'-' * 28}|---------|------|------------------|"]
    for b in rows:
        vis = f"{b.visual_only_r10:.2f} (n={b.visual_only_queries})" if b.visual_only_queries else "-"
        lines.append(f"| {b.names:<26} | {b.queries:>7} | {b.r10:.2f} | {vis:>16} |")
    return "\n".join(lines)


def first_relevant_rank(hits, relevant: list[dict]) -> int:
    for rank, h in enumerate(hits, 1):
        name = Path(h.video).name
        if any(s["video"] == name and h.start < s["end"] and h.end > s["start"] for s in relevant):
            return rank
    return DEPTH + 1


@dataclass(frozen=True)
class Evaluation:
    rows: list[Quality]  # the engine's configurations, then BM25 over the true narration
    breakdown: list[Breakdown]  # the full system's recall by what the queries name


def evaluate(engine, archive: Path, configs: dict[str, dict] | None = None) -> Evaluation:
    scenes = json.loads((archive / "truth.json").read_text())
    truth = {s["scene_id"]: s for s in scenes}
    queries = json.loads((archive / "queries.json").read_text())
    visual = np.array([bool(q["visual_only"]) for q in queries], bool)
    rows, full = [], None
    for name, changes in (configs or CONFIGS).items():
        options = replace(engine.options, **changes)
        ranks = np.array([[first_relevant_rank(engine.search(q["text"], DEPTH, options=options),
                                               [truth[r] for r in q["relevant"]])] for q in queries], float)
        rows.append(_summary(name, ranks, visual))
        if not changes:
            full = ranks
    rows.append(_summary(BM25_ROW, bm25_ranks(scenes, queries), visual))
    return Evaluation(rows, breakdown(queries, truth, full) if full is not None else [])


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
        motion = scene.get("motion", scene.get("direction"))
        actions = ACTION_WORDS.get(motion, (motion,))
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

        result = evaluate(engine, args.archive)
        masked = masked_accuracy(engine.inference, VisualVocab.load(settings.vocab_path), settings.data_dir,
                                 args.archive)
    finally:
        engine.close()
    if args.json:
        print(json.dumps({"retrieval": [asdict(r) for r in result.rows],
                          "breakdown": [asdict(b) for b in result.breakdown], "masked_words": asdict(masked)},
                         indent=2))
    else:
        print(table(result.rows) + "\n\n" + breakdown_table(result.breakdown) + "\n\n" + masked_table(masked))
    if args.downstream:
        from search.downstream_eval import report

        print("\n" + report(settings, args.archive, args.json))
    return 0
