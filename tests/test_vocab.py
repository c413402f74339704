"""Visual vocabulary: planted structure recovered, descent exact, persistence, sizing, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.hkmeans import HKMeansTree
from model.vocab import VisualVocab, VocabConfig, VocabMismatchError

FAST = {"niter": 8}  # k-means iterations: enough for well-separated synthetic data


def planted_hierarchy(rng: np.random.Generator, per_leaf: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """3 far-apart top clusters x 3 sub-clusters each: (N, 16) features and the 9 leaf labels."""
    dim = 16
    top = rng.normal(size=(3, dim)) * 60.0
    feats, labels = [], []
    for a in range(3):
        subs = top[a] + rng.normal(size=(3, dim)) * 8.0
        for b in range(3):
            feats.append(subs[b] + rng.normal(size=(per_leaf, dim)))
            labels += [3 * a + b] * per_leaf
    return np.concatenate(feats).astype(np.float32), np.asarray(labels)


def mixture(rng: np.random.Generator, n: int, dim: int, components: int = 30) -> np.ndarray:
    centres = rng.normal(size=(components, dim)) * 4.0
    return (centres[rng.integers(components, size=n)] + rng.normal(size=(n, dim))).astype(np.float32)


def purity(tokens: np.ndarray, labels: np.ndarray) -> float:
    """Share of clips whose word's majority planted label is their own."""
    hits = sum(np.bincount(labels[tokens == w]).max() for w in np.unique(tokens))
    return hits / len(labels)


def reference_descent(tree: HKMeansTree, x: np.ndarray) -> np.ndarray:
    """One clip at a time: from the root, step to the child with the smallest float64 L2 distance."""
    out = []
    for row in x.astype(np.float64):
        node = 0
        while tree.n_children[node] > 0:
            first = tree.first_child[node]
            kids = tree.centroids[first : first + tree.n_children[node]].astype(np.float64)
            node = first + int(np.argmin(((kids - row) ** 2).sum(axis=1)))
        out.append(tree.word[node])
    return np.asarray(out)


