"""What a search returns, and the clock form the UI and CSV show its times in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Seen:
    """A query word the pictures answer: its strongest visual word in the moment, and that word's feature group."""
    word: str  # the query's word, as typed
    group: str  # readable feature group of the visual word, e.g. "colour", "motion" (model.features.group_label)
    source: str  # "lexicon" (the narration lexicon) or "model" (the encoder's word match)
    strength: float  # the lexicon's link (lift) or the word match's cosine


@dataclass(frozen=True)
class Why:
    """Why a moment matched a query, in words: what the transcript said and what the pictures showed."""
    said: tuple[str, ...] = ()  # query words the moment's transcript has (same term, model.terms)
    seen: tuple[Seen, ...] = ()  # query words the moment's visual words answer, strongest first

    def text(self) -> str:
        """One line for a result card, e.g. 'said: ball · seen: blue (colour), left (motion)'."""
        parts = []
        if self.said:
            parts.append("said: " + ", ".join(self.said))
        if self.seen:
            parts.append("seen: " + ", ".join(f"{s.word} ({s.group})" for s in self.seen))
        return " · ".join(parts) or "no query word met its transcript or its pictures (matched as a whole)"

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Why | None:
        if not data:
            return None
        return cls(tuple(data.get("said", ())), tuple(Seen(**s) for s in data.get("seen", ())))


@dataclass(frozen=True)
class Hit:
    video: str  # absolute path of the video file
    start: float  # s
    end: float  # s
    score: float  # final ranking score (higher is better)
    text: str  # transcript of the moment ("" where nobody speaks)
    video_id: str  # content id of the video
    segment_id: str  # the store's point id: use it for "more like this"
    thumbnail: str | None = None  # absolute path of a JPEG, when one exists
    fps: float | None = None  # the video's frame rate, for frame-accurate timecodes
    scores: dict[str, float] = field(default_factory=dict)  # component scores: video, text, align, ...
    timecode: str | None = None  # the file's own start timecode (e.g. "10:00:00;00"); None: none stored
    why: Why | None = None  # why it matched, in words (text searches; None for more-like-this)

    def to_json(self) -> dict[str, Any]:
        """The CLI's --json form: the contract keys video/start/end/score/text first, then the rest."""
        return asdict(self)


def clock(seconds: float) -> str:
    """HH:MM:SS.s, the UI's display form."""
    tenths = int(round(max(0.0, seconds) * 10))
    return f"{tenths // 36000:02d}:{tenths // 600 % 60:02d}:{tenths // 10 % 60:02d}.{tenths % 10}"
