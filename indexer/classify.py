"""`vbsearch classify VIDEO --start S --end E`: zero-shot masked-word prediction (the paper's Task 2).

The window's clips (midpoint inside [start, end)) go through the visual vocabulary; VideoBERT
fills each [MASK] of the template, reading the video, and prints the top-k words per mask.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from indexer.catalog import Catalog

DEFAULT_TEMPLATE = "now let me show you how to [MASK] the [MASK]"  # the paper's verb / object template


class ClassifyError(RuntimeError):
    """The video, window, vocabulary or model cannot be used."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="an indexed video: its path or its video id")
    parser.add_argument("--start", type=float, required=True, help="window start, seconds")
    parser.add_argument("--end", type=float, required=True, help="window end, seconds")
    parser.add_argument("--template", default=DEFAULT_TEMPLATE, help=f"text with [MASK] slots (default: {DEFAULT_TEMPLATE!r})")
    parser.add_argument("--top-k", type=int, default=5, help="words per mask (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON only")


def find_video(catalog: Catalog, video: str) -> str:
    video_id = catalog.find_video(video)
    if video_id is None:
        raise ClassifyError(f"{video}: not an indexed video (index it first with `vbsearch index`)")
    return video_id


def window_tokens(catalog: Catalog, vocab, video_id: str, start: float, end: float) -> np.ndarray:
    """(n_clips, tokens_per_clip) visual tokens of the clips whose midpoint lies in [start, end)."""
    if end <= start:
        raise ClassifyError(f"--end ({end}) must be after --start ({start})")
    clips = catalog.read_video(video_id, "clips")
    mid = (clips["start"].to_numpy() + clips["end"].to_numpy()) / 2
    rows = np.flatnonzero((mid >= start) & (mid < end))
    if len(rows) == 0:
        raise ClassifyError(f"no clip of {video_id} lies in [{start}, {end}) s")
    feats = np.asarray(clips["feature"].gather(rows).to_list(), dtype=np.float32)
    return vocab.tokenize(feats)


def run(args: argparse.Namespace, settings) -> int:
    from model.checkpoint import CheckpointError
    from model.inference import VideoBertInference
    from model.vocab import VisualVocab

    data_dir = Path(settings.data_dir)
    model_dir = settings.model_path
    catalog = Catalog(data_dir)
    try:
        video_id = find_video(catalog, args.video)
        vocab = VisualVocab.load(settings.vocab_path)
        tokens = window_tokens(catalog, vocab, video_id, args.start, args.end)
        vb = VideoBertInference.load(model_dir, device=settings.torch_device)
        guesses = vb.predict_masked(args.template, tokens, top_k=args.top_k)
    except (ClassifyError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"vbsearch classify: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([[{"word": g.word, "prob": g.prob} for g in gs] for gs in guesses]))
        return 0
    print(f"{args.template}   [{video_id} {args.start:.1f}-{args.end:.1f} s, {len(tokens)} clips]")
    for i, gs in enumerate(guesses, 1):
        print(f"  [MASK] {i}: " + ", ".join(f"{g.word} ({g.prob:.2f})" for g in gs))
    return 0
