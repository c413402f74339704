"""SearchEngine: the one API that the CLI, the UI and the HTTP service call.

    query -> encode (joint encoder, text-only form)
          -> ANN on the "video" channel and on the "text" (transcript) channel, and the query's visual words
             (the narration lexicon's links of its words) on the sparse "visual" channel, K candidates each
          -> rerank the union: each query word's best match among the candidate's visual words (late
             interaction, model.videobert.late_interaction), and the alignment head on
             [CLS] query [>] candidate tokens [SEP], one batch each; and the narration lexicon (each
             query word's strongest link among the candidate's visual words, model.lexicon)
          -> score = video similarity + 2 word match + lexicon + 0.2 P(aligned)
                     + 0.1 max(transcript similarity, 0)
          -> top_k hits, each with why it matched in words (Hit.why): the query words its transcript says,
             and those its pictures answer (the lexicon's links, model.lexicon.EVIDENCE_*, and for words the
             lexicon cannot vouch for, the word match's, model.inference.WORD_MET_*), named by feature group

Why the transcript weighs so little: the joint encoder's video vector already carries what the
narration taught it, and a transcript term large enough to reorder the list buries the moments
whose narration says something else (only the pictures can find them). On two 20-minute sample
archives every transcript weight above 0.1, and interleaving a transcript-led ranking with the
pictures' one, cost visual-only recall without raising R@10 (README, "Measured here"). The
transcript channel still brings its candidates into the pool, and 0.1 breaks near-ties.

Why the word match: the pooled vectors blur a query's words into one direction; on 20-minute sample
archives adding it raised visual-only R@10 (README, "Measured here").

Why the lexicon too: it is estimated from the archive's narration by EM, not trained by gradient, so it
ties a colour or a shape word to its visual words even where training has not yet (README, "Measured
here"). And why it also brings candidates: the encoder's vectors miss moments only the pictures show, so
a moment the lexicon ranks well was often not among the encoder's K; on two 20-minute archives of the
sample generator family its channel raised visual-only R@10 by 0.08 (README).

The model loads once per engine; the store stays open for the engine's life.
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.lexicon import EVIDENCE_MIN_WINDOWS
from model.terms import query_terms, term, terms_of, words_of
from search.hits import Hit, Seen, Why
from search.query import clean_query
from search.store import DENSE, VISUAL, Filters, SegmentStore, point_tokens
from vbsearch.config import VOCAB_DIR

if TYPE_CHECKING:
    from model.inference import WordEvidence
    from model.lexicon import Lexicon

log = logging.getLogger(__name__)



class EngineError(RuntimeError):
    pass


class NoIndexError(EngineError):
    """The data dir holds no model or no indexed segments yet."""


@dataclass(frozen=True)
class RankingOptions:
    candidates: int = 50  # K per channel before reranking
    channels: tuple[str, ...] = ("video", "text", "visual")  # which store channels retrieve candidates ("video",
    # "text" also score them; "visual" is the query's visual words by the narration lexicon, model.lexicon)
    rerank: bool = True  # rescore candidates with the alignment head
    align_weight: float = 0.2  # weight of P(aligned) in the score
    word_weight: float = 2.0  # weight of the query words' match with the visual words (part of the rerank)
    lexicon_weight: float = 1.0  # weight of the narration lexicon's score (part of the rerank)
    text_weight: float = 0.1  # weight of the transcript similarity (negative similarity counts as 0)


@dataclass(frozen=True)
class IndexInfo:
    videos: int  # complete videos in the catalog
    hours: float
    clips: int
    segments: int  # points in the vector store
    failed: list[dict]  # path, stage, error
    model_id: str | None
    vocab_lines: list[str] = field(default_factory=list)
    last_indexed: float | None = None  # unix time


@dataclass(frozen=True)
class Timings:
    encode: float  # s
    ann: float
    rerank: float
    total: float


def load_lexicon(model_dir: Path, model_id: str) -> Lexicon | None:
    """The model's narration lexicon; None (search goes on without it) when the model has none, as
    models trained before it existed, or when it belongs to another model."""
    from model.checkpoint import CheckpointError
    from model.lexicon import CONFIG_FILE, Lexicon

    if not (model_dir / CONFIG_FILE).is_file():
        log.info("%s has no narration lexicon (`vbsearch train` writes one): ranking without it", model_dir)
        return None
    try:
        return Lexicon.load(model_dir, model_id)
    except CheckpointError as exc:
        log.warning("ranking without the narration lexicon: %s", exc)
        return None


@dataclass(frozen=True)
class VisualGroups:
    """Each visual word's readable feature group (model.features.group_label), from the vocabulary's ranges."""
    starts: tuple[int, ...] = ()  # first token id of each group, ascending
    stops: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()

    def label(self, visual_id: int) -> str:
        k = bisect.bisect_right(self.starts, visual_id) - 1
        return self.labels[k] if k >= 0 and visual_id < self.stops[k] else "visual"

    @classmethod
    def load(cls, vocab_dir: Path) -> VisualGroups:
        """From vocab.json's groups alone (no trees); none (every word "visual") when it is absent or unreadable."""
        from model.features import group_label
        from model.vocab import META_FILE

        try:
            groups = sorted((int(g["first_token"]), int(g["first_token"]) + int(g["n_words"]), str(g["name"]))
                            for g in json.loads((vocab_dir / META_FILE).read_text())["groups"])
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("visual words unnamed in explanations: %s unreadable (%s)", vocab_dir / META_FILE, exc)
            return cls()
        return cls(tuple(a for a, _, _ in groups), tuple(b for _, b, _ in groups),
                   tuple(group_label(name) for _, _, name in groups))


