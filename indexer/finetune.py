"""`vbsearch finetune-classify LABELS.csv`: a linear head on the pretrained VideoBERT's [CLS].

    labels.csv rows (video, start, end, label) -> each window's visual tokens (and transcript)
        -> seeded, stratified held-out split -> train model.classifier.VideoClassifier
        -> held-out accuracy vs. the majority-class baseline -> MODEL_DIR/classifier

Two ways to train, measured on a generated 6-minute sample archive (README, "Downstream tasks"):
the default freezes the encoder and trains the head alone on cached, standardised [CLS] vectors
(seconds on a CPU; training accuracy 0.75-0.81, held-out 0.08-0.25 over three seeds);
`--finetune-encoder` trains the encoder with the head (20 s; 0.47 and 0.08), slower and worse.
Neither beat the majority class (0.33) on held-out scenes there. The saved classifier is the one
trained on the training split, whose held-out accuracy is printed.
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

from indexer.labels import LabelRow, LabelsError, read_labels, resolve_video

log = logging.getLogger(__name__)

CLASSIFIER_DIR = "classifier"  # in the model folder


class FinetuneError(RuntimeError):
    """The labels, the catalog or the model cannot be fine-tuned on."""


@dataclass(frozen=True)
class ClassifyTrainOptions:
    epochs: int = 40  # passes over the training windows
    batch_size: int = 8  # windows per step
    lr: float = 1e-4  # encoder peak learning rate (when fine-tuned)
    head_lr: float = 2e-3  # the head's peak learning rate
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1  # of the steps, linear warm-up then linear decay
    dropout: float = 0.1  # before the head
    held_out: float = 0.25  # fraction of each label's windows kept out of training
    seed: int = 0  # decides the split, the head's initialisation, batches and augmentation
    finetune_encoder: bool = False  # True: fine-tune the encoder with the head (slower; worse on the sample archive)
    with_transcript: bool = False  # read the window's transcript too: [CLS] text [>] tokens [SEP]
    augment: bool = True  # random contiguous sub-windows (at least half the clips) when fine-tuning
    threads: int | None = None  # torch CPU threads (None: torch's default; 1 is far faster on a busy machine)


@dataclass(frozen=True)
class ClassifyResult:
    labels: list[str]  # class names, the head's output order
    n_train: int
    n_held_out: int
    train_accuracy: float
    held_out_accuracy: float | None  # None when no label had enough windows to hold one out
    majority_label: str  # the most common training label
    majority_accuracy: float | None  # that label's share of the held-out windows (the baseline)
    seconds: float
    folder: Path | None  # where the classifier was saved (None: not saved)
    classifier_id: str | None
    held_out_rows: list[dict]  # video_id, start, end, label of each held-out window


def stratified_split(labels: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: per label round(n * fraction) windows held out, at least one when the
    label has two or more and never all of them (a label seen once stays in training)."""
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for name in sorted(set(labels)):
        idx = np.flatnonzero(np.asarray(labels) == name)
        if len(idx) < 2 or fraction <= 0:
            continue
        k = min(len(idx) - 1, max(1, int(round(len(idx) * fraction))))
        held.extend(rng.permutation(idx)[:k].tolist())
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def read_windows(settings, rows: list[LabelRow], base: Path):
    """The windows of the label rows (model inputs), in row order."""
    from indexer.catalog import Catalog
    from indexer.windows import WindowError, WindowReader
    from model.vocab import VisualVocab

    catalog = Catalog(settings.data_dir)
    reader = WindowReader(catalog, VisualVocab.load(settings.vocab_path))
    ids: dict[str, str | None] = {}
    windows = []
    for r in rows:
        if r.video not in ids:
            ids[r.video] = resolve_video(catalog, r.video, base)
        if ids[r.video] is None:
            raise FinetuneError(f"{r.video}: not an indexed video (index it first with `vbsearch index`)")
        try:
            windows.append(reader.window(ids[r.video], r.start, r.end))
        except WindowError as exc:
            raise FinetuneError(str(exc)) from exc
    return windows


