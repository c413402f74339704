"""What the search side calls on a trained VideoBERT: vectors, alignment scores, masked-word guesses.

    vb = VideoBertInference.load(model_dir, device="cpu")
    q = vb.encode_text(["a hand pouring liquid"])            # (1, E) unit vectors
    m = vb.encode_video([tokens_of_window])                   # (1, E), same space
    p = vb.align_prob(["a hand pouring liquid"], [tokens])    # (1,) P(aligned), the reranker
    s = vb.word_scores("a hand pouring liquid", [tokens])    # (1,) word match (late interaction)
    e = vb.word_evidence("a hand pouring liquid", [tokens])  # per word: best cosine, which visual word;
        # e.met(): where it meets the pictures (word_scores_and_evidence: both from one pass)
    vb.predict_masked("now let me show you how to [MASK] the [MASK]", tokens, top_k=5)
        # -> [[(word, prob), ...] per [MASK]]   (the paper's zero-shot Task 2)
Visual tokens are (n_clips, tokens_per_clip) int arrays from the visual vocabulary.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.precision import amp_dtype, autocast
from model.terms import WORD, term
from model.tokenization import Batch, VideoBertTokenizer, WordPieces
from model.videobert import VideoBert, word_match

DEFAULT_BATCH = 64  # sequences per forward pass
# A word meets a candidate's pictures by the word match (WordEvidence.met) where its best cosine there is at least
# WORD_MET_SHARE of its best over the candidate pool (one of the visual words it matches best: a scale-free cut, like
# the lexicon's share) and reaches WORD_MET_COSINE (every word, one naming nothing visible too, has a best somewhere).
# Measured on the top-10 hits of two sample archives (1.5 min / 80 steps, 3 min / 53 steps; the generator's truth;
# plus queries of chatter words), next to the lexicon's evidence (search.engine: words it cannot vouch for only):
# these small models' per-word matches were right 10-36 % of the time at every cut tried (share 0.9-0.95, cosine
# 0.2-0.35; a pool z-score of 0.5-2 alike), most wrong ones for words that name nothing visible. Cosine 0.35: the
# explanations' precision 0.62 / 0.86 at recall 0.85 / 0.85 (0.2: 0.52 / 0.73 at 0.89 / 0.87; the lexicon alone:
# 0.91 / 0.96 at 0.59 / 0.83). Measure again on a larger, longer-trained archive before loosening it.
WORD_MET_SHARE = 0.9
WORD_MET_COSINE = 0.35


@dataclass(frozen=True)
class MaskGuess:
    word: str  # a whole WordPiece word (no specials, no ## pieces)
    prob: float  # softmax probability over the text vocabulary


@dataclass(frozen=True)
class WordEvidence:
    """Which of a video's visual words each word of a text meets best (the word match, per word)."""
    words: tuple[str, ...]  # the text's words, lower-cased, one per term (model.terms), in order
    cosine: np.ndarray  # (N, n_words) float32 best cosine with any of each video's visual words (-2: it has none)
    visual: np.ndarray  # (N, n_words) int64 that visual word's id (-1: none)

    def met(self, min_share: float = WORD_MET_SHARE, min_cosine: float = WORD_MET_COSINE) -> np.ndarray:
        """(N, n_words) bool: where a word meets a video's pictures: its best cosine there at least `min_cosine`
        and `min_share` of its best over all N videos (the candidate pool)."""
        best = self.cosine.max(0, initial=-2.0)  # (n_words,)
        return (self.visual >= 0) & (self.cosine >= min_cosine) & (self.cosine >= min_share * best)

    def take(self, rows: Sequence[int] | np.ndarray) -> WordEvidence:
        """The evidence of some of the videos, in the order of `rows`."""
        return WordEvidence(self.words, self.cosine[rows], self.visual[rows])


