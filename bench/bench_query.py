"""Store and query latency at archive scale: the embedded store (Qdrant Edge) at 10k, 100k and 1M segments,
qdrant-client's local mode (the embedded store before it) at 10k and 100k, side by side in one run.

Points carry the real vector widths and payloads (tokens, text, paths). Their vectors come from an indexed
data dir (`--vectors DATA_DIR`: its published index's "video" and "text" vectors, each point a stored one
plus Gaussian noise of half the per-dimension spread, so the neighbourhoods HNSW must find are shaped like
the project's own) or, without it, random unit vectors. Queries run through search.engine.SearchEngine
with `--model DIR` (a trained checkpoint with its narration lexicon) or a freshly initialised 2-layer model.

Per size and store: fill rate, build time (publish: HNSW graphs, settle), disk, copy time of a generation
(what each index run pays before its first write), reader RSS (a separate process), store-only search
p50/p95 (HNSW with the default ef, and exact), recall@50 of HNSW against exact search for each --ef,
and the engine's total and rerank p50/p95 with total / rerank. Also the wall time of a cold
`vbsearch search` (process start included) on `--cli DATA_DIR`, and with `vbsearch serve` up on it.

    python bench/bench_query.py [--sizes 10000 100000 1000000] [--local-sizes 10000 100000]
        [--vectors DATA_DIR] [--model DIR] [--keep DIR] [--cli DATA_DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.lexicon import Lexicon  # noqa: E402
from model.terms import words_of  # noqa: E402
from search import generations, store_edge  # noqa: E402
from search.engine import RankingOptions, SearchEngine, load_lexicon, model_id_of  # noqa: E402
from search.store import SegmentStore, StorePoint  # noqa: E402

QUERIES = ("a red circle moving left", "a hand pouring liquid into a glass", "politicians visiting flooded streets",
           "a blue square going up", "someone opens a door", "cars on a highway at night")
CLIPS_PER_SEGMENT = 4
BATCH = 2048
RECALL_AT = 50


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


class VectorSource:
    """Vectors shaped like a data dir's (a stored one plus noise), or random unit vectors."""

    def __init__(self, data_dir: Path | None, dim: int, rng):
        self.rng, self.dim = rng, dim
        self.real: dict[str, np.ndarray] = {}
        if data_dir:
            with SegmentStore.open(data_dir) as store:
                points = list(store.scroll(["video_id"], with_vectors=["video", "text"]))
            for channel in ("video", "text"):
                rows = [p.vector[channel] for p in points if channel in p.vector]
                self.real[channel] = np.asarray(rows, dtype=np.float32)
            if self.real["video"].shape[1] != dim:
                raise SystemExit(f"--vectors {data_dir}: {self.real['video'].shape[1]}-d vectors, the model's are {dim}-d")
        self.noise = {c: 0.5 * v.std(axis=0) for c, v in self.real.items()}

    def describe(self) -> str:
        if not self.real:
            return "random unit vectors"
        return (f"{len(self.real['video'])} video and {len(self.real.get('text', []))} text vectors of an indexed "
                "archive, plus noise of half their per-dimension spread")

    def draw(self, channel: str, n: int) -> np.ndarray:
        real = self.real.get(channel)
        if real is None or not len(real):
            v = self.rng.normal(size=(n, self.dim)).astype(np.float32)
        else:
            v = real[self.rng.integers(len(real), size=n)] + self.rng.normal(size=(n, self.dim)) * self.noise[channel]
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def fill(store: SegmentStore, n: int, vectors: VectorSource, tokens_per_clip: int, n_words: int, rng) -> float:
    """Write n points; returns points per second."""
    store.ensure(vectors.dim)
    t0 = time.perf_counter()
    for lo in range(0, n, BATCH):
        m = min(BATCH, n - lo)
        video, text = vectors.draw("video", m), vectors.draw("text", m)
        toks = rng.integers(0, n_words, size=(m, CLIPS_PER_SEGMENT * tokens_per_clip))
        points = []
        for j in range(m):
            i = lo + j
            spoken = i % 2 == 0
            vecs = {"video": video[j].tolist(), **({"text": text[j].tolist()} if spoken else {})}
            words = {int(w): 0.25 for w in toks[j][::tokens_per_clip]}
            points.append(StorePoint(f"video{i // 100:06d}", float(i % 100) * 4.0, vecs, {
                "path": f"/archive/reel {i // 100:06d}.mp4", "end": float(i % 100) * 4.0 + 4.0, "duration": 4.0,
                "text": "the narrator says what the scene shows in about a dozen words" if spoken else "",
                "kind": "speech" if spoken else "silence", "thumbnail": f"thumbnails/video{i // 100:06d}/{i % 100}.jpg",
                "tokens": toks[j].tolist(), "tokens_per_clip": tokens_per_clip, "fps": 25.0, "model_id": "bench",
                "catalog_stamp": 0.0, "indexed_at": 0.0}, words))
        store.upsert(points)
    return n / (time.perf_counter() - t0)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def reader_rss_mb(data_dir: Path, dim: int) -> float:
    """Peak RSS of a process that opens the published index and runs 20 searches (imports included)."""
    code = ("import sys, numpy as np\nfrom pathlib import Path\nfrom search.store import SegmentStore\n"
            f"s = SegmentStore.open(Path(sys.argv[1]))\nrng = np.random.default_rng(1)\n"
            f"for _ in range(20): s.search('video', rng.normal(size={dim}).tolist(), 50)\n"
            "print([ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1])\n")
    out = subprocess.run([sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}).stdout
    return int(out.strip()) / 1024


