"""Hierarchical k-means: one faiss k-means per tree node, descent by nearest centroid per level.

The tree is stored as flat arrays in breadth-first order, so the children of a node
are a contiguous run of node ids and the whole tree saves as four arrays:

    centroids[i]    (n_nodes, D) float32, the k-means centroid of node i (root: the data mean)
    first_child[i]  id of node i's first child (0 for a leaf)
    n_children[i]   number of children (0 for a leaf)
    word[i]         leaf number 0..n_words-1 in breadth-first order, -1 for internal nodes

Splitting rule (sizes the vocabulary from the data): a node above the depth limit that
holds n training points is clustered into k = min(branching, n // min_points_per_centroid)
clusters, and splits only when k >= 2; clusters that end up with no points are dropped,
and if fewer than two remain the node stays a leaf. So every word has at least one
training clip, each level holds at most N / min_points_per_centroid nodes, and a 2,000-clip
archive with the default 20 points per centroid gets on the order of 100 words, not 12**4.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 2**20  # feature bytes descended at once by `assign`: bounds the gather copies
# Multiply-adds per product (or per k-means iteration) below which a node runs on one thread:
# on busy cores, BLAS/OpenMP thread sync makes small products 15-40x slower than one thread.
PARALLEL_NODE_WORK = 2**26


@dataclass(frozen=True, eq=False)
class HKMeansTree:
    centroids: np.ndarray  # (n_nodes, D) float32, breadth-first node order
    first_child: np.ndarray  # (n_nodes,) int64, id of the first child (0 for leaves)
    n_children: np.ndarray  # (n_nodes,) int64, 0 for leaves
    word: np.ndarray  # (n_nodes,) int64, leaf's word number, -1 for internal nodes
    _sqnorm: np.ndarray = field(init=False, repr=False)  # (n_nodes,) squared centroid norms, derived

    def __post_init__(self) -> None:
        n = self.centroids.shape[0]
        if self.centroids.ndim != 2 or n == 0:
            raise ValueError(
                f"tree centroids must be a non-empty (n_nodes, D) array, got shape {self.centroids.shape}"
            )
        for name in ("first_child", "n_children", "word"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"tree array {name} has shape {getattr(self, name).shape}, expected ({n},)")
        leaves = self.n_children == 0
        if (
            not np.array_equal(np.sort(self.word[leaves]), np.arange(int(leaves.sum())))
            or (self.word[~leaves] != -1).any()
        ):
            raise ValueError("tree word numbers must be 0..n_words-1 on leaves and -1 on internal nodes")
        parents = np.flatnonzero(~leaves)
        starts = self.first_child[parents]
        ends = starts + self.n_children[parents]
        # Breadth-first layout: the parents' child runs tile nodes 1..n-1 in parent order.
        if len(parents):
            tiled = np.array_equal(starts, np.concatenate([[1], ends[:-1]])) and ends[-1] == n
        else:
            tiled = n == 1
        if not tiled or (starts <= parents).any():
            raise ValueError(
                "tree children must be contiguous runs after their parent that cover nodes 1..n-1"
            )
        # Squared norms, cached for the distance expansion ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2.
        object.__setattr__(self, "_sqnorm", np.einsum("ij,ij->i", self.centroids, self.centroids))

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def n_words(self) -> int:
        return int((self.n_children == 0).sum())

    @property
    def depth(self) -> int:
        """Number of splits on the longest root-to-leaf path (0 when the root is the only word)."""
        level = np.zeros(len(self.word), dtype=np.int64)
        for node in np.flatnonzero(self.n_children):  # breadth-first: parents before children
            start = self.first_child[node]
            level[start : start + self.n_children[node]] = level[node] + 1
        return int(level.max())

    def leaf_centroids(self) -> np.ndarray:
        """(n_words, D) float32: row w is the centroid of word w."""
        leaves = np.flatnonzero(self.n_children == 0)
        out = np.empty((len(leaves), self.dim), dtype=np.float32)
        out[self.word[leaves]] = self.centroids[leaves]
        return out

    def assign(self, x: np.ndarray) -> np.ndarray:
        """(N, D) float32 -> (N,) int64 word per row, descending from the root to the nearest child per level.

        One matrix product per internal node per chunk of rows (never a loop per row).
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty(len(x), dtype=np.int64)
        chunk = max(1, CHUNK_BYTES // max(1, x.shape[1] * 4))
        for start in range(0, len(x), chunk):
            out[start : start + chunk] = self.word[self._descend(x[start : start + chunk])]
        return out

    def _descend(self, x: np.ndarray) -> np.ndarray:
        node = np.zeros(len(x), dtype=np.int64)
        while True:
            moving = np.flatnonzero(self.n_children[node] > 0)
            if len(moving) == 0:
                return node
            # Group the rows by their current node so each node's children are scored in one product.
            moving = moving[np.argsort(node[moving], kind="stable")]
            parents, starts = np.unique(node[moving], return_index=True)
            bounds = np.append(starts, len(moving))
            work = (bounds[1:] - bounds[:-1]) * self.n_children[parents] * x.shape[1]
            big = work >= PARALLEL_NODE_WORK
            for batch, threaded in ((np.flatnonzero(big), True), (np.flatnonzero(~big), False)):
                with blas_threads(None if threaded else 1):
                    for i in batch:
                        rows = moving[bounds[i] : bounds[i + 1]]
                        first = int(self.first_child[parents[i]])
                        kids = slice(first, first + int(self.n_children[parents[i]]))
                        node[rows] = first + nearest(x[rows], self.centroids[kids], self._sqnorm[kids])


_controller = None  # threadpoolctl controller, built on first use (after numpy/faiss have loaded BLAS)


def blas_threads(limit: int | None):
    """Context manager: BLAS on `limit` threads inside it (None: leave as is)."""
    global _controller
    if limit is None:
        return contextlib.nullcontext()
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=limit, user_api="blas")


