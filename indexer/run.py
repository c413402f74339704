"""`vbsearch index PATH...`: discover videos, ingest the new and changed ones into the catalog.

Per file (see indexer/pipeline.py for the shape):
    reader   discover.probe: container facts and the content id
    mappers  the stages from `build_stages`, in order; each adds to the job's videos row and tables
    writer   Catalog.put_video(video_id, row, **tables): tables first, the videos row last

Stages: ingest.VisualStage (decode, clip features, thumbnails), then SpeechStage
(indexer/speech.py: ASR or sidecar subtitles -> the `sentences` table).

A file is skipped when the catalog has it at the same path with the same size, mtime,
feature extractor and speech backend setting, or when the same content is already indexed at another path that still
exists. A file whose content moved (catalog path gone, same id) gets its videos row updated
without decoding. Each failed file gets one error line and a row in the catalog's errors
table; the batch goes on and the exit status is 1. Ctrl-C stops after the current file is
written (twice: at once); the run reports what it did and exits 130, and the same command resumes.
A video whose audio cannot be decoded is indexed by its pictures alone (a warning says why).

One index run per data dir (indexer/catalog.py `writer_lock`): a second one answers "index busy"
with exit status 2, as does a run that finds the embedded vector store held by a search or the UI
(its catalog work is kept; the next run embeds). A run killed at any point (even SIGKILL) leaves
the catalog and the store consistent: the next run picks up where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from tqdm import tqdm

from indexer import thumbnails
from indexer.catalog import Catalog, CatalogBusyError, text_path, writer_lock
from indexer.decode import DECODERS, DecodeError
from indexer.discover import ProbeError, discover, probe
from indexer.ingest import IngestOptions, VisualStage, groups_json, video_row
from indexer.pipeline import FileJob, Stage, StageTimer
from indexer.searchindex import prune_missing
from model.features import feature_groups

log = logging.getLogger(__name__)

EXIT_FAILED = 1  # some file failed (the others are indexed)
EXIT_SETUP = 2  # nothing could run (e.g. the extractor cannot load), or the index is busy
EXIT_INTERRUPTED = 130  # Ctrl-C: stopped after the current file (128 + SIGINT, as shells report it)


class SetupError(RuntimeError):
    """The run cannot start (e.g. S3D weights missing): one message, not one error per file."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="video files and folders (searched recursively)")
    parser.add_argument("--decoder", choices=DECODERS, default="auto",
                        help="video decoder (default: auto = decord, PyAV when decord fails)")
    parser.add_argument("--force", action="store_true", help="re-ingest files even when the catalog has them")
    parser.add_argument("--no-thumbnails", action="store_true", help="do not write clip thumbnails")
    parser.add_argument("--prune", action="store_true",
                        help="drop catalogued videos whose files are gone, and their points in the index")
    parser.add_argument("--train-steps", type=int,
                        help="pretraining steps when the data dir has no model yet (default: vbsearch train's)")
    parser.add_argument("--catalog-only", action="store_true",
                        help="only ingest into the catalog; do not train or update the search index")


@dataclass
class RunSummary:
    ok: list[Path] = field(default_factory=list)  # ingested this run
    skipped: list[Path] = field(default_factory=list)  # unchanged, duplicate or moved
    failed: list[tuple[Path, str, str]] = field(default_factory=list)  # (path, stage, message)
    seconds_of_video: float = 0.0  # decoded duration of the files ingested
    clips: int = 0  # clips written
    interrupted: bool = False  # stopped by Ctrl-C before the last file
    timer: StageTimer = field(default_factory=StageTimer)
    wall_s: float = 0.0

    def lines(self) -> list[str]:
        hours = self.seconds_of_video / 3600
        out = [
            f"files: {len(self.ok)} ok, {len(self.failed)} failed, {len(self.skipped)} skipped"
            + (" (interrupted)" if self.interrupted else ""),
            f"video: {hours:.2f} h in {self.clips} clips, {self.wall_s:.1f} s wall"
            + (f" ({self.seconds_of_video / self.wall_s:.1f}x real time)" if self.wall_s > 0 and self.ok else ""),
        ]
        if self.timer.seconds:
            out.append(f"stages: {self.timer.summary()}")
        if self.failed:
            out.append("failed files are listed above and in `vbsearch status`; fix them and run again")
        return out


