"""`vbsearch finetune-caption`: train the caption decoder on the catalog's (clip window, sentence) pairs.

    catalog clips --vocab--> visual tokens --+
    catalog sentences -----------------------+--> sentence windows (model.pretrain_data's pairing: the clips
        whose midpoint lies in the sentence, else the nearest) --seeded split--> train / held out
        --> model.captioner.VideoCaptioner (frozen VideoBERT encoder, trained decoder) --> MODEL_DIR/captioner
Training windows are widened at random by up to `widen_clips` clips each side, since the windows
captioned later (search segments) are longer than one sentence. The held-out windows are recorded
with the captioner so `vbsearch eval --downstream` scores captions the decoder never trained on
(the encoder's self-supervised pretraining did see their sentences).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CAPTIONER_DIR = "captioner"  # in the model folder
MEMORY_CACHE = 4096  # training windows whose encoder states are kept (~40 KB each at width 384)


class CaptionTrainError(RuntimeError):
    """The catalog holds no usable (window, sentence) pairs, or the model cannot be used."""


@dataclass(frozen=True)
class CaptionTrainOptions:
    steps: int = 400  # optimizer steps
    batch_size: int = 16  # (window, sentence) pairs per step
    lr: float = 5e-4  # peak learning rate (AdamW), linear warm-up then linear decay
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    layers: int = 2  # decoder layers
    heads: int = 6  # attention heads (must divide the encoder's width)
    intermediate_size: int = 1024  # decoder feed-forward width
    max_len: int = 32  # wordpieces per caption, start and end tokens included
    dropout: float = 0.1
    label_smoothing: float = 0.1
    held_out: float = 0.25  # fraction of the sentence windows kept out of training
    seed: int = 0  # decides the split, initialisation, batches and augmentation
    widen_clips: int = 2  # augmentation: up to this many extra clips each side of a training window
    threads: int | None = None  # torch CPU threads (None: torch's default; 1 is far faster on a busy machine)


@dataclass(frozen=True)
class CaptionPair:
    video_id: str
    start: float  # s
    end: float  # s
    text: str  # the sentence (ASR or sidecar)
    rows: np.ndarray  # clip rows of the window, into the token table


@dataclass(frozen=True)
class CaptionData:
    train: list[CaptionPair]
    held_out: list[CaptionPair]
    tokens: np.ndarray  # (n_clips, tokens_per_clip) every catalogued clip, sorted by video and time
    first_row: np.ndarray  # (n_clips,) first row of each clip's video
    last_row: np.ndarray  # (n_clips,) last row of each clip's video


@dataclass(frozen=True)
class CaptionTrainResult:
    n_train: int
    n_held_out: int
    vocab_size: int  # caption vocabulary, specials included
    final_loss: float  # mean training loss over the last 10% of steps
    seconds: float
    folder: Path | None
    captioner_id: str | None
    samples: list[tuple[str, str]]  # (reference, generated) for up to 5 held-out windows


def caption_data(data_dir: Path, vocab, held_out: float, seed: int) -> CaptionData:
    from indexer.catalog import Catalog
    from indexer.train import TrainError, clip_features, load_training_tables
    from model.pretrain_data import DataOptions, PretrainData, PretrainDataError

    try:
        clips, sentences, _, _ = load_training_tables(Catalog(data_dir))
        tokens = vocab.tokenize(clip_features(clips))
        data = PretrainData(sentences, clips.select(["video_id", "start", "end"]), tokens,
                            DataOptions(held_out_fraction=held_out, split_seed=seed))
    except (TrainError, PretrainDataError) as exc:
        raise CaptionTrainError(str(exc)) from exc
    vid = np.asarray(clips["video_id"].to_list())
    change = np.flatnonzero(np.r_[True, vid[1:] != vid[:-1], True])  # rows are grouped by video
    first, last = np.empty(len(vid), np.int64), np.empty(len(vid), np.int64)
    for a, b in zip(change[:-1], change[1:], strict=True):
        first[a:b], last[a:b] = a, b - 1

    def pairs(windows):
        return [CaptionPair(w.video_id, w.start, w.end, w.text, w.clips) for w in windows if w.text]

    return CaptionData(pairs(data.train), pairs(data.held_out), data.tokens, first, last)


def widen(rows: np.ndarray, first: int, last: int, extra_before: int, extra_after: int) -> np.ndarray:
    """The window's rows extended by up to that many clips each side, within its video."""
    return np.arange(max(first, int(rows.min()) - extra_before), min(last, int(rows.max()) + extra_after) + 1)