def nearest(x: np.ndarray, centroids: np.ndarray, sqnorm: np.ndarray | None = None) -> np.ndarray:
    """(n, D), (k, D) -> (n,) int64 index of the nearest centroid in squared L2 (ties: lowest index)."""
    if sqnorm is None:
        sqnorm = np.einsum("ij,ij->i", centroids, centroids)
    scores = x @ centroids.T  # (n, k)
    scores *= -2.0
    scores += sqnorm
    return scores.argmin(axis=1).astype(np.int64)


def kmeans_pp_init(x: np.ndarray, k: int, rng: np.random.Generator, max_points: int) -> np.ndarray:
    """(k, D) float32 greedy k-means++ seeds drawn from at most `max_points` rows of x.

    faiss's own init picks k random rows, which on well-separated data often puts two
    centroids in one cluster and leaves another cluster to share a centroid; Lloyd's
    iterations cannot undo that, and in a tree the mistake is inherited by the whole subtree.
    Plain k-means++ fixes that but favours isolated outliers, which in a tree wastes whole
    subtrees on a few points; the greedy variant (Arthur & Vassilvitskii; scikit-learn's
    default) draws 2 + log k candidates per seed and keeps the one that lowers the potential most.
    """
    if len(x) > max_points:
        x = x[np.sort(rng.choice(len(x), max_points, replace=False))]
    x = x.astype(np.float32, copy=False)
    sqnorm = np.einsum("ij,ij->i", x, x, dtype=np.float64)

    def sqdist(rows: np.ndarray) -> np.ndarray:  # (len(rows), n) squared distances, clipped at 0
        # x @ seeds.T, not seeds @ x.T: the skinny product is several times faster in this layout.
        return np.maximum(sqnorm[rows, None] - 2.0 * (x @ x[rows].T).T + sqnorm[None, :], 0.0)

    trials = 2 + int(np.log(k))
    chosen = [int(rng.integers(len(x)))]
    d2 = sqdist(np.asarray(chosen))[0]
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # every row coincides with a seed: any row will do (empty clusters are dropped later)
            chosen.append(int(rng.integers(len(x))))
            continue
        candidates = rng.choice(len(x), size=trials, p=d2 / total)
        pots = np.minimum(d2[None, :], sqdist(candidates))  # (trials, n)
        best = int(pots.sum(axis=1).argmin())
        chosen.append(int(candidates[best]))
        d2 = pots[best]
    return np.ascontiguousarray(x[chosen])