def model_id_of(model_dir: Path) -> str:
    """A short id of a checkpoint's weights (their sha256), stored with every point."""
    from model.checkpoint import MODEL_FILE, read_config

    return read_config(model_dir)["sha256"][MODEL_FILE][:16]


class SearchEngine:
    def __init__(self, data_dir: Path, inference, store: SegmentStore, model_id: str,
                 options: RankingOptions = RankingOptions(), lexicon: Lexicon | None = None):
        from indexer.catalog import Catalog

        self.data_dir = Path(data_dir)
        self.inference = inference
        self.lexicon = lexicon
        self.store = store
        self.model_id = model_id
        self.options = options
        self.catalog = Catalog(self.data_dir)
        self.groups = VisualGroups.load(self.data_dir / VOCAB_DIR)
        self.last_timings: Timings | None = None
        self._catalogued: tuple[float, set[str]] | None = None

    @classmethod
    def open(cls, settings, options: RankingOptions = RankingOptions()) -> SearchEngine:
        from model.inference import VideoBertInference

        model_dir = settings.model_path
        if not (model_dir / "config.json").is_file():
            raise NoIndexError(f"no trained model in {model_dir}: run `vbsearch index PATH...` first")
        inference = VideoBertInference.load(model_dir, device=settings.torch_device)
        model_id = model_id_of(model_dir)
        lexicon = load_lexicon(model_dir, model_id)
        store = SegmentStore.open(settings.data_dir, settings.qdrant_url, settings.qdrant_api_key)
        return cls(settings.data_dir, inference, store, model_id, options, lexicon)

    def close(self) -> None:
        self.store.close()

    # -- search -----------------------------------------------------------------------------------------
    def search(self, query: str, top_k: int = 10, filters: Filters | None = None,
               options: RankingOptions | None = None) -> list[Hit]:
        query = clean_query(query)
        if not query:
            return []
        opts = options or self.options
        t0 = time.perf_counter()
        q = self.inference.encode_text([query])[0]
        t1 = time.perf_counter()
        points = self._candidates(query, q, opts, filters)
        t2 = time.perf_counter()
        if not points:
            self.last_timings = Timings(t1 - t0, t2 - t1, 0.0, t2 - t0)
            return []
        s_video, s_text = self._similarities(q, points)
        score = np.zeros(len(points), dtype=np.float32)
        if "video" in opts.channels:
            score += s_video
        if "text" in opts.channels:
            score += opts.text_weight * np.maximum(s_text, 0.0)
        align = np.zeros(len(points), dtype=np.float32)
        s_words = np.zeros(len(points), dtype=np.float32)
        s_lexicon = np.zeros(len(points), dtype=np.float32)
        per_word: WordEvidence | None = None  # the word match, per query word (for `why`)
        if opts.rerank:
            tokens = [point_tokens(p.payload) for p in points]
            if opts.align_weight:
                align = self.inference.align_prob([query] * len(points), tokens)
            if opts.word_weight:
                # and per query word, for `why` (over the whole pool: WordEvidence.met compares with it)
                s_words, per_word = self.inference.word_scores_and_evidence(query, tokens)
            if opts.lexicon_weight and self.lexicon is not None:
                s_lexicon = self.lexicon.scores(query, tokens)
            score += opts.align_weight * align + opts.word_weight * s_words + opts.lexicon_weight * s_lexicon
        order = np.argsort(-score, kind="stable")[:top_k]
        model = None if per_word is None else (per_word.take(order), per_word.met()[order])
        whys = self._why(query, [points[i] for i in order], model)
        t3 = time.perf_counter()
        self.last_timings = Timings(t1 - t0, t2 - t1, t3 - t2, t3 - t0)
        return [self._hit(points[i], float(score[i]),
                          {"video": float(s_video[i]), "text": float(s_text[i]), "align": float(align[i]),
                           "words": float(s_words[i]), "lexicon": float(s_lexicon[i])}, why)
                for i, why in zip(order, whys, strict=True)]

    def segments(self, segment_ids: list[str]) -> list[Hit]:
        """The hits of these segments, in the order given (a selection to export: no query, so score 0);
        EngineError names the first unknown id."""
        found = {str(p.id): p for p in self.store.retrieve(list(dict.fromkeys(segment_ids)))}
        missing = next((i for i in segment_ids if i not in found), None)
        if missing is not None:
            raise EngineError(f"unknown segment {missing!r}")
        return [self._hit(found[i], 0.0, {}) for i in segment_ids]

    def more_like_this(self, segment_id: str, top_k: int = 10, filters: Filters | None = None) -> list[Hit]:
        found = self.store.retrieve([segment_id], with_vectors=True)
        if not found:
            raise EngineError(f"unknown segment {segment_id!r}")
        vec = np.asarray(found[0].vector["video"], dtype=np.float32)
        hits = self.store.search("video", vec.tolist(), top_k + 1, filters)
        return [self._hit(p, float(p.score), {"video": float(p.score)}) for p in hits if str(p.id) != segment_id][:top_k]

    def _why(self, query: str, points: list, model: tuple[WordEvidence, np.ndarray] | None = None) -> list[Why]:
        """Why each point matched, in words: the query's content words (model.terms.query_terms: those the UI highlights)
        that its transcript says, and those its visual words answer by the narration lexicon
        (Lexicon.evidence) or by the encoder's word match (`model`: the points' word evidence and which of it
        meets the pictures, WordEvidence.met over the whole candidate pool; None when the word match did not run)."""
        content = query_terms(query)
        first: dict[str, str] = {}  # term -> the query's first form of it, in query order
        for w in words_of(query):
            if term(w) in content:
                first.setdefault(term(w), w)
        if not first or not points:
            return [Why() for _ in points]
        seen: list[dict[str, Seen]] = [{} for _ in points]  # per point: term -> its evidence, lexicon first
        if self.lexicon is not None:
            found = self.lexicon.evidence(query, [point_tokens(p.payload) for p in points])
            for evidence_of, links in zip(seen, found, strict=True):
                for w, v, link in links:
                    if term(w) in first:
                        evidence_of.setdefault(term(w), Seen(first[term(w)], self.groups.label(v), "lexicon",
                                                             round(link, 4)))
        if model is not None:
            evidence, met = model
            for k, w in enumerate(evidence.words):
                # where the lexicon knows a word well (EVIDENCE_MIN_WINDOWS), its silence outweighs the word match
                if term(w) in first and (self.lexicon is None or self.lexicon.heard(w) < EVIDENCE_MIN_WINDOWS):
                    for i in np.flatnonzero(met[:, k]):
                        seen[i].setdefault(term(w), Seen(first[term(w)], self.groups.label(int(evidence.visual[i, k])),
                                                         "model", round(float(evidence.cosine[i, k]), 4)))
        out = []
        for p, evidence_of in zip(points, seen, strict=True):
            said_terms = set(terms_of(self._text(p.payload)))
            said = tuple(w for t, w in first.items() if t in said_terms)
            # the lexicon's evidence first, then the word match's (a lift and a cosine do not compare); strongest first
            ordered = sorted(evidence_of.values(), key=lambda e: (e.source != "lexicon", -e.strength))
            out.append(Why(said, tuple(ordered)))
        return out

    def _candidates(self, query: str, q: np.ndarray, opts: RankingOptions, filters: Filters | None) -> list:
        seen: dict[str, object] = {}
        for channel in opts.channels:
            if channel == VISUAL:  # what the narration lexicon says the query's words look like
                if self.lexicon is None:
                    continue
                vector = self.lexicon.query_vector(query)
            else:
                vector = q.tolist()
            for p in self.store.search(channel, vector, opts.candidates, filters):
                seen.setdefault(str(p.id), p)
        return self.store.retrieve(list(seen), with_vectors=list(DENSE))

    @staticmethod
    def _similarities(q: np.ndarray, points: list) -> tuple[np.ndarray, np.ndarray]:
        s_video = np.array([np.dot(q, p.vector["video"]) for p in points], dtype=np.float32)
        # No transcript: no evidence from that channel (not negative evidence).
        s_text = np.array([np.dot(q, p.vector["text"]) if "text" in p.vector else -1.0 for p in points],
                          dtype=np.float32)
        return s_video, s_text

    @staticmethod
    def _text(p: dict) -> str:
        # where nobody speaks, a stored generated caption (`vbsearch caption --store-missing`) stands in
        return p.get("text") or (f"[caption] {p['caption']}" if p.get("caption") else "")

    def _hit(self, point, score: float, scores: dict[str, float], why: Why | None = None) -> Hit:
        p = point.payload
        thumb = str((self.data_dir / p["thumbnail"]).resolve()) if p.get("thumbnail") else None
        return Hit(video=p["path"], start=float(p["start"]), end=float(p["end"]), score=score, text=self._text(p),
                   video_id=p["video_id"], segment_id=str(point.id), thumbnail=thumb,
                   fps=p.get("fps"), scores=scores, timecode=p.get("timecode") or None, why=why)

    # -- the archive ------------------------------------------------------------------------------------
    def videos(self):
        return self.catalog.read_table("videos")

    def is_catalogued(self, path: str) -> bool:
        """Whether `path` is a catalogued video (the UI and the service serve nothing else)."""
        folder = self.catalog.root / "videos"
        stamp = folder.stat().st_mtime if folder.is_dir() else 0.0
        if self._catalogued is None or self._catalogued[0] != stamp:
            videos = self.videos()
            self._catalogued = (stamp, set(videos["path"].to_list()) if videos.height else set())
        return str(path) in self._catalogued[1]

    def index_info(self) -> IndexInfo:
        from model.vocab import describe

        cat = self.catalog.summary()
        return IndexInfo(videos=cat.videos, hours=cat.hours, clips=cat.clips, segments=self.store.count(),
                         failed=cat.failed, model_id=self.model_id, vocab_lines=describe(self.data_dir / VOCAB_DIR),
                         last_indexed=cat.last_indexed)
