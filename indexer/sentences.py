"""Words with times -> sentences with times.

VideoBERT pairs each sentence with the visual tokens of its time window, so a sentence
must be a unit of meaning (end at sentence punctuation), must not swallow a long silence
(a pause starts a new one) and must stay short enough for one window (a maximum length,
split at the last comma when there is one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PAUSE_S = 1.0  # seconds of silence between two words that end a sentence
MAX_SENTENCE_S = 15.0  # seconds; a longer run of words is split
MAX_SENTENCE_CHARS = 250  # characters; a longer run of words is split
# Languages written without spaces between words: their words are joined directly.
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "km", "bo", "yue"})
# Abbreviations whose final period does not end a sentence (lower case, without the period).
ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "no", "jr", "sr"})

_END_RE = re.compile(r"[.!?\u2026\u3002\uff01\uff1f\u061f\u0964]+[\"'\u201d\u2019)\]\u300d\u300f]*$")
_SOFT_RE = re.compile(r"[,;:\u3001\uff0c\uff1b\u2014-]+[\"'\u201d\u2019)\]]*$")


@dataclass(frozen=True)
class Word:
    start: float  # seconds from the start of the media
    end: float  # seconds; >= start
    text: str  # the word as recognised, punctuation attached, surrounding spaces stripped
    confidence: float | None = None  # 0..1 recogniser probability; None when unknown (subtitles)


@dataclass(frozen=True)
class Sentence:
    start: float  # seconds: start of the first word
    end: float  # seconds: end of the last word
    text: str  # the words joined (with spaces unless the language writes without them)
    language: str | None  # ISO 639-1 code ("en"); None when unknown
    confidence: float | None  # mean word confidence; None when no word had one


def clean_words(words: Iterable[Word]) -> list[Word]:
    """Drop empty words and words with non-finite times; make times non-negative and end >= start."""
    out = []
    for w in words:
        text = " ".join(w.text.split())
        if not text or not (math.isfinite(w.start) and math.isfinite(w.end)):
            continue
        start = max(0.0, float(w.start))
        conf = w.confidence if w.confidence is not None and math.isfinite(w.confidence) else None
        out.append(Word(start, max(start, float(w.end)), text, conf))
    return out


def ends_sentence(text: str) -> bool:
    if not _END_RE.search(text):
        return False
    bare = text.rstrip("\"'\u201d\u2019)]").lower()
    return not (bare.endswith(".") and bare[:-1] in ABBREVIATIONS)


def _join(words: Sequence[Word], language: str | None) -> str:
    sep = "" if language in NO_SPACE_LANGUAGES else " "
    return sep.join(w.text for w in words)


def _make(words: Sequence[Word], language: str | None) -> Sentence:
    confs = [w.confidence for w in words if w.confidence is not None]
    return Sentence(
        start=words[0].start,
        end=max(w.end for w in words),
        text=_join(words, language),
        language=language,
        confidence=sum(confs) / len(confs) if confs else None,
    )


def group_sentences(
    words: Iterable[Word],
    language: str | None,
    pause_s: float = PAUSE_S,
    max_seconds: float = MAX_SENTENCE_S,
    max_chars: int = MAX_SENTENCE_CHARS,
) -> list[Sentence]:
    """Group words (in spoken order) into sentences."""
    sentences: list[Sentence] = []
    current: list[Word] = []

    def too_long(ws: Sequence[Word]) -> bool:
        return len(ws) > 1 and (ws[-1].end - ws[0].start > max_seconds or len(_join(ws, language)) > max_chars)

    for word in clean_words(words):
        if current and word.start - current[-1].end >= pause_s:
            sentences.append(_make(current, language))
            current = []
        current.append(word)
        if too_long(current):
            # Split at the last comma-like mark when there is one, else before this word.
            cut = next((i + 1 for i in range(len(current) - 2, -1, -1) if _SOFT_RE.search(current[i].text)),
                       len(current) - 1)
            sentences.append(_make(current[:cut], language))
            current = current[cut:]
            while too_long(current):  # a single stretch with no comma: cut word by word
                sentences.append(_make(current[:-1], language))
                current = current[-1:]
        if ends_sentence(word.text):
            sentences.append(_make(current, language))
            current = []
    if current:
        sentences.append(_make(current, language))
    return sentences
