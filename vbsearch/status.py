"""`vbsearch status`: what the data dir holds."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field

from vbsearch.config import Settings

MAX_ERRORS_SHOWN = 20


@dataclass(frozen=True)
class Status:
    data_dir: str  # absolute path of the data dir
    store: str  # where vectors live: the embedded store's folder or the server URL
    videos: int  # complete videos in the catalog
    hours: float  # their total duration
    clips: int  # 1.5 s clips
    sentences: int  # transcript sentences
    failed: list[dict] = field(default_factory=list)  # files that failed: path, stage, error
    last_indexed: float | None = None  # unix time of the newest catalogued video
    model: str | None = None  # the VideoBERT checkpoint's id (sha256 prefix) and training step, if any
    vocab: list[str] = field(default_factory=list)  # visual vocabulary statistics


def collect(settings: Settings) -> Status:
    from indexer.catalog import Catalog
    from model.vocab import describe

    cat = Catalog(settings.data_dir).summary()
    return Status(
        data_dir=str(settings.data_dir.resolve()),
        store=settings.qdrant_url or str((settings.data_dir / "qdrant").resolve()),
        videos=cat.videos,
        hours=cat.hours,
        clips=cat.clips,
        sentences=cat.sentences,
        failed=cat.failed,
        last_indexed=cat.last_indexed,
        model=_model_line(settings.model_path),
        vocab=describe(settings.vocab_path),
    )


def _model_line(model_dir) -> str | None:
    if not (model_dir / "config.json").is_file():
        return None
    from model.checkpoint import CheckpointError
    from search.engine import model_id_of

    try:
        line = f"{model_id_of(model_dir)} in {model_dir}"
    except (CheckpointError, KeyError, ValueError) as exc:
        return f"unreadable: {exc}"
    state = model_dir / "trainer_state.json"
    if state.is_file():
        data = json.loads(state.read_text())
        line += f" (step {data.get('step')} of {data.get('schedule', {}).get('total_steps')})"
    return line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the status as one JSON object")


def run(args: argparse.Namespace, settings: Settings) -> int:
    status = collect(settings)
    if args.json:
        print(json.dumps(asdict(status), indent=2))
        return 0
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status.last_indexed)) if status.last_indexed else "never"
    print(f"data dir      {status.data_dir}")
    print(f"vector store  {status.store}")
    print(f"videos        {status.videos} ({status.hours:.2f} h)")
    print(f"clips         {status.clips}")
    print(f"sentences     {status.sentences}")
    print(f"last indexed  {when}")
    print(f"model         {status.model or 'none yet'}")
    if status.vocab:
        print("vocabulary    " + "\n              ".join(status.vocab))
    print(f"failed files  {len(status.failed)}")
    for err in status.failed[:MAX_ERRORS_SHOWN]:
        print(f"  {err['path']}: [{err['stage']}] {err['error']}")
    if len(status.failed) > MAX_ERRORS_SHOWN:
        print(f"  ... and {len(status.failed) - MAX_ERRORS_SHOWN} more (see --json)")
    if status.videos == 0:
        print("\nNo videos indexed yet: run `vbsearch index PATH...`.")
    return 0
