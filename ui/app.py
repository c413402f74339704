"""The vbsearch search page (Streamlit): a thin client of search.engine.SearchEngine.

Run with `vbsearch ui` (ui/launch.py), which passes the settings after `--`; without them the
environment and vbsearch.toml decide, as everywhere else. `?q=...` in the URL runs a query.

Only files the catalog knows are ever opened: hits name their video, and the page checks it with
`engine.is_catalogued` before cutting a preview; thumbnails must lie in the data dir's thumbnail
folder. Nothing the browser sends is used as a path.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import threading
import time
from pathlib import Path

import streamlit as st

from search.engine import NoIndexError, SearchEngine
from search.export import FORMATS, MEDIA_TYPES, ExportError, export
from search.hits import Hit, clock
from search.query import clean_query
from search.service import thumbnail_file
from search.store import Filters, StoreBusyError
from ui.highlight import escape, highlight
from ui.launch import api_from_argv, settings_from_argv
from ui.preview import PreviewError, preview

log = logging.getLogger(__name__)

PAGE_SIZE = 10  # results per "show more"
MAX_RESULTS = 200  # results a query may grow to
MAX_SEGMENT_S = 60.0  # s: the length filter's top; at the top means "no upper bound"
FULL_VIDEO_MAX_BYTES = 100 * 1024 * 1024  # larger files are not streamed whole into the page
INFO_TTL_S = 30  # s: how long the catalog summaries shown on the page may be stale
EXPORT_LABELS = {"edl": "EDL", "xml": "FCP 7 XML", "fcpxml": "FCPXML", "otio": "OTIO", "csv": "CSV", "json": "JSON"}

st.set_page_config(page_title="vbsearch", page_icon="🎞️", layout="wide")
settings = settings_from_argv(sys.argv[1:])
API = api_from_argv(sys.argv[1:])  # a `vbsearch serve` URL: search through it (search/client.py), not in-process
SETTINGS_KEY = tuple(str(v) for v in (settings.data_dir.resolve(), settings.qdrant_url, settings.model_dir,
                                      settings.device, API))
ss = st.session_state


# -- the engine: once per process ---------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the model and opening the index…")
def _engine(key: tuple[str, ...], _settings) -> tuple[SearchEngine, threading.Lock]:
    # One engine serves every browser session; the lock keeps their calls from interleaving.
    if API:
        from search.client import ApiClient

        client = ApiClient(API)
        client.index_info()  # fails here, with the service's reason, if it cannot search
        return client, threading.Lock()
    return SearchEngine.open(_settings), threading.Lock()


@st.cache_data(ttl=INFO_TTL_S, show_spinner=False)
def _videos(key: tuple[str, ...], _engine_obj: SearchEngine) -> list[dict]:
    df = _engine_obj.videos()
    return df.to_dicts() if df.height else []


@st.cache_data(ttl=INFO_TTL_S, show_spinner="Reading the index…")
def _index_info(key: tuple[str, ...], _engine_obj: SearchEngine):
    return _engine_obj.index_info()


def _show_busy(exc: Exception) -> None:
    st.warning("**The index is busy.** Another process holds it open for writing; searching works again when "
               "it lets go.", icon="⏳")
    st.caption(escape(str(exc)))
    st.button("Try again", key="retry_busy")


def _show_no_index() -> None:
    from vbsearch.status import collect

    if API:
        st.info(f"**No index yet.** The search service at {API} has nothing to search; index videos where it "
                "runs, then reload this page.", icon="📂")
        st.button("Check again", key="retry_noindex")
        return
    st.info("**No index yet.** Build one from a folder of videos, then reload this page:", icon="📂")
    st.code(f"vbsearch index PATH... --data-dir {settings.data_dir.resolve()}", language="bash")
    failed = collect(settings).failed
    if failed:
        st.error(f"{len(failed)} file(s) failed in earlier index runs:")
        st.dataframe(failed, width="stretch", hide_index=True)
    st.button("Check again", key="retry_noindex")


def _open() -> tuple[SearchEngine, threading.Lock]:
    try:
        return _engine(SETTINGS_KEY, settings)
    except NoIndexError:
        _show_no_index()
    except StoreBusyError as exc:
        _show_busy(exc)
    except Exception as exc:  # a broken model or an unreachable server: say so on the page
        log.exception("cannot open the search engine")
        st.error(f"Cannot open the index in {escape(str(API or settings.data_dir.resolve()))}: {escape(str(exc))}")
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


# -- state ----------------------------------------------------------------------------------------------
def _init_state() -> None:
    if "q" not in ss:
        ss.q = st.query_params.get("q", "")  # a shared link runs its query
    ss.setdefault("limit", PAGE_SIZE)
    ss.setdefault("similar", None)  # the Hit that "more like this" started from
    ss.setdefault("playing", None)  # segment_id of the hit whose preview is open
    ss.setdefault("results", {})  # request -> (hits, seconds): one search per request, not per rerun


def _new_query() -> None:
    ss.similar, ss.playing, ss.limit = None, None, PAGE_SIZE


def _more() -> None:
    ss.limit = min(MAX_RESULTS, ss.limit + PAGE_SIZE)


def _like(hit: Hit) -> None:
    ss.similar, ss.playing, ss.limit = hit, None, PAGE_SIZE


def _play(segment_id: str) -> None:
    ss.playing = None if ss.playing == segment_id else segment_id


# -- sidebar: filters -----------------------------------------------------------------------------------
def _video_label(row: dict, names: dict[str, int]) -> str:
    name = Path(row["path"]).name
    return f"{name} ({Path(row['path']).parent.name})" if names.get(name, 0) > 1 else name


def _filters(videos: list[dict]) -> Filters | None:
    st.sidebar.header("Filters")
    names: dict[str, int] = {}
    for v in videos:
        names[Path(v["path"]).name] = names.get(Path(v["path"]).name, 0) + 1
    labels = {v["video_id"]: _video_label(v, names) for v in sorted(videos, key=lambda v: v["path"])}
    video = st.sidebar.selectbox("Video", [None, *labels], key="f_video", on_change=_new_query,
                                 format_func=lambda vid: "All videos" if vid is None else labels[vid])
    lo, hi = st.sidebar.slider("Segment length (s)", 0.0, MAX_SEGMENT_S, (0.0, MAX_SEGMENT_S), step=0.5,
                               key="f_length", on_change=_new_query)
    after = st.sidebar.date_input("Indexed on or after", value=None, key="f_after", on_change=_new_query)
    filters = Filters(
        video=video,
        min_duration=lo if lo > 0 else None,
        max_duration=hi if hi < MAX_SEGMENT_S else None,
        indexed_after=time.mktime(after.timetuple()) if isinstance(after, dt.date) else None,
    )
    return None if filters == Filters() else filters


# -- results --------------------------------------------------------------------------------------------
def _run(engine: SearchEngine, lock: threading.Lock, query: str, filters: Filters | None) -> list[Hit] | None:
    """The current request's hits (cached in the session), or None when there is nothing to run."""
    similar: Hit | None = ss.similar
    if similar is None and not query.strip():
        return None
    request: tuple = (("like", similar.segment_id) if similar else ("search", clean_query(query)))
    request += (filters, ss.limit)
    if request not in ss.results:
        t0 = time.perf_counter()
        with lock, st.spinner("Searching…"):
            if similar:
                hits = engine.more_like_this(similar.segment_id, top_k=ss.limit, filters=filters)
            else:
                hits = engine.search(query, top_k=ss.limit, filters=filters)
        ss.results = {request: (hits, time.perf_counter() - t0)}  # keep only the latest: hits hold no media
    return ss.results[request][0]


