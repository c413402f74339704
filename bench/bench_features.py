"""What each feature group knows: per-clip probes of the weights-free extractors on a sample archive.

    python -m vbsearch.samplegen /tmp/dev-a --variant dev-a --minutes 20 --seed 1
    .venv/bin/python bench/bench_features.py /tmp/dev-a                      # objectflow and colormotion
    .venv/bin/python bench/bench_features.py /tmp/dev-a --data-dir DATA      # also the lexicon-only ablation

Probe: every clip that lies inside one scene of the archive's truth.json is described by each extractor;
for each feature group, a 5-nearest-neighbour vote (folds split by scene, so no scene is on both sides)
predicts the scene's colour, shape and motion. Chance is the majority class. This says what a group's
numbers carry, before any vocabulary or training.

Lexicon-only ablation (with --data-dir, an indexed data dir of the same archive): the narration lexicon
(model.lexicon) is fitted again on the catalog's visual words with one feature group left out at a time,
and ranks every segment for every query by itself: R@1 / R@10 / visual-only R@10 without training noise, so
what a group adds to retrieval is seen apart from a training run's luck.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.decode import ClipReader, DecodeOptions  # noqa: E402
from model.features import create_extractor  # noqa: E402

ATTRIBUTES = ("colour", "shape", "motion")
FOLDS = 5
NEIGHBOURS = 5


def _attr(scene: dict, a: str) -> str:
    return scene.get("motion", scene.get("direction")) if a == "motion" else scene[a]


def clip_features(archive: Path, extractor: str) -> tuple[np.ndarray, list[dict], float]:
    """(features of the clips inside one scene, their scenes, x real time of decode + features)."""
    import av

    ex = create_extractor(extractor)
    scenes = json.loads((archive / "truth.json").read_text())
    by_video: dict[str, list[dict]] = {}
    for s in scenes:
        by_video.setdefault(s["video"], []).append(s)
    feats, owners, seconds = [], [], 0.0
    t0 = time.perf_counter()
    for video, mine in sorted(by_video.items()):
        path = archive / "videos" / video
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            x_scale = (stream.width / stream.height) / (ex.input_size[0] / ex.input_size[1])
        for batch in ClipReader(path, DecodeOptions(*ex.input_size)):
            f = ex(batch.frames, x_scale=x_scale)
            for j in range(len(batch)):
                inside = [s for s in mine if s["start"] <= batch.starts[j] + 0.05 and batch.ends[j] - 0.05 <= s["end"]]
                if inside:
                    feats.append(f[j])
                    owners.append(inside[0])
        seconds += max(s["end"] for s in mine)
    return np.asarray(feats, np.float32), owners, seconds / (time.perf_counter() - t0)


def knn_accuracy(x: np.ndarray, labels: list[str], groups: list[str], seed: int = 0) -> float:
    """k-NN accuracy with folds split by `groups` (the scene): a scene's clips are never on both sides."""
    y = np.asarray(labels)
    names = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[k]: i % FOLDS for i, k in enumerate(order)}
    fold = np.array([fold_of[g] for g in groups])
    right = 0
    for f in range(FOLDS):
        train, test = fold != f, fold == f
        d = ((x[test, None] - x[None, train]) ** 2).sum(-1)
        near = np.argsort(d, 1)[:, :NEIGHBOURS]
        for row, truth in zip(near, y[test], strict=True):
            values, counts = np.unique(y[train][row], return_counts=True)
            right += values[counts.argmax()] == truth
    return right / len(y)


def probe(archive: Path, extractor: str) -> None:
    feats, owners, speed = clip_features(archive, extractor)
    ex = create_extractor(extractor)
    groups = [o["scene_id"] for o in owners]
    print(f"\n{extractor}: {len(feats)} clips, decode + features {speed:.1f}x real time")
    print(f"| {'group':<14} | " + " | ".join(f"{a:>6}" for a in ATTRIBUTES) + " |")
    print(f"|{'-' * 16}|" + "|".join("-" * 8 for _ in ATTRIBUTES) + "|")
    majority = [max(np.unique([_attr(o, a) for o in owners], return_counts=True)[1]) / len(owners) for a in ATTRIBUTES]
    print(f"| {'(majority)':<14} | " + " | ".join(f"{m:>6.2f}" for m in majority) + " |")
    for name, (a, b) in ex.groups.items():
        acc = [knn_accuracy(feats[:, a:b], [_attr(o, at) for o in owners], groups) for at in ATTRIBUTES]
        print(f"| {name:<14} | " + " | ".join(f"{v:>6.2f}" for v in acc) + " |", flush=True)


def lexicon_ablation(archive: Path, data_dir: Path) -> None:
    from indexer.catalog import Catalog
    from indexer.train import clip_features as catalog_features
    from indexer.train import load_training_tables, sentence_moments
    from model.lexicon import Lexicon
    from model.pretrain_data import PretrainData
    from model.vocab import VisualVocab
    from search.evaluate import first_relevant_rank
    from search.store import SegmentStore, point_tokens

    truth = {s["scene_id"]: s for s in json.loads((archive / "truth.json").read_text())}
    queries = json.loads((archive / "queries.json").read_text())
    clips, sentences, _, _ = load_training_tables(Catalog(data_dir))
    vocab = VisualVocab.load(data_dir / "vocab")
    data = PretrainData(sentence_moments(sentences, clips), clips.select(["video_id", "start", "end"]),
                        vocab.tokenize(catalog_features(clips)))
    windows = [w for w in data.windows("train") + data.windows("held_out") if w.text]
    with SegmentStore.open(data_dir) as store:
        points = store.retrieve([str(p.id) for p in store.scroll(["video_id"])])

    class Hit:  # what first_relevant_rank reads
        def __init__(self, payload: dict):
            self.video, self.start, self.end = payload["path"], payload["start"], payload["end"]

    hits = [Hit(p.payload) for p in points]
    tokens = [point_tokens(p.payload) for p in points]
    names = list(vocab.group_names)
    print(f"\nnarration lexicon alone, every segment ranked ({len(points)} segments, {len(queries)} queries)")
    print(f"| {'groups':<28} | R@1  | R@10 | visual-only R@10 |")
    print(f"|{'-' * 30}|------|------|------------------|")
    for left_out in [None, *names]:
        cols = [i for i, g in enumerate(names) if g != left_out]
        lex = Lexicon.fit([w.text for w in windows], [data.tokens[w.clips][:, cols] for w in windows], vocab.n_words)
        ranks, visual = [], []
        for q in queries:
            order = np.argsort(-lex.scores(q["text"], [t[:, cols] for t in tokens]), kind="stable")[:50]
            ranks.append(first_relevant_rank([hits[i] for i in order], [truth[r] for r in q["relevant"]]))
            visual.append(q["visual_only"])
        r, v = np.array(ranks), np.array(visual)
        label = "all" if left_out is None else f"without {left_out}"
        print(f"| {label:<28} | {np.mean(r <= 1):.2f} | {np.mean(r <= 10):.2f} | {np.mean(r[v] <= 10):>16.2f} |",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("archive", type=Path, help="a sample archive (truth.json, queries.json, videos/)")
    p.add_argument("--extractors", nargs="+", default=["objectflow", "colormotion"])
    p.add_argument("--data-dir", type=Path, help="an indexed data dir of the archive: also the lexicon ablation")
    args = p.parse_args(argv)
    for name in args.extractors:
        probe(args.archive, name)
    if args.data_dir:
        lexicon_ablation(args.archive, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
