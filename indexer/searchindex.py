"""The search side of `vbsearch index`: make sure a vocabulary and a model exist, then embed.

    catalog --(no model yet: `vbsearch train`'s fit + pretrain)--> data_dir/vocab, data_dir/model
            --(indexer/embed.py)--> vector store (embedded Qdrant or a server)

A model given with --model is used as it is; its vocabulary is the `vocab/` folder beside
or inside it, else the data dir's. An unfinished training run (a crash) is resumed first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from indexer import thumbnails
from indexer.catalog import Catalog, writer_lock
from indexer.embed import EmbedSummary, sync_store
from indexer.train import TrainOptions, train
from vbsearch.config import MODEL_DIR, VOCAB_DIR

if TYPE_CHECKING:
    from search.store import SegmentStore

log = logging.getLogger(__name__)


def prune_missing(data_dir: Path) -> list[str]:
    """Drop catalogued videos whose file is gone; returns their paths. Their points go at the next sync."""
    catalog = Catalog(data_dir)
    videos = catalog.read_table("videos")
    gone = [r for r in (videos.to_dicts() if videos.height else []) if not Path(r["path"]).exists()]
    for row in gone:
        catalog.remove_video(row["video_id"])
        thumbnails.remove(data_dir, row["video_id"])
    return [r["path"] for r in gone]


def _training_finished(model_dir: Path) -> bool:
    from model.checkpoint import training_progress

    if not (model_dir / "config.json").is_file():
        return False
    progress = training_progress(model_dir)
    return progress is None or progress[0] >= progress[1]  # without training state: an exported, final model


def resolve_model(settings, train_options: TrainOptions, progress: bool = True) -> tuple[Path, Path]:
    """(model dir, vocab dir), training in the data dir when there is no finished model."""
    data_dir = Path(settings.data_dir)
    if settings.model_dir:
        model_dir = Path(settings.model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"--model {model_dir}: no VideoBERT checkpoint there (config.json missing)")
        for vocab_dir in (model_dir / VOCAB_DIR, model_dir.parent / VOCAB_DIR, data_dir / VOCAB_DIR):
            if (vocab_dir / "vocab.json").is_file():
                return model_dir, vocab_dir
        raise FileNotFoundError(f"--model {model_dir}: no visual vocabulary beside it or in {data_dir / VOCAB_DIR}")
    model_dir = data_dir / MODEL_DIR
    if not _training_finished(model_dir):
        log.info("no trained model in %s: pretraining VideoBERT on the catalog", model_dir)
        train(data_dir, train_options, device=settings.torch_device, progress=progress)
    return model_dir, data_dir / VOCAB_DIR


def build_search_index(settings, train_options: TrainOptions | None = None, progress: bool = True) -> EmbedSummary:
    from model.inference import VideoBertInference
    from model.vocab import VisualVocab
    from search.engine import model_id_of
    from search.store import SegmentStore

    train_options = train_options or TrainOptions()
    model_dir, vocab_dir = resolve_model(settings, train_options, progress)
    inference = VideoBertInference.load(model_dir, device=settings.torch_device)
    vocab = VisualVocab.load(vocab_dir)
    with SegmentStore.update(settings.data_dir, settings.qdrant_url, settings.qdrant_api_key) as store:
        return sync_store(Path(settings.data_dir), store, inference, vocab, model_id_of(model_dir), progress)


@contextmanager
def store_writer(settings, who: str) -> Iterator[SegmentStore]:
    """The store to write to outside an index run (`vbsearch tag`, `caption --store-missing`): with the
    embedded store, under the data dir's writer lock (CatalogBusyError while an index run holds it)."""
    from search.store import SegmentStore

    with ExitStack() as stack:
        if not settings.qdrant_url:
            stack.enter_context(writer_lock(settings.data_dir, who))
        yield stack.enter_context(SegmentStore.update(settings.data_dir, settings.qdrant_url, settings.qdrant_api_key))


def default_train_options(steps: int | None) -> TrainOptions:
    options = TrainOptions()
    return replace(options, steps=steps) if steps else options
