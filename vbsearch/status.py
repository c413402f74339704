"""`vbsearch status`: what the data dir holds."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field

from search import generations
from vbsearch.config import Settings

MAX_ERRORS_SHOWN = 20


@dataclass(frozen=True)
class Status:
    data_dir: str  # absolute path of the data dir
    store: str  # where vectors live: the embedded index's folder or the server URL
    videos: int  # complete videos in the catalog
    hours: float  # their total duration
    clips: int  # 1.5 s clips
    sentences: int  # transcript sentences
    failed: list[dict] = field(default_factory=list)  # files that failed: path, stage, error
    last_indexed: float | None = None  # unix time of the newest catalogued video
    model: str | None = None  # the VideoBERT checkpoint's id (sha256 prefix) and training step, if any
    vocab: list[str] = field(default_factory=list)  # visual vocabulary statistics
    segments: int | None = None  # points in the search index (None: no index, or the server did not answer)
    generation: str | None = None  # the embedded index's published generation (search/generations.py)
    building: str | None = None  # the generation an index run is building now
    store_error: str | None = None  # why the index could not be read


def collect(settings: Settings) -> Status:
    from indexer.catalog import Catalog
    from model.vocab import describe

    cat = Catalog(settings.data_dir).summary()
    index = _index_state(settings)
    return Status(
        data_dir=str(settings.data_dir.resolve()),
        store=settings.qdrant_url or str(generations.root(settings.data_dir).resolve()),
        videos=cat.videos,
        hours=cat.hours,
        clips=cat.clips,
        sentences=cat.sentences,
        failed=cat.failed,
        last_indexed=cat.last_indexed,
        model=_model_line(settings.model_path),
        vocab=describe(settings.vocab_path),
        **index,
    )


def _index_state(settings: Settings) -> dict:
    """segments, generation, building and store_error of Status."""
    from indexer.catalog import LOCK_FILE
    from search.store import SegmentStore, StoreError

    state: dict = {}
    if not settings.qdrant_url:
        gens = generations.info(settings.data_dir, settings.data_dir / LOCK_FILE)
        state.update(generation=gens.published, building=gens.building)
    try:
        with SegmentStore.open(settings.data_dir, settings.qdrant_url, settings.qdrant_api_key) as store:
            state["segments"] = store.count() if store.exists() else None
    except (StoreError, OSError) as exc:
        state["store_error"] = str(exc)
    return state


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


def _index_line(status: Status) -> str:
    if status.store_error:
        return f"unreadable: {status.store_error}"
    line = f"{status.segments} segments" if status.segments is not None else "none yet"
    if status.generation:
        line += f" (generation {status.generation})"
    if status.building:
        line += f"; an index run is building {status.building}"
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
    print(f"search index  {_index_line(status)}")
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
