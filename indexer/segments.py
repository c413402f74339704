"""Segments, the unit of retrieval: speech windows and fixed windows where nobody speaks.

Rules (times in seconds, clips are the catalog's 1.5 s clips):
- Speech: consecutive sentences are joined while the gap between them is under
  JOIN_GAP and the joined window stays within MAX_SPEECH. A window then runs on
  over the pause after it, until the next one starts but at most TRAIL seconds
  (`extend_over_pauses`): narration is short and the moment it talks about
  goes on after the words (pretraining pairs each sentence with the same span).
  A window still shorter than MIN_SPEECH is widened around its centre (within
  the video) so it holds at least a couple of clips.
- Silence: clips that no speech window overlaps form runs; each run is cut into
  windows of WINDOW_CLIPS clips with a stride of WINDOW_STRIDE clips (a run
  shorter than a window becomes one window; the last window ends at the run's end).
Each segment lists the clips it overlaps, so its visual tokens come from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JOIN_GAP = 1.0  # s: sentences closer than this belong to one window
MAX_SPEECH = 15.0  # s: a joined speech window stays this short
MIN_SPEECH = 3.0  # s: shorter speech windows are widened to this
TRAIL = 6.0  # s: a speech window extends over a following pause by at most this
WINDOW_CLIPS = 8  # clips per silence window (12 s)
WINDOW_STRIDE = 4  # clips between silence window starts (6 s)


@dataclass(frozen=True)
class Segment:
    start: float  # s
    end: float  # s
    text: str  # transcript of the window ("" where nobody speaks)
    clip_indices: tuple[int, ...]  # catalog clip_index values the window overlaps
    kind: str  # "speech" | "silence"


def extend_over_pauses(starts: np.ndarray, ends: np.ndarray, duration: float, trail: float = TRAIL) -> np.ndarray:
    """New ends for spans sorted by start: each runs on until the next span starts, at most `trail`
    seconds past its own end and never past `duration`; a span never shrinks."""
    starts, ends = np.asarray(starts, np.float64), np.asarray(ends, np.float64)
    nxt = np.append(starts[1:], np.inf)
    return np.maximum(ends, np.minimum.reduce([np.maximum(nxt, ends), ends + trail, np.full_like(ends, duration)]))


def _speech_windows(sentences: list[tuple[float, float, str]], duration: float) -> list[tuple[float, float, str]]:
    windows: list[list] = []
    for start, end, text in sorted(sentences):
        if windows and start - windows[-1][1] < JOIN_GAP and end - windows[-1][0] <= MAX_SPEECH:
            windows[-1][1] = max(windows[-1][1], end)
            windows[-1][2] += " " + text.strip()
        else:
            windows.append([start, end, text.strip()])
    if windows:
        ends = extend_over_pauses(np.array([w[0] for w in windows]), np.array([w[1] for w in windows]), duration)
        for w, e in zip(windows, ends, strict=True):
            w[1] = float(e)
    out = []
    for start, end, text in windows:
        if start >= duration:  # speech after the last clip (e.g. a dropped short tail): nothing to show
            continue
        if end - start < MIN_SPEECH:
            centre = (start + end) / 2
            start = max(0.0, min(centre - MIN_SPEECH / 2, duration - MIN_SPEECH))
            end = min(duration, start + MIN_SPEECH) if duration > 0 else start + MIN_SPEECH
        out.append((start, end, text))
    return out


def make_segments(clip_starts: np.ndarray, clip_ends: np.ndarray, clip_indices: np.ndarray,
                  sentences: list[tuple[float, float, str]]) -> list[Segment]:
    """Segments for one video, ordered by start time."""
    if len(clip_indices) == 0:
        return []
    order = np.argsort(clip_starts)
    starts, ends, idx = clip_starts[order], clip_ends[order], clip_indices[order]
    duration = float(ends[-1])
    segments: list[Segment] = []
    covered = np.zeros(len(idx), dtype=bool)
    for s, e, text in _speech_windows(sentences, duration):
        overlap = (starts < e) & (ends > s)
        covered |= overlap
        segments.append(Segment(float(s), float(e), text, tuple(int(i) for i in idx[overlap]), "speech"))
    # Runs of uncovered clips -> fixed windows.
    run_start = None
    for i in range(len(idx) + 1):
        free = i < len(idx) and not covered[i]
        if free and run_start is None:
            run_start = i
        elif not free and run_start is not None:
            segments.extend(_silence_windows(starts, ends, idx, run_start, i))
            run_start = None
    return sorted(segments, key=lambda seg: (seg.start, seg.end))


def _silence_windows(starts, ends, idx, lo: int, hi: int) -> list[Segment]:
    firsts = list(range(lo, max(lo + 1, hi - WINDOW_CLIPS + 1), WINDOW_STRIDE))
    if firsts[-1] + WINDOW_CLIPS < hi:  # make the last window reach the run's end
        firsts.append(hi - WINDOW_CLIPS)
    out = []
    for a in firsts:
        b = min(a + WINDOW_CLIPS, hi)
        out.append(Segment(float(starts[a]), float(ends[b - 1]), "", tuple(int(i) for i in idx[a:b]), "silence"))
    return out