class _StopAfterCurrentFile:
    """First Ctrl-C: finish the current file, then stop. Second: KeyboardInterrupt as usual."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopAfterCurrentFile:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: keep the default behaviour
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("vbsearch index: stopping after the current file (Ctrl-C again to stop now)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class SpeechStage:
    """Speech -> timestamped sentences (job.tables["sentences"]) and the videos row's asr columns."""

    name = "speech"

    def __init__(self, settings) -> None:
        from indexer.speech import AsrOptions

        self.options = AsrOptions.from_settings(settings)

    def __call__(self, job: FileJob, timer: StageTimer) -> None:
        from indexer.audio import AudioError
        from indexer.speech import Transcript, choose_backend, sentences_frame, transcribe_video

        with timer.time("speech"):
            try:
                transcript = transcribe_video(job.info.path, self.options)
            except AudioError as exc:  # the pictures are still worth finding: index them without speech
                log.warning("%s: audio unreadable, indexed without speech: %s", text_path(job.info.path),
                            _one_line(exc))
                transcript = Transcript((), choose_backend(job.info.path, self.options)[0], None,
                                        skipped_reason=f"audio unreadable: {_one_line(exc)}")
        job.tables["sentences"] = sentences_frame(job.info.video_id, transcript)
        job.row.update(asr=self.options.backend, asr_backend=transcript.backend,
                       asr_skipped=transcript.skipped_reason or "", language=transcript.language or "")
        for problem in transcript.problems:
            log.warning("%s: %s", job.info.path, problem)


def build_stages(settings, options: IngestOptions) -> list[Stage]:
    """The mappers each file goes through, in order."""
    from model.features import create_extractor

    # Only S3D runs on torch: asking the weights-free extractors for a torch device would import torch (~300 MB).
    device = settings.torch_device if settings.features == "s3d" else "cpu"
    extractor = create_extractor(settings.features, device=device, s3d_weights=settings.s3d_weights)
    return [VisualStage(extractor, settings.data_dir, options), SpeechStage(settings)]


def _catalog_by_path(catalog: Catalog) -> tuple[dict[str, dict], dict[str, dict]]:
    videos = catalog.read_table("videos")
    rows = videos.to_dicts() if len(videos) else []
    return {r["path"]: r for r in rows}, {r["video_id"]: r for r in rows}


def _unchanged(row: dict | None, path: Path, settings) -> bool:
    if row is None or row.get("features") != settings.features or row.get("asr") != settings.asr:
        return False
    # an extractor whose groups changed between versions (colormotion gained some) re-extracts
    if row.get("feature_groups") and row["feature_groups"] != groups_json(feature_groups(settings.features)):
        return False
    try:
        st = path.stat()
    except OSError:
        return False
    return row.get("size") == st.st_size and row.get("mtime") == st.st_mtime


def index_paths(paths: list[str | Path], settings, options: IngestOptions | None = None,
                force: bool = False) -> RunSummary:
    """Ingest everything under `paths` into settings.data_dir's catalog; never raises for a bad file."""
    options = options or IngestOptions()
    t_start = time.perf_counter()
    summary = RunSummary()
    catalog = Catalog(settings.data_dir)
    by_path, by_id = _catalog_by_path(catalog)
    found = discover(paths)
    stages: list[Stage] | None = None  # built on the first file that needs them (S3D loads slowly)

    def fail(path: Path, stage: str, message: str) -> None:
        summary.failed.append((path, stage, message))
        tqdm.write(f"vbsearch index: FAILED {text_path(path)}: {stage}: {message}", file=sys.stderr)
        try:
            catalog.put_error(path, stage, message)
        except Exception as exc:  # a full disk must not turn one bad file into a crashed run
            log.error("cannot record the error for %s in the catalog: %s", text_path(path), _one_line(exc))

    with _StopAfterCurrentFile() as stop, tqdm(total=len(found), unit="file", desc="index", position=0,
                                                disable=None if options.progress else True) as bar:
        for item in found:
            if stop.requested:
                summary.interrupted = True
                break
            bar.set_postfix_str(item.path.name[:40])
            path = item.path
            if item.error:
                fail(path, "discover", item.error)
                bar.update(1)
                continue
            if not force and _unchanged(by_path.get(str(path)), path, settings):
                summary.skipped.append(path)
                catalog.clear_error(path)
                bar.update(1)
                continue
            try:
                with summary.timer.time("probe"):
                    info = probe(path)
            except ProbeError as exc:
                fail(path, "probe", str(exc))
                bar.update(1)
                continue
            same = by_id.get(info.video_id)
            if not force and same is not None and same.get("features") == settings.features and same["path"] != str(path):
                if Path(same["path"]).exists():
                    log.info("%s: same content as %s, already indexed; skipped", path, same["path"])
                else:  # the file moved: point the catalog at its new place, no decoding needed
                    moved = {**same, "path": str(path), "size": info.size, "mtime": info.mtime, "indexed_at": time.time()}
                    catalog.put("videos", info.video_id, pl.DataFrame([moved]))
                    log.info("%s: moved from %s; catalog updated", path, same["path"])
                summary.skipped.append(path)
                catalog.clear_error(path)
                bar.update(1)
                continue
            if stages is None:
                try:
                    stages = build_stages(settings, options)
                except (OSError, RuntimeError, ValueError) as exc:
                    raise SetupError(str(exc)) from exc
            job = FileJob(info)
            stage_name = "visual"
            try:
                for stage in stages:
                    stage_name = stage.name
                    stage(job, summary.timer)
                stage_name = "write"
                with summary.timer.time("write"):
                    row = video_row(job)
                    catalog.put_video(info.video_id, row, **job.tables)
                    old = by_path.get(str(path))
                    if old is not None and old["video_id"] != info.video_id:  # the file's content changed
                        catalog.remove_video(old["video_id"])
                        thumbnails.remove(settings.data_dir, old["video_id"])
                    catalog.clear_error(path)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                if info.video_id not in by_id:
                    thumbnails.remove(settings.data_dir, info.video_id)
                stage_label = "decode" if isinstance(exc, DecodeError) else stage_name
                log.debug("%s failed in %s", path, stage_label, exc_info=True)
                fail(path, stage_label, _one_line(exc))
                bar.update(1)
                continue
            summary.ok.append(path)
            summary.seconds_of_video += float(row["duration"])
            summary.clips += int(row.get("n_clips", 0))
            by_id[info.video_id] = row
            bar.update(1)
        summary.interrupted = summary.interrupted or stop.requested  # Ctrl-C during the last file: stop too
    summary.wall_s = time.perf_counter() - t_start
    return summary


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]


