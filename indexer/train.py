"""`vbsearch train`: fit the visual vocabulary (if the data dir has none), pretrain VideoBERT on the catalog
and fit its narration lexicon (model/lexicon.py) over the same narrated windows.

    catalog clips (features) --vocab--> visual tokens --+
    catalog sentences ---------------------------------+--> model.pretrain --> data_dir/model
The model folder doubles as the training checkpoint: an interrupted run resumes where it stopped;
a run on a model already trained to its end only fits the lexicon again (--steps N trains it further).

How long: `step_budget` sizes the run to the archive, PASSES passes over its windows (narrated and
silent), between MIN_STEPS and MAX_STEPS; --steps sets it, --minutes caps it by wall-clock time.
Under torchrun every process trains (model/distributed.py); rank 0 fits the vocabulary and the
lexicon, holds the data dir's writer lock and writes the checkpoints.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from indexer.catalog import Catalog
from vbsearch.config import MODEL_DIR, VOCAB_DIR

log = logging.getLogger(__name__)

# Passes over the archive's windows: 24 give a 20-minute sample archive (~135 narrated and ~25 silent
# windows) the ~400 steps its retrieval quality was measured at (README), and every archive as many passes.
PASSES = 24
MIN_STEPS = 40  # a few minutes of footage still gets past the warm-up and learns its words
MAX_STEPS = 200_000  # ~1,000 hours at batch 8; a bigger archive is seen fewer times (or give --steps)
CUDA_BATCH = 32  # sentence windows per micro-batch on a GPU (8 on a CPU: a step stays a second or two)


class TrainError(RuntimeError):
    """The catalog cannot be trained on (empty, mixed extractors, no speech, ...)."""


@dataclass(frozen=True)
class TrainOptions:
    steps: int | None = None  # optimizer steps; None: sized to the archive (step_budget)
    minutes: float | None = None  # stop within this wall-clock budget (fewer steps if they would not fit)
    batch_size: int | None = None  # sentence windows per micro-batch; None: 8 on a CPU, CUDA_BATCH on a GPU
    itc_batch_size: int = 32  # sentence windows in the contrastive loss (the batch's and more)
    itc_neighbours: int = 2  # of those, per batch window, its nearest visual neighbours (hard negatives)
    grad_accum: int = 1  # micro-batches per step
    lr: float = 5e-4  # encoder peak learning rate: at 5e-5 the shared text side barely adapts and the video side only memorises (sample archive: video-only R@10 0.14 -> 0.71)
    head_lr: float = 5e-4  # fresh heads' peak learning rate
    max_len: int = 64  # tokens per sequence, specials included
    max_text_len: int = 32  # wordpieces a paired sentence always keeps (at most half of max_len)
    bert: str | None = None  # initial BERT folder or name; None = offline all-MiniLM-L6-v2
    layers: int | None = 2  # keep only the first N pretrained layers; None = all. On an unseen archive 2 layers x
    # 400 steps retrieved better than all 6 x 300 (R@10 0.85 vs 0.80), a third of the time per step
    vocab_mode: str = "factored"  # paper | factored, used only when the vocabulary is fitted here
    fresh: bool = False  # ignore an existing model / training state and start over; refit a mismatched vocabulary
    seed: int = 0
    checkpoint_every: int = 50  # steps
    eval_every: int = 100  # steps
    threads: int | None = None  # torch CPU threads (None: torch's default)
    workers: int | None = None  # data-loading worker processes (None: 0 on a CPU, up to 4 on a GPU)


@dataclass(frozen=True)
class Budget:
    steps: int
    why: str  # one line for the log


def step_budget(n_windows: int, windows_per_step: int, passes: int = PASSES) -> Budget:
    """Steps for `passes` passes over `n_windows` training windows at `windows_per_step`, within
    MIN_STEPS..MAX_STEPS."""
    want = math.ceil(passes * n_windows / max(1, windows_per_step))
    steps = min(MAX_STEPS, max(MIN_STEPS, want))
    why = f"{passes} passes over {n_windows} windows at {windows_per_step} per step"
    if steps != want:
        why += f" would be {want} steps; {'floor' if steps > want else 'ceiling'} {steps}"
    return Budget(steps, why)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainOptions()
    parser.add_argument("--steps", type=int, help=f"optimizer steps (default: sized to the archive, {PASSES} passes "
                        f"over its windows, {MIN_STEPS}-{MAX_STEPS} steps; a resumed run keeps its own)")
    parser.add_argument("--minutes", type=float, help="wall-clock budget: the first steps are timed and the run "
                        "shortened to fit (checkpointed as complete)")
    parser.add_argument("--batch-size", type=int, help=f"sentence windows per micro-batch (default 8 on a CPU, "
                        f"{CUDA_BATCH} on a GPU)")
    parser.add_argument("--itc-batch-size", type=int, default=d.itc_batch_size,
                        help=f"sentence windows in the contrastive loss, the batch's and more (default {d.itc_batch_size})")
    parser.add_argument("--itc-neighbours", type=int, default=d.itc_neighbours,
                        help="of those, per batch window, the ones sharing the most visual words with it "
                             f"(hard negatives; default {d.itc_neighbours})")
    parser.add_argument("--grad-accum", type=int, default=d.grad_accum,
                        help="micro-batches per step over all processes (default 1; under torchrun at least one "
                             "per process)")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"encoder peak learning rate (default {d.lr})")
    parser.add_argument("--head-lr", type=float, default=d.head_lr, help=f"heads' peak learning rate (default {d.head_lr})")
    parser.add_argument("--max-len", type=int, default=d.max_len, help=f"tokens per sequence (default {d.max_len})")
    parser.add_argument("--bert", help="initial BERT checkpoint folder or hub name (default: offline all-MiniLM-L6-v2)")
    parser.add_argument("--layers", type=int, default=d.layers,
                        help=f"keep only the first N layers of the initial BERT (default {d.layers}; 0 = all)")
    parser.add_argument("--vocab-mode", choices=("paper", "factored"), default=d.vocab_mode,
                        help="visual vocabulary mode when fitting one (default factored)")
    parser.add_argument("--fresh", action="store_true", help="start over instead of resuming data_dir/model (and "
                        "refit the visual vocabulary if it no longer fits the catalog's features)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--workers", type=int, help="data-loading worker processes (default 0 on a CPU, 4 on a GPU)")


def load_training_tables(catalog: Catalog):
    """(clips sorted by video/time, sentences, extractor name, feature groups) from a catalog."""
    import polars as pl

    videos = catalog.read_table("videos")
    clips = catalog.read_table("clips")
    if videos.is_empty() or clips.is_empty():
        raise TrainError(f"no indexed videos in {catalog.root}: run `vbsearch index PATH...` first")
    extractors = sorted(set(videos["features"].to_list()))
    if len(extractors) != 1:
        raise TrainError(f"the catalog mixes feature extractors {extractors}: re-index with one --features")
    groups_json = videos["feature_groups"][0] if "feature_groups" in videos.columns else None
    groups = {k: tuple(v) for k, v in json.loads(groups_json).items()} if groups_json else None
    clips = clips.sort(["video_id", "start"])
    sentences = catalog.read_table("sentences")
    if sentences.is_empty():
        sentences = pl.DataFrame(schema={"video_id": pl.Utf8, "start": pl.Float64, "end": pl.Float64, "text": pl.Utf8})
    return clips, sentences, extractors[0], groups


def clip_features(clips) -> np.ndarray:
    feats = np.asarray(clips["feature"].to_list(), dtype=np.float32)
    if feats.ndim != 2:
        raise TrainError("clip features have uneven lengths: re-index the archive with one extractor")
    return feats


def sentence_moments(sentences, clips):
    """The sentences with each end moved to where its moment ends, as search segments draw it
    (`indexer.segments.extend_over_pauses`), so pretraining pairs words with what they talk about."""
    import polars as pl

    from indexer.segments import extend_over_pauses

    if sentences.is_empty():
        return sentences
    duration = dict(clips.group_by("video_id").agg(pl.col("end").max()).iter_rows())
    parts = []
    for (vid,), part in sentences.sort(["video_id", "start"]).group_by(["video_id"], maintain_order=True):
        ends = extend_over_pauses(part["start"].to_numpy(), part["end"].to_numpy(), float(duration.get(vid, 0.0)))
        parts.append(part.with_columns(pl.Series("end", ends)))
    return pl.concat(parts)


def load_or_fit_vocab(data_dir: Path, features: np.ndarray, extractor: str, groups, mode: str,
                      refit_mismatched: bool = False):
    """The data dir's visual vocabulary, fitted on `features` when there is none (or, with
    `refit_mismatched`, when the saved one was fitted on other features: another extractor or version)."""
    from model.vocab import VisualVocab, VocabConfig, VocabMismatchError

    folder = data_dir / VOCAB_DIR
    if (folder / "vocab.json").is_file():
        try:
            vocab = VisualVocab.load(folder, expect_extractor=extractor, expect_dim=features.shape[1])
        except VocabMismatchError as exc:
            if not refit_mismatched:
                raise
            log.warning("refitting the visual vocabulary: %s", str(exc).split(";")[0])
        else:
            log.info("visual vocabulary: %d words, %d per clip (from %s)", vocab.n_words, vocab.tokens_per_clip,
                     folder)
            return vocab
    vocab = VisualVocab.fit(features, VocabConfig(mode=mode), groups=groups, extractor=extractor)
    vocab.save(folder)
    return vocab


def fit_lexicon(data, n_visual: int):
    """The narration lexicon (`model.lexicon`) of every narrated window, held-out ones included: it is
    counted, not trained, so nothing overfits to them."""
    from model.lexicon import Lexicon

    windows = [w for w in data.windows("train") + data.windows("held_out") if w.text]
    return Lexicon.fit([w.text for w in windows], [data.tokens[w.clips] for w in windows], n_visual)


def train(data_dir: Path, options: TrainOptions, device: str = "cpu", progress: bool = True) -> Path:
    """Pretrain VideoBERT on the catalog of `data_dir`; returns the model folder. Under torchrun, every
    process calls this and rank 0 writes."""
    import torch

    from model import distributed
    from model.checkpoint import read_config, training_progress
    from model.pretrain import LOSSES, Pretrainer, PretrainOptions
    from model.pretrain_data import PretrainData
    from model.tokenization import VideoBertTokenizer
    from model.videobert import from_pretrained_bert
    from search.engine import model_id_of

    process, device = distributed.start(device)
    main = process.is_main
    if options.threads:
        torch.set_num_threads(options.threads)
    clips, sentences, extractor, groups = load_training_tables(Catalog(data_dir))
    feats = clip_features(clips)
    with distributed.main_first(process):  # rank 0 fits and saves the vocabulary, the others load it
        vocab = load_or_fit_vocab(data_dir, feats, extractor, groups, options.vocab_mode,
                                  refit_mismatched=options.fresh and main)
    tokens = vocab.tokenize(feats)
    data = PretrainData(sentence_moments(sentences, clips), clips.select(["video_id", "start", "end"]), tokens)

    out = data_dir / MODEL_DIR
    tok = VideoBertTokenizer.from_pretrained(options.bert, vocab.n_words, vocab.tokens_per_clip,
                                             max_len=options.max_len,
                                             max_text_len=min(options.max_text_len, options.max_len // 2))
    model = from_pretrained_bert(options.bert, vocab.n_words, vocab.tokens_per_clip, vocab.word_vectors(),
                                 tok.sep_id, seed=options.seed, layers=options.layers)
    saved = None if options.fresh else training_progress(out)
    if saved is not None and read_config(out)["model"] != model.cfg.to_dict():
        raise TrainError(f"{out} holds a model of another shape (vocabulary refitted?): use --fresh to start over")
    cuda = device.startswith("cuda")
    batch = options.batch_size or (CUDA_BATCH if cuda else 8)
    grad_accum = max(options.grad_accum, process.world_size)
    if grad_accum != options.grad_accum and main:
        log.info("%d processes: %d micro-batches per step (one each)", process.world_size, grad_accum)
    popts = PretrainOptions(batch_size=batch, itc_batch_size=max(options.itc_batch_size, batch),
                            itc_neighbours=options.itc_neighbours, grad_accum=grad_accum,
                            lr=options.lr, head_lr=options.head_lr, seed=options.seed,
                            checkpoint_every=options.checkpoint_every, eval_every=options.eval_every,
                            minutes=options.minutes, progress=progress and main,
                            workers=options.workers if options.workers is not None
                            else min(4, (os.cpu_count() or 1) - 1) if cuda else 0)
    per_step = grad_accum * (batch + popts.n_silent)
    if options.steps:
        budget = Budget(options.steps, "--steps")
    elif saved is not None:  # a resumed run keeps the schedule it started with
        budget = Budget(saved[1], f"the run resumed from {out} (--steps N to train further)")
    else:
        budget = step_budget(len(data.windows("train")) + len(data.silent_train), per_step)
    if main:
        log.info("pretraining budget: %d steps (%s)%s; batch %d x %d on %s%s", budget.steps, budget.why,
                 f", at most {options.minutes:g} minutes" if options.minutes else "", batch, grad_accum, device,
                 f" x {process.world_size} processes" if process.distributed else "")
    trainer = Pretrainer(model, tok, data, replace(popts, steps=budget.steps), device=device, process=process)
    result = trainer.fit(out, resume=saved is not None)
    distributed.barrier(process)  # the last checkpoint is written before any process moves on
    if not main:
        return out
    lexicon = fit_lexicon(data, vocab.n_words)
    lexicon.save(out, model_id_of(out))
    log.info("narration lexicon: %d terms", len(lexicon.words))
    if result.history:
        last = result.history[-1]
        if result.tokens:
            log.info("trained %d steps in %.0f s (%.0f tokens/s): %s", len(result.history), result.seconds,
                     result.tokens / max(result.seconds, 1e-9),
                     " ".join(f"{k}={last[k]:.3f}" for k in ("loss", *LOSSES)))
        else:  # a finished run resumed: only the lexicon was refitted
            log.info("already trained %d steps (use --steps to train further, --fresh to start over)",
                     len(result.history))
    if result.evals:
        log.info("held-out: %s", " ".join(f"{k}={v:.3f}" for k, v in result.evals[-1].items() if k != "step"))
    return out


def run(args: argparse.Namespace, settings) -> int:
    from model.checkpoint import CheckpointError
    from model.pretrain_data import PretrainDataError

    options = TrainOptions(steps=args.steps, minutes=args.minutes, batch_size=args.batch_size,
                           itc_batch_size=args.itc_batch_size,
                           itc_neighbours=args.itc_neighbours, grad_accum=args.grad_accum, lr=args.lr,
                           head_lr=args.head_lr, max_len=args.max_len, bert=args.bert, layers=args.layers or None,
                           vocab_mode=args.vocab_mode,
                           fresh=args.fresh, seed=args.seed, checkpoint_every=args.checkpoint_every,
                           threads=args.threads, workers=args.workers)
    from indexer.catalog import CatalogBusyError, writer_lock
    from model.distributed import stop, this_process

    process = this_process()
    # the model and vocabulary are the index's: one writer (under torchrun, rank 0 writes)
    lock = writer_lock(settings.data_dir) if process.is_main else nullcontext()
    try:
        with lock:
            out = train(Path(settings.data_dir), options, device=settings.torch_device)
    except CatalogBusyError as exc:
        print(f"vbsearch train: index busy: {exc}", file=sys.stderr)
        return 2
    except (TrainError, PretrainDataError, CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"vbsearch train: {exc}", file=sys.stderr)
        return 1
    finally:
        stop(process)
    if process.is_main:
        print(f"model saved to {out}")
    return 0
