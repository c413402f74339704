"""`vbsearch train`: fit the visual vocabulary (if the data dir has none), pretrain VideoBERT on the catalog
and fit its narration lexicon (model/lexicon.py) over the same narrated windows.

    catalog clips (features) --vocab--> visual tokens --+
    catalog sentences ---------------------------------+--> model.pretrain --> data_dir/model
The model folder doubles as the training checkpoint: an interrupted run resumes where it stopped;
a run on a model already trained to --steps only fits the lexicon again.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.catalog import Catalog
from vbsearch.config import MODEL_DIR, VOCAB_DIR

log = logging.getLogger(__name__)



class TrainError(RuntimeError):
    """The catalog cannot be trained on (empty, mixed extractors, no speech, ...)."""


@dataclass(frozen=True)
class TrainOptions:
    steps: int = 400  # optimizer steps
    batch_size: int = 8  # sentence windows per micro-batch
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainOptions()
    parser.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"sentence windows per batch (default {d.batch_size})")
    parser.add_argument("--itc-batch-size", type=int, default=d.itc_batch_size,
                        help=f"sentence windows in the contrastive loss, the batch's and more (default {d.itc_batch_size})")
    parser.add_argument("--itc-neighbours", type=int, default=d.itc_neighbours,
                        help="of those, per batch window, the ones sharing the most visual words with it "
                             f"(hard negatives; default {d.itc_neighbours})")
    parser.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per step (default 1)")
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
    """Pretrain VideoBERT on the catalog of `data_dir`; returns the model folder."""
    import torch

    from model.checkpoint import has_training_state, read_config
    from model.pretrain import LOSSES, Pretrainer, PretrainOptions
    from model.pretrain_data import PretrainData
    from model.tokenization import VideoBertTokenizer
    from model.videobert import from_pretrained_bert
    from search.engine import model_id_of

    if options.threads:
        torch.set_num_threads(options.threads)
    clips, sentences, extractor, groups = load_training_tables(Catalog(data_dir))
    feats = clip_features(clips)
    vocab = load_or_fit_vocab(data_dir, feats, extractor, groups, options.vocab_mode, refit_mismatched=options.fresh)
    tokens = vocab.tokenize(feats)
    data = PretrainData(sentence_moments(sentences, clips), clips.select(["video_id", "start", "end"]), tokens)

    out = data_dir / MODEL_DIR
    tok = VideoBertTokenizer.from_pretrained(options.bert, vocab.n_words, vocab.tokens_per_clip,
                                             max_len=options.max_len,
                                             max_text_len=min(options.max_text_len, options.max_len // 2))
    model = from_pretrained_bert(options.bert, vocab.n_words, vocab.tokens_per_clip, vocab.word_vectors(),
                                 tok.sep_id, seed=options.seed, layers=options.layers)
    resume = not options.fresh and has_training_state(out)
    if resume and read_config(out)["model"] != model.cfg.to_dict():
        raise TrainError(f"{out} holds a model of another shape (vocabulary refitted?): use --fresh to start over")
    popts = PretrainOptions(steps=options.steps, batch_size=options.batch_size,
                            itc_batch_size=options.itc_batch_size, itc_neighbours=options.itc_neighbours,
                            grad_accum=options.grad_accum,
                            lr=options.lr, head_lr=options.head_lr, seed=options.seed,
                            checkpoint_every=options.checkpoint_every, eval_every=options.eval_every,
                            progress=progress)
    trainer = Pretrainer(model, tok, data, popts, device=device)
    result = trainer.fit(out, resume=resume)
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

    options = TrainOptions(steps=args.steps, batch_size=args.batch_size, itc_batch_size=args.itc_batch_size,
                           itc_neighbours=args.itc_neighbours, grad_accum=args.grad_accum, lr=args.lr,
                           head_lr=args.head_lr, max_len=args.max_len, bert=args.bert, layers=args.layers or None,
                           vocab_mode=args.vocab_mode,
                           fresh=args.fresh, seed=args.seed, checkpoint_every=args.checkpoint_every,
                           threads=args.threads)
    from indexer.catalog import CatalogBusyError, writer_lock

    try:
        with writer_lock(settings.data_dir):  # the model and vocabulary are the index's: one writer
            out = train(Path(settings.data_dir), options, device=settings.torch_device)
    except CatalogBusyError as exc:
        print(f"vbsearch train: index busy: {exc}", file=sys.stderr)
        return 2
    except (TrainError, PretrainDataError, CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"vbsearch train: {exc}", file=sys.stderr)
        return 1
    print(f"model saved to {out}")
    return 0
