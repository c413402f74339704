"""`vbsearch` console script: a thin table of subcommands.

Each implemented subcommand lives in the module that owns its work and exposes
`add_arguments(parser)` and `run(args, settings) -> int` (the exit status).
Only the chosen subcommand's module is imported (to add its flags, then to run it): `--help` and a
CLI search that asks a running service stay fast, since the other modules pull in polars, torch, etc.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass

from vbsearch import __version__
from vbsearch.config import ASR_BACKENDS, DEVICES, FEATURES, ConfigError, load_settings

log = logging.getLogger("vbsearch")


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    target: str  # "package.module" with add_arguments/run
    reads_media: bool = False  # takes the flags that choose how media is understood (--features, --asr, ...)


COMMANDS: tuple[Command, ...] = (
    Command("index", "ingest videos into the catalog and the search index (incremental)", "indexer.run", reads_media=True),
    Command("search", "search the index with a text query", "search.cli"),
    Command("train", "fit the visual vocabulary, pretrain VideoBERT on the catalog, fit its narration lexicon",
            "indexer.train", reads_media=True),
    Command("ui", "open the Streamlit search UI", "ui.launch"),
    Command("status", "show the data dir: catalog counts, failed files, model and index", "vbsearch.status"),
    Command("transcript", "export a video's recognised speech as srt, vtt, ass, json or txt", "indexer.transcript", reads_media=True),
    Command("classify", "zero-shot masked-word prediction for a video window (the paper's Task 2)", "indexer.classify", reads_media=True),
    Command("eval", "retrieval quality on a sample archive with known truth", "search.evaluate"),
    Command("serve", "serve the search engine over HTTP (OpenAPI-documented)", "search.service"),
    Command("finetune-classify", "train a linear head on VideoBERT's [CLS] from a labels CSV (video, start, end, label)",
            "indexer.finetune"),
    Command("tag", "label every indexed segment with the fine-tuned classifier (search --label filters on it)",
            "indexer.tag"),
    Command("finetune-caption", "train the caption decoder on the catalog's (clips, sentence) pairs (the paper's Task 3)",
            "indexer.finetune_caption"),
    Command("caption", "caption a video window, or store captions for segments without speech (--store-missing)",
            "indexer.caption"),
)

# Flags shared by every subcommand; None means "not given" so lower layers (env, vbsearch.toml) win.
SETTINGS_FLAGS = ("data_dir", "features", "asr", "asr_model", "model_dir", "s3d_weights", "qdrant_url", "device")


def _common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: also libraries)")
    common.add_argument("--data-dir", help="data dir (default: $VBSEARCH_DATA_DIR or ./vbsearch-data)")
    common.add_argument("--qdrant-url", help="Qdrant server URL (default: embedded store in the data dir); "
                        "the API key comes from $VBSEARCH_QDRANT_API_KEY")
    common.add_argument("--device", choices=DEVICES, help="torch device (default: auto)")
    return common


def _add_model_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", dest="model_dir", help="load this VideoBERT checkpoint dir instead of training"
                        " (default: DATA_DIR/model)")


def _add_pipeline_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that choose how media is understood (index, train, transcript, ...)."""
    parser.add_argument("--features", choices=FEATURES, help="clip feature extractor (default: objectflow)")
    parser.add_argument("--asr", choices=ASR_BACKENDS,
                        help="speech backend (default: auto = sidecar subtitles (.srt/.vtt/.ass/...) when present, else faster-whisper)")
    parser.add_argument("--asr-model", help="whisper model name or path (default: offline tiny.en when installed)")
    parser.add_argument("--s3d-weights", help="local S3D Kinetics-400 weights file")


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI; only `chosen`'s flags are added (its module imported), or every command's if None."""
    parser = argparse.ArgumentParser(
        prog="vbsearch",
        description="Semantic video search for media archives, built on VideoBERT.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `vbsearch COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"vbsearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    common = _common_parser()
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help, parents=[common])
        _add_model_flag(p)
        if cmd.reads_media:
            _add_pipeline_flags(p)
        if chosen is None or chosen == cmd.name:
            importlib.import_module(cmd.target).add_arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((a for a in argv if not a.startswith("-")), ""))
    args = parser.parse_args(argv)
    if not getattr(args, "_command", None):
        parser.print_help()
        return 2
    from vbsearch.log import setup_logging

    setup_logging(args.verbose)
    cmd: Command = args._command
    try:
        settings = load_settings({k: getattr(args, k, None) for k in SETTINGS_FLAGS})
    except ConfigError as exc:
        print(f"vbsearch: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(importlib.import_module(cmd.target).run(args, settings) or 0)
    except KeyboardInterrupt:
        print("vbsearch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
