"""Request and response bodies of the HTTP API (search/service.py): validated, and documented in its OpenAPI.

Requests forbid unknown keys, so a misspelt filter is a 422, not a silently unfiltered search, and their
numbers and switches are read as JSON Schema reads them: "5" is not an integer (5.0 is), false is not a
number, 1 is not a boolean.
Every error answer is a `Problem`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from search.export import FORMATS as EXPORT_FORMATS
from search.export import MAX_TITLE
from search.query import MAX_QUERY_CHARS, QUERY_PATTERN, clean_query
from search.store import Filters

MAX_TOP_K = 200  # hits per request
DEFAULT_TOP_K = 10
MAX_VIDEO_CHARS = 4096  # a path or a video id
MAX_EXPORT = 1000  # moments per export


def _a_json_number(v: Any) -> Any:
    if isinstance(v, bool | str):
        raise ValueError("a number is required (not a string or a boolean)")
    return v


JsonInt = Annotated[int, BeforeValidator(_a_json_number)]  # 5 and 5.0, not "5" or true
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False), BeforeValidator(_a_json_number)]


class SearchFilters(BaseModel):
    """Restrict hits; every field is optional."""
    model_config = ConfigDict(extra="forbid")
    video: str | None = Field(None, min_length=1, max_length=MAX_VIDEO_CHARS,
                              description="a video_id, or a video's absolute path")
    min_duration: Seconds | None = Field(None, description="segment length at least (s)")
    max_duration: Seconds | None = Field(None, description="segment length at most (s)")
    indexed_after: dt.datetime | None = Field(
        None, description="only videos indexed after this time (ISO 8601, local time unless it has an offset; "
                          "or unix seconds)")
    label: str | None = Field(None, min_length=1, max_length=200,
                              description="only segments `vbsearch tag` gave this label")

    @field_validator("indexed_after")
    @classmethod
    def _representable(cls, v: dt.datetime | None) -> dt.datetime | None:
        if v is not None:
            try:
                v.timestamp()
            except (OverflowError, OSError, ValueError) as exc:
                raise ValueError(f"not a usable time: {exc}") from exc
        return v

    def to_filters(self) -> Filters | None:
        filters = Filters(video=self.video, min_duration=self.min_duration, max_duration=self.max_duration,
                          indexed_after=self.indexed_after.timestamp() if self.indexed_after else None,
                          label=self.label)
        return None if filters == Filters() else filters


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS, pattern=QUERY_PATTERN,
                       description="what to look for, in plain words (not only white space; one of "
                                   "unprintable characters only finds nothing)")
    top_k: JsonInt = Field(DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="number of hits")
    filters: SearchFilters = Field(default_factory=SearchFilters)
    rerank: bool = Field(True, strict=True,
                         description="rescore candidates with the word match and the alignment head")

    @field_validator("query")
    @classmethod
    def _words(cls, v: str) -> str:
        return clean_query(v)  # a query of unprintable characters only is valid and finds nothing


class LikeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    segment_id: uuid.UUID = Field(..., description="a hit's segment_id")
    top_k: JsonInt = Field(DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="number of hits")
    filters: SearchFilters = Field(default_factory=SearchFilters)


class ExportRequest(BaseModel):
    """A selection to hand to an editing tool (search.export)."""
    model_config = ConfigDict(extra="forbid")
    segment_ids: list[uuid.UUID] = Field(..., min_length=1, max_length=MAX_EXPORT,
                                         description="the moments, in timeline order (hits' segment_id)")
    format: Literal[EXPORT_FORMATS] = Field(..., description="edl (CMX3600), xml (Final Cut Pro 7), fcpxml, otio, "
                                                              "csv or json")
    title: str | None = Field(None, min_length=1, max_length=MAX_TITLE, description="the timeline's name")


class SeenOut(BaseModel):
    word: str = Field(..., description="the query's word")
    group: str = Field(..., description="the feature group of the visual word that answers it, e.g. colour, motion")
    source: str = Field(..., description="lexicon (the narration lexicon) or model (the encoder's word match)")
    strength: float = Field(..., description="the lexicon's link (lift) or the word match's cosine")


class WhyOut(BaseModel):
    """Why the moment matched, in words."""
    said: list[str] = Field(default_factory=list, description="query words the moment's transcript has")
    seen: list[SeenOut] = Field(default_factory=list, description="query words the pictures answer, strongest first")


class HitOut(BaseModel):
    """The CLI's --json hit (search.hits.Hit.to_json), plus where to fetch its thumbnail and preview."""
    video: str = Field(..., description="absolute path of the video file (on the server)")
    start: float = Field(..., description="s")
    end: float = Field(..., description="s")
    score: float
    text: str = Field(..., description="transcript of the moment ('' where nobody speaks)")
    video_id: str
    segment_id: str = Field(..., description="for more-like-this, details, thumbnail and preview")
    thumbnail: str | None = Field(None, description="the thumbnail's path on the server")
    fps: float | None = None
    scores: dict[str, float] = Field(default_factory=dict, description="component scores: video, words (word match), lexicon (narration lexicon), align, text")
    timecode: str | None = Field(None, description="the file's own start timecode, e.g. 10:00:00;00 (None: none)")
    why: WhyOut | None = Field(None, description="why it matched (text searches; null for more-like-this)")
    thumbnail_url: str | None = Field(None, description="GET this (relative to the API root) for the JPEG")
    preview_url: str = Field(..., description="GET this (relative to the API root) for an MP4 of the moment")


class SearchResponse(BaseModel):
    hits: list[HitOut]
    seconds: float = Field(..., description="time the engine took (s)")


class SegmentOut(BaseModel):
    segment_id: str
    video: str = Field(..., description="absolute path of the video file (on the server)")
    video_id: str
    start: float = Field(..., description="s")
    end: float = Field(..., description="s")
    duration: float = Field(..., description="s")
    text: str
    kind: str | None = Field(None, description="how the segment was cut (sentence window or fixed window)")
    fps: float | None = None
    indexed_at: float | None = Field(None, description="unix time")
    thumbnail_url: str | None = None
    preview_url: str


class VideoOut(BaseModel):
    model_config = ConfigDict(extra="allow")  # every catalog column comes along
    video_id: str
    path: str
    duration: float | None = Field(None, description="s")


class IndexInfoOut(BaseModel):
    """search.engine.IndexInfo."""
    videos: int
    hours: float
    clips: int
    segments: int
    failed: list[dict[str, Any]] = Field(..., description="path, stage, error of each failed file")
    model_id: str | None
    vocab_lines: list[str]
    last_indexed: float | None = Field(None, description="unix time")


class Health(BaseModel):
    status: str = Field(..., description="always 'ok' when the process answers")
    ready: bool = Field(..., description="whether the model and the index are open")
    state: str = Field(..., description="loading | ready | no-index | busy (another process holds the index) | "
                                        "failed (see the service's log); it retries until ready")
    detail: str | None = Field(None, description="why not ready")


class Problem(BaseModel):
    """Every error answer (4xx and 5xx)."""
    detail: str = Field(..., description="what was wrong, in words")
    errors: list[str] | None = Field(None, description="for 422: each problem as 'where: what'")
