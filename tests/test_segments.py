import numpy as np

from indexer.segments import MAX_SPEECH, MIN_SPEECH, TRAIL, WINDOW_CLIPS, extend_over_pauses, make_segments


def clips(n, length=1.5):
    starts = np.arange(n) * length
    return starts, starts + length, np.arange(n)


def test_no_speech_gives_strided_windows_covering_everything():
    segs = make_segments(*clips(20), [])
    assert all(s.kind == "silence" and s.text == "" for s in segs)
    assert [s.clip_indices[0] for s in segs] == [0, 4, 8, 12]
    assert all(len(s.clip_indices) == WINDOW_CLIPS for s in segs)
    assert set().union(*[s.clip_indices for s in segs]) == set(range(20))
    assert segs[-1].end == 30.0


def test_short_video_is_one_window():
    (seg,) = make_segments(*clips(3), [])
    assert seg.clip_indices == (0, 1, 2) and (seg.start, seg.end) == (0.0, 4.5)


def test_sentences_join_when_close_and_split_when_long_or_apart():
    sentences = [(1.0, 3.0, "a red ball"), (3.4, 5.0, "rolls away."), (9.0, 10.0, "Later."),
                 (10.2, 25.0, "a very long sentence")]
    segs = [s for s in make_segments(*clips(20), sentences) if s.kind == "speech"]
    assert [s.text for s in segs] == ["a red ball rolls away.", "Later.", "a very long sentence"]
    # the first window runs on over the 4 s pause until "Later." starts
    assert segs[0].start == 1.0 and segs[0].end == 9.0
    assert all(s.end - s.start <= MAX_SPEECH for s in segs[:2])
    # "Later." is 1 s long and the next sentence follows at once: widened to MIN_SPEECH around its centre.
    assert segs[1].end - segs[1].start == MIN_SPEECH and abs(segs[1].start - 8.1) < 1e-9


def test_pauses_extend_speech_until_the_next_sentence_at_most_trail():
    ends = extend_over_pauses(np.array([0.0, 4.0, 30.0]), np.array([2.0, 5.0, 31.0]), duration=33.0)
    assert ends.tolist() == [4.0, 5.0 + TRAIL, 33.0]
    # overlapping spans never shrink
    assert extend_over_pauses(np.array([0.0, 1.0]), np.array([3.0, 2.0]), 10.0).tolist() == [3.0, 8.0]


def test_silence_fills_the_gaps_between_speech():
    segs = make_segments(*clips(20), [(0.0, 3.0, "hello there")])
    speech = [s for s in segs if s.kind == "speech"]
    silence = [s for s in segs if s.kind == "silence"]
    assert speech[0].end == 3.0 + TRAIL and speech[0].clip_indices == tuple(range(6))
    assert silence and min(s.clip_indices[0] for s in silence) == 6
    assert set().union(*[s.clip_indices for s in segs]) == set(range(20))


def test_speech_beyond_the_last_clip_is_dropped_and_empty_video_has_none():
    assert [s.kind for s in make_segments(*clips(2), [(10.0, 12.0, "late")])] == ["silence"]
    assert make_segments(np.array([]), np.array([]), np.array([]), [(0, 1, "x")]) == []