def store_latency(store: SegmentStore, queries: np.ndarray) -> list[float]:
    times = []
    for q in queries:
        t = time.perf_counter()
        store.search("video", q.tolist(), RECALL_AT)
        times.append(time.perf_counter() - t)
    return times


def edge_search(shard, q: np.ndarray, params) -> tuple[set, float]:
    import qdrant_edge as e

    t = time.perf_counter()
    found = shard.query(e.QueryRequest(limit=RECALL_AT, query=e.Query.Nearest(q.tolist(), using="video"),
                                       params=params))
    return {str(p.id) for p in found}, time.perf_counter() - t


def recall_and_exact(store: SegmentStore, queries: np.ndarray, efs: list[int]) -> tuple[dict[int, float], list[float]]:
    """recall@50 of HNSW search at each ef against exact search, and the exact search's latencies."""
    import qdrant_edge as e

    shard = store.backend.shard
    exact, exact_s = [], []
    for q in queries:
        ids, s = edge_search(shard, q, e.SearchParams(exact=True))
        exact.append(ids)
        exact_s.append(s)
    recall = {}
    for ef in efs:
        found = [edge_search(shard, q, e.SearchParams(hnsw_ef=ef))[0] for q in queries]
        recall[ef] = float(np.mean([len(f & x) / max(len(x), 1) for f, x in zip(found, exact, strict=True)]))
    return recall, exact_s


def engine_rows(data_dir: Path, store: SegmentStore, inference, lexicon, candidates: int, n: int) -> list:
    engine = SearchEngine(data_dir, inference, store, "bench", RankingOptions(candidates=candidates), lexicon)
    engine.search(QUERIES[0], 10)  # warm-up
    rows = []
    for i in range(n):
        engine.search(QUERIES[i % len(QUERIES)], 10)
        rows.append(engine.last_timings)
    return rows


def latency_cells(rows: list) -> str:
    tot, rer = [r.total for r in rows], [r.rerank for r in rows]
    ratio = statistics.median(tot) / max(statistics.median(rer), 1e-9)
    return f"{pct(tot, 50):.0f} / {pct(tot, 95):.0f} | {pct(rer, 50):.0f} / {pct(rer, 95):.0f} | {ratio:.2f}"


def bench_edge(n: int, args, vectors, inference, lexicon, tpc, n_words, rng) -> None:
    work = Path(args.keep or tempfile.mkdtemp(prefix="vbsearch-bench-")) / f"edge-{n}"
    fill_rate = build_s = float("nan")
    reuse = generations.published(work) is not None and args.keep
    if reuse:
        with SegmentStore.open(work) as s:
            reuse = s.count() == n
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
        with SegmentStore.update(work) as writer:
            fill_rate = fill(writer, n, vectors, tpc, n_words, rng)
            t = time.perf_counter()
        build_s = time.perf_counter() - t  # leaving the block published: optimize (HNSW), flush, settle
    t = time.perf_counter()
    generations.discard(generations.begin(work))  # what an index run pays to start the next generation
    copy_s = time.perf_counter() - t
    published = generations.published(work)
    rss = reader_rss_mb(work, vectors.dim)
    queries = vectors.draw("video", args.recall_queries)
    with SegmentStore.open(work) as store:
        store_s = store_latency(store, queries)
        recall, exact_s = recall_and_exact(store, queries, args.ef)
        rows = engine_rows(work, store, inference, lexicon, args.candidates, args.queries)
    recalls = ", ".join(f"ef {ef}: {r:.3f}" for ef, r in recall.items())
    print(f"| Qdrant Edge | {n:,} | {fill_rate:,.0f} | {build_s:.1f} | {copy_s:.1f} | {disk_mb(published):,.0f} | "
          f"{rss:,.0f} | {pct(store_s, 50):.1f} / {pct(store_s, 95):.1f} | {pct(exact_s, 50):.1f} | {recalls} | "
          f"{latency_cells(rows)} |", flush=True)
    if not args.keep:
        shutil.rmtree(work.parent, ignore_errors=True)