def _thumbnail(hit: Hit) -> Path | None:
    """The hit's JPEG in this data dir's thumbnail folder (found by name, so a moved data dir keeps them)."""
    return thumbnail_file(settings.data_dir, hit.video_id, hit.thumbnail)


def _remote_player(client, hit: Hit) -> None:
    """The preview, cut by the search service (the file may not be reachable from here)."""
    from search.engine import EngineError

    try:
        with st.spinner("Cutting a preview…"):
            pv = client.preview_clip(hit)
    except EngineError as exc:
        st.error(f"Cannot preview this moment: {escape(str(exc))}")
        return
    st.video(pv.data, format="video/mp4")
    st.caption(f"Preview {clock(pv.window_start)} – {clock(pv.window_end)}: the moment starts "
               f"{pv.lead_in:.1f} s in.")
    st.code(hit.video, language=None)


def _player(engine: SearchEngine, hit: Hit, durations: dict[str, float | None]) -> None:
    if API:
        _remote_player(engine, hit)
        return
    if not engine.is_catalogued(hit.video):
        st.error("This file is no longer in the catalog; re-index to play it.")
        return
    try:
        with st.spinner("Cutting a preview…"):
            pv = preview(hit.video, hit.video_id, hit.start, hit.end, settings.data_dir, durations.get(hit.video_id))
    except (PreviewError, OSError) as exc:
        st.error(f"Cannot preview this moment: {escape(str(exc))}")
        return
    st.video(str(pv.path), format="video/mp4")
    st.caption(f"Preview {clock(pv.window_start)} – {clock(pv.window_end)}: the moment starts "
               f"{pv.lead_in:.1f} s in.")
    path = Path(hit.video)
    size = path.stat().st_size if path.is_file() else 0
    if 0 < size <= FULL_VIDEO_MAX_BYTES:
        if st.toggle("Full video from this moment", key=f"full:{hit.segment_id}"):
            st.video(str(path), start_time=int(hit.start))
    else:
        st.caption(f"The full video ({size / 2**20:,.0f} MiB) is too large to stream here; "
                   f"open it in a player at {clock(hit.start)}:")
    st.code(str(path), language=None)


