"""Sidecar subtitles (.srt / .vtt next to a video): find, parse robustly, write.

Real-world subtitle files are messy: byte-order marks, CRLF or CR line ends, missing blank
lines, `<i>`/`<font>`/`{\\an8}` styling, VTT voice and karaoke tags, overlapping or rolling
cues, timestamps with commas or dots, missing hours, one-digit fractions. Parsing never
raises on content: an unreadable cue is skipped and reported in `problems`.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.sentences import Sentence, Word

log = logging.getLogger(__name__)

SUBTITLE_EXTENSIONS = (".srt", ".vtt")  # in order of preference when both exist
MAX_SIDECAR_BYTES = 50_000_000  # a larger "subtitle" file is not one; refuse to read it
ROLLING_GAP_S = 0.05  # seconds; cues closer than this can repeat the previous cue's lines
# A language suffix between the video stem and the extension: en, eng, en-US, pt_BR, zh-Hans.
_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?$")
# [[HH:]MM:]SS[.,fff]; fields may have stray spaces; fractions of 1-3+ digits.
_TIME_RE = re.compile(r"^\s*(?:(\d{1,9})\s*:\s*)?(?:(\d{1,2})\s*:\s*)?(\d{1,2})(?:\s*[.,]\s*(\d{1,9}))?\s*$")
_TAG_RE = re.compile(r"<[^>]*>|\{\\[^}]*\}")
_ENCODINGS = ("utf-8-sig", "utf-16", "cp1252", "latin-1")  # latin-1 never fails: the last resort


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float  # seconds; >= start
    text: str  # plain text: tags removed, entities decoded, lines joined by "\n"


@dataclass(frozen=True)
class Subtitles:
    cues: tuple[Cue, ...]  # sorted by start
    problems: tuple[str, ...]  # human-readable notes on cues that were skipped or repaired


# -- finding ------------------------------------------------------------------------------------------------
def sidecar_language(video: Path, subtitle: Path) -> str | None:
    """"en" for movie.en.srt next to movie.mp4; None for movie.srt."""
    middle = subtitle.name[len(video.stem):-len(subtitle.suffix)].strip(".")
    if not middle or not _LANG_RE.match(middle):
        return None
    return middle.replace("_", "-").split("-")[0].lower()


def find_sidecars(video: str | Path) -> list[Path]:
    """Subtitle files for `video` (same folder and stem, optional language suffix), best first.

    Order: no suffix before a language suffix, .srt before .vtt, then by name.
    """
    video = Path(video)
    try:
        siblings = list(video.parent.iterdir())
    except OSError:
        return []
    found = []
    for p in siblings:
        ext = p.suffix.lower()
        if ext not in SUBTITLE_EXTENSIONS or not p.is_file() or not p.name.startswith(video.stem + "."):
            continue
        middle = p.name[len(video.stem):-len(p.suffix)].strip(".")
        if middle and not _LANG_RE.match(middle):
            continue  # movie.part2.srt belongs to another video
        found.append((bool(middle), SUBTITLE_EXTENSIONS.index(ext), p.name, p))
    return [p for *_, p in sorted(found)]


def pick_sidecar(video: str | Path, language: str | None = None) -> Path | None:
    """The sidecar to use: one in `language` when asked and present, else the best one."""
    candidates = find_sidecars(video)
    if language:
        for p in candidates:
            if sidecar_language(Path(video), p) == language.lower():
                return p
    return candidates[0] if candidates else None


# -- parsing ------------------------------------------------------------------------------------------------
def decode_text(data: bytes) -> str:
    """Bytes of a subtitle file -> text, trying UTF-8 (with or without BOM), UTF-16 with a BOM, cp1252."""
    for enc in _ENCODINGS:
        if enc == "utf-16" and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            continue
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")


def parse_timestamp(text: str) -> float | None:
    """Seconds for "01:02:03,456", "02:03.456", "1:02:03.4", "3.5"; None when unreadable."""
    m = _TIME_RE.match(text)
    if not m:
        return None
    a, b, s, frac = m.groups()
    if b is None and a is not None:  # "MM:SS"
        h, mnt = 0, int(a)
    else:
        h, mnt = int(a or 0), int(b or 0)
    sec = int(s)
    if mnt >= 60 or sec >= 60:
        return None
    return h * 3600 + mnt * 60 + sec + (int(frac) / 10 ** len(frac) if frac else 0.0)


def clean_cue_text(lines: Sequence[str]) -> str:
    out = []
    for line in lines:
        line = html.unescape(_TAG_RE.sub("", line)).replace("\u00a0", " ")
        line = " ".join(line.split())
        if line:
            out.append(line)
    return "\n".join(out)


def parse_subtitles(text: str) -> Subtitles:
    """Cues of an SRT or WebVTT document (both handled by one tolerant line scanner)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    cues: list[Cue] = []
    problems: list[str] = []
    current: tuple[float, float] | None = None
    body: list[str] = []
    in_body = False

    def finish() -> None:
        if current is not None:
            cue_text = clean_cue_text(body)
            if cue_text:
                cues.append(Cue(current[0], current[1], cue_text))

    for lineno, line in enumerate(text.split("\n"), start=1):
        if "-->" in line:
            if in_body and body and body[-1].strip().isdigit():
                body.pop()  # the next cue's SRT number, with no blank line before it
            finish()
            current, body, in_body = None, [], False
            left, _, right = line.partition("-->")
            right_parts = right.split()
            start = parse_timestamp(left)
            end = parse_timestamp(right_parts[0]) if right_parts else None  # VTT cue settings follow
            if start is None or end is None:
                problems.append(f"line {lineno}: unreadable timing {line.strip()[:80]!r}; cue skipped")
                continue
            if end < start:
                problems.append(f"line {lineno}: cue ends before it starts ({line.strip()[:80]!r}); cue skipped")
                continue
            current, in_body = (start, end), True
        elif in_body:
            if line.strip():
                body.append(line)
            else:
                in_body = False  # text after the blank line is an id, NOTE, STYLE, ...: not this cue
    finish()
    cues.sort(key=lambda c: (c.start, c.end))
    return Subtitles(tuple(cues), tuple(problems))