def _crop(tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(tokens)
    keep = int(rng.integers((n + 1) // 2, n + 1))
    first = int(rng.integers(0, n - keep + 1))
    return tokens[first: first + keep]


def train_classifier(model, tok, videos: list[np.ndarray], texts: list[str], targets: np.ndarray, n_labels: int,
                     options: ClassifyTrainOptions, device: str = "cpu"):
    """A VideoClassifier over `model` trained on the windows (the model is changed in place when fine-tuned)."""
    import torch
    import torch.nn.functional as F

    from model.classifier import VideoClassifier
    from model.pretrain import lr_factor

    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    clf = VideoClassifier(model, n_labels, options.dropout).to(device)
    for p in clf.encoder.parameters():
        p.requires_grad_(options.finetune_encoder)
    groups = [{"params": list(clf.head.parameters()), "base_lr": options.head_lr}]
    if options.finetune_encoder:
        groups.append({"params": [p for p in clf.encoder.parameters()], "base_lr": options.lr})
    optimizer = torch.optim.AdamW([{**g, "lr": g["base_lr"]} for g in groups], weight_decay=options.weight_decay)
    text_in = [t if options.with_transcript and t else None for t in texts]
    y = torch.as_tensor(targets, dtype=torch.long, device=device)

    def inputs(idx, augment: bool):
        vids = [_crop(videos[i], rng) if augment else videos[i] for i in idx]
        return tok.collate(tok.encode_batch([text_in[i] for i in idx], vids)).to(device).model_inputs()

    clf.encoder.eval()
    with torch.no_grad():  # the pretrained [CLS] vectors: standardisation statistics, and the frozen head's input
        cached = torch.cat([clf.features(**inputs(list(range(lo, min(lo + 64, len(videos)))), False))
                            for lo in range(0, len(videos), 64)])
    clf.standardise_with(cached, per_dimension=not options.finetune_encoder)
    if options.finetune_encoder:
        cached = None
    n = len(videos)
    per_epoch = max(1, -(-n // options.batch_size))
    total = options.epochs * per_epoch
    warmup = int(total * options.warmup_fraction)
    step = 0
    for _ in range(options.epochs):
        clf.train()
        if cached is not None:
            clf.encoder.eval()
        order = rng.permutation(n)
        for lo in range(0, n, options.batch_size):
            idx = order[lo: lo + options.batch_size].tolist()
            f = lr_factor(step, warmup, total)
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * f
            feats = cached[idx] if cached is not None else clf.features(**inputs(idx, options.augment))
            loss = F.cross_entropy(clf.classify(feats).float(), y[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(clf.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
    return clf.eval()


def predict(clf, tok, videos: list[np.ndarray], texts: list[str], with_transcript: bool,
            device: str = "cpu") -> np.ndarray:
    """(N,) predicted label indices."""
    from model.classifier import ClassifierInference

    inf = ClassifierInference(clf, tok, [str(i) for i in range(clf.head.out_features)], with_transcript, "", device)
    probs = inf.probabilities(videos, texts)
    return probs.argmax(1) if len(probs) else np.zeros(0, dtype=np.int64)


def finetune_classify(settings, labels_csv: Path, options: ClassifyTrainOptions = ClassifyTrainOptions(),
                      out: Path | None = None, save: bool = True) -> ClassifyResult:
    """Train on the rows of `labels_csv`, evaluate on the held-out rows, save to `out` (default
    MODEL_DIR/classifier)."""
    from model.checkpoint import load_model
    from model.classifier import save_classifier
    from search.engine import model_id_of

    t0 = time.perf_counter()
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    rows = read_labels(labels_csv)
    windows = read_windows(settings, rows, Path(labels_csv).resolve().parent)
    names = sorted({r.label for r in rows})
    if len(names) < 2:
        raise FinetuneError(f"{labels_csv}: need at least two labels, found {names}")
    targets = np.asarray([names.index(r.label) for r in rows])
    train_idx, test_idx = stratified_split([r.label for r in rows], options.held_out, options.seed)
    model_dir = settings.model_path
    device = settings.torch_device
    model, tok = load_model(model_dir, device)
    videos = [w.tokens for w in windows]
    texts = [w.text for w in windows]

    def pick(idx):
        return [videos[i] for i in idx], [texts[i] for i in idx]

    clf = train_classifier(model, tok, *pick(train_idx), targets[train_idx], len(names), options, device)
    train_acc = float(np.mean(predict(clf, tok, *pick(train_idx), options.with_transcript, device)
                              == targets[train_idx]))
    counts = Counter(targets[train_idx].tolist())
    majority = max(sorted(counts), key=lambda k: counts[k])
    held_acc = maj_acc = None
    if len(test_idx):
        held_acc = float(np.mean(predict(clf, tok, *pick(test_idx), options.with_transcript, device)
                                 == targets[test_idx]))
        maj_acc = float(np.mean(targets[test_idx] == majority))
    held_rows = [{"video_id": windows[i].video_id, "start": rows[i].start, "end": rows[i].end,
                  "label": rows[i].label} for i in test_idx]
    folder = classifier_id = None
    if save:
        folder = Path(out) if out else model_dir / CLASSIFIER_DIR
        meta = {"options": asdict(options), "with_transcript": options.with_transcript,
                "labels_csv": str(Path(labels_csv).resolve()), "n_train": len(train_idx),
                "train_accuracy": train_acc, "held_out_accuracy": held_acc,
                "majority_accuracy": maj_acc, "held_out_rows": held_rows}
        classifier_id = save_classifier(folder, clf, names, model_id_of(model_dir), options.finetune_encoder, meta)
    return ClassifyResult(names, len(train_idx), len(test_idx), train_acc, held_acc, names[majority], maj_acc,
                          time.perf_counter() - t0, folder, classifier_id, held_rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ClassifyTrainOptions()
    parser.add_argument("labels", type=Path, help="CSV with columns video, start, end, label "
                        "(video: a catalogued video's path or id; relative paths are read against the CSV's folder)")
    parser.add_argument("--with-transcript", action="store_true",
                        help="read the window's transcript too ([CLS] text [>] visual tokens [SEP])")
    parser.add_argument("--finetune-encoder", action="store_true",
                        help="fine-tune the encoder with the head (default: train the head alone on frozen [CLS])")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the training windows (default {d.epochs})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"windows per step (default {d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"encoder peak learning rate (default {d.lr})")
    parser.add_argument("--head-lr", type=float, default=d.head_lr, help=f"head peak learning rate (default {d.head_lr})")
    parser.add_argument("--held-out", type=float, default=d.held_out,
                        help=f"fraction of each label's windows held out for evaluation (default {d.held_out})")
    parser.add_argument("--seed", type=int, default=d.seed, help="split, initialisation and batch order seed")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, help="classifier folder (default: MODEL_DIR/classifier)")


def run(args: argparse.Namespace, settings) -> int:
    from model.checkpoint import CheckpointError

    if not 0 <= args.held_out < 1 or args.epochs < 1 or args.batch_size < 1:
        print("vbsearch finetune-classify: need 0 <= --held-out < 1, --epochs >= 1, --batch-size >= 1", file=sys.stderr)
        return 2
    options = ClassifyTrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, head_lr=args.head_lr,
                                   held_out=args.held_out, seed=args.seed, finetune_encoder=args.finetune_encoder,
                                   with_transcript=args.with_transcript, threads=args.threads)
    try:
        res = finetune_classify(settings, args.labels, options, args.out)
    except (FinetuneError, LabelsError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"vbsearch finetune-classify: {exc}", file=sys.stderr)
        return 1
    print(f"{len(res.labels)} labels ({', '.join(res.labels)}), {res.n_train} training windows, "
          f"{res.n_held_out} held out; encoder {'fine-tuned' if options.finetune_encoder else 'frozen'}"
          f"{', with transcript' if options.with_transcript else ''}; {res.seconds:.0f} s")
    print(f"training accuracy   {res.train_accuracy:.3f}")
    if res.held_out_accuracy is None:
        print("held-out accuracy   n/a (no label has two windows to hold one out)")
    else:
        print(f"held-out accuracy   {res.held_out_accuracy:.3f}")
        print(f"majority baseline   {res.majority_accuracy:.3f} (always {res.majority_label!r})")
    print(f"classifier saved to {res.folder} (id {res.classifier_id})")
    return 0
