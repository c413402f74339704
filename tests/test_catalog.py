import os

import polars as pl

from indexer.catalog import Catalog, atomic_write_parquet


def _clips(video_id, n):
    return pl.DataFrame({"video_id": [video_id] * n, "clip_index": list(range(n)),
                         "start": [1.5 * i for i in range(n)], "end": [1.5 * (i + 1) for i in range(n)]})


def test_put_read_remove(tmp_path):
    cat = Catalog(tmp_path)
    cat.put_video("a", {"video_id": "a", "path": "/x/a.mp4", "duration": 3.0}, clips=_clips("a", 2))
    cat.put_video("b", {"video_id": "b", "path": "/x/b.mp4", "duration": 4.5}, clips=_clips("b", 3))
    assert cat.video_ids() == {"a", "b"}
    assert cat.read_table("clips").height == 5
    assert cat.read_video("b", "clips")["clip_index"].to_list() == [0, 1, 2]
    assert cat.count("clips") == 5 and cat.count("sentences") == 0
    summary = cat.summary()
    assert (summary.videos, summary.clips, summary.hours) == (2, 5, 7.5 / 3600)
    cat.remove_video("a")
    assert cat.video_ids() == {"b"} and cat.read_table("clips").height == 3


def test_incomplete_video_is_invisible(tmp_path):
    """A crash after writing clips but before the videos row leaves nothing readable behind."""
    cat = Catalog(tmp_path)
    cat.put("clips", "half", _clips("half", 4))
    assert cat.read_table("clips").is_empty() and cat.count("clips") == 0


def test_errors_keyed_by_path(tmp_path):
    cat = Catalog(tmp_path)
    cat.put_error("/x/bad file.mp4", "decode", "moov atom not found")
    cat.put_error("/x/bad file.mp4", "decode", "still bad")
    errors = cat.read_table("errors")
    assert errors.height == 1 and errors["error"][0] == "still bad"
    cat.clear_error("/x/bad file.mp4")
    assert cat.read_table("errors").is_empty()


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "t.parquet"
    atomic_write_parquet(pl.DataFrame({"x": [1]}), target)

    class Boom(pl.DataFrame):
        def write_parquet(self, *a, **k):
            raise OSError("disk full")

    try:
        atomic_write_parquet(Boom({"x": [2]}), target)
    except OSError:
        pass
    assert pl.read_parquet(target)["x"].to_list() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]  # no temp file left behind


def test_damaged_file_is_skipped_not_fatal(tmp_path):
    cat = Catalog(tmp_path)
    cat.put_video("a", {"video_id": "a"}, clips=_clips("a", 2))
    cat.put_video("b", {"video_id": "b"}, clips=_clips("b", 2))
    with open(cat.root / "clips" / "b.parquet", "r+b") as fh:
        fh.truncate(os.path.getsize(cat.root / "clips" / "b.parquet") // 2)
    assert cat.read_table("clips")["video_id"].unique().to_list() == ["a"]
