"""Sidecar subtitles (.srt, .vtt, .ass, .ssa, .smi, .ttml next to a video): find, read, write.

pysubs2 does the parsing and the writing. The glue here chooses the file, takes a language from
its name, decodes its bytes (pysubs2 wants text in one known encoding), and turns pysubs2 events
into plain-text cues. Reading never raises on content: a cue that cannot be used is skipped and
reported in `problems`, a file pysubs2 cannot read at all gives no cues and one problem.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pysubs2

from indexer.sentences import Sentence, Word

log = logging.getLogger(__name__)

# Discovered next to a video, in order of preference when several exist. pysubs2 also reads
# .sub (MicroDVD: needs a frame rate, and the name is shared with binary VobSub), .txt and .json,
# but next to a video those names are usually something else, so they are not picked up.
SUBTITLE_EXTENSIONS = (".srt", ".vtt", ".ass", ".ssa", ".smi", ".sami", ".ttml")
WRITE_FORMATS = ("srt", "vtt", "ass")  # what `vbsearch transcript --format` writes through pysubs2
MAX_SIDECAR_BYTES = 50_000_000  # a larger "subtitle" file is not one; refuse to read it
ROLLING_GAP_S = 0.05  # seconds; cues closer than this can repeat the previous cue's lines
# A language suffix between the video stem and the extension: en, eng, en-US, pt_BR, zh-Hans.
_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?$")
# WebVTT karaoke timestamps (`<00:00:03.500>`): pysubs2 keeps them in the text, and a line with
# two of them would pass its timing-line test, so they go before it sees the text.
_VTT_TIME_TAG_RE = re.compile(r"<[\d:.]+>")
_ENCODINGS = ("utf-8-sig", "utf-16", "cp1252", "latin-1")  # latin-1 never fails: the last resort
# pysubs2 formats that keep HTML entities and read on past a cue's end (see _own_lines).
_SUBRIP_LIKE = frozenset({"srt", "vtt"})


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float  # seconds; >= start
    text: str  # plain text: tags removed, entities decoded, lines joined by "\n"


@dataclass(frozen=True)
class Subtitles:
    cues: tuple[Cue, ...]  # sorted by start
    problems: tuple[str, ...]  # human-readable notes on cues that were skipped, or why none were read
    format: str | None = None  # the pysubs2 format identifier it was read as ("srt", "ass", ...)


# -- finding ------------------------------------------------------------------------------------------------
def _language_part(video: Path, subtitle: Path) -> str:
    """"en" of talk.en.srt next to talk.mp4; "" of talk.srt."""
    return subtitle.name[len(video.stem):-len(subtitle.suffix)].strip(".")


def sidecar_language(video: Path, subtitle: Path) -> str | None:
    """"en" for movie.en.srt next to movie.mp4; None for movie.srt."""
    middle = _language_part(video, subtitle)
    if not middle or not _LANG_RE.match(middle):
        return None
    return middle.replace("_", "-").split("-")[0].lower()


def find_sidecars(video: str | Path) -> list[Path]:
    """Subtitle files for `video` (same folder and stem, optional language suffix), best first.

    Order: no suffix before a language suffix, then by SUBTITLE_EXTENSIONS (.srt first), then by name.
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
        middle = _language_part(video, p)
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


# -- reading -------------------------------------------------------------------------------------------------
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


def _normalise(text: str) -> str:
    """What pysubs2 needs cleaned first: a BOM, CR line ends (it only splits on LF), NULs, VTT time tags."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return _VTT_TIME_TAG_RE.sub("", text)


def _load(text: str, format_hint: str | None) -> pysubs2.SSAFile:
    """pysubs2's reading of `text`: in the format it detects, else in the one the file name says."""
    try:
        return pysubs2.SSAFile.from_string(text)
    except pysubs2.FormatAutodetectionError:
        if format_hint is None:
            raise
        subs = pysubs2.SSAFile.from_string(text, format_=format_hint)
        if not subs.events:
            raise  # not that format either: report why detection failed
        return subs


