"""Visual vocabulary: clip features -> discrete visual words, as VideoBERT reads video.

Two modes:
- "paper": one hierarchical k-means codebook over the whole feature vector (Sun et al. 2019:
  depth 4 x 12 branches, up to 20,736 words), one token per clip.
- "factored": one hierarchical codebook per feature group (e.g. colormotion's colour / layout /
  shape / motion column ranges), or, for an extractor with a single group (S3D's 1024-d vector),
  per equal subspace, product-quantisation style; one token per group per clip. One codebook
  mixes colour, shape and motion into one word, and a small archive cannot cover their
  combinations: a prototype on a narrated synthetic archive measured visual-only recall@10 of
  0.0 with one token per clip and 0.69 with one token per group, hence the default.

Token ids are contiguous from 0 over the whole vocabulary; group g's words occupy
[word_ranges[g][0], word_ranges[g][1]). Vocabulary size comes from the data: see the split
rule in `model.hkmeans`.

On disk (a folder): `vocab.safetensors` (each group's tree arrays) and `vocab.json`
(extractor name and dim, mode, config, groups, clips fitted, per-word counts, fit statistics).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.atomic import atomic_write, file_sha256
from model.hkmeans import CHUNK_BYTES, HKMeansTree, fit_tree

log = logging.getLogger(__name__)

MODES = ("paper", "factored")
WEIGHTS_FILE = "vocab.safetensors"
META_FILE = "vocab.json"
FORMAT = "vbsearch-visual-vocab"
FORMAT_VERSION = 1
TREE_ARRAYS = ("centroids", "first_child", "n_children", "word")
PAPER_GROUP = "all"  # the single group's name in paper mode
SUBSPACE_PREFIX = "sub"  # factored-mode subspace names: sub0, sub1, ...


REFIT_HINT = "`vbsearch train --fresh` refits it and retrains the model; then `vbsearch index` again"


class VocabMismatchError(ValueError):
    """A saved vocabulary (or features given to it) do not match the feature extractor in use.

    Raised by `VisualVocab.load` when the expected extractor name or feature dim differs from
    the one the vocabulary was fitted on, and by `tokenize` / `stats` on features of the wrong
    width. The fix is to refit the vocabulary on the current features, or to switch back to the
    extractor it was fitted with.
    """


@dataclass(frozen=True)
class VocabConfig:
    mode: str = "factored"  # "paper" (one codebook, one token per clip) | "factored" (one per group)
    depth: int = 4  # tree levels below the root (paper: 4)
    branching: int = 12  # most children per node (paper: 12)
    min_points_per_centroid: int = 20  # n points split into min(branching, n // this) >= 2 clusters
    subspaces: int = 4  # factored mode, single-group features: equal column ranges (PQ style)
    niter: int = 20  # k-means iterations per node
    seed: int = 0  # node i's k-means is seeded with seed + i
    max_points_per_centroid: int = 256  # faiss subsamples a node's training set to k * this points
    gpu: bool = True  # use faiss GPUs when faiss sees any

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"vocabulary mode must be one of {MODES}, got {self.mode!r}")
        for name in ("depth", "niter"):
            if getattr(self, name) < 0:
                raise ValueError(f"VocabConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("min_points_per_centroid", "subspaces", "max_points_per_centroid"):
            if getattr(self, name) < 1:
                raise ValueError(f"VocabConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.branching < 2:
            raise ValueError(f"VocabConfig.branching must be >= 2, got {self.branching}")


@dataclass(frozen=True)
class FeatureGroup:
    name: str  # e.g. "colour", "motion", "sub0", "all"
    start: int  # first feature column
    stop: int  # one past the last feature column


@dataclass(frozen=True)
class VocabStats:
    mode: str  # "paper" | "factored"
    extractor: str  # feature extractor the vocabulary was fitted on
    dim: int  # its feature dim
    n_words: int  # words in the vocabulary (all groups)
    tokens_per_clip: int  # 1 in paper mode, one per group in factored mode
    group_words: dict[str, int]  # words per group, in token-id order
    clips: int  # clips these statistics were measured on
    words_used: int  # words that at least one of those clips maps to
    clips_per_word_min: int  # over all words (0 means unused words)
    clips_per_word_median: float
    clips_per_word_max: int
    reconstruction_error: float  # mean over clips of the squared distance to their words' centroids

    def lines(self) -> list[str]:
        """Human-readable lines for `vbsearch status`."""
        groups = ", ".join(f"{name} {n}" for name, n in self.group_words.items())
        return [
            f"visual vocab  {self.n_words} words, {self.mode} mode, {self.tokens_per_clip} token(s) per clip "
            f"({self.extractor} features, dim {self.dim})",
            f"  groups      {groups}",
            f"  words used  {self.words_used} of {self.n_words} by {self.clips} clips",
            f"  clips/word  min {self.clips_per_word_min}, median {self.clips_per_word_median:g}, "
            f"max {self.clips_per_word_max}",
            f"  recon error {self.reconstruction_error:.4g} (mean squared distance to word centroids)",
        ]


@dataclass(frozen=True, eq=False)
class VisualVocab:
    config: VocabConfig  # how it was fitted
    extractor: str  # feature extractor name the vocabulary belongs to
    dim: int  # feature dim it was fitted on
    groups: tuple[FeatureGroup, ...]  # column range per codebook, in token-id order
    trees: tuple[HKMeansTree, ...]  # one tree per group
    clips_fitted: int  # training clips
    word_counts: np.ndarray  # (n_words,) int64 training clips per word
    fit_error: float  # reconstruction error on the training clips
    word_ranges: tuple[tuple[int, int], ...] = field(init=False)  # [first, stop) token ids per group

    def __post_init__(self) -> None:
        if len(self.groups) != len(self.trees) or not self.groups:
            raise ValueError("a vocabulary needs one tree per feature group, and at least one group")
        ranges, first = [], 0
        for group, tree in zip(self.groups, self.trees, strict=True):
            if tree.dim != group.stop - group.start:
                raise ValueError(
                    f"group {group.name!r} spans {group.stop - group.start} columns but its tree has {tree.dim}"
                )
            ranges.append((first, first + tree.n_words))
            first += tree.n_words
        object.__setattr__(self, "word_ranges", tuple(ranges))
        if self.word_counts.shape != (first,):
            raise ValueError(f"word_counts has shape {self.word_counts.shape}, expected ({first},)")

    # ---- fitting -------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        config: VocabConfig | None = None,
        groups: Mapping[str, tuple[int, int]] | Sequence[Any] | None = None,
        extractor: str = "unknown",
    ) -> VisualVocab:
        """Fit on (N, D) clip features.

        `groups`: the extractor's named column ranges, as {name: (start, stop)} or a sequence of
        (name, start, stop). Paper mode ignores them (one codebook over all columns). Factored
        mode fits one codebook per group; with no groups or a single group, it splits the columns
        into `config.subspaces` equal ranges instead.
        """
        config = config or VocabConfig()
        x = _as_features(features, None)
        if len(x) == 0:
            raise ValueError("cannot fit a visual vocabulary on 0 clips")
        dim = x.shape[1]
        resolved = _resolve_groups(config, groups, dim)
        trees = []
        for g in resolved:
            log.info("fitting %s codebook on %d clips x %d dims", g.name, len(x), g.stop - g.start)
            trees.append(
                fit_tree(
                    x[:, g.start : g.stop],
                    depth=config.depth,
                    branching=config.branching,
                    min_points_per_centroid=config.min_points_per_centroid,
                    niter=config.niter,
                    seed=config.seed,
                    max_points_per_centroid=config.max_points_per_centroid,
                    gpu=config.gpu,
                    desc=f"vocab {g.name}",
                )
            )
        n_words = sum(t.n_words for t in trees)
        vocab = cls(config, extractor, dim, resolved, tuple(trees), len(x), np.zeros(n_words, np.int64), 0.0)
        counts, error = vocab._measure(x)
        vocab = cls(config, extractor, dim, resolved, tuple(trees), len(x), counts, error)
        log.info("visual vocabulary: %d words over %d group(s) from %d clips", n_words, len(resolved), len(x))
        return vocab

    # ---- using ---------------------------------------------------------------------------

    @property
    def n_words(self) -> int:
        return self.word_ranges[-1][1]

    @property
    def tokens_per_clip(self) -> int:
        return len(self.groups)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def tokenize(self, features: np.ndarray) -> np.ndarray:
        """(N, dim) features -> (N, tokens_per_clip) int64 token ids, column g from group g's range."""
        x = _as_features(features, self.dim)
        out = np.empty((len(x), len(self.groups)), dtype=np.int64)
        for lo in range(0, len(x), _chunk_rows(self.dim)):  # bounds each group's column copy
            block = x[lo : lo + _chunk_rows(self.dim)]
            for j, (g, tree, (first, _)) in enumerate(
                zip(self.groups, self.trees, self.word_ranges, strict=True)
            ):
                out[lo : lo + len(block), j] = first + tree.assign(block[:, g.start : g.stop])
        return out

    def word_vectors(self) -> np.ndarray:
        """(n_words, dim) float32: each word's centroid in its group's columns, zeros elsewhere."""
        out = np.zeros((self.n_words, self.dim), dtype=np.float32)
        for g, tree, (first, stop) in zip(self.groups, self.trees, self.word_ranges, strict=True):
            out[first:stop, g.start : g.stop] = tree.leaf_centroids()
        return out

    def word_group(self, token_id: int) -> str:
        """Name of the group a token id belongs to."""
        for g, (first, stop) in zip(self.groups, self.word_ranges, strict=True):
            if first <= token_id < stop:
                return g.name
        raise IndexError(f"token id {token_id} outside the vocabulary [0, {self.n_words})")

    def stats(self, features: np.ndarray | None = None) -> VocabStats:
        """Usage statistics on the training clips, or measured on `features` when given."""
        if features is None:
            counts, error, clips = self.word_counts, self.fit_error, self.clips_fitted
        else:
            x = _as_features(features, self.dim)
            (counts, error), clips = self._measure(x), len(x)
        return VocabStats(
            mode=self.config.mode,
            extractor=self.extractor,
            dim=self.dim,
            n_words=self.n_words,
            tokens_per_clip=self.tokens_per_clip,
            group_words={g.name: t.n_words for g, t in zip(self.groups, self.trees, strict=True)},
            clips=clips,
            words_used=int((counts > 0).sum()),
            clips_per_word_min=int(counts.min()),
            clips_per_word_median=float(np.median(counts)),
            clips_per_word_max=int(counts.max()),
            reconstruction_error=error,
        )

    def _measure(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """Per-word clip counts and mean squared reconstruction error of (N, dim) float32 rows."""
        tokens = self.tokenize(x)
        counts = np.bincount(tokens.ravel(), minlength=self.n_words).astype(np.int64)
        if len(x) == 0:
            return counts, 0.0
        sq = 0.0
        for j, (g, tree, (first, _)) in enumerate(
            zip(self.groups, self.trees, self.word_ranges, strict=True)
        ):
            centroids = tree.leaf_centroids()
            step = _chunk_rows(self.dim)  # bounded temporaries
            for lo in range(0, len(x), step):
                diff = x[lo : lo + step, g.start : g.stop] - centroids[tokens[lo : lo + step, j] - first]
                sq += float(np.einsum("ij,ij->", diff, diff, dtype=np.float64))
        return counts, sq / len(x)

    # ---- persistence ---------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """Write vocab.safetensors + vocab.json into `directory` (created if needed); returns it.

        Each file is written to a temporary name and renamed, so a crash never leaves half a file.
        """
        from safetensors.numpy import save_file

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"group{i}.{name}": np.ascontiguousarray(getattr(t, name))
            for i, t in enumerate(self.trees)
            for name in TREE_ARRAYS
        }
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "extractor": self.extractor,
            "dim": self.dim,
            "mode": self.config.mode,
            "depth": self.config.depth,
            "branching": self.config.branching,
            "config": asdict(self.config),
            "groups": [
                {"name": g.name, "start": g.start, "stop": g.stop, "first_token": a, "n_words": b - a}
                for g, (a, b) in zip(self.groups, self.word_ranges, strict=True)
            ],
            "n_words": self.n_words,
            "tokens_per_clip": self.tokens_per_clip,
            "clips_fitted": self.clips_fitted,
            "reconstruction_error": self.fit_error,
            "word_counts": self.word_counts.tolist(),
        }
        atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(tensors, str(p)))
        meta["sha256"] = {WEIGHTS_FILE: file_sha256(folder / WEIGHTS_FILE)}  # the JSON, written last, vouches for it
        atomic_write(folder / META_FILE, lambda p: Path(p).write_text(json.dumps(meta, indent=1) + "\n"))
        return folder

    @classmethod
    def load(
        cls, directory: str | os.PathLike, expect_extractor: str | None = None, expect_dim: int | None = None
    ) -> VisualVocab:
        """Read a vocabulary saved by `save`; raise VocabMismatchError if the extractor or dim differ."""
        from safetensors.numpy import load_file

        folder = Path(directory)
        meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
        for p in (meta_path, weights_path):
            if not p.is_file():
                raise FileNotFoundError(f"no visual vocabulary in {folder}: {p.name} is missing")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{meta_path} is not valid JSON: {e}") from e
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{meta_path} is not a {FORMAT} v{FORMAT_VERSION} file "
                f"(format {meta.get('format')!r}, version {meta.get('version')!r})"
            )
        extractor, dim = meta["extractor"], int(meta["dim"])
        if expect_extractor is not None and expect_extractor != extractor:
            raise VocabMismatchError(
                f"the visual vocabulary in {folder} was fitted on {extractor!r} features (dim {dim}), "
                f"but the current feature extractor is {expect_extractor!r}; refit the vocabulary "
                f"({REFIT_HINT}) or use the {extractor!r} extractor"
            )
        if expect_dim is not None and int(expect_dim) != dim:
            raise VocabMismatchError(
                f"the visual vocabulary in {folder} was fitted on {dim}-dim {extractor!r} features, "
                f"but the current features are {expect_dim}-dim; refit the vocabulary on the current features "
                f"({REFIT_HINT})"
            )
        expected = meta.get("sha256", {}).get(WEIGHTS_FILE)  # absent in vocabularies saved before it was recorded
        if expected is not None and file_sha256(weights_path) != expected:
            raise ValueError(f"{weights_path}: checksum mismatch (damaged or modified after it was saved)")
        try:
            arrays = load_file(str(weights_path))
        except Exception as e:  # safetensors raises its own error type; never anything but tensors
            raise ValueError(f"{weights_path}: unreadable safetensors file ({e})") from e
        try:
            groups = tuple(FeatureGroup(g["name"], int(g["start"]), int(g["stop"])) for g in meta["groups"])
            trees = tuple(
                HKMeansTree(**{name: arrays[f"group{i}.{name}"] for name in TREE_ARRAYS})
                for i in range(len(groups))
            )
            if [t.n_words for t in trees] != [int(g["n_words"]) for g in meta["groups"]]:
                raise ValueError("word counts per group differ between the JSON and the safetensors file")
            return cls(
                config=VocabConfig(**meta["config"]),
                extractor=extractor,
                dim=dim,
                groups=groups,
                trees=trees,
                clips_fitted=int(meta["clips_fitted"]),
                word_counts=np.asarray(meta["word_counts"], dtype=np.int64),
                fit_error=float(meta["reconstruction_error"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"visual vocabulary in {folder} is damaged or inconsistent: {e!r}") from e


def _as_features(features: np.ndarray, dim: int | None) -> np.ndarray:
    """Validate (N, D) finite features and return them as C-contiguous float32."""
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"clip features must be a 2-D (clips, dim) array, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise VocabMismatchError(
            f"features are {x.shape[1]}-dim but the visual vocabulary was fitted on {dim}-dim features; "
            f"refit the vocabulary on the current features ({REFIT_HINT})"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"clip features must be numeric, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    step = _chunk_rows(x.shape[1])
    bad = sum(int((~np.isfinite(x[lo : lo + step])).any(axis=1).sum()) for lo in range(0, len(x), step))
    if bad:
        raise ValueError(f"{bad} clip feature row(s) contain NaN or infinity")
    return x


def _chunk_rows(dim: int) -> int:
    """Rows per block so a float32 block of `dim` columns stays within CHUNK_BYTES."""
    return max(1, CHUNK_BYTES // max(1, 4 * dim))


def _resolve_groups(
    config: VocabConfig, groups: Mapping[str, tuple[int, int]] | Sequence[Any] | None, dim: int
) -> tuple[FeatureGroup, ...]:
    """The column range of each codebook for this mode (see `VisualVocab.fit`)."""
    if config.mode == "paper":
        return (FeatureGroup(PAPER_GROUP, 0, dim),)
    if isinstance(groups, Mapping):
        parsed = [FeatureGroup(str(name), int(a), int(b)) for name, (a, b) in groups.items()]
    else:
        parsed = [FeatureGroup(str(name), int(a), int(b)) for name, a, b in (groups or [])]
    if len(parsed) <= 1:
        if config.subspaces > dim:
            raise ValueError(f"cannot split {dim} feature columns into {config.subspaces} subspaces")
        bounds = np.linspace(0, dim, config.subspaces + 1).round().astype(int)
        return tuple(
            FeatureGroup(f"{SUBSPACE_PREFIX}{i}", int(a), int(b))
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        )
    names = [g.name for g in parsed]
    if len(set(names)) != len(names):
        raise ValueError(f"feature group names must be unique, got {names}")
    for g in parsed:
        if not 0 <= g.start < g.stop <= dim:
            raise ValueError(f"feature group {g.name!r} has columns [{g.start}, {g.stop}) outside [0, {dim})")
    spans = sorted(parsed, key=lambda g: g.start)
    for a, b in zip(spans, spans[1:], strict=False):
        if b.start < a.stop:
            raise ValueError(f"feature groups {a.name!r} and {b.name!r} overlap")
    return tuple(parsed)


def describe(folder: str | Path) -> list[str]:
    """Printable statistics of the vocabulary saved in `folder`; [] when there is none, one line when unreadable."""
    folder = Path(folder)
    if not (folder / META_FILE).is_file():
        return []
    try:
        return VisualVocab.load(folder).stats().lines()
    except Exception as exc:  # shown on status pages: never fail them over it
        return [f"vocabulary unreadable: {exc}"]
