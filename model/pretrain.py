"""VideoBERT pretraining: MLM + MVM + alignment + contrastive, with exact resume.

One step (per micro-batch of B sentence windows, and C >= B for the contrastive loss):
  1. text-only and video-only passes over C windows (the B positives first; then each one's nearest
     visual neighbours, then random windows) -> pooled unit vectors; in-batch InfoNCE both ways with
     a learnable temperature, once on the pooled cosine and once on the word-matching score (each
     word of the sentence, read in context, against its best-matching visual word: late interaction);
     windows that overlap count as positives of each other; each video shows a random subset of its
     feature groups; the worst-fitting quarter of the pairs is left out (small-loss trick: narration
     that does not describe its pictures);
  2. hard negatives as ALBEF mines them: for each sentence, a video drawn from the C with
     probability softmax(similarity), overlapping windows excluded; plus one random negative;
  3. one joint pass over [positives | random negatives | hard negatives | silent video-only
     windows], all masked the same way (15 % per modality, 80/10/10) so the presence of [MASK]
     cannot tell positives from negatives; alignment loss on the pairs (the worst-fitting quarter
     of the positives left out), MLM on the positives' text, MVM on the positives' and silent
     windows' visual words.
Every random draw of step s comes from generators seeded by (seed, s, micro-batch), and the
learning rate is a function of s, so stopping after any checkpoint and resuming replays the
uninterrupted run exactly (weights and AdamW moments are restored bit for bit).

Data parallel (model/distributed.py, under torchrun): a step's `grad_accum` micro-batches are dealt out
to the processes (micro-batch m to process m mod world size), DistributedDataParallel averages the
gradients, and each loss is weighted so that the sum equals one process's: the same global batch gives
the same step whatever the number of processes, and a run resumes with another number of them.
Data loading: a step's micro-batches are drawn and their contrastive passes collated by a torch
DataLoader (worker processes and pinned memory on a GPU). On CUDA the passes run under autocast: bf16
where the GPU has it, else fp16 with a gradient scaler (model/precision.py).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model.distributed import Process, all_sum
from model.masking import IGNORE_INDEX, MaskingOptions, mask_batch
from model.precision import amp_dtype, autocast
from model.pretrain_data import PairExample, PretrainData, StepExamples, overlap_matrix
from model.tokenization import Batch, VideoBertTokenizer
from model.videobert import VideoBert, word_match

log = logging.getLogger(__name__)

LOSSES = ("mlm", "mvm", "align", "itc", "itc_words")
EVAL_SEED_OFFSET = 7_919  # eval draws use (seed + this) so they never coincide with a training step's
TIMED_STEPS = 3  # steps timed (after the first, which pays for allocation) to fit a --minutes budget


@dataclass(frozen=True)
class PretrainOptions:
    steps: int = 300  # optimizer steps
    batch_size: int = 8  # sentence windows per micro-batch (the joint pass holds ~3x this + silent)
    itc_group_dropout: float = 0.5  # chance that a feature group's words are hidden from a contrastive video
    noisy_pairs: float = 0.25  # share of a batch's sentence-window pairs, those with the highest loss,
    # left out of the contrastive and alignment losses (see Pretrainer._small_loss_mean)
    itc_batch_size: int = 32  # sentence windows in the contrastive loss (the batch's, then more): the
    # single-modality passes are cheap, and among 31 negatives some share the colour or the motion, so
    # the vectors must encode the whole description, not one attribute of it
    itc_neighbours: int = 2  # of those extra windows, per positive, the ones sharing the most visual words
    # with it: random windows mostly differ in colour already, and the loss then never needs the rest
    # (on a sample archive the top hits' motion direction was right in 35 %, chance 25 %)
    grad_accum: int = 1  # micro-batches per optimizer step, over all processes (at least one each)
    lr: float = 5e-4  # peak learning rate (AdamW); see TrainOptions.lr
    head_lr: float = 5e-4  # peak learning rate of the fresh heads, projection and visual-word rows' head
    weight_decay: float = 0.01  # not applied to biases, LayerNorms, the temperature
    warmup_steps: int = 20  # linear warm-up, then linear decay to 0 at `steps`
    max_grad_norm: float = 1.0  # gradient clipping
    w_mlm: float = 1.0  # loss weights
    w_mvm: float = 1.0
    w_align: float = 1.0
    w_itc: float = 1.0
    w_itc_words: float = 1.0  # the contrastive loss on word-match scores
    hard_negatives: bool = True  # mine one hard negative per sentence from the contrastive similarity
    silent_fraction: float = 0.25  # video-only windows per micro-batch, as a fraction of batch_size
    masking: MaskingOptions = field(default_factory=MaskingOptions)
    seed: int = 0
    checkpoint_every: int = 100  # steps between checkpoints (and always at the end); 0 = only at the end
    eval_every: int = 100  # steps between held-out evaluations (and at the end); 0 = only at the end
    eval_pairs: int = 128  # held-out sentence windows evaluated at most
    amp: bool = True  # mixed precision on CUDA (bf16, or fp16 with a gradient scaler)
    workers: int = 0  # data-loading worker processes (0: draw in the training process)
    minutes: float | None = None  # wall-clock budget: fewer steps if `steps` would not fit (see fit)
    progress: bool = True  # tqdm bar

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def n_silent(self) -> int:
        """Video-only windows per micro-batch."""
        return int(round(self.batch_size * self.silent_fraction))


@dataclass(frozen=True)
class PretrainResult:
    history: list[dict[str, float]]  # one entry per optimizer step: step, lr, total and each loss
    evals: list[dict[str, float]]  # held-out metrics: step, each loss, align_acc, mlm_acc, mvm_acc
    seconds: float  # wall time of this call
    tokens: int  # real (non-pad) tokens through the encoder in this call


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _step_seed(seed: int, step: int, micro: int) -> int:
    return int(np.random.SeedSequence([seed, step, micro]).generate_state(1)[0])


@dataclass
class Micro:
    """One micro-batch: its examples, the contrastive passes' collated batches (built where the data loader
    runs: a worker process when there are workers) and the seed of its random draws."""

    seed: int
    examples: StepExamples
    text_ids: list[list[int]]  # wordpieces of the pairs (positives, then the contrastive ones)
    text_batch: Batch  # the pairs' text-only pass
    video_batch: Batch  # the pairs' video-only pass

    def pin_memory(self) -> Micro:  # torch's DataLoader pins what has this method
        return replace(self, text_batch=self.text_batch.pin_memory(), video_batch=self.video_batch.pin_memory())


def prepare(tok: VideoBertTokenizer, ex: StepExamples, seed: int) -> Micro:
    pairs = ex.positives + ex.contrastive
    text_ids = tok.text_ids([p.text for p in pairs])
    return Micro(seed, ex, text_ids, collate(tok, text_ids, [None] * len(pairs)),
                 collate(tok, [None] * len(pairs), [p.video for p in pairs]))


def collate(tok: VideoBertTokenizer, texts: list[list[int] | None], videos: list[np.ndarray | None]) -> Batch:
    """One padded batch of (wordpiece ids, visual tokens) pairs, either side None."""
    return tok.collate([tok.encode_ids(t, v) for t, v in zip(texts, videos, strict=True)])


class StepSource(torch.utils.data.Dataset):
    """Step s -> this process's micro-batches of step s (`micros`: their indices among all processes').
    Each one's draws come from (seed, s, micro-batch index), so every split of the work sees the same data."""

    def __init__(self, data: PretrainData, tok: VideoBertTokenizer, opts: PretrainOptions, micros: Sequence[int]):
        self.data, self.tok, self.opts, self.micros = data, tok, opts, list(micros)

    def __getitem__(self, step: int) -> list[Micro]:
        o = self.opts
        out = []
        for micro in self.micros:
            seed = _step_seed(o.seed, step, micro)
            ex = self.data.sample_step(np.random.default_rng(seed), o.batch_size, o.n_silent, o.itc_batch_size,
                                       o.itc_neighbours)
            out.append(prepare(self.tok, ex, seed))
        return out