def _hit_card(engine: SearchEngine, rank: int, hit: Hit, query: str,
              durations: dict[str, float | None]) -> None:
    with st.container(border=True):
        thumb_col, body_col = st.columns([1, 5])
        thumb = engine.thumbnail_bytes(hit) if API else _thumbnail(hit)
        if thumb is not None:
            thumb_col.image(thumb if isinstance(thumb, bytes) else str(thumb), width="stretch")
        else:
            thumb_col.caption("no thumbnail")
        with body_col:
            st.markdown(f"**{rank}. {escape(Path(hit.video).name)}** &nbsp; "
                        f"`{clock(hit.start)} – {clock(hit.end)}` &nbsp; score {hit.score:.3f}", unsafe_allow_html=True)
            if hit.why is not None:  # why it matched, in words (none for "more like this")
                st.markdown(f"<small>{escape(hit.why.text())}</small>", unsafe_allow_html=True)
            if hit.text:
                st.markdown(highlight(hit.text, query), unsafe_allow_html=True)
            else:
                st.caption("(no speech in this moment)")
            play, like, pick, raw = st.columns([1, 1, 1, 1])
            playing = ss.playing == hit.segment_id
            play.button("⏹ Close preview" if playing else "▶ Preview", key=f"play:{hit.segment_id}",
                        on_click=_play, args=(hit.segment_id,))
            like.button("More like this", key=f"like:{hit.segment_id}", on_click=_like, args=(hit,))
            pick.checkbox("Select for export", key=f"pick:{hit.segment_id}")
            # The ranking's component scores, on request; a moment without speech has no transcript score.
            if hit.scores and raw.toggle("Scores", key=f"scores:{hit.segment_id}"):
                scores = " · ".join(f"{escape(k)} {v:.2f}" for k, v in hit.scores.items() if k != "text" or hit.text)
                st.markdown(f"<small>scores: {scores}</small>", unsafe_allow_html=True)
        if playing:
            _player(engine, hit, durations)


def _export(hits: list[Hit], label: str) -> None:
    picked = [h for h in hits if ss.get(f"pick:{h.segment_id}")]
    chosen = picked or hits
    st.subheader("Export")
    st.caption(f"The {len(picked)} selected result(s)." if picked
               else f"All {len(hits)} results shown (tick “Select for export” to export only some).")
    slug = "-".join(label.lower().split())[:40] or "results"
    slug = "".join(c for c in slug if c.isalnum() or c == "-") or "results"
    for col, fmt in zip(st.columns(len(FORMATS)), FORMATS, strict=True):
        with col:
            try:
                data = export(chosen, fmt, f"vbsearch: {label}")
            except ExportError as exc:  # e.g. an EDL of moments at two frame rates
                st.caption(f"{EXPORT_LABELS[fmt]}: {escape(str(exc))}")
                continue
            st.download_button(f"Download {EXPORT_LABELS[fmt]}", data=data, file_name=f"vbsearch-{slug}.{fmt}",
                               mime=MEDIA_TYPES[fmt], key=f"dl:{fmt}", on_click="ignore", width="stretch",
                               help=f"the {'selected' if picked else 'shown'} moments as .{fmt}")