def read_subtitles(path: str | Path) -> Subtitles:
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_SIDECAR_BYTES:
        return Subtitles((), (f"{path}: {size} bytes is too large for a subtitle file; ignored",))
    subs = parse_subtitles(decode_text(path.read_bytes()))
    for p in subs.problems:
        log.warning("%s: %s", path, p)
    return subs


# -- cues -> words ---------------------------------------------------------------------------------------------
def _drop_rolling_repeats(cues: Sequence[Cue]) -> list[tuple[Cue, list[str]]]:
    """Each cue with the lines that are new in it.

    Rolling captions (YouTube-style VTT) repeat the previous cue's last line(s) as the
    first line(s) of the next, touching cue; identical touching cues repeat everything.
    """
    out: list[tuple[Cue, list[str]]] = []
    prev: Cue | None = None
    for cue in cues:
        lines = cue.text.split("\n")
        k = 0
        if prev is not None and cue.start <= prev.end + ROLLING_GAP_S:
            prev_lines = prev.text.split("\n")
            k = min(len(lines), len(prev_lines))
            while k and lines[:k] != prev_lines[-k:]:
                k -= 1
        out.append((cue, lines[k:]))
        prev = cue
    return out


def cues_to_words(cues: Iterable[Cue]) -> list[Word]:
    """Words with times spread over each cue (in start order) in proportion to their length."""
    words: list[Word] = []
    for cue, lines in _drop_rolling_repeats(sorted(cues, key=lambda c: (c.start, c.end))):
        tokens = " ".join(lines).split()
        if not tokens:
            continue
        weights = [len(t) + 1 for t in tokens]
        per_char = (cue.end - cue.start) / sum(weights)
        t = cue.start
        for token, weight in zip(tokens, weights, strict=True):
            words.append(Word(t, t + weight * per_char, token, None))
            t += weight * per_char
    return words


# -- writing -------------------------------------------------------------------------------------------------
def format_timestamp(seconds: float, decimal: str = ",") -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def to_srt(sentences: Iterable[Sentence]) -> str:
    blocks = [f"{i}\n{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{s.text}\n"
              for i, s in enumerate(sentences, start=1)]
    return "\n".join(blocks)


def to_vtt(sentences: Iterable[Sentence]) -> str:
    blocks = [f"{format_timestamp(s.start, '.')} --> {format_timestamp(s.end, '.')}\n{s.text}\n" for s in sentences]
    return "WEBVTT\n\n" + "\n".join(blocks)
