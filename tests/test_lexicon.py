"""The narration lexicon: counted word <-> visual-word associations, scored per candidate, saved safely."""

from __future__ import annotations

import json

import numpy as np
import pytest

import model.lexicon as lexicon_module
from model.checkpoint import CheckpointError
from model.lexicon import Lexicon, LexiconOptions

COLOURS, SHAPES, MOVES = ("red", "green", "blue"), ("circle", "square", "cross"), ("left", "right", "up")
N_VISUAL = 9  # visual words 0-2 colour, 3-5 shape, 6-8 motion


def _windows(seed: int = 0, n: int = 60):
    """Narrated windows: "the <colour> <shape> goes <move>" over clips showing exactly that."""
    rng = np.random.default_rng(seed)
    texts, visual = [], []
    for _ in range(n):
        c, s, m = rng.integers(0, 3, size=3)
        texts.append(f"The {COLOURS[c]} {SHAPES[s]} goes {MOVES[m]}.")
        visual.append(np.array([[c, 3 + s, 6 + m]] * 3))
    return texts, visual


def test_each_word_points_at_its_own_visual_word_and_function_words_at_none():
    lex = Lexicon.fit(*_windows(), N_VISUAL)
    for k, word in enumerate(COLOURS):
        assert int(np.argmax(lex.row(word))) == k
    assert int(np.argmax(lex.row("square"))) == 4 and int(np.argmax(lex.row("up"))) == 8
    content = min(lex.row(w).max() for w in COLOURS + SHAPES + MOVES)
    assert lex.row("the").max() < content / 2  # said in every window: it explains little
    assert lex.row("purple") is None


def test_the_scene_with_every_queried_attribute_scores_highest():
    lex = Lexicon.fit(*_windows(), N_VISUAL)
    target = np.array([[1, 5, 6]])  # green cross left
    two_of_three = [np.array([[0, 5, 6]]), np.array([[1, 3, 6]]), np.array([[1, 5, 7]])]
    scores = lex.scores("a green cross moving left", [target, *two_of_three, np.zeros((0, 3), np.int64)])
    assert scores[0] > scores[1:4].max() > 0 and scores[4] == 0.0
    assert lex.scores("nothing known here", [target]).tolist() == [0.0]


def test_rare_words_are_ignored_until_they_reach_min_count():
    texts, visual = _windows()
    texts[0] += " zebra"
    assert Lexicon.fit(texts, visual, N_VISUAL, LexiconOptions(min_count=3)).row("zebra") is None
    assert Lexicon.fit(texts, visual, N_VISUAL).row("zebra").max() > 0  # by default a word heard once counts


def test_a_query_meets_the_narration_in_other_forms_of_its_words():
    # narrated "squares ... upwards", queried "square going up"
    texts, visual = _windows()
    texts = [t.replace("square", "squares").replace("goes up", "moves upwards") for t in texts]
    lex = Lexicon.fit(texts, visual, N_VISUAL)
    np.testing.assert_array_equal(lex.row("up"), lex.row("Upwards"))
    assert int(np.argmax(lex.row("square"))) == 4 and int(np.argmax(lex.row("up"))) == 8
    target, wrong_move = np.array([[1, 4, 8]]), np.array([[1, 4, 6]])  # green square going up / left
    assert np.argmax(lex.scores("a green square going up", [wrong_move, target])) == 1


def test_rows_keep_only_the_strongest_links():
    texts, visual = _windows()
    full = Lexicon.fit(texts, visual, N_VISUAL)
    capped = Lexicon.fit(texts, visual, N_VISUAL, LexiconOptions(max_links=1))
    for word in COLOURS + SHAPES + MOVES:
        assert np.count_nonzero(capped.row(word)) == 1
        assert np.argmax(capped.row(word)) == np.argmax(full.row(word))
        assert capped.row(word).max() == pytest.approx(full.row(word).max())


def test_the_fit_does_not_depend_on_the_chunk_size(monkeypatch):
    texts, visual = _windows(n=40)
    whole = Lexicon.fit(texts, visual, N_VISUAL)
    monkeypatch.setattr(lexicon_module, "_PAIR_CHUNK", 7)  # a chunk after nearly every window
    chunked = Lexicon.fit(texts, visual, N_VISUAL)
    for name in ("indptr", "indices", "counts"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(chunked, name))
    np.testing.assert_allclose(whole.values, chunked.values, rtol=1e-5)


