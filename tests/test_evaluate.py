"""search/evaluate.py: BM25 over the true narration, and recall by what the query names."""

import numpy as np
import pytest

from search.evaluate import DEPTH, TIE_DRAWS, _summary, bm25_ranks, breakdown, query_names


def _scene(sid: str, narration: str, colour="red", shape="star", motion="spin", named=()) -> dict:
    return {"scene_id": sid, "video": "v.mp4", "start": 0.0, "end": 1.0, "narration": narration,
            "colour": colour, "shape": shape, "motion": motion, "named": list(named)}


SCENES = [
    _scene("a", "A red star spins slowly.", named=("colour", "shape", "motion")),
    _scene("b", "Look at this star.", colour="blue", motion="left", named=("shape",)),
    _scene("c", "Thank you for watching.", colour="green", shape="ring", motion="grow"),  # chatter
    _scene("d", "", colour="green", shape="ring", motion="bounce"),  # silent
    _scene("e", "The blue square moves left.", colour="blue", shape="square", motion="left"),
]


def test_bm25_finds_what_the_narration_says_and_shuffles_the_rest():
    queries = [{"text": "red star spinning", "relevant": ["a"], "visual_only": False},
               {"text": "star", "relevant": ["b"], "visual_only": False},
               {"text": "green ring growing", "relevant": ["c"], "visual_only": True}]
    ranks = bm25_ranks(SCENES, queries)
    assert ranks.shape == (3, TIE_DRAWS)
    assert (ranks[0] == 1).all()  # every word said, stems matched ("spinning" ~ "spins")
    # "star" is said in a and b equally often; b's narration is shorter, so BM25 puts it first
    assert (ranks[1] == 1).all()
    # nothing said matches: the chatter scene lands anywhere among the five, 3 on average
    assert set(np.unique(ranks[2])) == {1, 2, 3, 4, 5} and ranks[2].mean() == pytest.approx(3, abs=0.3)
    q = _summary("bm25", ranks, np.array([False, False, True]))
    assert q.r1 == pytest.approx((1 + 1 + 0.2) / 3, abs=0.03) and q.visual_only_queries == 1


def test_ranks_past_the_depth_count_as_misses():
    scenes = [_scene(str(i), f"word{i} here") for i in range(DEPTH + 5)]
    ranks = bm25_ranks(scenes, [{"text": "nothing matches", "relevant": ["0"], "visual_only": True}])
    assert ranks.max() == DEPTH + 1 and ranks.min() >= 1


def test_breakdown_by_what_the_query_names():
    truth = {s["scene_id"]: s for s in SCENES}
    queries = [{"text": "red star spinning", "relevant": ["a"], "visual_only": False,
                "names": {"colour": "red", "shape": "star", "motion": "spin"}},
               {"text": "a ring growing", "relevant": ["c"], "visual_only": True,
                "names": {"shape": "ring", "motion": "grow"}},
               {"text": "a bouncing ring", "relevant": ["d"], "visual_only": True,
                "names": {"shape": "ring", "motion": "bounce"}},
               {"text": "a blue star", "relevant": ["b"], "visual_only": False,
                "names": {"colour": "blue", "shape": "star"}}]
    ranks = np.array([[1.0], [4.0], [20.0], [2.0]])
    rows = {b.names: b for b in breakdown(queries, truth, ranks)}
    assert set(rows) == {"colour+shape+motion", "shape+motion", "colour+shape", "motion = spin", "motion = grow",
                         "motion = bounce", "taught < 3 times"}  # no word is named three times here
    assert rows["taught < 3 times"].queries == 4
    sm = rows["shape+motion"]
    assert (sm.queries, sm.r10, sm.visual_only_queries, sm.visual_only_r10) == (2, 0.5, 2, 0.5)
    assert np.isnan(rows["colour+shape"].visual_only_r10) and rows["colour+shape"].r10 == 1.0
    assert rows["motion = bounce"].r10 == 0.0


def test_how_often_the_narration_teaches_what_a_query_names():
    from search.evaluate import taught

    scenes = [_scene(str(i), "A red star.", named=("colour", "shape")) for i in range(4)] + [_scene("x", "")]
    counts = taught({s["scene_id"]: s for s in scenes})
    assert counts == {("colour", "red"): 4, ("shape", "star"): 4}  # "spin" is never said
    classic = {"s": {"scene_id": "s", "colour": "red", "shape": "circle", "direction": "left"}}
    assert taught(classic) is None  # the classic generator does not record it


def test_classic_queries_name_all_three_from_their_scene():
    classic = {"s": {"scene_id": "s", "colour": "red", "shape": "circle", "direction": "left"}}
    assert query_names({"text": "a red circle moving left", "relevant": ["s"]}, classic) == \
        {"colour": "red", "shape": "circle", "motion": "left"}