def _own_lines(lines: list[str]) -> tuple[list[str], list[str]]:
    """(a cue's own lines, lines pysubs2 appended to it that belong to no readable cue).

    pysubs2's SubRip/WebVTT reader gives a cue every line up to the next readable timing line,
    so a later cue whose timing is broken, a VTT NOTE or a cue id would join it. A cue's text
    ends at its first blank line or at a line that is a timing line (the SRT number before it goes too).
    """
    for i, line in enumerate(lines):
        if not line.strip() or "-->" in line:
            cut = i - 1 if "-->" in line and i and lines[i - 1].strip().isdigit() else i
            return lines[:cut], lines[cut:]
    return lines, []


def _clean(lines: Iterable[str], entities: bool) -> str:
    """Lines of plain text -> the cue text: entities decoded (SRT/VTT), spaces collapsed, blank lines gone."""
    out = []
    for line in lines:
        line = " ".join((html.unescape(line) if entities else line).split())
        if line:
            out.append(line)
    return "\n".join(out)


def _clock(ms: float) -> str:
    return pysubs2.time.ms_to_str(ms, fractions=True)


def _event_to_cue(event: pysubs2.SSAEvent, fmt: str | None, problems: list[str]) -> Cue | None:
    """The cue of one pysubs2 event, or None (reported in `problems` when it is not simply empty)."""
    when = f"cue at {_clock(event.start)}"
    lines: list[str] = event.plaintext.split("\n")
    rest: list[str] = []
    if fmt in _SUBRIP_LIKE:
        lines, rest = _own_lines(lines)
    cue = None
    if not 0 <= event.start <= event.end:
        why = "ends before it starts" if event.end < event.start else "has a negative time"
        problems.append(f"{when}: {why} (end {_clock(event.end)}); cue skipped")
    elif text := _clean(lines, entities=fmt in _SUBRIP_LIKE):
        cue = Cue(event.start / 1000, event.end / 1000, text)
    problems.extend(f"{when}: the next cue's timing is unreadable ({line.strip()[:80]!r}); that cue skipped"
                    for line in rest if "-->" in line)
    return cue


def _to_subtitles(subs: pysubs2.SSAFile) -> Subtitles:
    problems: list[str] = []
    # Comments and SSA vector drawings are events too, but nothing anyone says.
    cues = [c for e in subs.events if e.is_text and (c := _event_to_cue(e, subs.format, problems))]
    cues.sort(key=lambda c: (c.start, c.end))
    return Subtitles(tuple(cues), tuple(problems), subs.format)


def parse_subtitles(text: str, format_hint: str | None = None) -> Subtitles:
    """Cues of a subtitle document in any format pysubs2 reads; `format_hint` when it cannot tell."""
    text = _normalise(text)
    if not text.strip():
        return Subtitles((), ())  # an empty file: no speech, nothing wrong
    try:
        return _to_subtitles(_load(text, format_hint))
    except pysubs2.FormatAutodetectionError as exc:
        return Subtitles((), (f"no readable cue timing: pysubs2 cannot tell the format ({exc})"[:300],))
    except Exception as exc:  # a third-party parser on hostile input: any error means "unreadable"
        return Subtitles((), (f"unreadable as subtitles: {type(exc).__name__}: {exc}"[:300],))


def read_subtitles(path: str | Path) -> Subtitles:
    """The cues of a subtitle file; problems (too large, unreadable, skipped cues) are returned and logged."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            return Subtitles((), (f"{path}: {size} bytes is too large for a subtitle file; ignored",))
        data = path.read_bytes()
    except OSError as exc:
        return Subtitles((), (f"{path}: cannot read: {exc}",))
    hint = pysubs2.formats.FILE_EXTENSION_TO_FORMAT_IDENTIFIER.get(path.suffix.lower())
    subs = parse_subtitles(decode_text(data), hint)
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
def write_subtitles(sentences: Iterable[Sentence], fmt: str) -> str:
    """Sentences as a subtitle document in `fmt` (one of WRITE_FORMATS), written by pysubs2."""
    if fmt not in WRITE_FORMATS:
        raise ValueError(f"{fmt!r} is not a subtitle format this writes ({', '.join(WRITE_FORMATS)})")
    subs = pysubs2.SSAFile()
    for s in sentences:
        event = pysubs2.SSAEvent(start=pysubs2.make_time(s=s.start), end=pysubs2.make_time(s=s.end))
        event.plaintext = s.text  # "\n" -> "\N", so a line break stays one in every format
        subs.append(event)
    return subs.to_string(fmt)
