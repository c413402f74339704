import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.sentences import Sentence, Word
from indexer.sidecar import (
    cues_to_words,
    decode_text,
    find_sidecars,
    parse_subtitles,
    parse_timestamp,
    pick_sidecar,
    read_subtitles,
    sidecar_language,
    to_srt,
    to_vtt,
)
from indexer.speech import AsrOptions, Recognised, transcribe_video
from vbsearch import synth

SRT = (
    "\ufeff1\r\n00:00:01,000 --> 00:00:03,500\r\n<i>Hello</i> <font color=\"red\">world</font>.\r\n\r\n"
    "2\r\n00:00:04,000 --> 00:00:06,000\r\n{\\an8}Fish &amp; chips,\r\nplease.\r\n\r\n"
)

VTT = """WEBVTT - some title
Kind: captions

NOTE this is a comment
with two lines

STYLE
::cue { color: yellow }

intro
00:01.000 --> 00:02.500 align:start position:10%
<v Roger>Good <c.loud>morning</c>.</v>

00:00:03.000 --> 00:00:05.250
Second <00:00:03.500>cue
with&nbsp;two lines.
"""


def test_srt_with_bom_crlf_tags_and_entities():
    subs = parse_subtitles(SRT)
    assert subs.problems == ()
    assert [(c.start, c.end) for c in subs.cues] == [(1.0, 3.5), (4.0, 6.0)]
    assert subs.cues[0].text == "Hello world."
    assert subs.cues[1].text == "Fish & chips,\nplease."


def test_vtt_header_notes_styles_ids_settings_and_voice_tags():
    subs = parse_subtitles(VTT)
    assert subs.problems == ()
    assert [(c.start, c.end) for c in subs.cues] == [(1.0, 2.5), (3.0, 5.25)]
    assert [c.text for c in subs.cues] == ["Good morning.", "Second cue\nwith two lines."]


def test_malformed_cues_are_reported_and_skipped_not_fatal():
    text = (
        "1\n00:00:01,000 --> 00:00:02,000\nfirst\n"
        "2\n00:00:02,500 --> 00:00:03,000\nno blank line before me\n\n"
        "3\n00:00:xx,000 --> 00:00:04,000\nbad start\n\n"
        "4\n00:00:09,000 --> 00:00:08,000\nends before it starts\n\n"
        "5\n00:00:10,000 -->\nno end\n\n"
        "garbage line without timing\n\n"
        "6\n00:00:12,000 --> 00:00:13,000\n\n"
        "7\n0:00:14.5 --> 0:00:15.25\nshort fraction\n"
    )
    subs = parse_subtitles(text)
    assert [c.text for c in subs.cues] == ["first", "no blank line before me", "short fraction"]
    assert subs.cues[-1].start == 14.5 and subs.cues[-1].end == 15.25
    assert len(subs.problems) == 3
    assert "line 9" in subs.problems[0] and "unreadable timing" in subs.problems[0]
    assert "ends before it starts" in subs.problems[1]


@pytest.mark.parametrize("text,seconds", [
    ("01:02:03,456", 3723.456), ("02:03.5", 123.5), (" 1 : 02 : 03 . 4 ", 3723.4), ("3.25", 3.25),
    ("00:61:00,000", None), ("abc", None), ("", None), ("1:2:3:4", None), ("9" * 5000, None),
    ("1:00:00," + "5" * 5000, None),
])
def test_timestamps(text, seconds):
    got = parse_timestamp(text)
    assert got == (pytest.approx(seconds) if seconds is not None else None)


def test_overlapping_cues_are_sorted_and_rolling_repeats_dropped():
    text = (
        "00:00:05.000 --> 00:00:07.000\nlater cue\n\n"
        "00:00:01.000 --> 00:00:03.000\nthe quick brown\n\n"
        "00:00:03.000 --> 00:00:04.000\nthe quick brown\nfox jumps\n\n"
        "00:00:04.000 --> 00:00:05.000\nfox jumps\nover it.\n\n"
        "00:00:20.000 --> 00:00:21.000\nover it.\n"  # far away: a real repeat, kept
    )
    subs = parse_subtitles("WEBVTT\n\n" + text)
    assert [c.start for c in subs.cues] == [1.0, 3.0, 4.0, 5.0, 20.0]
    words = cues_to_words(subs.cues)
    assert [w.text for w in words] == ["the", "quick", "brown", "fox", "jumps", "over", "it.", "later", "cue",
                                       "over", "it."]
    assert words[0].start == 1.0 and words[2].end == pytest.approx(3.0)
    assert all(w.start <= w.end for w in words)


def test_decode_text_handles_encodings():
    assert decode_text("caf\u00e9".encode("cp1252")) == "caf\u00e9"
    assert decode_text("\ufeffcaf\u00e9".encode("utf-8")) == "caf\u00e9"
    assert decode_text("caf\u00e9".encode("utf-16")) == "caf\u00e9"