def bench_local(n: int, args, vectors, inference, lexicon, tpc, n_words, rng) -> None:
    from qdrant_client import QdrantClient

    from search.store_server import ServerBackend

    with tempfile.TemporaryDirectory() as tmp:
        store = SegmentStore(ServerBackend(QdrantClient(path=str(Path(tmp) / "qdrant"))))
        fill_rate = fill(store, n, vectors, tpc, n_words, rng)
        store_s = store_latency(store, vectors.draw("video", args.queries))
        rows = engine_rows(Path(tmp), store, inference, lexicon, args.candidates, args.queries)
        store.close()
        size = disk_mb(Path(tmp))
    print(f"| qdrant-client local mode | {n:,} | {fill_rate:,.0f} | - | - | {size:,.0f} | - | "
          f"{pct(store_s, 50):.1f} / {pct(store_s, 95):.1f} | (all exact) | - | {latency_cells(rows)} |", flush=True)


def bench_cli(data_dir: Path, runs: int) -> None:
    """Wall time of `vbsearch search` in a fresh process (a person at a terminal waits for all of it), alone
    and with `vbsearch serve` up on the same data dir (the CLI then asks it: search/owner.py)."""
    import socket

    cmd = [sys.executable, "-m", "vbsearch.cli", "search", QUERIES[0], "--data-dir", str(data_dir), "--json"]

    def walls() -> list[float]:
        out = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            out.append(time.perf_counter() - t)
        return out

    cold = walls()
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import search.engine, model.inference"], check=True)
    imports = time.perf_counter() - t
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "vbsearch.cli", "serve", "--port", str(port), "--data-dir",
                               str(data_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not _ready(port):
            if server.poll() is not None:
                raise SystemExit("vbsearch serve stopped before it was ready")
            time.sleep(0.3)
        warm = walls()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"\nCLI search on {data_dir}, {runs} runs each: cold process p50 {statistics.median(cold):.2f} s "
          f"(min {min(cold):.2f} s; interpreter start and imports alone {imports:.2f} s); with `vbsearch serve` up "
          f"p50 {statistics.median(warm):.2f} s (min {min(warm):.2f} s)")


def _ready(port: int) -> bool:
    import httpx

    try:
        return bool(httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json().get("ready"))
    except httpx.HTTPError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--local-sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=30, help="engine queries per size")
    ap.add_argument("--recall-queries", type=int, default=100, help="store queries for latency and recall")
    ap.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--vectors", type=Path, help="an indexed data dir whose vectors the points imitate")
    ap.add_argument("--model", type=Path)
    ap.add_argument("--keep", type=Path, help="build the Qdrant Edge indexes here and reuse them on the next run")
    ap.add_argument("--cli", type=Path, help="an indexed data dir to time `vbsearch search` on")
    ap.add_argument("--cli-runs", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    inference = load_inference(args.model, tokens_per_clip=4, n_words=64)  # a checkpoint brings its own
    tpc, n_words = inference.tok.tokens_per_clip, inference.tok.n_visual_words
    lexicon = bench_lexicon(args.model, tpc, n_words, rng)
    vectors = VectorSource(args.vectors, inference.embed_dim, rng)
    print(f"model: {args.model or 'MiniLM cut to 2 layers (untrained heads)'}, embed dim {inference.embed_dim}, "
          f"{args.candidates} candidates per channel; vectors: {vectors.describe()}; exact below "
          f"{store_edge.EXACT_BELOW:,} points per segment, default ef {store_edge.HNSW_EF}; {os.cpu_count()} CPUs")
    print("| store | segments | upsert points/s | build s | copy s | disk MB | reader RSS MB | store search p50/p95 ms "
          "| exact p50 ms | recall@50 vs exact | total p50/p95 ms | rerank p50/p95 ms | total / rerank |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.local_sizes:
        bench_local(n, args, vectors, inference, lexicon, tpc, n_words, rng)
    for n in args.sizes:
        bench_edge(n, args, vectors, inference, lexicon, tpc, n_words, rng)
    if args.cli:
        bench_cli(args.cli, args.cli_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
