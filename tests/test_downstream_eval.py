"""Caption metrics (pycocoevalcap) on known inputs, and the truth look-ups of the downstream evaluation."""

from __future__ import annotations

import pytest

from search.downstream_eval import (
    PAPER_YOUCOOK2,
    CaptionQuality,
    CaptionScores,
    ClassificationQuality,
    DownstreamQuality,
    caption_scores,
    meteor_available,
    narration_for,
    table,
    truth_attribute,
    words,
)

REFS = ["The red circle moves to the left.", "Here you can see a blue square travelling downwards.",
        "Thank you for staying with us."]


def test_words_lowercases_and_drops_punctuation():
    assert words("Here, you CAN see: a blue-square!") == "here you can see a blue square"


def test_identical_captions_score_perfectly():
    s = caption_scores([[r] for r in REFS], REFS, meteor=False)
    assert s.n == 3 and s.meteor is None
    assert s.bleu4 == pytest.approx(100.0, abs=1e-4) and s.rouge_l == pytest.approx(100.0, abs=1e-4)
    assert s.cider == pytest.approx(10.0, abs=1e-3)  # CIDEr-D's scale: 10 for a perfect match


def test_unrelated_captions_score_zero_and_partial_ones_between():
    none = caption_scores([[r] for r in REFS], ["zebra xylophone quartz"] * 3, meteor=False)
    assert none.bleu4 < 1e-6 and none.rouge_l == 0 and none.cider == 0
    partial = caption_scores([[r] for r in REFS], ["the red circle moves to the right", "a blue square",
                                                   "thank you for staying"], meteor=False)
    assert 0 < partial.bleu4 < 100 and 0 < partial.rouge_l < 100 and 0 < partial.cider < 10


def test_empty_caption_and_mismatched_lengths():
    s = caption_scores([[REFS[0]]], [""], meteor=False)  # an empty caption scores zero, not an error
    assert s.bleu4 < 1e-6 and s.cider == 0
    with pytest.raises(RuntimeError, match="reference"):
        caption_scores([[REFS[0]]], ["a", "b"], meteor=False)


@pytest.mark.skipif(not meteor_available(), reason="METEOR 1.5 runs on Java; no java on the PATH")
def test_meteor_through_java():
    same = caption_scores([[r] for r in REFS], REFS, meteor=True)
    other = caption_scores([[r] for r in REFS], ["zebra xylophone quartz"] * 3, meteor=True)
    assert same.meteor == pytest.approx(100.0, abs=0.5) and other.meteor == pytest.approx(0.0, abs=0.5)


SCENES = [
    {"video": "a.mp4", "direction": "up", "shape": "circle", "colour": "red", "background": "sky",
     "narration": "The red circle moves upwards.", "speech_start": 0.5, "speech_end": 2.5},
    {"video": "a.mp4", "direction": "left", "shape": "cross", "colour": "blue", "background": "sand",
     "narration": "Thank you for staying with us.", "speech_start": 8.0, "speech_end": 10.0},
]


def test_truth_lookups():
    assert truth_attribute(SCENES, ["up", "left"]) == "direction"
    assert truth_attribute(SCENES, ["cross"]) == "shape"
    assert truth_attribute(SCENES, ["up", "cross"]) is None
    assert narration_for(SCENES, "a.mp4", 1.0, 9.0) == "The red circle moves upwards."  # 1.5 s vs 1.0 s
    assert narration_for(SCENES, "a.mp4", 7.0, 12.0) == "Thank you for staying with us."
    assert narration_for(SCENES, "b.mp4", 0.0, 12.0) is None


def test_table_shows_both_tasks_beside_the_paper():
    s = CaptionScores(4, 12.5, None, 40.0, 0.8)
    q = DownstreamQuality(
        ClassificationQuality("direction", ["down", "up"], False, 4, 0.5, "up", 0.25, 16, 0.9),
        CaptionQuality(4, s, s, "thank you", [("ref", "cap")]), ["nothing"])
    out = table(q)
    assert "held-out scenes" in out and "0.50" in out and "0.25" in out
    assert f"{PAPER_YOUCOOK2['meteor']:.2f}" in out and "n/a" in out and "note: nothing" in out
