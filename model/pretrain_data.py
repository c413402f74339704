"""Pretraining examples from plain tables: sentences, clips and each clip's visual tokens.

A *window* is a time span of one video with the visual tokens of the clips inside it:
  - a sentence window: an ASR sentence and the clips whose midpoint falls in its span (the
    nearest clip if none does);
  - a silent window: a run of clips no sentence covers, cut into chunks (video-only examples).
Positives pair a sentence with its own window; random negatives pair it with the tokens of a
window elsewhere (another video or a non-overlapping span). Hard negatives are mined from the
contrastive similarity at training time (`model.pretrain`), which needs `overlap_matrix` to
avoid calling a neighbouring view of the same moment a negative.
Augmentations (the paper's): a sentence is sometimes joined with its following neighbours,
and visual tokens are subsampled at a random rate 1..5 (every r-th clip from a random offset).
Every draw uses the numpy Generator it is given, so a step's data is a function of its seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

NEIGHBOUR_POOL = 256  # windows scanned for each positive's visual neighbours


class PretrainDataError(ValueError):
    """The tables cannot make pretraining examples."""


@dataclass(frozen=True)
class DataOptions:
    join_prob: float = 0.25  # chance a sentence is joined with 1..max_join following sentences
    max_join: int = 2  # neighbours joined at most
    max_subsample_rate: int = 5  # visual tokens keep every r-th clip, r uniform in 1..this
    silent_window_clips: int = 5  # clips per video-only window (7.5 s of 1.5 s clips)
    min_silent_clips: int = 2  # shorter silent runs are dropped
    held_out_fraction: float = 0.1  # of sentence (and silent) windows, kept out of training
    split_seed: int = 0  # decides the held-out split


@dataclass(frozen=True)
class Window:
    video_id: str
    start: float  # seconds
    end: float  # seconds
    text: str | None  # None for a silent window
    clips: np.ndarray  # (n,) int64 row numbers into the token array, in time order
    next_index: int  # index of the following sentence window of the same video and split, -1 if none


@dataclass
class PairExample:
    text: str
    video: np.ndarray  # (n_clips, tokens_per_clip) int64
    video_id: str
    start: float
    end: float


@dataclass
class StepExamples:
    positives: list[PairExample]  # sentence + its own window's tokens
    random_negative_videos: list[np.ndarray]  # one per positive: tokens of a non-overlapping window
    random_negative_spans: list[tuple[str, float, float]]  # where each random negative came from
    silent_videos: list[np.ndarray]  # video-only examples (MVM only)
    contrastive: list[PairExample] = field(default_factory=list)  # more pairs for the contrastive loss only


def _column(table, name: str) -> list:
    """A column of a polars DataFrame, a dict of lists, or a list of row dicts."""
    if isinstance(table, list):
        return [row[name] for row in table]
    try:
        col = table[name]
    except Exception as exc:
        raise PretrainDataError(f"table has no column {name!r}") from exc
    return col.to_list() if hasattr(col, "to_list") else list(col)


class PretrainData:
    def __init__(self, sentences, clips, tokens: np.ndarray, options: DataOptions = DataOptions()):
        """`sentences`: video_id, start, end, text; `clips`: video_id, start, end (row i <-> tokens[i]);
        `tokens`: (n_clips, tokens_per_clip) int visual words."""
        self.options = options
        tokens = np.asarray(tokens)
        if tokens.ndim == 1:
            tokens = tokens[:, None]
        c_vid = [str(v) for v in _column(clips, "video_id")]
        if tokens.ndim != 2 or tokens.shape[0] != len(c_vid):
            raise PretrainDataError(f"tokens {tokens.shape} do not match {len(c_vid)} clips")
        self.tokens = tokens.astype(np.int64)
        c_start = np.asarray(_column(clips, "start"), dtype=np.float64)
        c_end = np.asarray(_column(clips, "end"), dtype=np.float64)
        c_mid = (c_start + c_end) / 2

        s_vid = [str(v) for v in _column(sentences, "video_id")] if len(sentences) else []
        s_start = np.asarray(_column(sentences, "start"), dtype=np.float64) if s_vid else np.zeros(0)
        s_end = np.asarray(_column(sentences, "end"), dtype=np.float64) if s_vid else np.zeros(0)
        s_text = [str(t) for t in _column(sentences, "text")] if s_vid else []

        by_video: dict[str, np.ndarray] = {}
        for vid in sorted(set(c_vid)):
            rows = np.flatnonzero(np.asarray(c_vid) == vid)
            by_video[vid] = rows[np.argsort(c_start[rows], kind="stable")]

        rng = np.random.default_rng(options.split_seed)
        sentence_windows: list[Window] = []
        covered = np.zeros(len(c_vid), dtype=bool)
        order = sorted(range(len(s_vid)), key=lambda i: (s_vid[i], s_start[i]))
        for i in order:
            rows = by_video.get(s_vid[i])
            if rows is None or not s_text[i].strip():
                continue
            inside = rows[(c_mid[rows] >= s_start[i]) & (c_mid[rows] < s_end[i])]
            if len(inside) == 0:
                centre = (s_start[i] + s_end[i]) / 2
                inside = rows[[int(np.argmin(np.abs(c_mid[rows] - centre)))]]
            covered[inside] = True
            sentence_windows.append(Window(s_vid[i], float(s_start[i]), float(s_end[i]), s_text[i].strip(),
                                           inside, -1))
        if not sentence_windows:
            raise PretrainDataError("no sentence overlaps any clip: nothing to pretrain on")

        silent: list[Window] = []
        for vid, rows in by_video.items():
            run: list[int] = []
            for r in [*rows.tolist(), -1]:
                if r >= 0 and not covered[r]:
                    run.append(r)
                    if len(run) < options.silent_window_clips:
                        continue
                if len(run) >= options.min_silent_clips:
                    chunk = np.asarray(run, dtype=np.int64)
                    silent.append(Window(vid, float(c_start[chunk[0]]), float(c_end[chunk[-1]]), None, chunk, -1))
                run = []

        held = self._held_out_mask(len(sentence_windows), rng)
        self.train = self._link([w for w, h in zip(sentence_windows, held, strict=True) if not h])
        self.held_out = self._link([w for w, h in zip(sentence_windows, held, strict=True) if h])
        held_silent = self._held_out_mask(len(silent), rng)
        self.silent_train = [w for w, h in zip(silent, held_silent, strict=True) if not h]
        self.silent_held_out = [w for w, h in zip(silent, held_silent, strict=True) if h]
        self.tokens_per_clip = self.tokens.shape[1]
        self._words = [np.unique(self.tokens[w.clips]) for w in self.train]  # each window's visual words
        log.info("pretraining windows: %d train, %d held-out sentences; %d/%d silent",
                 len(self.train), len(self.held_out), len(self.silent_train), len(self.silent_held_out))

    def _held_out_mask(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = int(n * self.options.held_out_fraction)
        mask = np.zeros(n, dtype=bool)
        if k and n - k >= 2:
            mask[rng.permutation(n)[:k]] = True
        return mask

    @staticmethod
    def _link(windows: list[Window]) -> list[Window]:
        """Point each sentence window at the next one of the same video (windows come sorted by video, start)."""
        out = []
        for i, w in enumerate(windows):
            nxt = i + 1 if i + 1 < len(windows) and windows[i + 1].video_id == w.video_id else -1
            out.append(Window(w.video_id, w.start, w.end, w.text, w.clips, nxt))
        return out

    def windows(self, split: str) -> list[Window]:
        if split not in ("train", "held_out"):
            raise ValueError(f"split must be train or held_out, not {split!r}")
        return self.train if split == "train" else self.held_out

    # -- sampling ----------------------------------------------------------------------------------
    def _subsample(self, clips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rate = int(rng.integers(1, self.options.max_subsample_rate + 1))
        rate = min(rate, len(clips))
        return clips[int(rng.integers(0, rate))::rate]

    def positive(self, windows: list[Window], i: int, rng: np.random.Generator | None) -> PairExample:
        """Window i as a positive pair; with `rng` the augmentations apply, without it none do."""
        w = windows[i]
        texts, clips, end = [w.text], [w.clips], w.end
        if rng is not None and rng.random() < self.options.join_prob:
            j = w.next_index
            for _ in range(int(rng.integers(1, self.options.max_join + 1))):
                if j < 0:
                    break
                texts.append(windows[j].text)
                clips.append(windows[j].clips)
                end = windows[j].end
                j = windows[j].next_index
        rows = np.unique(np.concatenate(clips))  # unique keeps time order: rows are sorted per video
        if rng is not None:
            rows = self._subsample(rows, rng)
        return PairExample(" ".join(t for t in texts if t), self.tokens[rows], w.video_id, w.start, end)

    def random_negative(self, windows: list[Window], pos: PairExample, rng: np.random.Generator,
                        subsample: bool = True) -> tuple[np.ndarray, tuple[str, float, float]]:
        """Tokens of a window from `windows` (+ silent ones) that does not overlap the positive's span."""
        pool = windows + (self.silent_train if windows is self.train else self.silent_held_out)
        for _ in range(64):
            w = pool[int(rng.integers(0, len(pool)))]
            if not spans_overlap(w.video_id, w.start, w.end, pos.video_id, pos.start, pos.end):
                rows = self._subsample(w.clips, rng) if subsample else w.clips
                return self.tokens[rows], (w.video_id, w.start, w.end)
        raise PretrainDataError("every window overlaps the positive: need at least two distinct moments")

    def visual_neighbours(self, i: int, k: int, rng: np.random.Generator, taken: set[int],
                          pool: int = NEIGHBOUR_POOL) -> list[int]:
        """Up to k training windows that share the most visual words with window i (cosine of their
        word sets), from a random pool of `pool`, none in `taken` and none overlapping window i."""
        w = self.train[i]
        cand = rng.choice(len(self.train), size=min(pool, len(self.train)), replace=False)
        scored = []
        for j in cand.tolist():
            o = self.train[j]
            if j in taken or spans_overlap(o.video_id, o.start, o.end, w.video_id, w.start, w.end):
                continue
            shared = len(np.intersect1d(self._words[i], self._words[j], assume_unique=True))
            scored.append((-shared / np.sqrt(len(self._words[i]) * len(self._words[j])), j))
        return [j for _, j in sorted(scored)[:k]]

    def sample_step(self, rng: np.random.Generator, batch_size: int, n_silent: int,
                    n_contrastive: int = 0, neighbours: int = 0) -> StepExamples:
        """One training step's examples: `batch_size` augmented positives (distinct windows when
        possible), one random negative each, up to `n_silent` video-only windows, and positives up to
        `n_contrastive` in all for the contrastive loss: first up to `neighbours` visual neighbours of
        each positive (`visual_neighbours`), then random windows."""
        n = len(self.train)
        total = max(batch_size, n_contrastive)
        idx = rng.choice(n, size=batch_size, replace=batch_size > n).tolist()
        if neighbours > 0 and total > batch_size:
            taken = set(idx)
            for i in idx[:]:
                near = self.visual_neighbours(i, min(neighbours, total - len(idx)), rng, taken)
                idx += near
                taken.update(near)
        if total > len(idx):
            idx += rng.choice(n, size=total - len(idx), replace=total > n).tolist()
        pairs = [self.positive(self.train, int(i), rng) for i in idx]
        positives, contrastive = pairs[:batch_size], pairs[batch_size:]
        negs = [self.random_negative(self.train, p, rng) for p in positives]
        silent = []
        if self.silent_train and n_silent > 0:
            pick = rng.choice(len(self.silent_train), size=n_silent, replace=n_silent > len(self.silent_train))
            silent = [self.tokens[self._subsample(self.silent_train[int(k)].clips, rng)] for k in pick]
        return StepExamples(positives, [v for v, _ in negs], [s for _, s in negs], silent, contrastive)


def spans_overlap(vid_a: str, start_a: float, end_a: float, vid_b: str, start_b: float, end_b: float) -> bool:
    return vid_a == vid_b and start_a < end_b and start_b < end_a


def overlap_matrix(examples: Sequence[PairExample]) -> np.ndarray:
    """(B, B) bool: example i's span overlaps example j's (diagonal True) -- never each other's negative."""
    vid = np.asarray([e.video_id for e in examples])
    start = np.asarray([e.start for e in examples])
    end = np.asarray([e.end for e in examples])
    same = vid[:, None] == vid[None, :]
    return same & (start[:, None] < end[None, :]) & (start[None, :] < end[:, None])