def test_planted_hierarchical_clusters_are_recovered():
    x, labels = planted_hierarchy(np.random.default_rng(1))
    config = VocabConfig(mode="paper", depth=2, branching=3, min_points_per_centroid=5, **FAST)
    vocab = VisualVocab.fit(x, config, extractor="synthetic")
    tokens = vocab.tokenize(x)
    assert tokens.shape == (len(x), 1) and tokens.dtype == np.int64
    assert vocab.n_words == 9
    assert purity(tokens[:, 0], labels) >= 0.95
    # The top level of the tree separates the three top clusters.
    assert purity(tokens[:, 0] // 3, labels // 3) >= 0.95


def test_factored_clips_sharing_a_group_value_share_its_token():
    rng = np.random.default_rng(2)
    groups = {"colour": (0, 6), "shape": (6, 14), "motion": (14, 20)}
    n, values = 600, 5
    x = np.empty((n, 20), np.float32)
    which = {}
    for name, (a, b) in groups.items():
        protos = rng.normal(size=(values, b - a)) * 3.0
        which[name] = rng.integers(values, size=n)
        x[:, a:b] = protos[which[name]]
    vocab = VisualVocab.fit(
        x, VocabConfig(mode="factored", min_points_per_centroid=5, **FAST), groups, "colormotion"
    )
    tokens = vocab.tokenize(x)
    assert vocab.group_names == ("colour", "shape", "motion")
    assert tokens.shape == (n, 3) and vocab.tokens_per_clip == 3
    for j, name in enumerate(groups):
        first, stop = vocab.word_ranges[j]
        assert ((tokens[:, j] >= first) & (tokens[:, j] < stop)).all()
        assert {vocab.word_group(int(t)) for t in tokens[:, j]} == {name}
        for v in range(values):
            # Same value -> one token; different values -> different tokens.
            assert len(np.unique(tokens[which[name] == v, j])) == 1
        assert len(np.unique(tokens[:, j])) == values
    # Token ids are contiguous from 0 over the groups.
    assert vocab.word_ranges[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(vocab.word_ranges, vocab.word_ranges[1:], strict=False))


def test_single_vector_is_split_into_equal_subspaces():
    x = mixture(np.random.default_rng(3), 400, 30)
    config = VocabConfig(mode="factored", subspaces=4, min_points_per_centroid=5, depth=2, **FAST)
    for groups in (None, {"all": (0, 30)}):  # S3D declares one group covering all dims
        vocab = VisualVocab.fit(x, config, groups, "s3d")
        assert [(g.start, g.stop) for g in vocab.groups] == [(0, 8), (8, 15), (15, 22), (22, 30)]
        assert vocab.tokenize(x).shape == (400, 4)


def test_tree_descent_equals_brute_force_reference():
    rng = np.random.default_rng(4)
    x = mixture(rng, 3000, 24)
    config = VocabConfig(mode="paper", depth=3, branching=6, min_points_per_centroid=5, **FAST)
    vocab = VisualVocab.fit(x, config, extractor="synthetic")
    tree = vocab.trees[0]
    assert tree.depth == 3 and vocab.n_words > 36
    queries = np.concatenate(
        [x[:300], mixture(rng, 300, 24), rng.normal(size=(100, 24)).astype(np.float32) * 10]
    )
    np.testing.assert_array_equal(vocab.tokenize(queries)[:, 0], reference_descent(tree, queries))


def test_save_load_round_trip_gives_identical_tokens(tmp_path):
    rng = np.random.default_rng(5)
    x = mixture(rng, 1500, 12)
    groups = [("colour", 0, 4), ("layout", 4, 8), ("motion", 8, 12)]
    vocab = VisualVocab.fit(x, VocabConfig(min_points_per_centroid=10, **FAST), groups, "colormotion")
    vocab.save(tmp_path / "vocab")
    assert sorted(p.name for p in (tmp_path / "vocab").iterdir()) == ["vocab.json", "vocab.safetensors"]
    meta = json.loads((tmp_path / "vocab" / "vocab.json").read_text())
    assert (meta["extractor"], meta["dim"], meta["clips_fitted"]) == ("colormotion", 12, 1500)
    assert sum(meta["word_counts"]) == 1500 * 3

    loaded = VisualVocab.load(tmp_path / "vocab", expect_extractor="colormotion", expect_dim=12)
    queries = mixture(rng, 500, 12)
    np.testing.assert_array_equal(loaded.tokenize(queries), vocab.tokenize(queries))
    np.testing.assert_array_equal(loaded.word_vectors(), vocab.word_vectors())
    assert loaded.group_names == vocab.group_names and loaded.config == vocab.config
    assert loaded.stats() == vocab.stats()


def test_mismatched_load_raises_the_documented_error(tmp_path):
    x = mixture(np.random.default_rng(6), 300, 10)
    VisualVocab.fit(x, VocabConfig(mode="paper", **FAST), extractor="colormotion").save(tmp_path)
    with pytest.raises(VocabMismatchError, match=r"10-dim .* 1024-dim"):
        VisualVocab.load(tmp_path, expect_dim=1024)
    with pytest.raises(VocabMismatchError, match="'colormotion'.*'s3d'"):
        VisualVocab.load(tmp_path, expect_extractor="s3d", expect_dim=10)
    vocab = VisualVocab.load(tmp_path, expect_extractor="colormotion", expect_dim=10)
    with pytest.raises(VocabMismatchError, match="11-dim"):
        vocab.tokenize(np.zeros((2, 11), np.float32))
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        VisualVocab.load(tmp_path / "nowhere")


def test_tiny_archive_gets_a_small_vocabulary():
    rng = np.random.default_rng(7)
    x = mixture(rng, 2000, 32)
    config = VocabConfig(mode="paper", **FAST)  # paper's 4 x 12 tree, default split rule
    vocab = VisualVocab.fit(x, config, extractor="synthetic")
    # Each level holds at most N / min_points_per_centroid nodes: far from 12**4 = 20,736.
    assert 12 <= vocab.n_words <= 2 * 2000 // config.min_points_per_centroid
    stats = vocab.stats()
    assert stats.words_used == vocab.n_words and stats.clips_per_word_min >= 1
    # Too few clips to split at all: one word, the mean.
    few = VisualVocab.fit(x[:30], config, extractor="synthetic")
    assert few.n_words == 1
    np.testing.assert_allclose(few.word_vectors()[0], x[:30].mean(axis=0), rtol=1e-5, atol=1e-5)


def test_same_seed_same_tokens_other_seed_other_tree():
    x = mixture(np.random.default_rng(8), 1200, 16)

    def fit(seed: int) -> VisualVocab:
        return VisualVocab.fit(x, VocabConfig(seed=seed, min_points_per_centroid=5, **FAST), None, "s")

    a, b, c = fit(0), fit(0), fit(1)
    np.testing.assert_array_equal(a.tokenize(x), b.tokenize(x))
    np.testing.assert_array_equal(a.word_vectors(), b.word_vectors())
    assert a.n_words != c.n_words or not np.array_equal(a.word_vectors(), c.word_vectors())


def test_word_vectors_and_stats_describe_the_tokens():
    rng = np.random.default_rng(9)
    x = mixture(rng, 800, 12)
    vocab = VisualVocab.fit(
        x, VocabConfig(min_points_per_centroid=10, **FAST), [("a", 0, 5), ("b", 5, 12)], "cm"
    )
    vectors = vocab.word_vectors()
    assert vectors.shape == (vocab.n_words, 12) and vectors.dtype == np.float32
    (a0, a1), (b0, b1) = vocab.word_ranges
    assert not vectors[a0:a1, 5:].any() and not vectors[b0:b1, :5].any()
    tokens = vocab.tokenize(x)
    # Groups cover all columns, so a clip's reconstruction is the sum of its words' vectors.
    recon = vectors[tokens].sum(axis=1)
    stats = vocab.stats()
    assert stats.reconstruction_error == pytest.approx(((x - recon) ** 2).sum(axis=1).mean(), rel=1e-4)
    counts = np.bincount(tokens.ravel(), minlength=vocab.n_words)
    assert (stats.clips_per_word_min, stats.clips_per_word_max) == (counts.min(), counts.max())
    assert stats.clips == 800 and stats.group_words == {"a": a1 - a0, "b": b1 - b0}
    text = "\n".join(stats.lines())
    assert f"{vocab.n_words} words" in text and "factored" in text and "recon error" in text
    # On other clips some words may go unused; the stats say so.
    other = vocab.stats(x[:5])
    assert other.clips == 5 and other.words_used <= 10 and other.clips_per_word_min == 0


def test_bad_input_gets_a_clear_error():
    x = mixture(np.random.default_rng(10), 100, 8)
    with pytest.raises(ValueError, match="0 clips"):
        VisualVocab.fit(x[:0], VocabConfig(**FAST))
    with pytest.raises(ValueError, match="2-D"):
        VisualVocab.fit(x[0], VocabConfig(**FAST))
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="1 clip feature row"):
        VisualVocab.fit(bad, VocabConfig(**FAST))
    with pytest.raises(ValueError, match="overlap"):
        VisualVocab.fit(x, VocabConfig(**FAST), [("a", 0, 5), ("b", 4, 8)])
    with pytest.raises(ValueError, match="mode"):
        VocabConfig(mode="flat")
    vocab = VisualVocab.fit(x, VocabConfig(mode="paper", **FAST))
    assert vocab.tokenize(x[:0]).shape == (0, 1)
    with pytest.raises(IndexError):
        vocab.word_group(vocab.n_words)
