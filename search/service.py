"""`vbsearch serve`: the search engine over HTTP (FastAPI, OpenAPI document at /openapi.json, docs at /docs).

One long-lived process holds the model and the store and serves every client:

    POST /search                       query, top_k, filters -> hits
    POST /more-like-this               segment_id, top_k, filters -> hits
    GET  /segments/{id}                one segment's details
    GET  /segments/{id}/thumbnail      its JPEG (catalogued videos only)
    GET  /segments/{id}/preview        a short MP4 of the moment (catalogued videos only; ui/preview.py)
    GET  /videos                       the catalogued videos
    GET  /index                        index status (search.engine.IndexInfo)
    GET  /health                       liveness and readiness (never needs the token)

Hits carry the CLI's --json fields (search.hits.Hit.to_json) plus thumbnail_url and preview_url.
Nothing a client sends is used as a path: media is found through the segment's stored payload, and only
for videos that the catalog knows.

Concurrency: endpoints are plain `def`s, so the server runs them in its threadpool and requests are served
concurrently; /health is answered on the event loop, so no amount of work starves it. Searches and previews
take a turn (search.guards.WorkLimit: --max-concurrent at once, --max-queued waiting up to --queue-wait,
then 503 with Retry-After). The model's forward passes are serialised with one lock around the inference
object (torch modules are not safe to call from several threads at once, and with the encoder's intra-op
threads already using every core but one, batching across requests would buy little on CPU); the core left
over keeps the event loop answering (forward_threads, --threads). Preview cuts (x264)
are limited to PREVIEW_WORKERS at a time. The model and the index open once, in the background
(EngineHolder), retried at spaced-out times while there is no index or another process holds it.

Guards before any endpoint (search/guards.py): a Host header naming another host is 400 (DNS rebinding),
a body over --max-body is 413 while it is read (before parsing and before the token is checked).

Auth: when $VBSEARCH_API_TOKEN is set, every endpoint but /health, /docs and the OpenAPI document needs
`Authorization: Bearer <token>`.

Errors: every 4xx/5xx body is search.api_models.Problem ({"detail": ..., "errors": [...] for a 422}), as the
OpenAPI document says; unexpected failures are logged here with their traceback and answered 500
{"detail": "internal error"}: no stack traces leave the process. /docs works offline (fastapi-offline's
installed Swagger UI).
"""

import argparse
import logging
import math
import os
import secrets
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from search.guards import LOCAL_HOSTS, BodyLimit, Busy, ServiceLimits, TrustedHosts, WorkLimit

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
TOKEN_ENV = "VBSEARCH_API_TOKEN"
PREVIEW_WORKERS = 2  # concurrent preview cuts (each is an x264 encode)
THUMBNAIL_DIR = "thumbnails"  # under the data dir (indexer/thumbnails.py)
HEALTH_DETAIL = {  # what /health says about each state: no paths, it needs no token
    "loading": "opening the model and the index",
    "ready": None,
    "no-index": "no index yet: run `vbsearch index PATH...`",
    "busy": "the index is held by another process; retrying",
    "failed": "the model or the index cannot be opened (see the service's log); retrying",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ServiceLimits()
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 for all interfaces)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="a host name clients reach the service by (the Host header), beside localhost, "
                             "127.0.0.1, ::1 and --host; repeat for several; '*' accepts any (behind a proxy "
                             "that checks it)")
    parser.add_argument("--max-body", type=int, default=d.max_body_bytes, metavar="BYTES",
                        help=f"largest request body accepted (default {d.max_body_bytes}); larger: 413")
    parser.add_argument("--max-concurrent", type=int, default=d.max_concurrent, metavar="N",
                        help=f"searches and previews run at once (default {d.max_concurrent})")
    parser.add_argument("--max-queued", type=int, default=d.max_queued, metavar="N",
                        help=f"more that wait for a turn (default {d.max_queued}); beyond them: 503 at once")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads for the forward passes (default: one fewer than the cores, at least "
                             "1: a core stays free for the event loop, so /health and the 503s of an overload answer "
                             "at once)")
    parser.add_argument("--queue-wait", type=float, default=d.queue_wait_s, metavar="SECONDS",
                        help=f"longest wait for a turn or for the index to open (default {d.queue_wait_s:g}); "
                             "then 503 with Retry-After")


