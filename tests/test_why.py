"""Why a hit matched, in words: the feature groups' labels, the transcript words said, the pictures' evidence
(the narration lexicon's and the word match's) merged per query word."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from model.features import feature_groups, group_label
from model.inference import WORD_MET_COSINE, WORD_MET_SHARE, VideoBertInference, WordEvidence
from model.lexicon import Lexicon
from model.vocab import META_FILE, VisualVocab, VocabConfig
from search.engine import SearchEngine, VisualGroups
from search.hits import Seen, Why

# visual words 0-2 colour (red, green, blue), 3-5 shape (circle, square, cross), 6-8 motion (left, right, up)
GROUPS = VisualGroups((0, 3, 6), (3, 6, 9), ("colour", "shape", "motion"))


def test_group_labels_read_as_words():
    assert [group_label(g) for g in feature_groups("objectflow")] == ["scene", "colour", "shape", "motion", "motion"]
    assert [group_label(g) for g in feature_groups("colormotion")] == \
        ["colour", "layout", "shape", "motion", "moving subject", "motion", "shape"]
    assert group_label("sub0") == group_label("sub12") == group_label("all") == "appearance and motion"
    assert group_label("hand_pose") == "hand pose" and group_label("subway") == "subway"


def test_visual_groups_come_from_the_saved_vocabulary(tmp_path, caplog):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6)).astype(np.float32)
    config = VocabConfig(depth=1, branching=3, min_points_per_centroid=5, niter=5, gpu=False)
    vocab = VisualVocab.fit(x, config, {"object_colour": (0, 3), "flow_hist": (3, 6)}, extractor="objectflow")
    vocab.save(tmp_path / "vocab")
    groups = VisualGroups.load(tmp_path / "vocab")
    for v in range(vocab.n_words):
        assert groups.label(v) == group_label(vocab.word_group(v))
    assert {groups.label(v) for v in range(vocab.n_words)} == {"colour", "motion"}
    assert groups.label(vocab.n_words) == groups.label(-1) == "visual"  # outside the vocabulary
    assert VisualGroups.load(tmp_path / "none").label(0) == "visual"  # no vocabulary: every word "visual"
    (tmp_path / "vocab" / META_FILE).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="search.engine"):
        assert VisualGroups.load(tmp_path / "vocab").label(0) == "visual"
    assert "unreadable" in caplog.text


def _lexicon() -> Lexicon:
    rng = np.random.default_rng(0)
    colours, shapes, moves = ("red", "green", "blue"), ("circle", "square", "cross"), ("left", "right", "up")
    texts, visual = [], []
    for _ in range(60):
        c, s, m = rng.integers(0, 3, size=3)
        texts.append(f"The {colours[c]} {shapes[s]} moves {moves[m]}wards.")
        visual.append(np.array([[c, 3 + s, 6 + m]] * 3))
    return Lexicon.fit(texts, visual, 9)


class FakeInference:
    """Word evidence as given: (word, cosines over the points) per word."""

    def __init__(self, per_word: dict[str, tuple[list[float], list[int]]]):
        self.per_word = per_word

    def word_evidence(self, query, videos):
        words = tuple(self.per_word)
        cosine = np.array([self.per_word[w][0] for w in words], np.float32).T.reshape(len(videos), len(words))
        visual = np.array([self.per_word[w][1] for w in words], np.int64).T.reshape(len(videos), len(words))
        return WordEvidence(words, cosine, visual)


def _engine(tmp_path, lexicon=None, inference=None) -> SearchEngine:
    engine = SearchEngine(tmp_path, inference, None, "test", lexicon=lexicon)
    engine.groups = GROUPS
    return engine


def _point(text: str, tokens: list[list[int]], caption: str | None = None):
    payload = {"text": text, "tokens": np.ravel(tokens).tolist(), "tokens_per_clip": 3}
    if caption:
        payload["caption"] = caption
    return SimpleNamespace(payload=payload)


def test_said_is_the_query_words_the_transcript_has_in_any_form(tmp_path):
    engine = _engine(tmp_path)
    points = [_point("The circle moves upwards, slowly.", [[0, 3, 8]]), _point("", [[0, 3, 8]]),
              _point("", [[0, 3, 8]], caption="a red circle moving")]
    why = engine._why("A Circle moving up, moving on: the circles", points)
    assert why[0].said == ("circle", "moving", "up")  # query order, one form per term, no stop words ("a", "on")
    assert why[1] == Why()  # nobody speaks; without a lexicon or word match nothing is seen either
    assert why[2].said == ("circle", "moving")  # a stored caption stands in for speech, as in the hit's text
    assert engine._why("the of a", points) == [Why(), Why(), Why()]  # no content words


def test_seen_merges_the_lexicon_and_the_word_match_per_word(tmp_path):
    lexicon = _lexicon()
    assert lexicon.heard("red") >= 3 and lexicon.heard("zebra") == 0
    points = [_point("", [[0, 4, 8]]), _point("", [[1, 5, 7]])]  # a red square going up; a green cross going right
    pool = [0.1, 0.12, 0.11, 0.09, 0.1, 0.13, 0.1, 0.11, 0.12, 0.1]  # 10 more candidates: the pool
    word_match = FakeInference({
        "red": ([0.9, 0.1, *pool], [0, 2, *[0] * 10]),  # the lexicon knows "red": its verdict stands
        "zebra": ([0.8, 0.1, *pool], [5, 4, *[0] * 10]),  # never narrated: the word match speaks for it
        "up": ([0.1, 0.1, *pool], [8, 8, *[0] * 10]),  # a low cosine: only the lexicon's evidence
    })
    engine = _engine(tmp_path, lexicon, word_match)
    evidence = word_match.word_evidence("", [None] * 12)
    order = np.arange(2)
    why = engine._why("a red zebra going up", points, (evidence.take(order), evidence.met()[order]))
    red, up = (Seen(w, g, "lexicon", pytest.approx(lexicon.row(w)[v], abs=1e-4)) for w, g, v in
               (("red", "colour", 0), ("up", "motion", 8)))
    assert why[0].said == ()
    assert why[0].seen[:2] in ((red, up), (up, red))  # the lexicon's first, strongest first
    assert why[0].seen[0].strength >= why[0].seen[1].strength
    assert why[0].seen[2:] == (Seen("zebra", "shape", "model", pytest.approx(0.8)),)
    assert why[1].seen == ()  # green, cross, right: none of the query's words
    assert why[0].text().startswith("seen: ") and "zebra (shape)" in why[0].text()
    # with the word match off, the lexicon alone
    assert [s.source for s in engine._why("a red zebra going up", points)[0].seen] == ["lexicon", "lexicon"]


def test_a_word_meets_the_pictures_where_it_matches_about_as_well_as_anywhere_in_the_pool():
    cos = np.array([0.6, 0.57, 0.5, 0.3, 0.6, -2.0], np.float32)
    visual = np.array([4, 4, 5, 6, 4, -1])
    ev = WordEvidence(("blue", "narrator"), np.stack([cos, cos * WORD_MET_COSINE / 0.61], 1),
                      np.stack([visual, visual], 1))
    met = ev.met()
    assert met[:, 0].tolist() == [True, True, False, False, True, False]  # >= 0.9 of its best (0.6), a visual word
    assert not met[:, 1].any()  # matched as well as anywhere, but below WORD_MET_COSINE: no visual word fits it
    assert 0 < WORD_MET_SHARE < 1 and 0 < WORD_MET_COSINE < 1
    assert ev.take([4, 0]).cosine[:, 0].tolist() == pytest.approx([0.6, 0.6])
    empty = WordEvidence(("blue",), np.full((2, 1), -2.0, np.float32), np.full((2, 1), -1))
    assert not empty.met().any()  # no visual words anywhere


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from videobert_synth import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer(tmp_path_factory.mktemp("tok"))
    return VideoBertInference(tiny_model(tok), tok)


def test_word_evidence_is_each_words_best_visual_word_over_its_pieces(tiny):
    import torch

    query = "The reds, ROLL!"  # "reds" is two pieces (red ##s); punctuation belongs to no word
    videos = [np.array([[0, 4, 8], [1, 5, 9]]), np.array([[3, 7, 10]]), np.zeros((0, 3), np.int64)]
    ev = tiny.word_evidence(query, videos)
    assert ev.words == ("the", "reds", "roll")
    with torch.inference_mode():
        tb, t = tiny._token_vectors(query)
        pieces = t[0, tb.text_mask[0]].numpy()  # the, red, ##s, ",", [UNK] (roll is not in the vocabulary), "!"
        for i, video in enumerate(videos[:2]):
            b, v = next(tiny._visual_vectors([video]))
            ids = (b.input_ids[0, b.visual_mask[0]] - tiny.tok.visual_offset).numpy()
            sims = pieces @ v[0, b.visual_mask[0]].numpy().T  # (pieces, visual words)
            for k, word_pieces in enumerate([[0], [1, 2], [4]]):
                best = max(word_pieces, key=lambda p: sims[p].max())
                assert ev.cosine[i, k] == pytest.approx(sims[best].max(), abs=1e-5)
                assert ev.visual[i, k] == ids[sims[best].argmax()]
    assert (ev.visual[2] == -1).all() and (ev.cosine[2] == -2).all()  # no visual words: no evidence
    assert tiny.word_evidence("?!", videos).words == ()