class _Losses(torch.nn.Module):
    """A micro-batch's losses as one module's forward: the form DistributedDataParallel synchronises."""

    def __init__(self, trainer: Pretrainer):
        super().__init__()
        self.model = trainer.model
        self.trainer = trainer

    def forward(self, micro: Micro, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        return self.trainer.losses(micro, gen)


def param_groups(model: VideoBert, opts: PretrainOptions) -> list[dict]:
    """Encoder at `lr`, fresh parts (heads, projection, temperature) at `head_lr`; no decay on norms/biases."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        fresh = not name.startswith("bert.") or name.startswith("bert.pooler.")
        decay = p.ndim >= 2  # matrices and embeddings; LayerNorm, biases and the temperature are < 2-D
        groups.setdefault((fresh, decay), []).append(p)
    return [{"params": ps, "lr": opts.head_lr if fresh else opts.lr, "base_lr": opts.head_lr if fresh else opts.lr,
             "weight_decay": opts.weight_decay if decay else 0.0}
            for (fresh, decay), ps in sorted(groups.items())]


class Pretrainer:
    def __init__(self, model: VideoBert, tokenizer: VideoBertTokenizer, data: PretrainData,
                 options: PretrainOptions = PretrainOptions(), device: str | torch.device = "cpu",
                 process: Process | None = None):
        process = process or Process()
        if options.grad_accum < process.world_size:
            raise ValueError(f"{process.world_size} processes need at least as many micro-batches per step "
                             f"(grad_accum {options.grad_accum})")
        if data.tokens_per_clip != tokenizer.tokens_per_clip:
            raise ValueError(f"data has {data.tokens_per_clip} tokens per clip, tokenizer {tokenizer.tokens_per_clip}")
        if tokenizer.vocab_size != model.cfg.vocab_size:
            raise ValueError(f"tokenizer vocabulary {tokenizer.vocab_size} != model's {model.cfg.vocab_size}")
        self.model = model.to(device)
        self.tok = tokenizer
        self.data = data
        self.opts = options
        self.device = torch.device(device)
        self.optimizer = torch.optim.AdamW(param_groups(model, options), betas=(0.9, 0.98), eps=1e-6)
        self.random_text_ids = torch.from_numpy(tokenizer.word_candidates())
        self.amp = amp_dtype(self.device) if options.amp else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.process = process
        self.source = StepSource(data, tokenizer, options, range(process.rank, options.grad_accum, process.world_size))
        self.ddp = None
        if process.distributed:
            from torch.nn.parallel import DistributedDataParallel

            # find_unused_parameters: a micro-batch without masked visual words leaves the MVM head unused
            self.ddp = DistributedDataParallel(_Losses(self), find_unused_parameters=True, broadcast_buffers=False,
                                               device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # -- one micro-batch -----------------------------------------------------------------------------
    def _batch(self, texts: list[list[int] | None], videos: list[np.ndarray | None]) -> Batch:
        return collate(self.tok, texts, videos).to(self.device)

    def _encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        # -> (B, E) pooled unit vectors and the (B, T, H) hidden states they came from
        out = self.model(**batch.model_inputs())
        return self.model.embed(out.hidden, batch.attention_mask), out.hidden

    def _contrastive(self, sim: torch.Tensor, same: torch.Tensor, noisy: float) -> torch.Tensor:
        # sim: (B, B) text x video similarity; same: (B, B) bool, True where windows overlap (positives)
        logits = sim * self.model.temperature_scale()
        target = same.float() / same.float().sum(1, keepdim=True)
        per_pair = (torch.sum(-target * F.log_softmax(logits, 1), 1)
                    + torch.sum(-target.t() * F.log_softmax(logits.t(), 1), 1)) / 2
        return self._small_loss_mean(per_pair, noisy)

    def _drop_groups(self, batch: Batch, gen: torch.Generator) -> Batch:
        """Hide each feature group's visual words from a video with probability itc_group_dropout (never
        all of them). The words of all groups together single out one scene, so the contrastive loss
        could be met by memorising scenes; seeing a random part of them it must tie each description
        to the groups that show it, which is what finds scenes no narration describes."""
        n_groups = self.tok.tokens_per_clip
        if n_groups < 2 or self.opts.itc_group_dropout <= 0:
            return batch
        drop = torch.rand(batch.input_ids.shape[0], n_groups, generator=gen) < self.opts.itc_group_dropout
        drop[drop.all(1)] = False
        drop = F.pad(drop, (1, 0)).to(batch.group_ids.device)  # column 0: not a visual word, never hidden
        hide = torch.gather(drop, 1, batch.group_ids)
        return replace(batch, attention_mask=batch.attention_mask.masked_fill(hide, 0))

    @staticmethod
    def _small_loss_mean(losses: torch.Tensor, noisy: float) -> torch.Tensor:
        """Mean of the (1 - noisy_pairs) smallest losses: the small-loss trick for noisy labels. Narration
        that does not describe its pictures ("thank you for watching") keeps a high loss; trained on, it
        pulls those pictures towards the chatter and teaches the alignment head that they match no
        description, which buries exactly the moments only the pictures can find."""
        keep = max(1, len(losses) - int(noisy * len(losses)))
        return torch.topk(losses, keep, largest=False).values.mean()

    def _hard_negatives(self, sim: torch.Tensor, same: torch.Tensor, gen: torch.Generator) -> list[int | None]:
        """For each sentence, a batch video drawn with probability softmax(sim) among non-overlapping ones."""
        weights = torch.softmax(sim.float().cpu() * float(self.model.temperature_scale().detach()), 1)
        weights = weights.masked_fill(same.cpu(), 0.0)
        out: list[int | None] = []
        for row in weights:
            out.append(int(torch.multinomial(row, 1, generator=gen)) if row.sum() > 0 else None)
        return out

    def losses(self, micro: Micro, gen: torch.Generator, training: bool = True) -> tuple[torch.Tensor, dict]:
        """Weighted total loss and per-loss / accuracy metrics for one micro-batch."""
        o = self.opts
        ex = micro.examples
        pos = ex.positives
        b = len(pos)
        pairs = pos + ex.contrastive  # the contrastive loss sees more pairs than the joint pass
        text_ids = micro.text_ids
        same = torch.from_numpy(overlap_matrix(pairs)).to(self.device)
        metrics: dict[str, float] = {}
        n_tokens = 0

        with autocast(self.device, self.amp):
            tb = micro.text_batch.to(self.device, non_blocking=True)
            vb = micro.video_batch.to(self.device, non_blocking=True)
            if training:
                vb = self._drop_groups(vb, gen)
            n_tokens += tb.n_tokens + vb.n_tokens
            noisy = o.noisy_pairs if training else 0.0  # held-out evaluation scores every pair
            shown = vb.visual_mask & vb.attention_mask.bool()  # visual words not hidden by _drop_groups
            t, t_hidden = self._encode(tb)
            v, _ = self._encode(vb)
            # word matching: the sentence's words (in context) against the visual words themselves
            t_tok = self.model.token_vectors(t_hidden, tb.text_mask)
            v_tok = self.model.visual_word_vectors(vb.input_ids, vb.group_ids, shown)
            cosine = t @ v.t()  # (C, C)
            itc = self._contrastive(cosine, same, noisy)
            itc_words = self._contrastive(word_match(t_tok, tb.text_mask, v_tok, shown), same, noisy)
            text_ids = text_ids[:b]

            texts: list[list[int] | None] = list(text_ids) + list(text_ids)
            videos: list[np.ndarray | None] = [p.video for p in pos] + list(ex.random_negative_videos)
            labels = [1] * b + [0] * b
            if training and o.hard_negatives and len(pairs) > 1:
                for i, j in enumerate(self._hard_negatives(cosine.detach()[:b], same[:b], gen)):
                    if j is not None:
                        texts.append(text_ids[i])
                        videos.append(pairs[j].video)
                        labels.append(0)
            texts += [None] * len(ex.silent_videos)
            videos += list(ex.silent_videos)
            labels += [IGNORE_INDEX] * len(ex.silent_videos)

            jb = self._batch(texts, videos)
            n_tokens += jb.n_tokens
            m = mask_batch(jb, self.tok.mask_id, self.tok.text_vocab_size, self.tok.visual_offset,
                           self.tok.n_visual_words, o.masking, gen, self.random_text_ids)
            scored = torch.tensor(labels, device=self.device)
            is_neg = (scored == 0).unsqueeze(1)  # negatives: masked alike, but no MLM/MVM loss
            mlm_labels = m.mlm_labels.masked_fill(is_neg, IGNORE_INDEX)
            mvm_labels = m.mvm_labels.masked_fill(is_neg, IGNORE_INDEX)
            out = self.model(**{**jb.model_inputs(), "input_ids": m.input_ids})

            pair = scored != IGNORE_INDEX
            align_logits = self.model.align_logits(out, jb.text_mask, jb.visual_mask)[pair]
            target = scored[pair].float()
            bce = F.binary_cross_entropy_with_logits(align_logits, target, reduction="none")
            is_pos = target > 0.5  # leave the noisiest positives out, keep every negative
            pos_sum = self._small_loss_mean(bce[is_pos], noisy) * is_pos.sum() if bool(is_pos.any()) else 0.0
            align = (pos_sum + bce[~is_pos].sum()) / len(bce)
            metrics["align_acc"] = float(((align_logits > 0).float() == target).float().mean())
            mlm, metrics["mlm_acc"] = self._token_loss(out.hidden, mlm_labels, self.model.mlm_logits)
            mvm, metrics["mvm_acc"] = self._token_loss(out.hidden, mvm_labels, self.model.mvm_logits)

        parts = {"mlm": mlm, "mvm": mvm, "align": align, "itc": itc, "itc_words": itc_words}
        total = (o.w_mlm * mlm + o.w_mvm * mvm + o.w_align * align + o.w_itc * itc
                 + o.w_itc_words * itc_words)
        metrics.update({k: float(v.detach()) for k, v in parts.items()})
        metrics["loss"] = float(total.detach())
        metrics["tokens"] = n_tokens
        return total, metrics

    @staticmethod
    def _token_loss(hidden: torch.Tensor, labels: torch.Tensor, head) -> tuple[torch.Tensor, float]:
        # hidden: (B, T, H), labels: (B, T) -> loss over labelled positions only
        sel = labels != IGNORE_INDEX
        if not bool(sel.any()):
            return hidden.sum() * 0.0, float("nan")
        logits = head(hidden[sel]).float()  # (N, vocab)
        target = labels[sel]
        return F.cross_entropy(logits, target), float((logits.argmax(1) == target).float().mean())

    # -- training ------------------------------------------------------------------------------------
    def _set_lr(self, step: int) -> float:
        f = lr_factor(step, self.opts.warmup_steps, self.opts.steps)
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * f
        return f

    def train_step(self, step: int, micros: list[Micro] | None = None) -> dict[str, float]:
        """One optimizer step over this process's micro-batches of `step` (drawn here unless given)."""
        o = self.opts
        self.model.train()
        f = self._set_lr(step)
        micros = self.source[step] if micros is None else micros
        # DDP averages over processes; this weight makes the sum over all micro-batches one process's mean
        weight = self.process.world_size / o.grad_accum
        seen: dict[str, list[float]] = {}
        for k, micro in enumerate(micros):
            torch.manual_seed(micro.seed)  # dropout
            gen = torch.Generator().manual_seed(micro.seed)
            last = k == len(micros) - 1
            with self.ddp.no_sync() if self.ddp is not None and not last else nullcontext():
                total, metrics = self.ddp(micro, gen) if self.ddp is not None else self.losses(micro, gen)
                self.scaler.scale(total * weight).backward()
            for name, v in metrics.items():
                seen.setdefault(name, []).append(v)
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return {"step": step + 1, "lr_factor": f, "grad_norm": float(grad_norm), **self._mean_metrics(seen)}

    def _mean_metrics(self, seen: dict[str, list[float]]) -> dict[str, float]:
        """Tokens add up; the rest average over the micro-batches, of all processes, that had any (an accuracy
        with no masked word in a micro-batch is nan, and nan would also make two identical runs compare unequal)."""
        names = sorted(seen)
        sums = [float(np.nansum(seen[k])) for k in names]
        counts = [float(np.sum(~np.isnan(seen[k]))) for k in names]
        totals = all_sum(sums + counts, self.process)
        sums, counts = totals[:len(names)], totals[len(names):]
        return {k: s if k == "tokens" else (s / c if c else 0.0) for k, s, c in zip(names, sums, counts, strict=True)}

    @torch.no_grad()
    def evaluate(self, split: str = "held_out", max_pairs: int | None = None) -> dict[str, float]:
        """Per-loss values, alignment accuracy (positives + one random negative each) and masked-token
        accuracy, with no augmentation and fixed draws, so numbers are comparable across steps."""
        windows = self.data.windows(split)
        if len(windows) < 2:  # a negative needs a second moment; tiny archives hold out one sentence
            return {}
        was_training = self.model.training
        self.model.eval()
        seed = self.opts.seed + EVAL_SEED_OFFSET
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        n = min(len(windows), max_pairs or self.opts.eval_pairs)
        pick = np.sort(rng.permutation(len(windows))[:n])
        positives: list[PairExample] = [self.data.positive(windows, int(i), None) for i in pick]
        negs = [self.data.random_negative(windows, p, rng, subsample=False) for p in positives]
        totals: dict[str, float] = {}
        weight = 0
        for lo in range(0, n, self.opts.batch_size):
            chunk = positives[lo: lo + self.opts.batch_size]
            ex = StepExamples(chunk, [v for v, _ in negs[lo: lo + len(chunk)]],
                              [s for _, s in negs[lo: lo + len(chunk)]], [])
            _, metrics = self.losses(prepare(self.tok, ex, seed), gen, training=False)
            for k, v in metrics.items():
                if k != "tokens" and not math.isnan(v):
                    totals[k] = totals.get(k, 0.0) + v * len(chunk)
            weight += len(chunk)
        self.model.train(was_training)
        return {k: v / weight for k, v in totals.items()}

    def fit(self, out_dir: str | Path | None = None, resume: bool = True, stop_at: int | None = None) -> PretrainResult:
        """Train to `opts.steps` (or stop after `stop_at`, as an interruption would), checkpointing
        into `out_dir`; with `resume`, continue from the training state found there.

        With `opts.minutes`, the first steps are timed and the run is shortened to what fits (the learning
        rate then decays to 0 at the new end); should it still run past the budget, it stops there. Either
        way the checkpoint records the shortened run as complete."""
        from tqdm.auto import tqdm

        from model.checkpoint import has_training_state, load_state_into, load_training_state

        main = self.process.is_main
        start, history, evals = 0, [], []
        if out_dir is not None and resume and has_training_state(out_dir):
            load_state_into(self.model, out_dir)
            state = load_training_state(out_dir, self.optimizer)
            start, history, evals = state["step"], state["history"], state["evals"]
            if self.scaler.is_enabled() and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            if main:
                log.info("resuming pretraining at step %d from %s", start, out_dir)
        t0 = time.perf_counter()
        deadline = t0 + 60 * self.opts.minutes if self.opts.minutes else None
        end = self.opts.steps if stop_at is None else min(stop_at, self.opts.steps)
        tokens = 0
        bar = tqdm(total=self.opts.steps, initial=start, desc="pretrain", unit="step",
                   disable=not (self.opts.progress and main))
        t_timed = None
        for step, micros in zip(range(start, end), self._loader(start, end), strict=False):
            rec = self.train_step(step, micros)
            tokens += int(rec.pop("tokens"))
            history.append(rec)
            bar.update(1)
            bar.set_postfix({k: f"{rec[k]:.3f}" for k in ("loss", *LOSSES, "align_acc")})
            done = step + 1
            if done == start + 1:
                t_timed = time.perf_counter()
            elif done == start + 1 + TIMED_STEPS:
                end = self._fit_budget(done, end, (time.perf_counter() - t_timed) / TIMED_STEPS, deadline, bar)
            if deadline is not None and done < end and self._past(deadline):
                if main:
                    log.info("pretraining stopped at step %d: the %g-minute budget is spent", done, self.opts.minutes)
                end = self._shorten(done, end, bar)
            last = done == end
            o = self.opts
            if main and ((o.eval_every and done % o.eval_every == 0) or (last and done == o.steps)):
                ev = self.evaluate()
                if ev:
                    evals.append({"step": done, **ev})
                    log.info("held-out @%d: %s", done, " ".join(f"{k}={v:.3f}" for k, v in ev.items()))
            if main and out_dir is not None and ((o.checkpoint_every and done % o.checkpoint_every == 0) or last):
                self.save(out_dir, done, history, evals)
            if last:
                break
        bar.close()
        return PretrainResult(history, evals, time.perf_counter() - t0, tokens)

    def _fit_budget(self, done: int, end: int, per_step: float, deadline: float | None, bar) -> int:
        """After the timed steps: log the time to go and, under a wall-clock budget, shorten the run to fit."""
        left = deadline - time.perf_counter() if deadline is not None else 0.0
        per_step, left = (v / self.process.world_size for v in all_sum([per_step, left], self.process))  # one
        # decision for all processes
        if deadline is not None:
            fits = done + int(max(0.0, left) / per_step)
            if fits < self.opts.steps:
                if self.process.is_main:
                    log.info("pretraining: %.2f s per step, so %d of %d steps fit in %g minutes", per_step,
                             max(fits, done), self.opts.steps, self.opts.minutes)
                end = self._shorten(max(fits, done), end, bar)
        if self.process.is_main:
            log.info("pretraining: %.2f s per step, about %.0f s to go", per_step, per_step * (end - done))
        return end

    def _shorten(self, steps: int, end: int, bar) -> int:
        """Make this a run of `steps` steps (the schedule decays to 0 there, the checkpoint calls it complete);
        returns the new end of this call."""
        self.opts = replace(self.opts, steps=steps)
        bar.total = steps
        return min(end, steps)

    def _past(self, deadline: float) -> bool:
        """Whether the wall-clock budget is spent (on any process: they all stop at the same step)."""
        return all_sum([float(time.perf_counter() > deadline)], self.process)[0] > 0

    def _loader(self, start: int, end: int):
        """This process's micro-batches of steps start..end-1, drawn by a DataLoader (workers when asked)."""
        from torch.utils.data import DataLoader

        if self.opts.workers:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the workers are forked processes
        return DataLoader(self.source, batch_size=None, sampler=range(start, end), num_workers=self.opts.workers,
                          pin_memory=self.device.type == "cuda")

    def save(self, out_dir: str | Path, step: int, history: list, evals: list) -> None:
        from model.checkpoint import save_model, save_training_state

        schedule = {"warmup_steps": self.opts.warmup_steps, "total_steps": self.opts.steps,
                    "lr_factor_next": lr_factor(step, self.opts.warmup_steps, self.opts.steps)}
        save_model(out_dir, self.model, self.tok, meta={"step": step, "steps": self.opts.steps})
        state = {"step": step, "schedule": schedule, "options": self.opts.to_dict(), "history": history,
                 "evals": evals}
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        save_training_state(out_dir, self.optimizer, state)
