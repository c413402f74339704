"""ApiClient: the search service (search/service.py) behind the methods the UI calls on a SearchEngine.

    client = ApiClient("http://127.0.0.1:8080")          # token from $VBSEARCH_API_TOKEN unless given
    hits = client.search("a red ball", top_k=10)          # list[search.hits.Hit], as from the engine

Besides the engine's methods (search, more_like_this, videos, index_info, is_catalogued, close) it fetches
media over HTTP, since the UI may run where the data dir is not: thumbnail_bytes(hit), preview_clip(hit).
Errors keep the engine's types: NoIndexError when the service has no index yet, StoreBusyError when its
store is busy, EngineError for anything else the service refuses.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from search.engine import EngineError, IndexInfo, NoIndexError
from search.hits import Hit, Why
from search.query import MAX_QUERY_CHARS, clean_query
from search.store import Filters, StoreBusyError

TOKEN_ENV = "VBSEARCH_API_TOKEN"  # the same variable the service reads
TIMEOUT_S = 120.0  # a preview cut or a cold search can take a while on a busy CPU
CATALOG_TTL_S = 30.0  # s: how long is_catalogued trusts its copy of the video list
_HIT_FIELDS = tuple(f.name for f in fields(Hit))


@dataclass(frozen=True)
class RemotePreview:
    data: bytes  # the MP4
    window_start: float  # s in the source where the preview begins
    window_end: float  # s in the source where it ends
    lead_in: float  # s from the preview's start to the moment's start


class ApiClient:
    remote = True  # the UI asks for media through the client instead of reading the data dir

    def __init__(self, base_url: str, token: str | None = None, timeout: float = TIMEOUT_S):
        import httpx

        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self._catalogued: tuple[float, set[str]] | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport --------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs):
        import httpx

        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise EngineError(f"cannot reach the search service at {self.base_url}: {exc}") from exc
        if resp.status_code < 400:
            return resp
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        if resp.status_code == 503 and str(detail).startswith("no index"):
            raise NoIndexError(detail)
        if resp.status_code == 503 and str(detail).startswith("index busy"):
            raise StoreBusyError(detail)
        raise EngineError(f"search service: {resp.status_code} {detail}")

    @staticmethod
    def _filters(filters: Filters | None) -> dict[str, Any]:
        return {k: v for k, v in asdict(filters).items() if v is not None} if filters else {}

    @staticmethod
    def _hits(body: dict) -> list[Hit]:
        return [Hit(**{k: Why.from_json(h[k]) if k == "why" else h[k] for k in _HIT_FIELDS if k in h})
                for h in body["hits"]]

    # -- the engine's methods ---------------------------------------------------------------------------------
    def search(self, query: str, top_k: int = 10, filters: Filters | None = None, options=None) -> list[Hit]:
        query = clean_query(query)[:MAX_QUERY_CHARS]  # as the CLI: a longer query is cut, not refused
        if not query:
            return []  # as the engine: nothing to look for
        body: dict[str, Any] = {"query": query, "top_k": top_k, "filters": self._filters(filters)}
        if options is not None:
            body["rerank"] = bool(options.rerank)
        return self._hits(self._request("POST", "/search", json=body).json())

    def more_like_this(self, segment_id: str, top_k: int = 10, filters: Filters | None = None) -> list[Hit]:
        body = {"segment_id": segment_id, "top_k": top_k, "filters": self._filters(filters)}
        return self._hits(self._request("POST", "/more-like-this", json=body).json())

    def videos(self):
        import polars as pl

        return pl.DataFrame(self._request("GET", "/videos").json())

    def index_info(self) -> IndexInfo:
        return IndexInfo(**self._request("GET", "/index").json())

    def is_catalogued(self, path: str) -> bool:
        now = time.monotonic()
        if self._catalogued is None or now - self._catalogued[0] > CATALOG_TTL_S:
            self._catalogued = (now, {v["path"] for v in self._request("GET", "/videos").json()})
        return str(path) in self._catalogued[1]

    # -- media ------------------------------------------------------------------------------------------------
    def thumbnail_bytes(self, hit: Hit) -> bytes | None:
        """The hit's JPEG, or None when it has none."""
        if not hit.thumbnail:
            return None
        try:
            return self._request("GET", f"/segments/{hit.segment_id}/thumbnail").content
        except EngineError:
            return None

    def preview_clip(self, hit: Hit) -> RemotePreview:
        resp = self._request("GET", f"/segments/{hit.segment_id}/preview")
        h = resp.headers
        return RemotePreview(resp.content, float(h["x-window-start"]), float(h["x-window-end"]), float(h["x-lead-in"]))
