"""The reranker: with a trained tiny VideoBERT, the alignment head, the token-wise late
interaction and the narration lexicon each lift aligned candidates.

The store's video vectors are made uninformative (random), so the ANN order is arbitrary; only the
rerank can bring the moment that matches the query to the top.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from videobert_synth import (
    COLOURS,
    MOTIONS,
    N_VISUAL,
    OBJECTS,
    archive,
    clip_tokens,
    tiny_model,
    tiny_tokenizer,
)

from indexer.train import fit_lexicon
from model.inference import VideoBertInference
from model.pretrain import Pretrainer, PretrainOptions
from model.pretrain_data import DataOptions, PretrainData
from search.engine import RankingOptions, SearchEngine
from search.store import SegmentStore, StorePoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tok = tiny_tokenizer(tmp_path_factory.mktemp("tok"))
    sentences, clips, tokens = archive()
    data = PretrainData(pl.DataFrame(sentences), pl.DataFrame(clips), tokens, DataOptions(held_out_fraction=0.0))
    opts = PretrainOptions(steps=500, batch_size=8, lr=2e-3, head_lr=2e-3, warmup_steps=10, eval_every=0,
                           progress=False)
    model = tiny_model(tok, hidden=64)
    Pretrainer(model, tok, data, opts).fit()
    return VideoBertInference(model, tok), fit_lexicon(data, N_VISUAL)


# the weights that leave one component alone in the rerank
ALONE = {"align": {"word_weight": 0.0, "lexicon_weight": 0.0, "align_weight": 1.0},
         "words": {"align_weight": 0.0, "lexicon_weight": 0.0},
         "lexicon": {"align_weight": 0.0, "word_weight": 0.0}}


@pytest.mark.parametrize("component", list(ALONE))
def test_rerank_lifts_aligned_candidates(trained, tmp_path, component):
    inference, lexicon = trained
    rng = np.random.default_rng(0)
    combos = [(c, o, m) for c in range(len(COLOURS)) for o in range(len(OBJECTS)) for m in range(len(MOTIONS))]
    points = []
    for i, (c, o, m) in enumerate(combos):
        toks = np.asarray([clip_tokens(c, o, m)] * 2)
        vec = rng.normal(size=inference.embed_dim)
        points.append(StorePoint("v", float(i * 3), {"video": (vec / np.linalg.norm(vec)).tolist()}, {
            "path": "/archive/v.mp4", "end": float(i * 3 + 3), "duration": 3.0, "text": "", "kind": "silence",
            "tokens": toks.reshape(-1).tolist(), "tokens_per_clip": 3, "model_id": "tiny", "indexed_at": 0.0}))
    with SegmentStore.update(tmp_path) as writer:
        writer.ensure(inference.embed_dim)
        writer.upsert(points)
    engine = SearchEngine(tmp_path, inference, SegmentStore.open(tmp_path), "tiny", lexicon=lexicon)
    ann_only = RankingOptions(channels=("video",), rerank=False, candidates=len(combos))
    reranked = RankingOptions(channels=("video",), rerank=True, candidates=len(combos), **ALONE[component])
    before, after, best = [], [], []
    for c, o, m in combos[::4]:
        query = f"the {COLOURS[c]} {OBJECTS[o]} {MOTIONS[m]}"
        target = float(combos.index((c, o, m)) * 3)
        for ranks, opts in ((before, ann_only), (after, reranked)):
            hits = engine.search(query, len(combos), options=opts)
            ranks.append(1 + [h.start for h in hits].index(target))
        best.append(max(hits, key=lambda h: h.scores[component]).start == target)
    engine.close()
    # Random vectors put the right moment anywhere; each rerank score lifts it (summed with the random
    # video similarity, whose spread at 64 dimensions is as large as the word match's margin), and on
    # its own picks it out of all 48.
    assert np.mean(after) < np.mean(before) / 3, (after, before)
    assert np.mean(best) >= 0.9, best


@pytest.mark.parametrize("source", ["lexicon", "model"])
def test_the_top_hit_says_which_query_words_its_pictures_show(trained, tmp_path, source):
    from model.features import group_label
    from search.engine import VisualGroups

    inference, lexicon = trained
    points = []
    for i, (c, o, m) in enumerate([(0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 0), (0, 1, 2), (1, 2, 0)]):
        toks = np.asarray([clip_tokens(c, o, m)] * 2)
        points.append(StorePoint("v", float(i * 3), {"video": np.eye(inference.embed_dim)[i].tolist()}, {
            "path": "/archive/v.mp4", "end": float(i * 3 + 3), "duration": 3.0, "text": "", "kind": "silence",
            "tokens": toks.reshape(-1).tolist(), "tokens_per_clip": 3, "model_id": "tiny", "indexed_at": 0.0}))
    with SegmentStore.update(tmp_path) as writer:
        writer.ensure(inference.embed_dim)
        writer.upsert(points)
    engine = SearchEngine(tmp_path, inference, SegmentStore.open(tmp_path),
                          "tiny", lexicon=lexicon if source == "lexicon" else None)
    n_c, n_o = len(COLOURS), len(OBJECTS)
    labels = tuple(group_label(g) for g in ("object_colour", "object", "flow_hist"))  # colour, object, motion
    engine.groups = VisualGroups((0, n_c, n_c + n_o), (n_c, n_c + n_o, N_VISUAL), labels)
    try:
        hits = engine.search(f"the {COLOURS[1]} {OBJECTS[1]} {MOTIONS[1]}", 6,
                             options=RankingOptions(channels=("video",), candidates=6))
    finally:
        engine.close()
    assert hits[0].start == 3.0  # the moment that shows all three
    seen = {s.word: s.group for s in hits[0].why.seen}
    assert seen == {COLOURS[1]: "colour", OBJECTS[1]: "object", MOTIONS[1]: "motion"}, hits[0].why
    assert {s.source for s in hits[0].why.seen} == {source}
    assert hits[0].why.said == ()  # nobody speaks
    assert not hits[-1].why.seen or len(hits[-1].why.seen) < 3