def run(args: argparse.Namespace, settings) -> int:
    try:
        with writer_lock(settings.data_dir):
            return _run_locked(args, settings)
    except CatalogBusyError as exc:
        print(f"vbsearch index: index busy: {exc}", file=sys.stderr)
        return EXIT_SETUP


def _load_errors() -> tuple[type[BaseException], ...]:
    """What loading or training the model can raise for a bad data dir: one line each, no traceback."""
    from safetensors import SafetensorError

    from indexer.train import TrainError
    from model.checkpoint import CheckpointError
    from model.pretrain_data import PretrainDataError

    # ValueError covers a damaged or mismatched visual vocabulary (model/vocab.py, VocabMismatchError).
    return TrainError, CheckpointError, PretrainDataError, ValueError, SafetensorError, FileNotFoundError


def _run_locked(args: argparse.Namespace, settings) -> int:
    swept = Catalog(settings.data_dir).sweep_temporary()
    if swept:
        log.info("removed %d temporary catalog files left by an interrupted run", swept)
    options = IngestOptions(decoder=args.decoder, thumbnails=not args.no_thumbnails)
    try:
        summary = index_paths(args.paths, settings, options, force=args.force)
    except SetupError as exc:
        print(f"vbsearch index: {exc}", file=sys.stderr)
        return EXIT_SETUP
    for line in summary.lines():
        print(line)
    if summary.interrupted:
        print("vbsearch index: interrupted; run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.prune:
        for path in prune_missing(settings.data_dir):
            print(f"pruned: {path}")
    if args.catalog_only:
        return EXIT_FAILED if summary.failed else 0
    from indexer.searchindex import build_search_index, default_train_options
    from search.store import StoreBusyError, StoreError

    if Catalog(settings.data_dir).read_table("videos").is_empty():
        print("vbsearch index: nothing in the catalog to index", file=sys.stderr)
        return EXIT_FAILED if summary.failed else 0
    try:
        embedded = build_search_index(settings, default_train_options(args.train_steps))
    except StoreBusyError as exc:
        print(f"vbsearch index: index busy: {exc}; the catalog is up to date, run `vbsearch index` again "
              "to update the search index", file=sys.stderr)
        return EXIT_SETUP
    except (*_load_errors(), StoreError) as exc:
        log.debug("search index step failed", exc_info=True)  # the traceback, with -v
        print(f"vbsearch index: cannot build the search index: {_one_line(exc)}", file=sys.stderr)
        return EXIT_SETUP
    print(f"search index: {embedded.embedded} videos embedded ({embedded.segments} segments), "
          f"{embedded.unchanged} unchanged, {embedded.removed} removed, {embedded.seconds:.1f} s")
    return EXIT_FAILED if summary.failed else 0
