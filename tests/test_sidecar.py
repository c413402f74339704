import math
from pathlib import Path

import numpy as np
import pysubs2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.sentences import Sentence, Word
from indexer.sidecar import (
    WRITE_FORMATS,
    Subtitles,
    cues_to_words,
    decode_text,
    find_sidecars,
    parse_subtitles,
    pick_sidecar,
    read_subtitles,
    sidecar_language,
    write_subtitles,
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
    assert subs.problems == () and subs.format == "srt"
    assert [(c.start, c.end) for c in subs.cues] == [(1.0, 3.5), (4.0, 6.0)]
    assert subs.cues[0].text == "Hello world."
    assert subs.cues[1].text == "Fish & chips,\nplease."
    assert parse_subtitles(SRT.replace("\r\n", "\r")) == subs  # old Mac line ends: pysubs2 splits on LF only


def test_vtt_header_notes_styles_ids_settings_and_voice_tags():
    subs = parse_subtitles(VTT)
    assert subs.problems == () and subs.format == "vtt"
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
    assert "timing is unreadable" in subs.problems[0] and "00:00:xx,000 -->" in subs.problems[0]
    assert "0:00:09.000: ends before it starts" in subs.problems[1]
    assert "timing is unreadable" in subs.problems[2] and "00:00:10,000 -->" in subs.problems[2]


def test_ids_notes_and_broken_timings_do_not_join_the_cue_before():
    # pysubs2 gives a cue every line up to the next timing line it can read; the glue cuts them off.
    vtt = ("WEBVTT\n\n1\n00:01.000 --> 00:02.000\nx\n\nid-two\n00:03.000 --> 00:04.000\ny\n\n"
           "NOTE between\ncues\n\n00:05.000 --> 00:06.000\nz\n")
    subs = parse_subtitles(vtt)
    assert [(c.start, c.text) for c in subs.cues] == [(1.0, "x"), (3.0, "y"), (5.0, "z")] and subs.problems == ()
    srt = "1\n00:00:01,000 --> 00:00:02,000\nfirst\n2\n00:00:0x,000 --> 00:00:04,000\nbroken\n"
    subs = parse_subtitles(srt)
    assert [c.text for c in subs.cues] == ["first"]
    assert len(subs.problems) == 1 and "00:00:0x,000" in subs.problems[0]


def test_vtt_karaoke_time_tags_are_text_not_timing_lines():
    # A line with two inline times would pass pysubs2's timing-line test if they reached it.
    subs = parse_subtitles("WEBVTT\n\n00:01.000 --> 00:03.000\n<00:00:01.000>Hello <00:00:02.000>world\n")
    assert [(c.start, c.end, c.text) for c in subs.cues] == [(1.0, 3.0, "Hello world")]


@pytest.mark.parametrize("document,start", [
    ("1\n01:02:03,456 --> 01:02:04,000\nx\n", 3723.456),  # SubRip
    ("1\n1:02:03.4 --> 1:02:04.0\nx\n", 3723.4),  # one-digit hour and fraction, dot for comma
    ("WEBVTT\n\n02:03.500 --> 02:04.000\nx\n", 123.5),  # WebVTT without hours
    ("WEBVTT\n\n1:02:03.400 --> 1:02:04.000\nx\n", 3723.4),
    ("1\n00:0x:03,000 --> 00:00:04,000\nx\n", None),
    ("1\n1:2:3:4 --> 00:00:04,000\nx\n", None),
    ("1\n" + "9" * 5000 + " --> 00:00:04,000\nx\n", None),
    ("just some text\n", None),
])
def test_timings_pysubs2_reads_and_ones_it_cannot(document, start):
    subs = parse_subtitles(document)
    if start is None:
        assert subs.cues == () and len(subs.problems) == 1 and "no readable cue timing" in subs.problems[0]
    else:
        assert subs.problems == () and [c.start for c in subs.cues] == [pytest.approx(start)]


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


def test_sidecar_files_in_other_encodings_are_read(tmp_path: Path):
    srt = "1\n00:00:01,000 --> 00:00:02,000\nCaf\u00e9 au lait.\n"
    for i, enc in enumerate(["cp1252", "utf-16", "utf-8-sig"]):
        (tmp_path / f"{i}.srt").write_bytes(srt.encode(enc))
        assert [c.text for c in read_subtitles(tmp_path / f"{i}.srt").cues] == ["Caf\u00e9 au lait."]
    # UTF-16 without a BOM decodes as text with a NUL after each ASCII character.
    (tmp_path / "le.srt").write_bytes(srt.replace("\u00e9", "e").encode("utf-16-le"))
    assert [c.text for c in read_subtitles(tmp_path / "le.srt").cues] == ["Cafe au lait."]


def test_find_and_pick_sidecars_with_language_suffixes(tmp_path: Path):
    video = tmp_path / "talk.mp4"
    video.touch()
    for name in ["talk.en.srt", "talk.fr.vtt", "talk.SRT", "talk.part2.srt", "talk2.srt", "other.srt",
                 "talk.de.ass", "talk.it.ssa", "talk.part2.ass", "talk.txt", "talk.json", "talk.sub"]:
        (tmp_path / name).write_text("")
    found = [p.name for p in find_sidecars(video)]
    assert found == ["talk.SRT", "talk.en.srt", "talk.fr.vtt", "talk.de.ass", "talk.it.ssa"]
    assert pick_sidecar(video).name == "talk.SRT"
    assert pick_sidecar(video, "fr").name == "talk.fr.vtt"
    assert pick_sidecar(video, "de").name == "talk.de.ass"
    assert pick_sidecar(video, "nl").name == "talk.SRT"
    assert sidecar_language(video, tmp_path / "talk.pt_BR.srt") == "pt"
    assert sidecar_language(video, tmp_path / "talk.srt") is None


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_writers_round_trip_through_pysubs2_and_the_reader(fmt):
    sentences = [Sentence(0.5, 2.25, "Hello there.", "en", 0.9), Sentence(3723.45, 3725.0, "Fish & chips.", "en", None)]
    text = write_subtitles(sentences, fmt)
    back = pysubs2.SSAFile.from_string(text)
    assert back.format == fmt  # detected from the content, not told
    # ASS keeps centiseconds: these times are exact in all three formats.
    assert [(e.start, e.end, e.plaintext) for e in back] == [(500, 2250, "Hello there."),
                                                              (3723450, 3725000, "Fish & chips.")]
    subs = parse_subtitles(text)
    assert subs.problems == () and subs.format == fmt
    assert [(c.start, c.end, c.text) for c in subs.cues] == [(s.start, s.end, s.text) for s in sentences]


def test_writer_refuses_a_format_it_does_not_write():
    with pytest.raises(ValueError, match="json"):
        write_subtitles([], "json")


# A SubStation Alpha v4+ script written by hand: override tags, a hard line break (\N) and space (\h),
# a comment line and a vector drawing (neither is speech), events out of time order.
ASS = r"""[Script Info]
; written by hand for this test
ScriptType: v4.00+
PlayResX: 384
PlayResY: 288

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,2,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:01:00.00,0:01:02.50,Default,,0,0,0,,{\an8\b1}Fish and{\b0}\hchips. Café open.
Dialogue: 0,0:00:01.50,0:00:03.25,Default,Roger,0,0,0,,{\i1}Hello{\i0} there,\Nworld.
Comment: 0,0:00:02.00,0:00:03.00,Default,,0,0,0,,a translator's note
Dialogue: 0,0:00:05.00,0:00:06.00,Default,,0,0,0,,{\p1}m 0 0 l 100 0 100 100{\p0}
"""


def test_ass_sidecar_is_discovered_and_read_as_plain_text_cues(tmp_path: Path):
    video = tmp_path / "film.mp4"
    video.write_bytes(b"not decoded: the sidecar wins")
    # A UTF-8 BOM and CRLF line ends, as Windows subtitle editors save it.
    (tmp_path / "film.en.ass").write_bytes(("\ufeff" + ASS.replace("\n", "\r\n")).encode("utf-8"))
    sidecar = pick_sidecar(video)
    assert sidecar is not None and sidecar.name == "film.en.ass"
    subs = read_subtitles(sidecar)
    assert subs.problems == () and subs.format == "ass"
    assert [(c.start, c.end, c.text) for c in subs.cues] == [
        (1.5, 3.25, "Hello there,\nworld."), (60.0, 62.5, "Fish and chips. Café open.")]
    tr = transcribe_video(video, AsrOptions())
    assert tr.backend == "sidecar" and tr.language == "en" and tr.source.endswith("film.en.ass")
    assert [s.text for s in tr.sentences] == ["Hello there, world.", "Fish and chips.", "Café open."]
    assert tr.sentences[0].start == 1.5 and tr.sentences[-1].end == 62.5


SAMI = """<SAMI><HEAD><TITLE>t</TITLE></HEAD><BODY>
<SYNC Start=1000><P Class=ENCC>Fish &amp; <i>chips</i>
<SYNC Start=2500><P Class=ENCC>&nbsp;
</BODY></SAMI>"""
TTML = """<?xml version="1.0" encoding="utf-8"?>
<tt xmlns="http://www.w3.org/ns/ttml" xml:lang="en"><body><div>
<p begin="00:00:01.000" end="00:00:02.500">Fish &amp; <span>chips</span></p>
</div></body></tt>"""


@pytest.mark.parametrize("name,document,fmt", [("clip.smi", SAMI, "sami"), ("clip.ttml", TTML, "ttml")])
def test_other_pysubs2_formats_are_sidecars_too(tmp_path: Path, name, document, fmt):
    (tmp_path / name).write_text(document, encoding="utf-8")
    sidecar = pick_sidecar(tmp_path / "clip.mp4")
    assert sidecar is not None and sidecar.name == name
    subs = read_subtitles(sidecar)
    assert subs.format == fmt and subs.problems == ()
    assert [(c.start, c.end, c.text) for c in subs.cues] == [(1.0, 2.5, "Fish & chips")]


def test_unreadable_broken_or_empty_files_give_notes_or_nothing_never_exceptions(tmp_path: Path):
    missing = read_subtitles(tmp_path / "gone.srt")
    assert missing.cues == () and "cannot read" in missing.problems[0]
    (tmp_path / "empty.srt").write_bytes(b"\xef\xbb\xbf\r\n")
    assert read_subtitles(tmp_path / "empty.srt") == Subtitles((), ())  # no speech; nothing wrong
    (tmp_path / "cut.ttml").write_text('<tt xmlns="http://www.w3.org/ns/ttml"><body><p begin="1s">a')
    cut = read_subtitles(tmp_path / "cut.ttml")  # pysubs2's XML parser raises: a note instead
    assert cut.cues == () and len(cut.problems) == 1 and "unreadable as subtitles: ParseError" in cut.problems[0]
    # No [V4+ Styles]: pysubs2 cannot tell the format from the text, so the name says SubStation.
    events = ASS[ASS.index("[Events]"):].splitlines()[:2]  # the section header and its Format line
    (tmp_path / "odd.ass").write_text("\n".join(["[Script Info]", *events,
                                                 "Dialogue: 0,0:00:05.00,0:00:01.00,Default,,0,0,0,,backwards",
                                                 "Dialogue: 0,0:00:07.00,0:00:08.00,Default,,0,0,0,,ok"]))
    odd = read_subtitles(tmp_path / "odd.ass")
    assert odd.format == "ass" and [(c.start, c.text) for c in odd.cues] == [(7.0, "ok")]
    assert len(odd.problems) == 1 and "0:00:05.000: ends before it starts" in odd.problems[0]


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
    "<00:00:01.000>", "[Script Info]", "[Events]", "Format: Start, End, Text", "Dialogue: 0,0:00:01.00,",
    "{\\p1}", "\\N", "<SAMI>", "<SYNC Start=5>", "{1}{25}", "http://www.w3.org/ns/ttml",
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
    assert len(tr.problems) == 1 and "no readable cue timing" in tr.problems[0]
    forced = transcribe_video(video, AsrOptions(backend="sidecar"))
    assert forced.backend == "sidecar" and forced.sentences == () and len(calls) == 1
