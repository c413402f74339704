"""BERT's encoder (Devlin et al. 2019) in plain torch, laid out as transformers' BertModel so that the same
state dict loads (`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`, ...).

Why not transformers' class: importing it cost 4.5 s of a cold CLI search's 7.7 s on 2 cores (torch's own
import is about 2 s), and every search, UI start and service start paid it. Pretrained weights still come
through transformers when training starts (model.videobert.from_pretrained_bert). tests/test_videobert.py
checks that the outputs equal transformers' BertModel on the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BertEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.visual_offset, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, inputs_embeds: torch.Tensor, token_type_ids: torch.Tensor, position_ids: torch.Tensor):
        # (B, T, H) + (B, T) ids -> (B, T, H)
        x = inputs_embeds + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head = cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout_p = cfg.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # x: (B, T, H); keep: (B, 1, 1, T) bool, True where a key may be attended to
        b, t, h = x.shape
        q, k, v = (lin(x).view(b, t, self.n_head, h // self.n_head).transpose(1, 2)
                   for lin in (self.query, self.key, self.value))  # (B, n_head, T, head)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep,
                                           dropout_p=self.dropout_p if self.training else 0.0)
        return y.transpose(1, 2).reshape(b, t, h)


class BertResidual(nn.Module):
    """dense -> dropout -> + input -> LayerNorm (BertSelfOutput and BertOutput in transformers)."""

    def __init__(self, cfg, d_in: int):
        super().__init__()
        self.dense = nn.Linear(d_in, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertResidual(cfg, cfg.hidden_size)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, keep), x)


class BertIntermediate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if cfg.hidden_act != "gelu":
            raise ValueError(f"only BERT's exact gelu is supported, not {cfg.hidden_act!r}")
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertResidual(cfg, cfg.intermediate_size)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        a = self.attention(x, keep)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, keep)
        return x


class BertPooler(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, H) from [CLS]


class Bert(nn.Module):
    """The encoder over given input embeddings (VideoBert makes them: text and visual rows)."""

    def __init__(self, cfg):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg)
        self.apply(lambda m: _init(m, cfg.initializer_range))

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # -> (B, T, H) last hidden states, (B, H) pooled [CLS]
        keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        hidden = self.encoder(self.embeddings(inputs_embeds, token_type_ids, position_ids), keep)
        return hidden, self.pooler(hidden)


def _init(m: nn.Module, std: float) -> None:
    """BERT's initialisation: normal(0, std) weights, zero biases, unit LayerNorms, a zero padding row."""
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=std)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, std=std)
        if m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
