"""What the search side calls on a trained VideoBERT: vectors, alignment scores, masked-word guesses.

    vb = VideoBertInference.load(model_dir, device="cpu")
    q = vb.encode_text(["a hand pouring liquid"])            # (1, E) unit vectors
    m = vb.encode_video([tokens_of_window])                   # (1, E), same space
    p = vb.align_prob(["a hand pouring liquid"], [tokens])    # (1,) P(aligned), the reranker
    s = vb.word_scores("a hand pouring liquid", [tokens])    # (1,) word match (late interaction)
    vb.predict_masked("now let me show you how to [MASK] the [MASK]", tokens, top_k=5)
        # -> [[(word, prob), ...] per [MASK]]   (the paper's zero-shot Task 2)
Visual tokens are (n_clips, tokens_per_clip) int arrays from the visual vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.precision import amp_dtype, autocast
from model.tokenization import Batch, VideoBertTokenizer
from model.videobert import VideoBert, word_match

DEFAULT_BATCH = 64  # sequences per forward pass


@dataclass(frozen=True)
class MaskGuess:
    word: str  # a whole WordPiece word (no specials, no ## pieces)
    prob: float  # softmax probability over the text vocabulary


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

    @torch.inference_mode()
    def word_scores(self, text: str, videos: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) word match of one text with each video's visual words (`model.videobert.word_match`)."""
        (tb,) = self._batches([text], [None])
        with self._autocast():
            h = self.model(**tb.model_inputs()).hidden
            t = self.model.token_vectors(h, tb.text_mask)
            out = []
            for b in self._batches([None] * len(videos), list(videos)):
                v = self.model.visual_word_vectors(b.input_ids, b.group_ids, b.visual_mask)
                out.append(word_match(t, tb.text_mask, v, b.visual_mask)[0].float().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

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
