"""The narration lexicon: which visual words each spoken word stands for, learned from the archive's narration.

A translation table in the manner of IBM Model 1 (Brown et al. 1993), as Duygulu et al. (2002) used it
to name image regions: every visual word on screen during a narrated window is taken to be "generated"
by one of the words said in it (or by a NULL word, for what nobody mentions), and EM estimates

    t(v | w)   the chance that word w, when said, accounts for visual word v

(M-step smoothed towards the visual words' overall shares p(v) with weight `alpha`). A word's link to a
visual word is its lift, max(0, log t(v | w) / p(v)). Search scores a candidate by the mean over the
query's known words of each word's strongest link among the candidate's visual words. "Word" here is a
term (model.terms): the narrator's "upwards" and the query's "up" are one, and so are "moves" and "moving".

Why EM and not raw co-occurrence counts: counts tie "square" to the colour visual words of the squares that
happened to be narrated; EM lets "red" explain the red visual words, so they stop counting for
"square" (explaining away). Why beside the trained word match: it needs no gradient steps, so on a small
archive a colour word already points at its colour's visual words after a few narrated sentences, and
a scene that only chatter accompanies is still scored attribute by attribute. Why every word, even one
heard once: on a small archive that is how often a colour or a direction is named at all. In the full
system on five 20-minute sample archives it raised visual-only R@10 on four and MRR on all five (README,
"Measured here").

Artefacts, beside the VideoBERT checkpoint (`vbsearch train` writes DATA_DIR/model/lexicon.*):
    lexicon.safetensors  the positive links (CSR: indptr, indices, values), and each word's window count
    lexicon.json         terms and their rule (model.terms.TERMS), options, the base model's id,
                         sha256 of the weights (last)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model.terms import TERMS, term, terms_of, words_of

FORMAT = "vbsearch-lexicon"
WEIGHTS_FILE = "lexicon.safetensors"
CONFIG_FILE = "lexicon.json"
_PAIR_CHUNK = 4_000_000  # (word, visual word) pairs handled at once: bounds memory on big archives
# When a word's link explains a match ("seen: red (colour)", Lexicon.evidence): the word was heard in at least
# EVIDENCE_MIN_WINDOWS windows (fewer, and it is tied to whatever happened to be on screen: chatter's "please" to a
# colour), the candidate holds one of its strongest visual words (a link of at least EVIDENCE_MIN_SHARE of its
# strongest: a scale-free cut, as lifts grow with the vocabulary), and that visual word is at least three times as
# likely on screen while the word is said as overall (lift log 3). Measured on the top-10 hits of two sample archives
# (1.5 min / 80 steps, 3 min / 53 steps; the generator's truth; plus queries of chatter words, which name nothing):
# precision 0.91 / 0.96 at recall 0.59 / 0.83; lift >= log 2 alone: 0.42 / 0.46 at 0.96 / 0.94; log 2 with the
# other two: 0.91 / 0.81; 1 window instead of 3: 0.66 / 0.64 at 0.95 / 0.94.
EVIDENCE_MIN_LINK = math.log(3)
EVIDENCE_MIN_SHARE = 0.75
EVIDENCE_MIN_WINDOWS = 3


@dataclass(frozen=True)
class LexiconOptions:
    alpha: float = 1.0  # pseudo-count pulling a word's t(v | w) towards p(v)
    iterations: int = 10  # EM iterations
    min_count: int = 1  # windows a word needs before it is trusted (fewer: ignored in queries)
    max_links: int = 256  # strongest visual words kept per word (a real vocabulary has 20,736)


@dataclass(frozen=True)
class WordLinks:
    """The query's known words and, per candidate, each one's strongest link among its visual words."""
    words: tuple[str, ...]  # the query's words the lexicon knows (lower-cased, the first form of each term)
    strongest: np.ndarray  # (n_words,) float32 each word's strongest link to any visual word
    windows: np.ndarray  # (n_words,) int64 narrated windows each word was heard in
    links: np.ndarray  # (N, n_words) float32 the strongest link (0: none)
    visual: np.ndarray  # (N, n_words) int64 the visual word holding it (-1: the candidate has none)


@dataclass
class Lexicon:
    words: list[str]  # terms (model.terms)
    n_visual: int
    indptr: np.ndarray  # (n_words + 1,) int64: row w is indices[indptr[w]:indptr[w + 1]]
    indices: np.ndarray  # (nnz,) int64 visual word ids
    values: np.ndarray  # (nnz,) float32 links (lift > 0)
    counts: np.ndarray  # (n_words,) int64 windows each word occurs in
    options: LexiconOptions

    def __post_init__(self) -> None:
        self._index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def fit(cls, texts: Sequence[str], visual_words: Sequence[np.ndarray], n_visual: int,
            options: LexiconOptions = LexiconOptions()) -> Lexicon:
        """From parallel lists: each window's text and its visual word ids (any shape, repeats allowed)."""
        if len(texts) != len(visual_words):
            raise ValueError(f"{len(texts)} texts but {len(visual_words)} visual windows")
        vocab: dict[str, int] = {}  # word -> id, in the order first heard (so list(vocab) is the id order)
        window_words = [np.array(sorted({vocab.setdefault(w, len(vocab)) for w in terms_of(t)}), np.int64)
                        for t in texts]
        null = len(vocab)  # the NULL word, said in every window: it takes what no word accounts for
        window_words = [np.append(ws, null) for ws in window_words]
        window_visual = [np.unique(np.asarray(v, np.int64).ravel()) for v in visual_words]
        n_w = np.zeros(null + 1, np.int64)
        n_v = np.zeros(n_visual, np.int64)
        for ws, vs in zip(window_words, window_visual, strict=True):
            n_w[ws] += 1
            n_v[vs] += 1
        prior = n_v / max(int(n_v.sum()), 1)  # p(v): each visual word's share of the windows' visual words
        codes = _pair_codes(window_words, window_visual, n_visual)
        w_of, v_of = codes // n_visual, codes % n_visual
        t = np.full(len(codes), 1.0 / n_visual)  # t(v | w) on the pairs that ever co-occur; uniform start
        for _ in range(options.iterations):
            c = _expected_counts(t, codes, window_words, window_visual, n_visual)
            t = (c + options.alpha * prior[v_of]) / (np.bincount(w_of, c, minlength=null + 1)[w_of] + options.alpha)
        with np.errstate(divide="ignore"):
            lift = np.log(t / prior[v_of])
        keep = (lift > 0) & (w_of != null)
        w_of, v_of, lift = w_of[keep], v_of[keep], lift[keep].astype(np.float32)
        # rows in word order, strongest first, at most max_links each
        order = np.lexsort((-lift, w_of))
        w_of, v_of, lift = w_of[order], v_of[order], lift[order]
        starts = np.searchsorted(w_of, np.arange(null + 1))
        rank = np.arange(len(w_of)) - starts[w_of]
        top = rank < options.max_links
        w_of, v_of, lift = w_of[top], v_of[top], lift[top]
        indptr = np.searchsorted(w_of, np.arange(null + 1)).astype(np.int64)
        return cls(list(vocab), n_visual, indptr, v_of.astype(np.int64), lift, n_w[:null], options)

    def row(self, word: str) -> np.ndarray | None:
        """(n_visual,) links of `word` (any form of it) to every visual word; None for a word seen fewer than
        min_count times."""
        return self._row(term(word.lower()))

    def heard(self, word: str) -> int:
        """Narrated windows `word` (any form of it) was heard in; 0 for a word never heard."""
        i = self._index.get(term(word.lower()))
        return 0 if i is None else int(self.counts[i])

    def _row(self, word_term: str) -> np.ndarray | None:
        i = self._index.get(word_term)
        if i is None or self.counts[i] < self.options.min_count:
            return None
        out = np.zeros(self.n_visual, np.float32)
        lo, hi = self.indptr[i], self.indptr[i + 1]
        out[self.indices[lo:hi]] = self.values[lo:hi]
        return out

    def query_vector(self, query: str) -> dict[int, float]:
        """{visual word: mean over the query's known words of their link to it}: the query as visual words,
        for the store's "visual" channel (its dot product with a segment's visual words, each weighted by the
        share of clips showing it, averages each word's links within each feature group)."""
        rows = [i for i in (self._index.get(t) for t in dict.fromkeys(terms_of(query)))
                if i is not None and self.counts[i] >= self.options.min_count]
        out: dict[int, float] = {}
        for i in rows:
            lo, hi = self.indptr[i], self.indptr[i + 1]
            for v, link in zip(self.indices[lo:hi].tolist(), self.values[lo:hi].tolist(), strict=True):
                out[v] = out.get(v, 0.0) + link / len(rows)
        return out

    def best_links(self, query: str, videos: Sequence[np.ndarray]) -> WordLinks:
        """Each known query word's strongest link among each candidate's visual word ids, and which visual
        word holds it: what `scores` averages and `evidence` names."""
        known: dict[str, tuple[str, np.ndarray]] = {}  # term -> (its first form in the query, row)
        for w in words_of(query):
            t = term(w)
            if t not in known and (row := self._row(t)) is not None:
                known[t] = (w, row)
        n = len(videos)
        if not known:
            return WordLinks((), np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros((n, 0), np.float32),
                             np.zeros((n, 0), np.int64))
        table = np.stack([row for _, row in known.values()])  # (n_query_words, n_visual)
        links = np.zeros((n, len(known)), np.float32)
        visual = np.full((n, len(known)), -1, np.int64)
        for i, v in enumerate(videos):
            ids = np.unique(np.asarray(v, np.int64).ravel())
            if ids.size:
                sub = table[:, ids]
                best = sub.argmax(1)
                links[i], visual[i] = sub[np.arange(len(known)), best], ids[best]
        windows = self.counts[[self._index[t] for t in known]]
        return WordLinks(tuple(form for form, _ in known.values()), table.max(1), windows, links, visual)

    def scores(self, query: str, videos: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) for each candidate's visual word ids: the mean over the query's known words of the word's
        strongest link among them (0 when no query word is known)."""
        found = self.best_links(query, videos)
        if not found.words:
            return np.zeros(len(videos), np.float32)
        return found.links.mean(1).astype(np.float32)

    def evidence(self, query: str, videos: Sequence[np.ndarray], min_link: float = EVIDENCE_MIN_LINK,
                 min_share: float = EVIDENCE_MIN_SHARE, min_windows: int = EVIDENCE_MIN_WINDOWS
                 ) -> list[list[tuple[str, int, float]]]:
        """Per candidate, (query word, lower-cased; visual word id; link) for each query word heard in at least
        `min_windows` windows whose strongest link there reaches `min_link` and `min_share` of the word's
        strongest link anywhere; strongest first."""
        found = self.best_links(query, videos)
        floor = np.where(found.windows >= min_windows, np.maximum(min_link, min_share * found.strongest), np.inf)
        out = []
        for links, visual in zip(found.links, found.visual, strict=True):
            met = [(w, int(v), float(x)) for w, v, x, least in zip(found.words, visual, links, floor, strict=True)
                   if x >= least and v >= 0]
            out.append(sorted(met, key=lambda e: -e[2]))
        return out

    # -- artefacts ------------------------------------------------------------------------------------
    def save(self, folder: str | Path, base_model_id: str) -> str:
        import torch

        from model.checkpoint import save_addon

        tensors = {"indptr": torch.from_numpy(self.indptr), "indices": torch.from_numpy(self.indices),
                   "values": torch.from_numpy(self.values), "counts": torch.from_numpy(self.counts)}
        return save_addon(folder, WEIGHTS_FILE, CONFIG_FILE, tensors, {
            "format": FORMAT, "terms": TERMS, "words": self.words, "n_visual": self.n_visual,
            "base_model_id": base_model_id, "options": asdict(self.options)})

    @classmethod
    def load(cls, folder: str | Path, base_model_id: str) -> Lexicon:
        from model.checkpoint import CheckpointError, load_addon

        data, t = load_addon(folder, WEIGHTS_FILE, CONFIG_FILE, FORMAT, base_model_id, "vbsearch train")
        if data.get("terms") != TERMS:  # its words would not meet the query's terms
            raise CheckpointError(f"{folder}: the lexicon's words follow the rule {data.get('terms', 'as written')!r}, "
                                  f"queries now {TERMS!r}: run `vbsearch train` again (on a trained model it only "
                                  "refits the lexicon)")
        return cls(list(data["words"]), int(data["n_visual"]), t["indptr"].numpy(), t["indices"].numpy(),
                   t["values"].numpy(), t["counts"].numpy(), LexiconOptions(**data["options"]))


def _window_pairs(window_words: Sequence[np.ndarray], window_visual: Sequence[np.ndarray], n_visual: int):
    """Chunks of (codes word * n_visual + visual word, slot) over consecutive windows, where a slot is
    one visual word of one window (the words of that window compete for it)."""
    codes: list[np.ndarray] = []
    slots: list[np.ndarray] = []
    size = n_slots = 0
    for ws, vs in zip(window_words, window_visual, strict=True):
        codes.append((ws[:, None] * n_visual + vs[None, :]).ravel())
        slots.append(np.tile(np.arange(n_slots, n_slots + len(vs)), len(ws)))
        size += len(codes[-1])
        n_slots += len(vs)
        if size >= _PAIR_CHUNK:
            yield np.concatenate(codes), np.concatenate(slots)
            codes, slots, size, n_slots = [], [], 0, 0
    if codes:
        yield np.concatenate(codes), np.concatenate(slots)


def _pair_codes(window_words: Sequence[np.ndarray], window_visual: Sequence[np.ndarray], n_visual: int
                ) -> np.ndarray:
    """Sorted unique codes word * n_visual + visual word of the pairs that share a window."""
    codes = np.zeros(0, np.int64)
    for chunk, _ in _window_pairs(window_words, window_visual, n_visual):
        codes = np.union1d(codes, chunk)
    return codes


def _expected_counts(t: np.ndarray, codes: np.ndarray, window_words: Sequence[np.ndarray],
                     window_visual: Sequence[np.ndarray], n_visual: int) -> np.ndarray:
    """EM's E-step: for every pair, the expected number of times its word accounted for its visual word,
    each visual word of a window shared among the window's words in proportion to t(v | w)."""
    c = np.zeros(len(codes))
    for chunk, slot in _window_pairs(window_words, window_visual, n_visual):
        pair = np.searchsorted(codes, chunk)
        p = t[pair]
        c += np.bincount(pair, p / np.bincount(slot, p)[slot], minlength=len(codes))
    return c