def forward_threads(cores: int | None = None) -> int:
    """Torch threads for the service's forward passes: one fewer than the cores, at least one. With every core
    busy in a forward pass, /health waited 44-70 ms p99 under an overload on 2 cores; with one core free,
    26-48 ms (bench/bench_service.py, README), for a slower single search on 2 cores (one thread instead of two)."""
    return max(1, (cores or os.cpu_count() or 1) - 1)


def limits_of(args: argparse.Namespace) -> ServiceLimits:
    hosts = [*LOCAL_HOSTS, *args.allow_host]
    if args.host not in ("0.0.0.0", "::", ""):
        hosts.append(args.host)
    return ServiceLimits(max_body_bytes=args.max_body, max_concurrent=args.max_concurrent,
                         max_queued=args.max_queued, queue_wait_s=args.queue_wait,
                         allowed_hosts=tuple(dict.fromkeys(hosts)))


def run(args: argparse.Namespace, settings) -> int:
    import uvicorn

    if not 0 < args.port < 65536:
        print(f"vbsearch serve: --port must be 1-65535, not {args.port}", file=sys.stderr)
        return 2
    try:
        limits = limits_of(args)
    except ValueError as exc:
        print(f"vbsearch serve: {exc}", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print(f"vbsearch serve: --threads must be at least 1, not {args.threads}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads or forward_threads())
    if args.host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get(TOKEN_ENV):
        log.warning("serving on %s without %s: anyone who can reach the port can search", args.host, TOKEN_ENV)
    if args.host in ("0.0.0.0", "::") and not args.allow_host:
        log.warning("listening on all interfaces, but only requests addressed to localhost names are answered: "
                    "add --allow-host NAME for each name clients use")
    app = create_app(settings, limits=limits)
    print(f"vbsearch API on http://{args.host}:{args.port} (docs at /docs, data dir "
          f"{settings.data_dir.resolve()}); Ctrl-C to stop", file=sys.stderr)
    from search.owner import announce

    with announce(settings.data_dir, args.host, args.port):  # `vbsearch search` asks this process from now on
        uvicorn.run(app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning",
                    access_log=bool(args.verbose))
    return 0


# -- the engine, opened once ---------------------------------------------------------------------------------
class SerialInference:
    """The inference object with every method call made under one lock (one forward pass at a time)."""

    def __init__(self, inner: Any, lock: threading.Lock):
        self._inner = inner
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def locked(*args, **kwargs):
            with self._lock:
                return attr(*args, **kwargs)

        return locked


class EngineHolder:
    """Opens the engine once, in a background thread: until there is an index (or while another process
    holds the embedded store) it tries again after the waits of `retry_s`, the last one repeating. Requests
    never open it themselves; they wait a bounded time for it (`get`)."""

    def __init__(self, factory: Callable[[], Any], retry_s: tuple[float, ...] = ServiceLimits.load_retry_s):
        self._factory = factory
        self._retry_s = retry_s
        self._engine: Any = None
        self._error: Exception | None = None  # why the last attempt failed
        self.state = "loading"  # a key of HEALTH_DETAIL
        self.next_attempt_s = 0.0  # seconds from the last failure to the next attempt
        self._opened = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.model_lock = threading.Lock()  # one forward pass at a time

    @property
    def ready(self) -> bool:
        return self._engine is not None

    def start(self) -> None:
        """Start opening the engine (once; a no-op while it is being opened or is open)."""
        with self._lock:
            if self._engine is None and (self._thread is None or not self._thread.is_alive()):
                self._closing.clear()
                self._thread = threading.Thread(target=self._open, name="vbsearch-engine", daemon=True)
                self._thread.start()

    def _open(self) -> None:
        from search.engine import NoIndexError
        from search.store import StoreBusyError

        attempt = 0
        while not self._closing.is_set():
            try:
                engine = self._factory()
            except (NoIndexError, StoreBusyError) as exc:
                self.state, self._error = ("no-index" if isinstance(exc, NoIndexError) else "busy"), exc
            except Exception as exc:  # a broken model or store: logged here, retried like the others
                log.error("cannot open the search engine: %s", exc, exc_info=exc)
                self.state, self._error = "failed", exc
            else:
                if hasattr(engine, "inference"):
                    engine.inference = SerialInference(engine.inference, self.model_lock)
                self._engine, self.state, self._error = engine, "ready", None
                self._opened.set()
                return
            self.next_attempt_s = self._retry_s[min(attempt, len(self._retry_s) - 1)]
            attempt += 1
            self._closing.wait(self.next_attempt_s)

    def get(self, wait_s: float = 0.0) -> Any:
        """The engine, waiting up to `wait_s` for it to open; else the last attempt's error (NoIndexError,
        StoreBusyError, or another), or TimeoutError while the first attempt runs."""
        if self._engine is None:
            self.start()
            self._opened.wait(wait_s)
        if self._engine is None:
            raise self._error or TimeoutError("the search engine is still opening")
        return self._engine

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None
                self._opened.clear()
                self.state = "loading"


def hit_urls(segment_id: str, has_thumbnail: bool) -> dict[str, str | None]:
    return {"thumbnail_url": f"/segments/{segment_id}/thumbnail" if has_thumbnail else None,
            "preview_url": f"/segments/{segment_id}/preview"}


def thumbnail_file(data_dir: Path, video_id: str, thumbnail: str | None) -> Path | None:
    """A segment's JPEG in this data dir's thumbnail folder (by name, so a moved data dir keeps them)."""
    if not thumbnail:
        return None
    root = (Path(data_dir) / THUMBNAIL_DIR).resolve()
    path = (root / video_id / Path(thumbnail).name).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


# -- the app --------------------------------------------------------------------------------------------------
def create_app(settings=None, engine_factory: Callable[[], Any] | None = None, limits: ServiceLimits | None = None):
    """The FastAPI app. `engine_factory() -> SearchEngine` (default: SearchEngine.open(settings)) runs in the
    background from startup until it succeeds (EngineHolder)."""
    from fastapi import Depends, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from fastapi_offline import FastAPIOffline
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from search.api_models import (
        ExportRequest,
        Health,
        HitOut,
        IndexInfoOut,
        LikeRequest,
        Problem,
        SearchRequest,
        SearchResponse,
        SegmentOut,
        VideoOut,
    )
    from search.engine import EngineError, NoIndexError
    from search.export import DEFAULT_TITLE, MEDIA_TYPES, ExportError, export
    from search.store import StoreBusyError
    from vbsearch import __version__

    if engine_factory is None:
        if settings is None:
            raise ValueError("create_app needs settings or an engine_factory")
        from search.engine import SearchEngine

        def engine_factory():
            return SearchEngine.open(settings)

    limits = limits or ServiceLimits()
    holder = EngineHolder(engine_factory, limits.load_retry_s)
    work = WorkLimit(limits)
    previews = threading.BoundedSemaphore(PREVIEW_WORKERS)
    token = os.environ.get(TOKEN_ENV) or None

    @asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        holder.start()  # open the model now, in the background, not on the first search
        yield
        holder.close()

    # /docs and /redoc from assets installed with the package: they work on a network without the internet
    app = FastAPIOffline(title="vbsearch", version=__version__, lifespan=lifespan, static_url="/docs-assets",
                         description="Semantic video search over a VideoBERT index: ranked moments for a text "
                                     "query.")
    app.state.holder = holder
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(TrustedHosts, allowed=limits.allowed_hosts)  # added last: runs first

    bearer = HTTPBearer(auto_error=False, description=f"the token in ${TOKEN_ENV} (when the server sets one)")

    def authorised(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if token is None:
            return
        if creds is None or not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def engine():
        try:
            return holder.get(wait_s=limits.queue_wait_s)
        except Exception as exc:
            # no index, the store held elsewhere, still opening, or a model that cannot be read (logged there)
            why = (f"no index yet: {exc}" if isinstance(exc, NoIndexError) else
                   f"index busy: {exc}" if isinstance(exc, StoreBusyError) else
                   f"the search engine is not ready ({holder.state})")
            raise Busy(why, math.ceil(holder.next_attempt_s)) from exc

    # Every error body is a Problem; these may answer any operation (400: a foreign Host, 413: a body over
    # the cap, 422: an invalid request), the guarded ones also 401 and 503 (busy, or no index yet).
    problem = {"model": Problem}
    common = {400: problem, 413: problem, 422: problem}
    errors = {**common, 401: problem, 503: {**problem, "headers": {"Retry-After": {
        "description": "seconds to wait before trying again", "schema": {"type": "integer"}}}}}
    guarded = [Depends(authorised)]

    async def admitted() -> None:
        work.check()

    heavy = [*guarded, Depends(admitted)]  # searches and previews: shed on the event loop when full

    # -- errors: clear JSON, never a traceback --------------------------------------------------------------
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # Each problem as "where: what"; the raw input is not echoed back.
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(problems) or "invalid request", "errors": problems},
                            status_code=422)

    @app.exception_handler(StoreBusyError)
    async def _store_busy(request: Request, exc: StoreBusyError):
        return JSONResponse({"detail": f"index busy: {exc}"}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(Busy)
    async def _busy(request: Request, exc: Busy):
        return JSONResponse({"detail": str(exc)}, status_code=503,
                            headers={"Retry-After": str(max(1, exc.retry_after_s))})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    # -- helpers ----------------------------------------------------------------------------------------------
    def hits_out(hits) -> list:
        usable = [h for h in hits if math.isfinite(h.start) and math.isfinite(h.end)]
        if len(usable) < len(hits):
            log.warning("%d hits with a stored time that is not a number left out", len(hits) - len(usable))
        return [HitOut(**h.to_json(), **hit_urls(h.segment_id, bool(h.thumbnail))) for h in usable]

    def times_of(p: dict) -> tuple[float, float]:
        """The segment's stored start and end; 422 when either is not a finite number (a damaged payload)."""
        try:
            start, end = float(p["start"]), float(p["end"])
        except (KeyError, TypeError, ValueError):
            start = end = math.nan
        if not (math.isfinite(start) and math.isfinite(end)):
            raise HTTPException(422, "this segment's stored times are not numbers: run `vbsearch index` again")
        return start, end

    def payload_of(eng, segment_id: uuid.UUID) -> dict:
        found = eng.store.retrieve([str(segment_id)])
        if not found:
            raise HTTPException(404, f"unknown segment {segment_id}")
        return found[0].payload

    def catalogued(eng, payload: dict) -> str:
        """The segment's video path, if the catalog knows it (the only files this service opens)."""
        path = payload.get("path")
        if not path or not eng.is_catalogued(path):
            raise HTTPException(404, "this segment's video is no longer in the catalog")
        return path

    # -- endpoints ----------------------------------------------------------------------------------------------
    @app.get("/health", response_model=Health, tags=["status"], responses=common)
    async def health():
        """Liveness (always 200 while the process answers) and readiness (model and index open). Answered
        on the event loop, never in the thread pool that searches use, and never waits or opens anything."""
        return {"status": "ok", "ready": holder.ready, "state": holder.state, "detail": HEALTH_DETAIL[holder.state]}

    @app.post("/search", response_model=SearchResponse, dependencies=heavy, responses=errors,
              tags=["search"])
    def search(req: SearchRequest):
        """Ranked moments for a text query."""
        import time
        from dataclasses import replace

        with work.turn():
            eng = engine()
            options = None if req.rerank else replace(eng.options, rerank=False)
            t0 = time.perf_counter()
            hits = eng.search(req.query, req.top_k, req.filters.to_filters(), options)
            return {"hits": hits_out(hits), "seconds": time.perf_counter() - t0}

    @app.post("/more-like-this", response_model=SearchResponse, dependencies=heavy,
              responses={**errors, 404: {"model": Problem}}, tags=["search"])
    def more_like_this(req: LikeRequest):
        """Moments that look like a given segment (its video vector's nearest neighbours)."""
        import time

        with work.turn():
            eng = engine()
            t0 = time.perf_counter()
            try:
                hits = eng.more_like_this(str(req.segment_id), req.top_k, req.filters.to_filters())
            except NoIndexError:
                raise
            except EngineError as exc:
                raise HTTPException(404, str(exc)) from exc
            return {"hits": hits_out(hits), "seconds": time.perf_counter() - t0}

    @app.post("/export", dependencies=guarded, tags=["search"], response_class=Response,
              responses={**errors, 404: {"model": Problem},
                         200: {"content": {t: {} for t in sorted(set(MEDIA_TYPES.values()))},
                               "description": "the file, as an attachment named vbsearch-selection.FORMAT"}})
    def export_selection(req: ExportRequest):
        """The moments as a file for an editing tool (CMX3600 EDL, FCP 7 XML, FCPXML, OpenTimelineIO) or as
        CSV/JSON, each clip in its file's own start timecode and frame rate."""
        eng = engine()
        try:
            hits = eng.segments([str(i) for i in req.segment_ids])
        except EngineError as exc:
            raise HTTPException(404, str(exc)) from exc
        try:
            body = export(hits, req.format, req.title or DEFAULT_TITLE)
        except ExportError as exc:  # e.g. an EDL of moments at two frame rates
            raise HTTPException(422, str(exc)) from exc
        return Response(body, media_type=MEDIA_TYPES[req.format],
                        headers={"Content-Disposition": f'attachment; filename="vbsearch-selection.{req.format}"'})

    @app.get("/segments/{segment_id}", response_model=SegmentOut, dependencies=guarded,
             responses={**errors, 404: {"model": Problem}}, tags=["segments"])
    def segment(segment_id: uuid.UUID):
        """One segment's details."""
        p = payload_of(engine(), segment_id)
        start, end = times_of(p)
        return SegmentOut(segment_id=str(segment_id), video=p["path"], video_id=p["video_id"], start=start, end=end,
                          duration=float(p.get("duration", end - start)), text=p.get("text", ""),
                          kind=p.get("kind"), fps=p.get("fps"), indexed_at=p.get("indexed_at"),
                          **hit_urls(str(segment_id), bool(p.get("thumbnail"))))

    @app.get("/segments/{segment_id}/thumbnail", dependencies=guarded, tags=["segments"],
             response_class=FileResponse,
             responses={**errors, 404: {"model": Problem}, 200: {"content": {"image/jpeg": {}}}})
    def thumbnail(segment_id: uuid.UUID):
        """The segment's thumbnail (JPEG)."""
        eng = engine()
        p = payload_of(eng, segment_id)
        catalogued(eng, p)
        path = thumbnail_file(eng.data_dir, p["video_id"], p.get("thumbnail"))
        if path is None:
            raise HTTPException(404, "this segment has no thumbnail")
        return FileResponse(path, media_type="image/jpeg")

    @app.get("/segments/{segment_id}/preview", dependencies=heavy, tags=["segments"],
             response_class=FileResponse,
             responses={**errors, 404: {"model": Problem},
                        200: {"content": {"video/mp4": {}},
                              "description": "an H.264/AAC MP4 from a lead-in before the moment to its end; "
                                             "headers X-Window-Start, X-Window-End, X-Lead-In (s)"}})
    def preview(segment_id: uuid.UUID):
        """A short MP4 of the moment, cut on first request and cached in the data dir."""
        from ui.preview import PreviewError
        from ui.preview import preview as cut_preview

        eng = engine()
        p = payload_of(eng, segment_id)
        start, end = times_of(p)
        path = catalogued(eng, p)
        videos = eng.videos()
        row = videos.filter(videos["video_id"] == p["video_id"]) if videos.height else videos
        duration = float(row["duration"][0]) if row.height and row["duration"][0] else None
        try:
            with work.turn(), previews:
                pv = cut_preview(path, p["video_id"], start, end, eng.data_dir, duration)
        except (PreviewError, OSError) as exc:
            raise HTTPException(422, f"cannot preview this moment: {exc}") from exc
        headers = {"X-Window-Start": f"{pv.window_start:.3f}", "X-Window-End": f"{pv.window_end:.3f}",
                   "X-Lead-In": f"{pv.lead_in:.3f}"}
        return FileResponse(pv.path, media_type="video/mp4", headers=headers)

    @app.get("/videos", response_model=list[VideoOut], dependencies=guarded, responses=errors,
             tags=["status"])
    def videos():
        """Every catalogued video (the catalog's columns)."""
        df = engine().videos()
        rows = df.to_dicts() if df.height else []
        return [{k: v for k, v in r.items() if not (isinstance(v, float) and not math.isfinite(v))} for r in rows]

    @app.get("/index", response_model=IndexInfoOut, dependencies=guarded, responses=errors,
             tags=["status"])
    def index():
        """Index status: counts, failed files, model id, visual vocabulary, last index run."""
        from dataclasses import asdict

        return asdict(engine().index_info())

    return app