def test_save_load_round_trip_and_refusals(tmp_path):
    texts, visual = _windows()
    lex = Lexicon.fit(texts, visual, N_VISUAL)
    lex.save(tmp_path, "model-a")
    back = Lexicon.load(tmp_path, "model-a")
    query, candidates = "red square up", [v[:1] for v in visual[:10]]
    np.testing.assert_array_equal(back.scores(query, candidates), lex.scores(query, candidates))
    assert back.words == lex.words and back.options == lex.options
    with pytest.raises(CheckpointError, match="vbsearch train"):
        Lexicon.load(tmp_path, "model-b")
    config = tmp_path / lexicon_module.CONFIG_FILE
    saved = json.loads(config.read_text())
    config.write_text(json.dumps({**saved, "terms": "exact-words"}))  # built by a version with other word rules
    with pytest.raises(CheckpointError, match="vbsearch train"):
        Lexicon.load(tmp_path, "model-a")
    config.write_text(json.dumps(saved))
    weights = tmp_path / lexicon_module.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="checksum"):
        Lexicon.load(tmp_path, "model-a")


def test_search_goes_on_without_a_missing_or_foreign_lexicon(tmp_path, caplog):
    from search.engine import load_lexicon

    assert load_lexicon(tmp_path, "model-a") is None  # a model trained before the lexicon existed
    Lexicon.fit(*_windows(), N_VISUAL).save(tmp_path, "model-b")
    with caplog.at_level("WARNING", logger="search.engine"):
        assert load_lexicon(tmp_path, "model-a") is None
    assert "vbsearch train" in caplog.text
    assert load_lexicon(tmp_path, "model-b") is not None


def test_a_word_does_not_take_the_visual_words_another_word_explains():
    # squares are nearly always narrated red: counting alone would tie "square" to the red visual word
    texts = ["the red square"] * 30 + ["the red circle"] * 3 + ["the blue square"] * 3 + ["the blue circle"] * 10
    visual = [np.array([0, 2])] * 30 + [np.array([0, 3])] * 3 + [np.array([1, 2])] * 3 + [np.array([1, 3])] * 10
    lex = Lexicon.fit(texts, visual, 4)  # visual words: 0 red, 1 blue, 2 square, 3 circle
    assert lex.row("square")[2] > 0.5 and lex.row("square")[0] < 0.05
    assert lex.row("red")[0] > 0.5 and lex.row("red")[2] < 0.05


def test_a_query_as_visual_words_averages_its_known_words_links():
    texts = ["red square"] * 6 + ["blue square"] * 6
    visual = [np.array([1, 10])] * 6 + [np.array([2, 10])] * 6
    lex = Lexicon.fit(texts, visual, 20)
    red, square = lex.row("red"), lex.row("square")
    q = lex.query_vector("a red square, unheard-of")
    assert set(q) == set(np.flatnonzero(red)) | set(np.flatnonzero(square))
    for v, weight in q.items():
        assert weight == pytest.approx((red[v] + square[v]) / 2, rel=1e-5)
    assert lex.query_vector("nothing heard here") == {}


def test_evidence_names_each_known_words_strongest_visual_word_and_its_group():
    from search.engine import VisualGroups

    lex = Lexicon.fit(*_windows(), N_VISUAL)
    groups = VisualGroups((0, 3, 6), (3, 6, 9), ("colour", "shape", "motion"))
    green_cross_left, red_circle_up = np.array([[1, 5, 6]] * 2), np.array([[0, 3, 8]])
    found = lex.evidence("a GREEN cross moving left, purple", [green_cross_left, red_circle_up, np.zeros((0, 3))])
    assert [(w, v, groups.label(v)) for w, v, _ in found[0]] == \
        [(w, v, g) for w, v, g in sorted([("green", 1, "colour"), ("cross", 5, "shape"), ("left", 6, "motion")],
                                         key=lambda e: -lex.row(e[0])[e[1]])]  # strongest first
    assert all(link >= lexicon_module.EVIDENCE_MIN_LINK for _, _, link in found[0])
    # the red circle going up shows none of the query's words: nothing links at lift log 2 or more
    assert found[1] == [] and found[2] == []  # and nothing at all without visual words
    assert lex.evidence("purple unicorn", [green_cross_left]) == [[]]  # words the lexicon never heard
    texts, visual = _windows()
    texts = [t + " zebra" if v[0, 0] == 1 else t for t, v in zip(texts, visual, strict=True)][:12]  # a green word
    few = Lexicon.fit(texts, visual[:12], N_VISUAL)
    heard = few.heard("zebra")
    assert 0 < heard and few.row("zebra")[1] == few.row("zebra").max()
    assert [w for w, _, _ in few.evidence("zebra", [green_cross_left], min_windows=heard)[0]] == ["zebra"]
    assert few.evidence("zebra", [green_cross_left], min_windows=heard + 1) == [[]]  # heard too seldom to vouch
    # `scores` averages the same strongest links that `evidence` names
    best = lex.best_links("green cross left", [green_cross_left])
    assert lex.scores("green cross left", [green_cross_left])[0] == pytest.approx(best.links[0].mean())
    assert best.words == ("green", "cross", "left") and best.visual[0].tolist() == [1, 5, 6]