def caption_vocab(tok, texts: list[str]) -> tuple[np.ndarray, dict[int, int]]:
    """WordPiece ids of [PAD], [CLS], [SEP] and every piece of the captions; id -> vocabulary index."""
    pieces = sorted({i for ids in tok.text_ids(texts) for i in ids} - {tok.pad_id, tok.cls_id, tok.sep_id})
    ids = np.asarray([tok.pad_id, tok.cls_id, tok.sep_id, *pieces], dtype=np.int64)
    return ids, {int(t): k for k, t in enumerate(ids)}


def train_captioner(model, tok, data: CaptionData, options: CaptionTrainOptions, device: str = "cpu"):
    """(trained VideoCaptioner, vocab_ids, mean loss of the last 10% of steps)."""
    import torch

    from model.captioner import CaptionDecoder, CaptionerConfig, VideoCaptioner, text_rows
    from model.pretrain import lr_factor

    if not data.train:
        raise CaptionTrainError("no training sentence overlaps a clip: nothing to caption")
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    vocab_ids, index = caption_vocab(tok, [p.text for p in data.train])
    cfg = CaptionerConfig(hidden_size=model.cfg.hidden_size, vocab_size=len(vocab_ids), bos_index=1, eos_index=2,
                          pad_index=0, num_layers=options.layers, num_heads=options.heads,
                          intermediate_size=options.intermediate_size, max_len=options.max_len,
                          dropout=options.dropout)
    decoder = CaptionDecoder(cfg, text_rows(model, torch.as_tensor(vocab_ids, device=device)))
    captioner = VideoCaptioner(model, decoder).to(device)
    targets = [[1, *[index[i] for i in ids][: options.max_len - 2], 2] for ids in tok.text_ids([p.text for p in data.train])]
    optimizer = torch.optim.AdamW([p for p in captioner.decoder.parameters() if p.requires_grad], lr=options.lr,
                                  weight_decay=options.weight_decay)
    warmup = int(options.steps * options.warmup_fraction)
    # The encoder is frozen and windows repeat across epochs: its states are cached per window.
    cache: dict[tuple[int, int], torch.Tensor] = {}

    def memories(windows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        keys = [(int(w[0]), int(w[-1])) for w in windows]  # widened windows are contiguous rows
        fresh = {k: w for k, w in zip(keys, windows, strict=True) if k not in cache}
        states = {k: cache[k] for k in keys if k in cache}
        if fresh:
            enc = tok.collate(tok.encode_batch([None] * len(fresh), [data.tokens[w] for w in fresh.values()]))
            hidden, _ = captioner.memory(**enc.to(device).model_inputs())
            for j, k in enumerate(fresh):
                states[k] = hidden[j, : int(enc.attention_mask[j].sum())]
                if len(cache) < MEMORY_CACHE:
                    cache[k] = states[k]
        width = max(len(states[k]) for k in keys)
        memory = torch.zeros(len(keys), width, model.cfg.hidden_size, device=device)
        pad = torch.ones(len(keys), width, dtype=torch.bool, device=device)
        for j, k in enumerate(keys):
            memory[j, : len(states[k])], pad[j, : len(states[k])] = states[k], False
        return memory, pad

    losses = []
    n = len(data.train)
    order = rng.permutation(n)
    pos = 0
    for step in range(options.steps):
        if pos + options.batch_size > n:  # a new epoch: reshuffle
            order, pos = rng.permutation(n), 0
        idx = order[pos: pos + options.batch_size].tolist()
        pos += options.batch_size
        windows = []
        for i in idx:
            p = data.train[i]
            a, b = rng.integers(0, options.widen_clips + 1, size=2)
            r0 = int(p.rows[0])
            windows.append(widen(p.rows, int(data.first_row[r0]), int(data.last_row[r0]), int(a), int(b)))
        memory, pad = memories(windows)
        width = max(len(targets[i]) for i in idx)
        seq = torch.tensor([targets[i] + [0] * (width - len(targets[i])) for i in idx], device=device)
        for g in optimizer.param_groups:
            g["lr"] = options.lr * lr_factor(step, warmup, options.steps)
        captioner.decoder.train()
        loss = captioner.loss(memory, pad, seq, options.label_smoothing)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(captioner.decoder.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            log.info("caption step %d/%d loss %.3f", step, options.steps, losses[-1])
    tail = losses[-max(1, len(losses) // 10):]
    return captioner.eval(), torch.as_tensor(vocab_ids), float(np.mean(tail))


def finetune_caption(settings, options: CaptionTrainOptions = CaptionTrainOptions(), out: Path | None = None,
                     save: bool = True) -> CaptionTrainResult:
    from model.captioner import CaptionerInference, save_captioner
    from model.checkpoint import load_model
    from model.vocab import VisualVocab
    from search.engine import model_id_of

    t0 = time.perf_counter()
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    if options.max_len < 3 or options.steps < 1 or options.batch_size < 1:
        raise CaptionTrainError("need max_len >= 3, steps >= 1 and batch_size >= 1")
    data = caption_data(Path(settings.data_dir), VisualVocab.load(settings.vocab_path), options.held_out, options.seed)
    model_dir = settings.model_path
    device = settings.torch_device
    model, tok = load_model(model_dir, device)
    captioner, vocab_ids, final_loss = train_captioner(model, tok, data, options, device)
    inference = CaptionerInference(captioner, tok, vocab_ids, "", device)
    shown = data.held_out[:5]
    generated = inference.caption([data.tokens[p.rows] for p in shown])
    folder = captioner_id = None
    if save:
        folder = Path(out) if out else model_dir / CAPTIONER_DIR
        held = [{"video_id": p.video_id, "start": p.start, "end": p.end, "text": p.text} for p in data.held_out]
        commonest = Counter(p.text for p in data.train).most_common(1)[0][0]  # the constant baseline's caption
        meta = {"options": asdict(options), "n_train": len(data.train), "final_loss": final_loss,
                "held_out_windows": held, "commonest_caption": commonest}
        captioner_id = save_captioner(folder, captioner, vocab_ids, model_id_of(model_dir), meta)
    return CaptionTrainResult(len(data.train), len(data.held_out), len(vocab_ids), final_loss,
                              time.perf_counter() - t0, folder, captioner_id,
                              [(p.text, g) for p, g in zip(shown, generated, strict=True)])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = CaptionTrainOptions()
    parser.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"pairs per step (default {d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    parser.add_argument("--layers", type=int, default=d.layers, help=f"decoder layers (default {d.layers})")
    parser.add_argument("--held-out", type=float, default=d.held_out,
                        help=f"fraction of sentence windows held out for evaluation (default {d.held_out})")
    parser.add_argument("--seed", type=int, default=d.seed, help="split, initialisation and batch order seed")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, help="captioner folder (default: MODEL_DIR/captioner)")


def run(args: argparse.Namespace, settings) -> int:
    from model.checkpoint import CheckpointError

    if not 0 <= args.held_out < 1:
        print("vbsearch finetune-caption: need 0 <= --held-out < 1", file=sys.stderr)
        return 2
    options = CaptionTrainOptions(steps=args.steps, batch_size=args.batch_size, lr=args.lr, layers=args.layers,
                                  held_out=args.held_out, seed=args.seed, threads=args.threads)
    try:
        res = finetune_caption(settings, options, args.out)
    except (CaptionTrainError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"vbsearch finetune-caption: {exc}", file=sys.stderr)
        return 1
    print(f"{res.n_train} training and {res.n_held_out} held-out sentence windows, {res.vocab_size} wordpieces; "
          f"final loss {res.final_loss:.3f}; {res.seconds:.0f} s")
    for ref, gen in res.samples:
        print(f"  held out: {ref!r}\n  caption:  {gen!r}")
    print(f"captioner saved to {res.folder} (id {res.captioner_id}); scores: vbsearch eval ARCHIVE --downstream")
    return 0