def fit_tree(
    x: np.ndarray,
    *,
    depth: int,
    branching: int,
    min_points_per_centroid: int,
    niter: int,
    seed: int,
    max_points_per_centroid: int,
    gpu: bool,
    desc: str = "hierarchical k-means",
) -> HKMeansTree:
    """Fit a tree on (N, D) float32 rows, level by level (see the module docstring for the split rule).

    Node i's k-means (greedy k-means++ seeds, then faiss's Lloyd iterations) is seeded with
    seed + i, so the result depends only on the data and the arguments. The progress bar
    counts points per level (depth x N in all).
    """
    import faiss  # heavy import: only when fitting
    from tqdm import tqdm

    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"cannot fit a vocabulary tree on an array of shape {x.shape}: need (N >= 1, D)")
    use_gpu = bool(gpu) and faiss.get_num_gpus() > 0
    threads = faiss.omp_get_max_threads()
    d = x.shape[1]
    centroids: list[np.ndarray] = [x.mean(axis=0, dtype=np.float64).astype(np.float32)[None]]
    first_child: list[int] = [0]
    n_children: list[int] = [0]
    frontier: list[tuple[int, np.ndarray]] = [(0, np.arange(len(x)))]
    n_nodes = 1
    bar = tqdm(total=depth * len(x), desc=desc, unit="pt", unit_scale=True, disable=None, leave=False)
    for _level in range(depth):
        next_frontier: list[tuple[int, np.ndarray]] = []
        for node, rows in frontier:  # node ids ascending, so children stay breadth-first
            k = min(branching, len(rows) // min_points_per_centroid)
            bar.update(len(rows))
            if k < 2:
                continue
            pts = x if node == 0 else x[rows]  # the root holds every row: no copy
            km = faiss.Kmeans(
                d,
                k,
                niter=niter,
                seed=seed + node,
                gpu=use_gpu,
                verbose=False,
                # Our rule already sized k; this only silences faiss's "too few points" warning.
                min_points_per_centroid=1,
                max_points_per_centroid=max_points_per_centroid,
            )
            rng = np.random.default_rng(seed + node)
            small = len(pts) * k * d < PARALLEL_NODE_WORK
            faiss.omp_set_num_threads(1 if small else threads)
            try:
                with blas_threads(1 if small else None):
                    km.train(pts, init_centroids=kmeans_pp_init(pts, k, rng, k * max_points_per_centroid))
                    centres = np.asarray(km.centroids, dtype=np.float32)  # (k, d)
                    # Assign with the same function descent uses, so fitted counts match tokenize.
                    assign = nearest(pts, centres)
            finally:
                faiss.omp_set_num_threads(threads)
            counts = np.bincount(assign, minlength=k)
            kept = np.flatnonzero(counts)
            if len(kept) < 2:
                continue
            remap = np.full(k, -1, dtype=np.int64)
            remap[kept] = np.arange(len(kept))
            assign = remap[assign]
            first_child[node] = n_nodes
            n_children[node] = len(kept)
            centroids.append(centres[kept])
            order = np.argsort(assign, kind="stable")
            splits = np.cumsum(counts[kept])[:-1]
            for j, child_rows in enumerate(np.split(rows[order], splits)):
                next_frontier.append((n_nodes + j, child_rows))
            first_child.extend([0] * len(kept))
            n_children.extend([0] * len(kept))
            n_nodes += len(kept)
        frontier = next_frontier
        if not frontier:
            break
    bar.update(bar.total - bar.n)
    bar.close()
    n_children_arr = np.asarray(n_children, dtype=np.int64)
    word = np.full(n_nodes, -1, dtype=np.int64)
    leaves = np.flatnonzero(n_children_arr == 0)
    word[leaves] = np.arange(len(leaves))
    return HKMeansTree(
        centroids=np.concatenate(centroids).astype(np.float32),
        first_child=np.asarray(first_child, dtype=np.int64),
        n_children=n_children_arr,
        word=word,
    )
