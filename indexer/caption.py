"""`vbsearch caption`: describe a video window in words with the fine-tuned captioner (the paper's Task 3).

    vbsearch caption VIDEO --start S --end E [--beam 3]    prints the window's caption
    vbsearch caption --store-missing [--all]               captions the indexed segments nobody speaks in

With --store-missing each segment without speech gets its caption in the payload (`caption`,
`caption_model`) and the caption's text vector in the point's "text" channel, so transcript-channel
search finds the moment by its generated description. Points already captioned by this captioner
are skipped. `vbsearch index` rewrites a video's points without captions when it re-embeds the
video, so run `vbsearch caption --store-missing` again after an index run that re-embedded
(it then captions only those).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

BATCH = 64  # segments per caption batch and store update


@dataclass(frozen=True)
class StoreCaptionSummary:
    captioned: int  # segments captioned now
    skipped: int  # segments without speech already captioned by this captioner
    seconds: float


def load_captioner(settings):
    """The data dir's captioner over its model (model.captioner.CaptionerInference)."""
    from indexer.finetune_caption import CAPTIONER_DIR
    from indexer.tag import load_addon
    from model.captioner import CONFIG_FILE, CaptionerInference

    return load_addon(settings, CaptionerInference, CAPTIONER_DIR, CONFIG_FILE, "vbsearch finetune-caption")


def store_missing_captions(store, captioner, redo: bool = False, beam: int = 1) -> StoreCaptionSummary:
    """Caption the store's segments without speech (see the module docstring)."""
    from model.inference import VideoBertInference
    from search.store import point_tokens

    t0 = time.perf_counter()
    if not store.exists():
        return StoreCaptionSummary(0, 0, time.perf_counter() - t0)
    # the search encoder is the captioner's own frozen encoder: one copy of the model in memory
    encoder = VideoBertInference(captioner.captioner.encoder, captioner.tok, captioner.device)
    todo, skipped = [], 0
    for p in store.scroll(["tokens", "tokens_per_clip", "text", "caption_model"]):
        if (p.payload.get("text") or "").strip() or not p.payload.get("tokens"):
            continue
        if not redo and p.payload.get("caption_model") == captioner.id:
            skipped += 1
        else:
            todo.append(p)
    for lo in range(0, len(todo), BATCH):
        batch = todo[lo: lo + BATCH]
        captions = captioner.caption([point_tokens(p.payload) for p in batch], beam)
        vectors = encoder.encode_text([c or "" for c in captions])
        store.set_vectors({str(p.id): {"text": v.tolist()} for p, v, c in zip(batch, vectors, captions, strict=True) if c})
        store.set_payloads({str(p.id): {"caption": c, "caption_model": captioner.id}
                            for p, c in zip(batch, captions, strict=True)})
    return StoreCaptionSummary(len(todo), skipped, time.perf_counter() - t0)


def caption_window(settings, captioner, video: str, start: float, end: float, beam: int = 1) -> tuple[str, str]:
    """(video id, caption) of a window of a catalogued video."""
    from indexer.catalog import Catalog
    from indexer.windows import WindowReader
    from model.vocab import VisualVocab

    if end <= start:
        raise ValueError(f"--end ({end}) must be after --start ({start})")
    catalog = Catalog(settings.data_dir)
    video_id = catalog.find_video(video)
    if video_id is None:
        raise ValueError(f"{video}: not an indexed video (index it first with `vbsearch index`)")
    window = WindowReader(catalog, VisualVocab.load(settings.vocab_path)).window(video_id, start, end)
    return video_id, captioner.caption([window.tokens], beam)[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", nargs="?", help="an indexed video: its path or its video id")
    parser.add_argument("--start", type=float, help="window start, seconds")
    parser.add_argument("--end", type=float, help="window end, seconds")
    parser.add_argument("--beam", type=int, default=1, help="beam width (default 1: greedy)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--store-missing", action="store_true",
                        help="caption every indexed segment without speech and store the caption as searchable text")
    parser.add_argument("--all", action="store_true", help="with --store-missing: re-caption segments already done")


def run(args: argparse.Namespace, settings) -> int:
    from indexer.catalog import CatalogBusyError
    from indexer.searchindex import store_writer
    from model.checkpoint import CheckpointError
    from search.store import StoreError

    if args.beam < 1:
        print("vbsearch caption: --beam must be at least 1", file=sys.stderr)
        return 2
    if not args.store_missing and (args.video is None or args.start is None or args.end is None):
        print("vbsearch caption: give VIDEO --start S --end E, or --store-missing", file=sys.stderr)
        return 2
    try:
        captioner = load_captioner(settings)
        if args.store_missing:
            with store_writer(settings, "vbsearch caption") as store:
                s = store_missing_captions(store, captioner, redo=args.all, beam=args.beam)
            print(json.dumps({"captioned": s.captioned, "skipped": s.skipped}) if args.json else
                  f"captioned {s.captioned} segments without speech; {s.skipped} already captioned by "
                  f"captioner {captioner.id}; {s.seconds:.1f} s")
            return 0
        video_id, text = caption_window(settings, captioner, args.video, args.start, args.end, args.beam)
    except (FileNotFoundError, CheckpointError, StoreError, ValueError, CatalogBusyError) as exc:
        print(f"vbsearch caption: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"video_id": video_id, "start": args.start, "end": args.end, "caption": text}))
    else:
        print(text)
    return 0
