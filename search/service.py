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
concurrently (health, thumbnails, previews and store lookups never wait for a search). The model's forward
passes are serialised with one lock around the inference object (torch modules are not safe to call from
several threads at once, and with the encoder's intra-op threads already using every core, batching across
requests would buy little on CPU). Preview cuts (x264) are limited to PREVIEW_WORKERS at a time.

Auth: when $VBSEARCH_API_TOKEN is set, every endpoint but /health and the OpenAPI document needs
`Authorization: Bearer <token>`.

Errors: 4xx bodies say what was wrong ({"detail": ...}); unexpected failures are logged here with their
traceback and answered 500 {"detail": "internal error"}: no stack traces leave the process.
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

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
TOKEN_ENV = "VBSEARCH_API_TOKEN"
PREVIEW_WORKERS = 2  # concurrent preview cuts (each is an x264 encode)
THUMBNAIL_DIR = "thumbnails"  # under the data dir (indexer/thumbnails.py)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 for all interfaces)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")


def run(args: argparse.Namespace, settings) -> int:
    import uvicorn

    if not 0 < args.port < 65536:
        print(f"vbsearch serve: --port must be 1-65535, not {args.port}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get(TOKEN_ENV):
        log.warning("serving on %s without %s: anyone who can reach the port can search", args.host, TOKEN_ENV)
    app = create_app(settings)
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
    """Opens the engine once; until there is an index (or while another process holds the embedded store)
    each request retries, so a service started before the first index run comes up by itself."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._engine: Any = None
        self._lock = threading.Lock()
        self.model_lock = threading.Lock()  # one forward pass at a time

    @property
    def ready(self) -> bool:
        return self._engine is not None

    def get(self) -> Any:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    engine = self._factory()
                    if hasattr(engine, "inference"):
                        engine.inference = SerialInference(engine.inference, self.model_lock)
                    self._engine = engine
        return self._engine

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None


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
def create_app(settings=None, engine_factory: Callable[[], Any] | None = None):
    """The FastAPI app. `engine_factory() -> SearchEngine` (default: SearchEngine.open(settings)) runs once,
    at startup, or on the first request after an index appears."""
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from search.api_models import (
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
    from search.store import StoreBusyError
    from vbsearch import __version__

    if engine_factory is None:
        if settings is None:
            raise ValueError("create_app needs settings or an engine_factory")
        from search.engine import SearchEngine

        def engine_factory():
            return SearchEngine.open(settings)

    holder = EngineHolder(engine_factory)
    previews = threading.BoundedSemaphore(PREVIEW_WORKERS)
    token = os.environ.get(TOKEN_ENV) or None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from starlette.concurrency import run_in_threadpool

        try:
            await run_in_threadpool(holder.get)  # load the model now, not on the first search
        except (NoIndexError, StoreBusyError) as exc:
            log.warning("not ready yet (will retry on each request): %s", exc)
        yield
        holder.close()

    app = FastAPI(title="vbsearch", version=__version__, lifespan=lifespan,
                  description="Semantic video search over a VideoBERT index: ranked moments for a text query.")
    app.state.holder = holder

    bearer = HTTPBearer(auto_error=False, description=f"the token in ${TOKEN_ENV} (when the server sets one)")

    def authorised(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if token is None:
            return
        if creds is None or not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def engine():
        try:
            return holder.get()
        except NoIndexError as exc:
            raise HTTPException(503, f"no index yet: {exc}") from exc
        except StoreBusyError as exc:
            raise HTTPException(503, f"index busy: {exc}") from exc

    errors = {401: {"model": Problem}, 503: {"model": Problem}}
    guarded = [Depends(authorised)]

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
    async def _busy(request: Request, exc: StoreBusyError):
        return JSONResponse({"detail": f"index busy: {exc}"}, status_code=503)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    # -- helpers ----------------------------------------------------------------------------------------------
    def hits_out(hits) -> list:
        return [HitOut(**h.to_json(), **hit_urls(h.segment_id, bool(h.thumbnail))) for h in hits]

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
    @app.get("/health", response_model=Health, tags=["status"])
    def health():
        """Liveness (always 200 while the process answers) and readiness (model and index open)."""
        try:
            holder.get()
        except (NoIndexError, StoreBusyError) as exc:
            return {"status": "ok", "ready": False, "detail": str(exc)}
        return {"status": "ok", "ready": True}

    @app.post("/search", response_model=SearchResponse, dependencies=guarded, responses=errors,
              tags=["search"])
    def search(req: SearchRequest):
        """Ranked moments for a text query."""
        import time
        from dataclasses import replace

        eng = engine()
        options = None if req.rerank else replace(eng.options, rerank=False)
        t0 = time.perf_counter()
        hits = eng.search(req.query, req.top_k, req.filters.to_filters(), options)
        return {"hits": hits_out(hits), "seconds": time.perf_counter() - t0}

    @app.post("/more-like-this", response_model=SearchResponse, dependencies=guarded,
              responses={**errors, 404: {"model": Problem}}, tags=["search"])
    def more_like_this(req: LikeRequest):
        """Moments that look like a given segment (its video vector's nearest neighbours)."""
        import time

        eng = engine()
        t0 = time.perf_counter()
        try:
            hits = eng.more_like_this(str(req.segment_id), req.top_k, req.filters.to_filters())
        except NoIndexError:
            raise
        except EngineError as exc:
            raise HTTPException(404, str(exc)) from exc
        return {"hits": hits_out(hits), "seconds": time.perf_counter() - t0}

    @app.get("/segments/{segment_id}", response_model=SegmentOut, dependencies=guarded,
             responses={**errors, 404: {"model": Problem}}, tags=["segments"])
    def segment(segment_id: uuid.UUID):
        """One segment's details."""
        p = payload_of(engine(), segment_id)
        start, end = float(p["start"]), float(p["end"])
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

    @app.get("/segments/{segment_id}/preview", dependencies=guarded, tags=["segments"],
             response_class=FileResponse,
             responses={**errors, 404: {"model": Problem}, 422: {"model": Problem},
                        200: {"content": {"video/mp4": {}},
                              "description": "an H.264/AAC MP4 from a lead-in before the moment to its end; "
                                             "headers X-Window-Start, X-Window-End, X-Lead-In (s)"}})
    def preview(segment_id: uuid.UUID):
        """A short MP4 of the moment, cut on first request and cached in the data dir."""
        from ui.preview import PreviewError
        from ui.preview import preview as cut_preview

        eng = engine()
        p = payload_of(eng, segment_id)
        path = catalogued(eng, p)
        videos = eng.videos()
        row = videos.filter(videos["video_id"] == p["video_id"]) if videos.height else videos
        duration = float(row["duration"][0]) if row.height and row["duration"][0] else None
        try:
            with previews:
                pv = cut_preview(path, p["video_id"], float(p["start"]), float(p["end"]), eng.data_dir, duration)
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