class VideoBertInference:
    def __init__(self, model: VideoBert, tokenizer: VideoBertTokenizer, device: str | torch.device = "cpu",
                 batch_size: int = DEFAULT_BATCH):
        self.model = model.to(device).eval()
        self.tok = tokenizer
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._words: torch.Tensor | None = None
        self._amp = amp_dtype(self.device)

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu", batch_size: int = DEFAULT_BATCH
             ) -> VideoBertInference:
        from model.checkpoint import load_model

        model, tok = load_model(folder, device)
        return cls(model, tok, device, batch_size)

    @property
    def embed_dim(self) -> int:
        return self.model.cfg.embed_dim

    def _autocast(self):
        return autocast(self.device, self._amp)

    def _batches(self, texts: Sequence[str | None], videos: Sequence[np.ndarray | None]):
        for lo in range(0, len(texts), self.batch_size):
            enc = self.tok.encode_batch(texts[lo: lo + self.batch_size], videos[lo: lo + self.batch_size])
            yield self.tok.collate(enc).to(self.device)

    @torch.inference_mode()
    def _embed(self, texts: Sequence[str | None], videos: Sequence[np.ndarray | None]) -> np.ndarray:
        out = []
        for b in self._batches(texts, videos):
            with self._autocast():
                h = self.model(**b.model_inputs())
                out.append(self.model.embed(h.hidden, b.attention_mask).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.embed_dim), np.float32)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(N, E) float32 unit vectors of text-only inputs."""
        return self._embed(list(texts), [None] * len(texts))

    def encode_video(self, videos: Sequence[np.ndarray]) -> np.ndarray:
        """(N, E) float32 unit vectors of video-only inputs, each (n_clips, tokens_per_clip)."""
        return self._embed([None] * len(videos), list(videos))

    def _token_vectors(self, text: str) -> tuple[Batch, torch.Tensor]:
        """The text-only batch of `text` and its wordpieces' vectors (1, T, E), zero off the text."""
        (tb,) = self._batches([text], [None])
        h = self.model(**tb.model_inputs()).hidden
        return tb, self.model.token_vectors(h, tb.text_mask)

    def _visual_vectors(self, videos: Sequence[np.ndarray]):
        """(batch, its visual word vectors (B, T, E)) over the videos, in batches."""
        for b in self._batches([None] * len(videos), list(videos)):
            yield b, self.model.visual_word_vectors(b.input_ids, b.group_ids, b.visual_mask)

    @torch.inference_mode()
    def word_scores(self, text: str, videos: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) word match of one text with each video's visual words (`model.videobert.word_match`)."""
        return self.word_scores_and_evidence(text, videos)[0]

    @torch.inference_mode()
    def word_evidence(self, text: str, videos: Sequence[np.ndarray]) -> WordEvidence:
        """For each word of `text` (whole words, model.terms; one per term) and each video: the word's best
        cosine with any of the video's visual words, the max over the word's wordpieces (the text -> video
        half of `word_match`, per word), and which visual word it was."""
        return self.word_scores_and_evidence(text, videos)[1]

    @torch.inference_mode()
    def word_scores_and_evidence(self, text: str, videos: Sequence[np.ndarray]) -> tuple[np.ndarray, WordEvidence]:
        """`word_scores` and `word_evidence` from one pass over the videos."""
        words, piece_word = self._piece_words(text)
        scores, cosine, visual = [], [], []
        with self._autocast():
            tb, t = self._token_vectors(text)
            positions = tb.text_mask[0].nonzero().squeeze(1)  # the kept wordpieces' positions, in order
            pieces = t[0, positions].float()  # (P, E)
            # (W, P): which of the kept pieces make up each word
            of_word = torch.tensor(piece_word[: len(positions)], dtype=torch.long, device=self.device)
            member = of_word[None, :] == torch.arange(len(words), device=self.device)[:, None]
            for b, v in self._visual_vectors(videos):
                scores.append(word_match(t, tb.text_mask, v, b.visual_mask)[0].float().cpu())
                if not words:
                    cosine.append(torch.zeros((len(v), 0)))
                    visual.append(torch.zeros((len(v), 0), dtype=torch.long))
                    continue
                sim = torch.einsum("pe,jle->jpl", pieces, v.float()).masked_fill(~b.visual_mask[:, None, :], -2.0)
                best, at = sim.max(-1)  # (B, P): each piece's best visual word, and where
                top, piece = best[:, None, :].masked_fill(~member[None], -3.0).max(-1)  # (B, W): each word's best
                ids = b.input_ids.gather(1, at.gather(1, piece)) - self.tok.visual_offset
                cosine.append(top.clamp(min=-2.0).cpu())  # -2: no visual word (or the word's pieces were cut)
                visual.append(torch.where(top > -2.0, ids, -1).cpu())
        n = len(videos)
        if not scores:
            return np.zeros(0, np.float32), WordEvidence(tuple(words), np.zeros((0, len(words)), np.float32),
                                                         np.zeros((0, len(words)), np.int64))
        cos = torch.cat(cosine).numpy().astype(np.float32).reshape(n, len(words))
        vis = torch.cat(visual).numpy().astype(np.int64).reshape(n, len(words))
        return torch.cat(scores).numpy(), WordEvidence(tuple(words), cos, vis)

    def _piece_words(self, text: str) -> tuple[list[str], list[int]]:
        """The text's words (lower-cased \\w+ runs, model.terms, one per term, first form) and, per wordpiece
        of `tok.text_ids([text])[0]`, the index of the word it is part of (-1: punctuation, outside words)."""
        text_tok = self.tok.text  # WordPieces (a checkpoint's), or transformers' fast tokenizer (training, tests)
        backend = text_tok.backend if isinstance(text_tok, WordPieces) else text_tok.backend_tokenizer
        enc = backend.encode(text, add_special_tokens=False)
        if list(enc.ids) != self.tok.text_ids([text])[0]:  # not the pieces the model reads: say nothing
            return [], []
        spans = [(m.start(), m.end(), term(m.group(0).lower()), m.group(0).lower()) for m in WORD.finditer(text)]
        index: dict[str, int] = {}
        words: list[str] = []
        of_span = []
        for _, _, t, form in spans:
            if t not in index:
                index[t] = len(words)
                words.append(form)
            of_span.append(index[t])
        starts = [s for s, _, _, _ in spans]
        piece_word = []
        for a, _ in enc.offsets:
            k = bisect.bisect_right(starts, a) - 1
            piece_word.append(of_span[k] if k >= 0 and a < spans[k][1] else -1)
        return words, piece_word

    @torch.inference_mode()
    def align_prob(self, texts: Sequence[str], videos: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) probability that each text describes its paired visual tokens."""
        if len(texts) != len(videos):
            raise ValueError(f"{len(texts)} texts but {len(videos)} videos")
        out = []
        for b in self._batches(list(texts), list(videos)):
            with self._autocast():
                h = self.model(**b.model_inputs())
                out.append(torch.sigmoid(self.model.align_logits(h, b.text_mask, b.visual_mask).float()).cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    @torch.inference_mode()
    def predict_masked(self, template: str, video: np.ndarray | None, top_k: int = 5) -> list[list[MaskGuess]]:
        """Top-k whole words for each [MASK] in `template`, reading the video window (None: text only)."""
        enc = self.tok.encode(template, video)
        slots = [i for i, t in enumerate(enc.input_ids) if t == self.tok.mask_id]
        if not slots:
            raise ValueError(f"template has no {self.tok.text.mask_token}: {template!r}")
        b: Batch = self.tok.collate([enc]).to(self.device)
        with self._autocast():
            h = self.model(**b.model_inputs())
            logits = self.model.mlm_logits(h.hidden[0, slots]).float()  # (n_masks, V_text)
        if self._words is None:
            self._words = torch.from_numpy(self.tok.word_candidates()).to(self.device)
        probs = torch.softmax(logits, -1)[:, self._words]  # (n_masks, n_words)
        k = min(top_k, probs.shape[1])
        p, idx = probs.topk(k, dim=-1)
        words = self._words[idx].cpu().tolist()
        return [[MaskGuess(self.tok.id_to_token(w), float(q)) for w, q in zip(ws, ps, strict=True)]
                for ws, ps in zip(words, p.cpu().tolist(), strict=True)]
