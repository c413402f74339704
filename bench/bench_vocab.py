"""Fit and tokenize time: hierarchical k-means vocabulary vs one flat faiss k-means with as many leaves.

    .venv/bin/python bench/bench_vocab.py            # 200,000 x 1024, 4 x 12 tree (about 5-10 min on 2 cores)
    .venv/bin/python bench/bench_vocab.py --n 20000  # quick look

Data: a random Gaussian mixture (what S3D features of many different shots look like to
k-means: clumps, not a uniform cloud). The tree uses min_points_per_centroid=1 so it grows
(nearly) all branching**depth leaves, and the flat k-means gets exactly that many centroids.

A flat k-means with ~20,000 centroids over 200,000 x 1024 costs ~8.5 TFLOP per iteration; on two
shared cores that is many minutes per iteration. So both use --niter (default 5) iterations, the
flat one trains on a faiss subsample of --flat-points-per-centroid rows per centroid (faiss's
max_points_per_centroid), and flat tokenize time is measured on --flat-tokenize-sample clips and
scaled linearly to all N (exhaustive nearest-centroid search is linear in the number of clips).
All of this favours the flat baseline, and the output says what was chosen.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.vocab import VisualVocab, VocabConfig  # noqa: E402

GEN_CHUNK_ROWS = 20_000  # rows generated at once (bounds float temporaries)


def gaussian_mixture(n: int, dim: int, components: int, seed: int) -> np.ndarray:
    """(n, dim) float32: centres ~ N(0, 3^2), points = centre + N(0, 1)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((components, dim), dtype=np.float32) * 3.0
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, GEN_CHUNK_ROWS):
        hi = min(n, lo + GEN_CHUNK_ROWS)
        out[lo:hi] = centres[rng.integers(components, size=hi - lo)]
        out[lo:hi] += rng.standard_normal((hi - lo, dim), dtype=np.float32)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200_000, help="clips")
    p.add_argument("--dim", type=int, default=1024, help="feature dim (S3D: 1024)")
    p.add_argument("--components", type=int, default=2_000, help="Gaussian mixture components")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--branching", type=int, default=12)
    p.add_argument("--niter", type=int, default=5, help="k-means iterations, both methods")
    p.add_argument("--flat-points-per-centroid", type=int, default=2, help="flat training rows per centroid")
    p.add_argument(
        "--flat-tokenize-sample", type=int, default=20_000, help="clips the flat search is timed on"
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import faiss

    x = gaussian_mixture(args.n, args.dim, args.components, args.seed)
    print(
        f"data: {args.n:,} x {args.dim} float32, {args.components} mixture components; "
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {faiss.get_num_gpus()} GPUs"
    )

    config = VocabConfig(
        mode="paper",
        depth=args.depth,
        branching=args.branching,
        min_points_per_centroid=1,
        niter=args.niter,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    vocab = VisualVocab.fit(x, config, extractor="bench")
    fit_tree_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokens = vocab.tokenize(x)
    tok_tree_s = time.perf_counter() - t0
    k = vocab.n_words
    tree_err = vocab.stats().reconstruction_error
    print(
        f"hierarchical {args.depth} x {args.branching}: {k:,} leaves, niter {args.niter}, "
        f"faiss max_points_per_centroid {config.max_points_per_centroid} per node "
        f"(fit includes one tokenize pass for word counts)"
    )

    train_rows = min(args.n, k * args.flat_points_per_centroid)
    flat = faiss.Kmeans(
        args.dim,
        k,
        niter=args.niter,
        seed=args.seed,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=args.flat_points_per_centroid,
    )
    print(
        f"flat k-means: {k:,} centroids, niter {args.niter}, trained on {train_rows:,} rows "
        f"(max_points_per_centroid {args.flat_points_per_centroid}), tokenize timed on "
        f"{min(args.n, args.flat_tokenize_sample):,} clips and scaled to {args.n:,}",
        flush=True,
    )
    t0 = time.perf_counter()
    flat.train(x)
    fit_flat_s = time.perf_counter() - t0
    sample = x[: args.flat_tokenize_sample]
    t0 = time.perf_counter()
    dist, _ = flat.index.search(sample, 1)
    tok_flat_s = (time.perf_counter() - t0) * args.n / len(sample)
    flat_err = float(dist.mean())
    tree_sample_err = float(
        ((sample - vocab.word_vectors()[tokens[: len(sample), 0]]) ** 2).sum(axis=1).mean()
    )

    print()
    print(f"{'':<22}{'hierarchical':>14}{'flat':>14}{'flat / hier':>14}")
    print(f"{'fit time (s)':<22}{fit_tree_s:>14.2f}{fit_flat_s:>14.2f}{fit_flat_s / fit_tree_s:>13.1f}x")
    print(f"{'tokenize time (s)':<22}{tok_tree_s:>14.2f}{tok_flat_s:>14.2f}{tok_flat_s / tok_tree_s:>13.1f}x")
    print(f"{'tokenize (clips/s)':<22}{args.n / tok_tree_s:>14,.0f}{args.n / tok_flat_s:>14,.0f}")
    print(
        f"{'recon error (sample)':<22}{tree_sample_err:>14.1f}{flat_err:>14.1f}{flat_err / tree_sample_err:>13.2f}x"
    )
    print(
        f"(hierarchical recon error on all {args.n:,} clips: {tree_err:.1f}; words used "
        f"{vocab.stats().words_used:,} of {k:,})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