def _search_tab(engine: SearchEngine, lock: threading.Lock, videos: list[dict]) -> None:
    filters = _filters(videos)
    query = st.text_input("Search moments", key="q", on_change=_new_query,
                          placeholder="e.g. a red ball rolls to the left",
                          help="Describe what is seen or said; press Enter to search.")
    if query.strip():
        st.query_params["q"] = query  # the address bar always holds a link to this search
    else:
        st.query_params.pop("q", None)
    try:
        hits = _run(engine, lock, query, filters)
    except StoreBusyError as exc:
        _show_busy(exc)
        return
    similar: Hit | None = ss.similar
    if similar is not None:
        st.markdown(f"Moments like **{escape(Path(similar.video).name)}** "
                    f"`{clock(similar.start)} – {clock(similar.end)}`", unsafe_allow_html=True)
        st.button("← Back to the search", key="back", on_click=_new_query)
    if hits is None:
        st.caption("Type what you are looking for: something seen, something said, or both.")
        return
    if not hits:
        hint = " Loosen the filters in the sidebar." if filters else " Try other words."
        st.info(f"No moments match{'' if similar else ' “' + escape(query.strip()) + '”'}.{hint}", icon="🔍")
        return
    seconds = next(iter(ss.results.values()))[1]
    st.caption(f"{len(hits)} moments in {seconds:.2f} s")
    durations = {v["video_id"]: float(v.get("duration") or 0) or None for v in videos}
    for rank, hit in enumerate(hits, 1):
        _hit_card(engine, rank, hit, "" if similar else query, durations)
    if len(hits) >= ss.limit and ss.limit < MAX_RESULTS:
        st.button("Show more", key="more", on_click=_more)
    _export(hits, f"like-{Path(similar.video).stem}" if similar else query)


def _index_tab(engine: SearchEngine, videos: list[dict]) -> None:
    info = _index_info(SETTINGS_KEY, engine)
    cols = st.columns(4)
    cols[0].metric("Videos", f"{info.videos:,}")
    cols[1].metric("Hours", f"{info.hours:,.2f}")
    cols[2].metric("Clips", f"{info.clips:,}")
    cols[3].metric("Segments", f"{info.segments:,}")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.last_indexed)) if info.last_indexed else "never"
    st.markdown(f"**Last indexed:** {when} &nbsp; **Model:** `{escape(info.model_id or 'none')}` &nbsp; "
                f"**Data dir:** `{escape(str(settings.data_dir.resolve()))}`", unsafe_allow_html=True)
    st.subheader("Visual vocabulary")
    if info.vocab_lines:
        st.code("\n".join(info.vocab_lines), language=None)
    else:
        st.caption("No vocabulary in the data dir.")
    st.subheader(f"Failed files ({len(info.failed)})")
    if info.failed:
        st.dataframe(info.failed, width="stretch", hide_index=True)
    else:
        st.caption("None.")
    st.subheader("Videos")
    if videos:
        shown = ("path", "duration", "fps", "width", "height", "indexed_at", "video_id")
        rows = [{k: v.get(k) for k in shown if k in v} for v in videos]
        for r in rows:
            if r.get("indexed_at"):
                r["indexed_at"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["indexed_at"]))
        st.dataframe(rows, width="stretch", hide_index=True)
    else:
        st.caption("No videos in the catalog.")


def main() -> None:
    st.title("vbsearch")
    _init_state()
    engine, lock = _open()
    videos = _videos(SETTINGS_KEY, engine)
    search_tab, index_tab = st.tabs(["Search", "Index"])
    with search_tab:
        _search_tab(engine, lock, videos)
    with index_tab:
        _index_tab(engine, videos)


main()