def test_find_and_pick_sidecars_with_language_suffixes(tmp_path: Path):
    video = tmp_path / "talk.mp4"
    video.touch()
    for name in ["talk.en.srt", "talk.fr.vtt", "talk.SRT", "talk.part2.srt", "talk2.srt", "other.srt"]:
        (tmp_path / name).write_text("")
    found = [p.name for p in find_sidecars(video)]
    assert found == ["talk.SRT", "talk.en.srt", "talk.fr.vtt"]
    assert pick_sidecar(video).name == "talk.SRT"
    assert pick_sidecar(video, "fr").name == "talk.fr.vtt"
    assert pick_sidecar(video, "de").name == "talk.SRT"
    assert sidecar_language(video, tmp_path / "talk.pt_BR.srt") == "pt"
    assert sidecar_language(video, tmp_path / "talk.srt") is None


def test_writers_round_trip_through_the_parser():
    sentences = [Sentence(0.5, 2.25, "Hello there.", "en", 0.9), Sentence(3723.456, 3725.0, "Later.", "en", None)]
    for render in (to_srt, to_vtt):
        subs = parse_subtitles(render(sentences))
        assert subs.problems == ()
        assert [(c.start, c.end, c.text) for c in subs.cues] == [(s.start, s.end, s.text) for s in sentences]


def test_transcribe_video_uses_sidecar_by_default(tmp_path: Path):
    video = tmp_path / "clip.mkv"
    video.write_bytes(b"not decoded: the sidecar wins")
    (tmp_path / "clip.en.srt").write_text(
        "1\n00:00:01,000 --> 00:00:02,000\nFirst sentence. Second\n\n2\n00:00:02,000 --> 00:00:03,000\none here.\n\n"
        "3\n00:00:0x,000 --> 00:00:04,000\nbroken\n", encoding="utf-8")
    tr = transcribe_video(video, AsrOptions())
    assert tr.backend == "sidecar" and tr.language == "en" and tr.source.endswith("clip.en.srt")
    assert [s.text for s in tr.sentences] == ["First sentence.", "Second one here."]
    assert tr.sentences[0].start == 1.0 and tr.sentences[1].end == 3.0
    assert len(tr.problems) == 1 and tr.skipped_reason is None


def test_forced_sidecar_without_file_and_none_backend_are_skipped(tmp_path: Path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    tr = transcribe_video(video, AsrOptions(backend="sidecar"))
    assert tr.sentences == () and "subtitle" in tr.skipped_reason
    tr = transcribe_video(video, AsrOptions(backend="none"))
    assert tr.sentences == () and tr.backend == "none" and tr.skipped_reason


def test_oversized_sidecar_is_ignored_with_a_note(tmp_path: Path, monkeypatch):
    import indexer.sidecar as sidecar

    p = tmp_path / "big.srt"
    p.write_text("00:00:01,000 --> 00:00:02,000\nhi\n")
    monkeypatch.setattr(sidecar, "MAX_SIDECAR_BYTES", 10)
    subs = read_subtitles(p)
    assert subs.cues == () and "too large" in subs.problems[0]


def _check(subs):
    for c in subs.cues:
        assert math.isfinite(c.start) and math.isfinite(c.end) and 0 <= c.start <= c.end
        assert c.text.strip()
    starts = [c.start for c in subs.cues]
    assert starts == sorted(starts)
    for w in cues_to_words(subs.cues):
        assert w.start <= w.end


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_property_parser_never_crashes_on_arbitrary_text(text):
    _check(parse_subtitles(text))


fragments = st.sampled_from([
    "-->", " --> ", "00:00:01,000", "00:01.5", "99:99:99,999", "1", "\n", "\r\n", "\n\n", "WEBVTT", "NOTE",
    "<i>", "</i>", "{\\an8}", "&amp;", "&#0;", "text", " ", ":", ",", ".", "\ufeff", "\x00", "<v A>", "9" * 30,
])


@settings(max_examples=300, deadline=None)
@given(st.lists(fragments, max_size=40).map("".join))
def test_property_parser_never_crashes_on_subtitle_like_text(text):
    _check(parse_subtitles(text))


def test_auto_falls_back_to_asr_when_the_sidecar_is_unreadable(tmp_path: Path, monkeypatch):
    import indexer.asr_faster_whisper as fw

    calls = []

    def fake_transcribe(samples, options):
        calls.append(len(samples))
        return Recognised((Word(0.1, 0.4, "Recognised.", 0.8),), "en", "fake")

    monkeypatch.setattr(fw, "transcribe", fake_transcribe)
    video = synth.write_video(tmp_path / "v.mp4", synth.moving_square(10), fps=10, audio=np.zeros(16_000, np.float32))
    (tmp_path / "v.srt").write_text("1\n00:00:xx --> 00:00:02,000\nbroken\n")
    tr = transcribe_video(video, AsrOptions())
    assert calls and tr.backend == "faster-whisper" and [s.text for s in tr.sentences] == ["Recognised."]
    assert len(tr.problems) == 1 and "unreadable timing" in tr.problems[0]
    forced = transcribe_video(video, AsrOptions(backend="sidecar"))
    assert forced.backend == "sidecar" and forced.sentences == () and len(calls) == 1
