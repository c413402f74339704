"""Captions from visual tokens: a transformer decoder over VideoBERT's video states (the paper's Task 3).

    [CLS] [>] v1a v1b .. [SEP] -> VideoBERT encoder (frozen) -> memory (S, H)
    [CLS] w1 .. wn -> word + position embeddings -> N x (causal self-attention, cross-attention to the
        memory, feed-forward) -> LayerNorm -> scores against the caption vocabulary's word rows -> w(n+1)
    generation: from [CLS], greedy or beam search, until [SEP] (the end token) or max_len wordpieces.

The encoder stays frozen: the paper, too, used pretrained VideoBERT as a fixed feature extractor for
its captioner. The decoder's word rows are the encoder's WordPiece embeddings, frozen and tied to the
output, and the output is limited to the wordpieces of the training captions (the usual captioning
vocabulary), so a small caption corpus trains only the transformer layers and an output bias.

Artefacts, a folder beside the VideoBERT checkpoint (`vbsearch finetune-caption` writes
DATA_DIR/model/captioner):
    captioner.safetensors   decoder weights (without the word rows, which come from the base model)
                            and `vocab_ids`, the caption vocabulary's WordPiece ids
    captioner.json          decoder config, base model id, options, metrics, sha256 of the weights (last)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.checkpoint import CheckpointError, load_addon, read_addon_config, save_addon
from model.tokenization import VideoBertTokenizer
from model.videobert import VideoBert

FORMAT = "vbsearch-captioner"
WEIGHTS_FILE = "captioner.safetensors"
CONFIG_FILE = "captioner.json"
DEFAULT_BATCH = 32  # windows per generation batch


@dataclass(frozen=True)
class CaptionerConfig:
    hidden_size: int  # the encoder's width (the memory's and the word rows')
    vocab_size: int  # caption vocabulary: output classes, specials included
    bos_index: int  # vocabulary index of the start token ([CLS])
    eos_index: int  # vocabulary index of the end token ([SEP])
    pad_index: int = 0  # vocabulary index of padding ([PAD]); never generated
    num_layers: int = 2
    num_heads: int = 6
    intermediate_size: int = 1024
    max_len: int = 32  # wordpieces per caption, start and end tokens included
    dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CaptionDecoder(nn.Module):
    def __init__(self, cfg: CaptionerConfig, word_rows: torch.Tensor):
        super().__init__()
        if word_rows.shape != (cfg.vocab_size, cfg.hidden_size):
            raise ValueError(f"word rows {tuple(word_rows.shape)} do not fit ({cfg.vocab_size}, {cfg.hidden_size})")
        self.cfg = cfg
        self.register_buffer("words", word_rows.detach().clone(), persistent=False)  # (V, H), frozen, tied
        self.positions = nn.Embedding(cfg.max_len, cfg.hidden_size)
        self.in_norm = nn.LayerNorm(cfg.hidden_size)
        layer = nn.TransformerDecoderLayer(cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, cfg.num_layers)
        self.out_norm = nn.LayerNorm(cfg.hidden_size)
        self.out_dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, seq: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor) -> torch.Tensor:
        # seq: (B, L) vocabulary indices, memory: (B, S, H), memory_pad: (B, S) True at padding -> (B, L, V)
        L = seq.shape[1]
        x = self.in_norm(self.words[seq] + self.positions(torch.arange(L, device=seq.device)))
        causal = torch.triu(torch.ones(L, L, dtype=torch.bool, device=seq.device), 1)
        h = self.layers(x, memory, tgt_mask=causal, memory_key_padding_mask=memory_pad)
        return self.out_dense(self.out_norm(h)) @ self.words.t() + self.out_bias


class VideoCaptioner(nn.Module):
    """Frozen VideoBERT encoder + caption decoder."""

    def __init__(self, encoder: VideoBert, decoder: CaptionDecoder):
        super().__init__()
        self.encoder = encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.decoder = decoder

    @torch.no_grad()
    def memory(self, **inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # video-only model inputs (B, T) -> memory (B, T, H), padding mask (B, T)
        self.encoder.eval()
        return self.encoder(**inputs).hidden, inputs["attention_mask"] == 0

    def loss(self, memory: torch.Tensor, pad: torch.Tensor, seq: torch.Tensor, label_smoothing: float = 0.1
             ) -> torch.Tensor:
        # memory (B, S, H) and pad (B, S) from `memory`; seq: (B, L) [CLS] caption [SEP] as vocabulary
        # indices, right-padded with the pad index
        pad_index = self.decoder.cfg.pad_index
        logits = self.decoder(seq[:, :-1], memory, pad)  # (B, L-1, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), seq[:, 1:].reshape(-1),
                               ignore_index=pad_index, label_smoothing=label_smoothing)

    @torch.no_grad()
    def generate(self, inputs: dict[str, torch.Tensor], beam: int = 1, max_len: int | None = None) -> list[list[int]]:
        """Vocabulary indices of each window's caption (without the start and end tokens)."""
        cfg = self.decoder.cfg
        max_len = min(max_len or cfg.max_len, cfg.max_len)
        memory, pad = self.memory(**inputs)
        if beam <= 1:
            return self._greedy(memory, pad, max_len)
        return [self._beam(memory[i: i + 1], pad[i: i + 1], beam, max_len) for i in range(len(memory))]

    def _next_logits(self, seq: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        # (B, L) prefixes -> (B, V) scores of the next token; padding and the start token are never next
        logits = self.decoder(seq, memory, pad)[:, -1].float()
        logits[:, [self.decoder.cfg.pad_index, self.decoder.cfg.bos_index]] = float("-inf")
        return logits

    def _greedy(self, memory: torch.Tensor, pad: torch.Tensor, max_len: int) -> list[list[int]]:
        cfg = self.decoder.cfg
        seq = torch.full((len(memory), 1), cfg.bos_index, dtype=torch.long, device=memory.device)
        done = torch.zeros(len(memory), dtype=torch.bool, device=memory.device)
        for _ in range(max_len - 1):
            nxt = self._next_logits(seq, memory, pad).argmax(-1)  # (B,)
            nxt = torch.where(done, torch.full_like(nxt, cfg.eos_index), nxt)
            seq = torch.cat([seq, nxt[:, None]], 1)
            done |= nxt == cfg.eos_index
            if bool(done.all()):
                break
        return [_strip(row, cfg.eos_index) for row in seq[:, 1:].tolist()]

    def _beam(self, memory: torch.Tensor, pad: torch.Tensor, k: int, max_len: int) -> list[int]:
        # memory: (1, S, H); beams scored by mean log-probability per token (length-normalised)
        cfg = self.decoder.cfg
        beams: list[tuple[list[int], float]] = [([cfg.bos_index], 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(max_len - 1):
            seq = torch.tensor([b[0] for b in beams], device=memory.device)
            logp = F.log_softmax(self._next_logits(seq, memory.expand(len(beams), -1, -1),
                                                   pad.expand(len(beams), -1)), -1)  # (n_beams, V)
            top, idx = logp.topk(k, -1)
            cands = [(b[0] + [int(j)], b[1] + float(s)) for b, ss, js in zip(beams, top, idx, strict=True)
                     for s, j in zip(ss, js, strict=True)]
            cands.sort(key=lambda c: -_mean_logp(c))
            beams = []
            for c in cands:
                (finished if c[0][-1] == cfg.eos_index else beams).append(c)
                if len(beams) == k:
                    break
            # Stop once a finished caption beats every open one: stopping at k finished ones instead cut
            # captions short when early junk endings filled the quota before the right one ended.
            if not beams or (finished and max(map(_mean_logp, finished)) >= max(map(_mean_logp, beams))):
                break
        pool = finished or beams
        best = max(pool, key=_mean_logp)
        return _strip(best[0][1:], cfg.eos_index)


def _mean_logp(hypothesis: tuple[list[int], float]) -> float:
    """A beam's length-normalised score: summed log-probability per generated token."""
    tokens, logp = hypothesis
    return logp / (len(tokens) - 1)


def _strip(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos)] if eos in row else row


# -- artefacts --------------------------------------------------------------------------------------

def text_rows(encoder: VideoBert, text_ids: torch.Tensor) -> torch.Tensor:
    """The encoder's input embeddings of WordPiece ids (the decoder's frozen word rows)."""
    return encoder.bert.embeddings.word_embeddings.weight[text_ids].detach()


def save_captioner(folder: str | Path, captioner: VideoCaptioner, vocab_ids: torch.Tensor, base_model_id: str,
                   meta: dict[str, Any] | None = None) -> str:
    """Write the decoder weights and vocabulary, then captioner.json; returns the captioner's id."""
    tensors = {f"decoder.{k}": v for k, v in captioner.decoder.state_dict().items()}
    tensors["vocab_ids"] = vocab_ids.long()
    return save_addon(folder, WEIGHTS_FILE, CONFIG_FILE, tensors, {
        "format": FORMAT, "config": captioner.decoder.cfg.to_dict(), "base_model_id": base_model_id,
        "meta": meta or {}})


def read_captioner_config(folder: str | Path) -> dict[str, Any]:
    return read_addon_config(folder, CONFIG_FILE, FORMAT)


def load_captioner(folder: str | Path, base: VideoBert, base_model_id: str
                   ) -> tuple[VideoCaptioner, torch.Tensor, dict[str, Any]]:
    """(captioner over `base`, the vocabulary's WordPiece ids, captioner.json)."""
    folder = Path(folder)
    data, state = load_addon(folder, WEIGHTS_FILE, CONFIG_FILE, FORMAT, base_model_id, "vbsearch finetune-caption")
    try:
        cfg = CaptionerConfig(**data["config"])
        vocab_ids = state.pop("vocab_ids")
        decoder = CaptionDecoder(cfg, text_rows(base, vocab_ids.to(base.bert.embeddings.word_embeddings.weight.device)))
        decoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("decoder.")}, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{folder}: captioner does not fit the model: {exc}") from exc
    return VideoCaptioner(base, decoder.to(base.bert.embeddings.word_embeddings.weight.device)).eval(), vocab_ids, data


# -- inference --------------------------------------------------------------------------------------

class CaptionerInference:
    def __init__(self, captioner: VideoCaptioner, tokenizer: VideoBertTokenizer, vocab_ids: torch.Tensor,
                 captioner_id: str, device: str | torch.device = "cpu", batch_size: int = DEFAULT_BATCH):
        self.captioner = captioner.to(device).eval()
        self.tok = tokenizer
        self.vocab_ids = vocab_ids.cpu().tolist()  # vocabulary index -> WordPiece id
        self.id = captioner_id
        self.device = torch.device(device)
        self.batch_size = batch_size

    @classmethod
    def load(cls, folder: str | Path, model_dir: str | Path, base_model_id: str,
             device: str | torch.device = "cpu") -> CaptionerInference:
        from model.checkpoint import load_model

        base, tok = load_model(model_dir, device)
        captioner, vocab_ids, data = load_captioner(folder, base, base_model_id)
        return cls(captioner, tok, vocab_ids, data["sha256"][WEIGHTS_FILE][:16], device)

    def decode(self, indices: Sequence[int]) -> str:
        ids = [self.vocab_ids[i] for i in indices]
        return self.tok.text.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()

    def caption(self, videos: Sequence[np.ndarray], beam: int = 1) -> list[str]:
        """One caption per window of visual tokens, each (n_clips, tokens_per_clip)."""
        out: list[str] = []
        for lo in range(0, len(videos), self.batch_size):
            enc = self.tok.encode_batch([None] * len(videos[lo: lo + self.batch_size]),
                                        list(videos[lo: lo + self.batch_size]))
            inputs = self.tok.collate(enc).to(self.device).model_inputs()
            out.extend(self.decode(row) for row in self.captioner.generate(inputs, beam))
        return out
