"""VideoBERT (Sun et al. 2019): one BERT encoder over [CLS] text [>] visual words [SEP].

Config dataclass and modules only; inputs come from `model.tokenization`, training from
`model.pretrain`. Heads:
  - MLM: masked wordpieces, decoder tied to the text rows of the input embedding;
  - MVM: masked visual words, decoder tied to the visual rows of the input embedding;
  - alignment (LVA): one logit = a * cos(text side, video side) + b + linear([CLS]; product),
    where the two sides are the contrastive vectors of the text and the video positions read
    inside the joint sequence. From [CLS] alone the head stayed at chance on a small archive
    (at initialisation [CLS] barely depends on the video: a 2-layer model moved it by 0.002
    when the video was swapped, and AdamW moves a fresh head too slowly to amplify that); this
    way the cross-encoder starts as the calibrated bi-encoder that ITC trains and learns a
    correction through cross-attention and the linear term;
  - contrastive: mean-pooled hidden states -> linear -> L2-normalised, so text-only and
    video-only inputs land in one space (in-batch InfoNCE with a learnable temperature);
  - word matching, a late interaction (FILIP, Yao et al. 2021; ColBERT's MaxSim): each text
    token's vector (the contrastive projection, per position) finds its best-matching visual
    word, and the score is the mean over text tokens. The visual side is the visual words'
    input embeddings (own projection), not the encoder's output: out of context a visual word
    cannot stand for its whole scene, so a word like "left" must match the words that show the
    motion. On a sample archive the pooled vectors' top hits for pictures-only queries had the
    right direction in 35 % (chance 25 %); matching against contextual visual states did not
    help, matching against the words raised visual-only R@10 from 0.50 / 0.71 to 0.88 / 0.86
    (two archives). Both ways (`word_match`) as FILIP does.
Mean pooling is the choice because the offline initial checkpoint (all-MiniLM-L6-v2) was
trained as a mean-pooled sentence encoder; with `embed_dim == hidden_size` the projection
starts as the identity, so text search starts from MiniLM's sentence space.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.bert import Bert

ALIGN_SCALE_INIT = 10.0  # alignment logit per unit of cosine at initialisation
ALIGN_COSINE_THRESHOLD_INIT = 0.5  # cosine at which the initial alignment probability is 1/2


@dataclass(frozen=True)
class VideoBertConfig:
    text_vocab_size: int  # WordPiece ids [0, text_vocab_size)
    n_visual_words: int  # visual words, ids text_vocab_size + 1 + w
    tokens_per_clip: int = 1  # >1 with a factored visual vocabulary
    hidden_size: int = 384  # BERT width
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512  # clip-time positions, so also bounds the sequence
    type_vocab_size: int = 2  # segment 0 text, 1 video
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    embed_dim: int = 384  # contrastive space width
    temperature_init: float = 0.07  # initial InfoNCE temperature
    temperature_min: float = 0.01  # logit scale is clamped at 1 / this (CLIP's guard)

    @property
    def vocab_size(self) -> int:
        return self.text_vocab_size + 1 + self.n_visual_words

    @property
    def visual_offset(self) -> int:
        return self.text_vocab_size + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoBertConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown VideoBERT config keys: {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass
class VideoBertOutput:
    hidden: torch.Tensor  # (B, T, H) last hidden states
    pooled: torch.Tensor  # (B, H) pooled [CLS] (dense + tanh)


class TiedLMHead(nn.Module):
    """BERT's prediction head: dense + gelu + LayerNorm, then scores against a slice of the embedding."""

    def __init__(self, cfg: VideoBertConfig, n_out: int):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # h: (N, H), weight: (n_out, H) -> (N, n_out)
        h = self.norm(F.gelu(self.dense(h)))
        return h @ weight.t() + self.bias


