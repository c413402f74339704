"""End to end: `vbsearch index` a generated narrated archive, then `vbsearch search` it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from search.engine import SearchEngine
from search.evaluate import BM25_ROW, CONFIGS, first_relevant_rank
from search.store import SegmentStore
from vbsearch.cli import main
from vbsearch.samplegen import DIRECTION_PHRASES, generate


def _truth(archive):
    truth = {s["scene_id"]: s for s in json.loads((archive.archive_dir / "truth.json").read_text())}
    queries = json.loads((archive.archive_dir / "queries.json").read_text())
    return truth, queries


def _points(data_dir):
    with SegmentStore.open(data_dir) as store:
        return {str(p.id): p.payload for p in store.scroll(["video_id", "catalog_stamp", "model_id"])}


def test_search_json_contract(indexed_archive, capsys):
    rc = main(["search", "a red circle moving left", "--data-dir", str(indexed_archive.data_dir),
               "--top-k", "4", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    hits = json.loads(out)  # stdout is only the JSON array
    assert isinstance(hits, list) and len(hits) == 4
    for h in hits:
        assert {"video", "start", "end", "score", "text"} <= set(h)
        assert h["video"].startswith("/") and h["video"].endswith(".mp4") and h["start"] < h["end"]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


@pytest.fixture(scope="module")
def query_ranks(indexed_archive) -> tuple[dict[str, int], list[dict]]:
    """Each test query's first relevant rank (51 = not in the top 10) after `vbsearch index`."""
    truth, queries = _truth(indexed_archive)
    engine = SearchEngine.open(indexed_archive.settings)
    try:
        return {q["text"]: first_relevant_rank(engine.search(q["text"], 10), [truth[r] for r in q["relevant"]])
                for q in queries}, queries
    finally:
        engine.close()


def test_fixture_archive_names_every_attribute_it_shows(indexed_archive):
    # What only chatter describes must be learnt from the scenes that say it: each colour, shape and
    # direction shown is named by some narration, or no model could ground the query's word.
    truth, _ = _truth(indexed_archive)
    said = " ".join(s["narration"].lower() for s in truth.values())
    for s in truth.values():
        for word in (s["colour"], s["shape"], DIRECTION_PHRASES[s["direction"]]):
            assert word in said, f"the fixture archive never says {word!r}"


def test_queries_find_their_scenes(query_ranks):
    ranks, _ = query_ranks
    assert np.mean([r <= 3 for r in ranks.values()]) >= 0.8, {q: r for q, r in ranks.items() if r > 3}  # the misses


def test_a_chatter_only_scene_is_found_by_its_pictures(query_ranks):
    ranks, queries = query_ranks
    visual = [ranks[q["text"]] for q in queries if q["visual_only"]]
    assert visual and min(visual) <= 3, ranks


def test_eval_table_has_every_configuration(indexed_archive, capsys):
    assert main(["eval", str(indexed_archive.archive_dir), "--data-dir", str(indexed_archive.data_dir)]) == 0
    out = capsys.readouterr().out
    for name in ("transcript only", "encoder vectors only", "+ word matching", "+ narration lexicon", "+ alignment rerank",
                 "full system"):
        assert name in out
    assert "zero-shot masked words" in out
    assert BM25_ROW in out and "R@10 of the full system by what the query names" in out
    assert main(["eval", str(indexed_archive.archive_dir), "--data-dir", str(indexed_archive.data_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["config"] for r in report["retrieval"]] == [*CONFIGS, BM25_ROW]
    by_names = {b["names"]: b for b in report["breakdown"]}
    assert by_names["colour+shape+motion"]["queries"] == len(_truth(indexed_archive)[1])  # the classic form
    masked = report["masked_words"]
    assert masked["scenes"] == len(_truth(indexed_archive)[0])
    assert 0.0 <= masked["object_top1"] <= masked["object_top5"] <= 1.0
    assert 0.0 <= masked["action_top1"] <= masked["action_top5"] <= 1.0


def test_reindex_changes_nothing_then_change_and_prune(indexed_archive, tmp_path):
    arch = indexed_archive.copy_to(tmp_path)
    videos = arch.archive_dir / "videos"
    index = ["index", str(videos), "--data-dir", str(arch.data_dir)]
    before = _points(arch.data_dir)
    assert main(index) == 0
    assert _points(arch.data_dir) == before

    # Replace one file with other content: only its points change.
    files = sorted(videos.glob("*.mp4"))
    changed, kept = files[0], files[1]
    other = tmp_path / "other"
    generate(other, minutes=0.5, seed=99)
    shutil.copy(other / "videos" / "archive_000.mp4", changed)
    assert main(index) == 0
    after = _points(arch.data_dir)
    old_ids, new_ids = {p["video_id"] for p in before.values()}, {p["video_id"] for p in after.values()}
    (kept_id,) = old_ids & new_ids
    (gone_id,) = old_ids - new_ids
    assert len(new_ids) == 2
    assert {k: v for k, v in before.items() if v["video_id"] == kept_id} == \
        {k: v for k, v in after.items() if v["video_id"] == kept_id}  # untouched, stamps and all
    assert not any(p["video_id"] == gone_id for p in after.values())  # the old content's points are gone

    # Delete the kept file and prune: its points leave the index.
    kept.unlink()
    assert main([*index, "--prune"]) == 0
    pruned = _points(arch.data_dir)
    assert pruned and all(p["video_id"] != kept_id for p in pruned.values())


def test_a_text_search_explains_its_hits(indexed_archive):
    """Each hit says why it matched: the query words its transcript says (in some form), and the query words its
    pictures answer, each named by its feature group; "more like this" has no words to explain."""
    from model.terms import term, terms_of
    from search.hits import Why

    truth, _ = _truth(indexed_archive)
    narrated = next(s for s in truth.values() if s["narration_kind"] == "full")
    query = f"the {narrated['colour']} {narrated['shape']}"
    engine = SearchEngine.open(indexed_archive.settings)
    try:
        hits = engine.search(query, 10)
        like = engine.more_like_this(hits[0].segment_id, 3)
    finally:
        engine.close()
    assert hits and all(h.why is not None for h in hits)
    assert any(h.why.said for h in hits), [h.text for h in hits]
    for h in hits:
        assert set(h.why.said) <= {narrated["colour"], narrated["shape"]}  # not "the"
        assert {term(w) for w in h.why.said} <= set(terms_of(h.text))
        assert {s.word for s in h.why.seen} <= {narrated["colour"], narrated["shape"]}
        assert {s.group for s in h.why.seen} <= {"scene", "colour", "shape", "motion"}  # objectflow's groups, named
        assert Why.from_json(json.loads(json.dumps(h.to_json()))["why"]) == h.why  # the JSON hit carries it
    assert any(h.why.seen for h in hits)  # the lexicon knows the fixture's colour and shape words
    assert like and all(h.why is None for h in like)


def test_search_with_no_index_says_so(tmp_path, capsys):
    assert main(["search", "anything", "--data-dir", str(tmp_path)]) == 1
    assert "vbsearch index" in capsys.readouterr().err


@pytest.mark.parametrize("query", ["", "   ", "\x00\x07 red\x1b[31m circle " + "x" * 5000])
def test_odd_queries_do_not_crash(indexed_archive, query, capsys):
    assert main(["search", query, "--data-dir", str(indexed_archive.data_dir), "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)
