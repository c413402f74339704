"""Query latency: p50/p95 of encode, ANN and rerank with 10,000 and 100,000 indexed segments.

Fills an embedded Qdrant store in a temp dir with synthetic segments (random unit vectors on both
channels, random visual tokens), then runs queries through search.engine.SearchEngine with a model:
`--model DIR` (a trained checkpoint, e.g. DATA_DIR/model, with its narration lexicon) or, by default,
a freshly initialised 2-layer model cut from the offline MiniLM and a lexicon fitted on random
narrated windows (latency does not depend on training).
Prints the split and the ratio of total latency to the rerank forward pass alone (goal <= 1.3).

    python bench/bench_query.py [--sizes 10000 100000] [--queries 30] [--model DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.lexicon import Lexicon  # noqa: E402
from model.terms import words_of  # noqa: E402
from search.engine import RankingOptions, SearchEngine, load_lexicon, model_id_of  # noqa: E402
from search.store import SegmentStore, StorePoint  # noqa: E402

QUERIES = ("a red circle moving left", "a hand pouring liquid into a glass", "politicians visiting flooded streets",
           "a blue square going up", "someone opens a door", "cars on a highway at night")
CLIPS_PER_SEGMENT = 4


def load_inference(model_dir: Path | None, tokens_per_clip: int, n_words: int):
    from model.inference import VideoBertInference
    from model.tokenization import VideoBertTokenizer
    from model.videobert import from_pretrained_bert

    if model_dir:
        return VideoBertInference.load(model_dir)
    tok = VideoBertTokenizer.from_pretrained(None, n_words, tokens_per_clip)
    model = from_pretrained_bert(None, n_words, tokens_per_clip, None, tok.sep_id, layers=2)
    return VideoBertInference(model, tok)


def bench_lexicon(model_dir: Path | None, tokens_per_clip: int, n_words: int, rng) -> Lexicon | None:
    if model_dir:
        return load_lexicon(model_dir, model_id_of(model_dir))
    words = sorted({w for q in QUERIES for w in words_of(q)})
    texts = [" ".join(rng.choice(words, size=6)) for _ in range(500)]
    visual = [rng.integers(0, n_words, size=(CLIPS_PER_SEGMENT, tokens_per_clip)) for _ in range(500)]
    return Lexicon.fit(texts, visual, n_words)


def fill(store: SegmentStore, n: int, dim: int, tokens_per_clip: int, n_words: int, rng) -> None:
    store.ensure(dim)
    batch = []
    for i in range(n):
        v = rng.normal(size=(2, dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        toks = rng.integers(0, n_words, size=CLIPS_PER_SEGMENT * tokens_per_clip)
        batch.append(StorePoint(f"video{i // 100}", float(i % 100) * 6.0, {"video": v[0].tolist(), "text": v[1].tolist()},
                                {"path": f"/archive/video{i // 100}.mp4", "end": float(i % 100) * 6.0 + 6.0,
                                 "duration": 6.0, "text": "", "kind": "silence", "tokens": toks.tolist(),
                                 "tokens_per_clip": tokens_per_clip, "model_id": "bench", "indexed_at": 0.0}))
        if len(batch) == 2048:
            store.upsert(batch)
            batch = []
    store.upsert(batch)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--model", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    inference = load_inference(args.model, tokens_per_clip=4, n_words=64)  # a checkpoint brings its own
    tpc, n_words = inference.tok.tokens_per_clip, inference.tok.n_visual_words
    lexicon = bench_lexicon(args.model, tpc, n_words, rng)
    print(f"model: {args.model or 'MiniLM cut to 2 layers (untrained heads)'}, embed dim {inference.embed_dim}, "
          f"{args.candidates} candidates per channel")
    print("| segments | encode p50/p95 ms | ANN p50/p95 ms | rerank p50/p95 ms | total p50/p95 ms | total / rerank (p50) |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = SegmentStore.open(Path(tmp))
            t = time.perf_counter()
            fill(store, n, inference.embed_dim, tpc, n_words, rng)
            fill_s = time.perf_counter() - t
            engine = SearchEngine(Path(tmp), inference, store, "bench",
                                  RankingOptions(candidates=args.candidates), lexicon)
            engine.search(QUERIES[0], 10)  # warm-up
            rows = []
            for i in range(args.queries):
                engine.search(QUERIES[i % len(QUERIES)], 10)
                rows.append(engine.last_timings)
            engine.close()
        enc = [r.encode for r in rows]
        ann = [r.ann for r in rows]
        rer = [r.rerank for r in rows]
        tot = [r.total for r in rows]
        ratio = statistics.median(tot) / max(statistics.median(rer), 1e-9)
        print(f"| {n:,} | {pct(enc, 50):.1f} / {pct(enc, 95):.1f} | {pct(ann, 50):.1f} / {pct(ann, 95):.1f} | "
              f"{pct(rer, 50):.1f} / {pct(rer, 95):.1f} | {pct(tot, 50):.1f} / {pct(tot, 95):.1f} | {ratio:.2f} |"
              f"  (filled in {fill_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
