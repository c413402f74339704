"""Time windows of catalogued videos as model inputs: their visual tokens and their transcript.

A window's clips are those whose midpoint lies in [start, end) (the rule of `vbsearch classify`);
its transcript is the text of the sentences that overlap it, in time order. Each video's clips are
read and tokenized once, however many windows it has.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.catalog import Catalog


class WindowError(ValueError):
    """A window names no catalogued video, or holds no clip."""


@dataclass(frozen=True)
class Window:
    video_id: str
    start: float  # s
    end: float  # s
    tokens: np.ndarray  # (n_clips, tokens_per_clip) int64 visual words
    text: str  # transcript of the window ("" where nobody speaks)


def clips_in_window(clip_starts: np.ndarray, clip_ends: np.ndarray, start: float, end: float) -> np.ndarray:
    """Row numbers of the clips whose midpoint lies in [start, end)."""
    mid = (np.asarray(clip_starts) + np.asarray(clip_ends)) / 2
    return np.flatnonzero((mid >= start) & (mid < end))


class WindowReader:
    def __init__(self, catalog: Catalog, vocab):
        self.catalog = catalog
        self.vocab = vocab
        self._videos: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[float, float, str]]]] = {}

    def _video(self, video_id: str):
        if video_id not in self._videos:
            from indexer.embed import video_tokens

            clips = self.catalog.read_video(video_id, "clips")
            if clips.is_empty():
                raise WindowError(f"{video_id}: not a catalogued video with clips")
            clips = clips.sort("start")
            sentences = self.catalog.read_video(video_id, "sentences")
            spoken = sorted((float(s), float(e), str(t)) for s, e, t in
                            zip(sentences["start"], sentences["end"], sentences["text"], strict=True)
                            ) if sentences.height else []
            self._videos[video_id] = (clips["start"].to_numpy(), clips["end"].to_numpy(),
                                      video_tokens(self.vocab, clips), spoken)
        return self._videos[video_id]

    def window(self, video_id: str, start: float, end: float, nearest: bool = False) -> Window:
        """The window's clips and transcript; with `nearest`, a window holding no clip's midpoint (a short
        sentence) gets the clip nearest its centre, as sentence windows do in pretraining."""
        starts, ends, tokens, spoken = self._video(video_id)
        rows = clips_in_window(starts, ends, start, end)
        if len(rows) == 0 and nearest:
            rows = np.asarray([int(np.argmin(np.abs((starts + ends) / 2 - (start + end) / 2)))])
        if len(rows) == 0:
            raise WindowError(f"no clip of {video_id} lies in [{start}, {end}) s")
        text = " ".join(t.strip() for s, e, t in spoken if s < end and e > start and t.strip())
        return Window(video_id, float(start), float(end), tokens[rows], text)

    def duration(self, video_id: str) -> float:
        return float(self._video(video_id)[1].max())