class VideoBert(nn.Module):
    def __init__(self, cfg: VideoBertConfig):
        super().__init__()
        self.cfg = cfg
        # BERT's own table holds the text side (WordPieces + [>]); visual words live in visual_embeddings
        self.bert = Bert(cfg)
        # Visual words are a table of their own, outside `bert.`, so they train at the fresh parts'
        # learning rate: at the encoder's (tuned for pretrained rows) they barely leave their init.
        self.visual_embeddings = nn.Embedding(cfg.n_visual_words, cfg.hidden_size)
        # which slot of its clip a visual token fills (row 0: text/specials, kept at zero)
        self.group_embeddings = nn.Embedding(cfg.tokens_per_clip + 1, cfg.hidden_size, padding_idx=0)
        self.mlm_head = TiedLMHead(cfg, cfg.text_vocab_size)
        self.mvm_head = TiedLMHead(cfg, cfg.n_visual_words)
        # alignment logit = calibrated cosine of the two sides + a learned correction from [CLS] and their product
        self.align_head = nn.Linear(cfg.hidden_size + cfg.embed_dim, 1)
        self.align_scale = nn.Parameter(torch.tensor(ALIGN_SCALE_INIT))
        self.align_bias = nn.Parameter(torch.tensor(-ALIGN_SCALE_INIT * ALIGN_COSINE_THRESHOLD_INIT))
        self.proj = nn.Linear(cfg.hidden_size, cfg.embed_dim)
        self.word_proj = nn.Linear(cfg.hidden_size, cfg.embed_dim)  # visual words -> late-interaction space
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature_init)))
        self._init_heads()

    def _init_heads(self) -> None:
        std = self.cfg.initializer_range
        for head in (self.mlm_head, self.mvm_head):
            nn.init.normal_(head.dense.weight, std=std)
            nn.init.zeros_(head.dense.bias)
        nn.init.normal_(self.visual_embeddings.weight, std=std)  # BERT's initialisation of word rows
        nn.init.normal_(self.align_head.weight, std=std)
        nn.init.zeros_(self.align_head.bias)
        nn.init.normal_(self.group_embeddings.weight, std=std)
        with torch.no_grad():
            self.group_embeddings.weight[0].zero_()
        for proj in (self.proj, self.word_proj):
            nn.init.zeros_(proj.bias)
            if self.cfg.embed_dim == self.cfg.hidden_size:
                nn.init.eye_(proj.weight)
            else:
                nn.init.normal_(proj.weight, std=1.0 / math.sqrt(self.cfg.hidden_size))

    # -- encoder -----------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor, group_ids: torch.Tensor) -> VideoBertOutput:
        # all inputs (B, T) long
        off = self.cfg.visual_offset
        is_visual = (input_ids >= off).unsqueeze(-1)  # (B, T, 1)
        words = torch.where(is_visual, self._visual_rows(input_ids),
                            self.bert.embeddings.word_embeddings(input_ids.clamp(max=off - 1)))
        # the slot's row also marks a masked visual position ([MASK] is a text id)
        embeds = words + self.group_embeddings(group_ids)  # (B, T, H)
        hidden, pooled = self.bert(embeds, attention_mask, token_type_ids, position_ids)
        return VideoBertOutput(hidden=hidden, pooled=pooled)

    @property
    def text_embeddings(self) -> torch.Tensor:
        return self.bert.embeddings.word_embeddings.weight  # (V_text + 1, H): WordPieces and [>]

    @property
    def word_embeddings(self) -> torch.Tensor:
        """(V, H) the whole joint vocabulary's input embeddings, in token-id order (a copy)."""
        return torch.cat([self.text_embeddings, self.visual_embeddings.weight])

    # -- heads ---------------------------------------------------------------------------------------
    def mlm_logits(self, h: torch.Tensor) -> torch.Tensor:
        # h: (N, H) hidden states at masked text positions -> (N, text_vocab_size)
        return self.mlm_head(h, self.text_embeddings[: self.cfg.text_vocab_size])

    def mvm_logits(self, h: torch.Tensor) -> torch.Tensor:
        # h: (N, H) hidden states at masked visual positions -> (N, n_visual_words)
        return self.mvm_head(h, self.visual_embeddings.weight)

    def align_logits(self, out: VideoBertOutput, text_mask: torch.Tensor, visual_mask: torch.Tensor) -> torch.Tensor:
        # out.hidden: (B, T, H), out.pooled: (B, H), masks: (B, T) bool positions of each modality
        # -> (B,) logit of "aligned"
        t = self.embed(out.hidden, text_mask)  # (B, E) text side, read in the joint sequence
        v = self.embed(out.hidden, visual_mask)  # (B, E) video side
        feats = torch.cat([out.pooled, (t * v).to(out.pooled.dtype)], -1)  # (B, H + E)
        cosine = (t * v).sum(-1)  # (B,)
        return self.align_head(feats).squeeze(-1).float() + self.align_scale * cosine + self.align_bias

    def embed(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # hidden: (B, T, H), attention_mask: (B, T) -> (B, embed_dim), unit norm
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return F.normalize(self.proj(mean).float(), dim=-1)

    def token_vectors(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # hidden: (B, T, H), mask: (B, T) bool -> (B, T, embed_dim) unit vectors, zero where mask is False
        v = F.normalize(self.proj(hidden).float(), dim=-1)
        return v * mask.unsqueeze(-1).to(v.dtype)

    def _visual_rows(self, input_ids: torch.Tensor) -> torch.Tensor:
        # (B, T) ids -> (B, T, H) visual-word rows (text ids read row 0; callers mask them out)
        return self.visual_embeddings((input_ids - self.cfg.visual_offset).clamp(min=0))

    def visual_word_vectors(self, input_ids: torch.Tensor, group_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # (B, T) ids, group ids, bool mask of the visual words to keep -> (B, T, embed_dim) unit vectors
        e = self._visual_rows(input_ids) + self.group_embeddings(group_ids)
        v = F.normalize(self.word_proj(e).float(), dim=-1)
        return v * mask.unsqueeze(-1).to(v.dtype)

    def temperature_scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(1.0 / self.cfg.temperature_min)).exp()


def late_interaction(text: torch.Tensor, text_mask: torch.Tensor, video: torch.Tensor,
                     video_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Bt, Bv) scores each way, from one similarity tensor: text -> video, the mean over text tokens of
    the best cosine with any of the video's tokens; video -> text, the mean over video tokens of the best
    cosine with any of the text's. text: (Bt, Lt, E), video: (Bv, Lv, E), unit vectors; masks bool."""
    sim = torch.einsum("ike,jle->ijkl", text, video)  # (Bt, Bv, Lt, Lv)
    to_video = _mean_of_best(sim, video_mask[None, :, None, :], text_mask[:, None, :], dim=-1)
    to_text = _mean_of_best(sim, text_mask[:, None, :, None], video_mask[None, :, :], dim=-2)
    return to_video, to_text


def _mean_of_best(sim: torch.Tensor, candidates: torch.Tensor, counted: torch.Tensor, dim: int) -> torch.Tensor:
    # best over `dim` among the candidates, then the mean over the counted tokens of the other side
    best = sim.masked_fill(~candidates, -2.0).max(dim).values  # -2 is below any cosine
    w = counted.to(best.dtype)
    return (best * w).sum(-1) / w.sum(-1).clamp(min=1.0)


def word_match(text: torch.Tensor, text_mask: torch.Tensor, words: torch.Tensor, words_mask: torch.Tensor
               ) -> torch.Tensor:
    """(Bt, Bv) late interaction both ways (FILIP): each text token's best visual word, and each visual
    word's best text token, averaged. The second half gives every visual word, a shape's as much as a
    colour's, a text token to answer to, where one way only the words the text needs get pulled."""
    to_words, to_text = late_interaction(text, text_mask, words, words_mask)
    return (to_words + to_text) / 2


# -- initialisation from a pretrained text BERT --------------------------------------------------------

def visual_embeddings_from_word_vectors(word_vectors: np.ndarray, hidden_size: int, target_norm: float,
                                        seed: int = 0) -> torch.Tensor:
    """Initial visual-word embeddings (n_words, hidden_size) from the vocabulary's word vectors.

    The vectors are centred and projected on their top principal components (at most
    hidden_size of them), so nearby centroids get nearby embeddings and the most varying
    directions survive; a fixed seeded random rotation then spreads those components over all
    hidden dimensions rather than the first few, and every row is scaled to `target_norm`
    (the mean norm of the text embeddings) so visual and text tokens enter the first layer
    at the same scale.
    """
    x = np.asarray(word_vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"word vectors must be (n_words, D), got {x.shape}")
    x = x - x.mean(0, keepdims=True)
    k = max(1, min(hidden_size, x.shape[0], x.shape[1]))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    coords = x @ vt[:k].T  # (n, k)
    rng = np.random.default_rng(seed)
    rot, _ = np.linalg.qr(rng.standard_normal((hidden_size, hidden_size)))
    emb = coords @ rot[:k]  # (n, hidden)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    # rows with no variation (e.g. a single word) get a random direction
    flat = norms[:, 0] < 1e-8
    if flat.any():
        emb[flat] = rng.standard_normal((int(flat.sum()), hidden_size))
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return torch.from_numpy(emb / norms * target_norm).float()


def from_pretrained_bert(bert: str | None, n_visual_words: int, tokens_per_clip: int,
                         word_vectors: np.ndarray | None, visual_sep_init_id: int,
                         embed_dim: int | None = None, seed: int = 0, layers: int | None = None) -> VideoBert:
    """A VideoBERT whose encoder starts from a pretrained BERT (folder or name; None = offline MiniLM).

    `layers` keeps only the first N transformer layers (with their pretrained weights): a
    smaller, faster model for small archives and CPU-only machines.

    The vocabulary is the BERT's plus `[>]` (initialised as a copy of `visual_sep_init_id`'s
    embedding, normally [SEP]) plus the visual words (see `visual_embeddings_from_word_vectors`;
    random BERT-style rows if `word_vectors` is None). Heads start fresh: the offline MiniLM
    ships no MLM head."""
    from transformers import BertModel

    from model.textmodels import local_only, resolve_bert

    source, is_local = resolve_bert(bert)
    pre = BertModel.from_pretrained(source, local_files_only=local_only(is_local), add_pooling_layer=True)
    pc = pre.config
    n_layers = pc.num_hidden_layers if layers is None else layers
    if not 1 <= n_layers <= pc.num_hidden_layers:
        raise ValueError(f"layers must be between 1 and {pc.num_hidden_layers} for {source}, not {layers}")
    cfg = VideoBertConfig(
        text_vocab_size=pc.vocab_size, n_visual_words=n_visual_words, tokens_per_clip=tokens_per_clip,
        hidden_size=pc.hidden_size, num_hidden_layers=n_layers,
        num_attention_heads=pc.num_attention_heads, intermediate_size=pc.intermediate_size,
        max_position_embeddings=pc.max_position_embeddings, type_vocab_size=max(2, pc.type_vocab_size),
        hidden_act=pc.hidden_act, hidden_dropout_prob=pc.hidden_dropout_prob,
        attention_probs_dropout_prob=pc.attention_probs_dropout_prob, layer_norm_eps=pc.layer_norm_eps,
        initializer_range=pc.initializer_range, pad_token_id=pc.pad_token_id or 0,
        embed_dim=embed_dim or pc.hidden_size,
    )
    torch.manual_seed(seed)
    model = VideoBert(cfg)
    state = pre.state_dict()
    text_emb = state.pop("embeddings.word_embeddings.weight")  # (V_text, H)
    state = {k: v for k, v in state.items()
             if not (k.startswith("encoder.layer.") and int(k.split(".")[2]) >= n_layers)}
    if pc.type_vocab_size < 2:  # give the video segment its own row
        tt = state["embeddings.token_type_embeddings.weight"]
        state["embeddings.token_type_embeddings.weight"] = torch.cat([tt, tt[:1]], 0)
    missing, unexpected = model.bert.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "embeddings.word_embeddings.weight"]
    if missing or unexpected:
        raise ValueError(f"{source}: BERT weights do not fit (missing {missing}, unexpected {unexpected})")
    with torch.no_grad():
        emb = model.text_embeddings
        emb[: cfg.text_vocab_size] = text_emb
        emb[cfg.text_vocab_size] = text_emb[visual_sep_init_id]
        if word_vectors is not None:
            if len(word_vectors) != n_visual_words:
                raise ValueError(f"{len(word_vectors)} word vectors for {n_visual_words} visual words")
            target = float(text_emb.norm(dim=1).mean())
            model.visual_embeddings.weight[:] = visual_embeddings_from_word_vectors(
                word_vectors, cfg.hidden_size, target, seed)
    return model
