import json
import os
import shutil
import signal

import numpy as np
import polars as pl
import pytest
from ingest_media import SPECS, write_bad_files, write_spec
from PIL import Image

from indexer.catalog import Catalog
from indexer.discover import video_id
from indexer.ingest import VisualStage
from indexer.run import index_paths
from model.features.objectflow import ObjectFlow
from vbsearch.cli import main
from vbsearch.config import Settings

SPEC = {s.name: s for s in SPECS}
GOOD = ("h264_25.mp4", "vp9_30.webm", "av1_24.mkv")


@pytest.fixture()
def archive(tmp_path):
    folder = tmp_path / "archive"
    (folder / "sub").mkdir(parents=True)
    good = {name: write_spec(folder if i % 2 == 0 else folder / "sub", SPEC[name]) for i, name in enumerate(GOOD)}
    bad = write_bad_files(folder / "bad", good["h264_25.mp4"])
    return folder, good, bad


def index(capsys, *args):
    rc = main(["index", "--catalog-only", *map(str, args)])  # the search-index side has its own tests
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_index_folder_with_good_and_bad_files(archive, tmp_path, capsys):
    folder, good, bad = archive
    data = tmp_path / "data"
    rc, out, err = index(capsys, folder, "--data-dir", data)
    assert rc == 1
    assert f"files: {len(good)} ok, {len(bad)} failed, 0 skipped" in out
    # One error line per bad file, naming it; none for the good ones.
    failed_lines = [ln for ln in err.splitlines() if "FAILED" in ln]
    assert len(failed_lines) == len(bad)
    for path in bad.values():
        assert sum(str(path) in ln for ln in failed_lines) == 1
    assert not any(str(p) in err for p in good.values())
    assert "no video stream" in next(ln for ln in failed_lines if "audio_only" in ln)
    assert "empty file" in next(ln for ln in failed_lines if "zero.mp4" in ln)

    catalog = Catalog(data)
    errors = catalog.read_table("errors")
    assert sorted(errors["path"].to_list()) == sorted(str(p) for p in bad.values())
    assert set(errors["stage"].to_list()) <= {"probe", "decode"}

    videos = catalog.read_table("videos")
    assert sorted(videos["path"].to_list()) == sorted(str(p) for p in good.values())
    clips = catalog.read_table("clips")
    for row in videos.iter_rows(named=True):
        spec = SPEC[os.path.basename(row["path"])]
        assert row["video_id"] == video_id(row["path"])
        assert row["features"] == "objectflow" and row["feature_dim"] == ObjectFlow.dim
        assert json.loads(row["feature_groups"]) == {k: list(v) for k, v in ObjectFlow.groups.items()}
        assert row["decoder"] == ("pyav" if "av1" in row["path"] else "decord")
        assert row["has_audio"] == spec.audio and (row["width"], row["height"]) == (128, 96)
        assert row["duration"] == pytest.approx(spec.n_frames / spec.fps, abs=0.05)
        mine = clips.filter(pl.col("video_id") == row["video_id"]).sort("clip_index")
        assert len(mine) == row["n_clips"] == spec.expected_clips
        assert mine["clip_index"].to_list() == list(range(row["n_clips"]))
        assert mine["start"].to_list() == [1.5 * i for i in range(row["n_clips"])]
        assert mine["end"].to_list()[-1] <= row["duration"] + 1e-9
        feats = np.array(mine["feature"].to_list(), dtype=np.float32)
        assert feats.shape == (row["n_clips"], ObjectFlow.dim) and np.isfinite(feats).all()
        for rel in mine["thumbnail"].to_list():
            with Image.open(data / rel) as im:
                assert im.format == "JPEG" and im.size == (160, 120)  # source aspect 4:3
    assert clips.schema["feature"] == pl.List(pl.Float32)


def test_rerun_skips_unchanged_and_reingests_changed(archive, tmp_path, capsys):
    folder, good, bad = archive
    for path in bad.values():
        path.unlink()
    data = tmp_path / "data"
    assert index(capsys, folder, "--data-dir", data)[0] == 0
    catalog = Catalog(data)
    first = catalog.read_table("videos")

    rc, out, _ = index(capsys, folder, "--data-dir", data)
    assert rc == 0 and f"files: 0 ok, 0 failed, {len(good)} skipped" in out
    assert catalog.read_table("videos").sort("video_id").equals(first.sort("video_id"))

    # New content at the same path: re-ingested, the old id and its thumbnails gone.
    target = good["vp9_30.webm"]
    old_id = video_id(target)
    shutil.move(write_spec(tmp_path, SPEC["short.mp4"]), target)
    rc, out, _ = index(capsys, folder, "--data-dir", data)
    assert rc == 0 and "files: 1 ok" in out
    assert old_id not in catalog.video_ids() and video_id(target) in catalog.video_ids()
    assert not (data / "thumbnails" / old_id).exists()

    # The same content moved elsewhere: no decoding, the catalog follows the file.
    moved = tmp_path / "elsewhere.mp4"
    shutil.move(good["h264_25.mp4"], moved)
    rc, out, _ = index(capsys, folder, moved, "--data-dir", data)
    assert rc == 0 and "files: 0 ok, 0 failed, 3 skipped" in out
    row = catalog.read_table("videos").filter(pl.col("video_id") == video_id(moved)).row(0, named=True)
    assert row["path"] == str(moved)

    # Features from an older version of the extractor (other groups): re-extracted, not skipped.
    old = dict(row, feature_groups=json.dumps({"colour": [0, 28], "motion": [28, 52]}))
    catalog.put("videos", row["video_id"], pl.DataFrame([old]))
    rc, out, _ = index(capsys, folder, moved, "--data-dir", data)
    assert rc == 0 and "files: 1 ok, 0 failed, 2 skipped" in out
    row = catalog.read_table("videos").filter(pl.col("video_id") == video_id(moved)).row(0, named=True)
    assert json.loads(row["feature_groups"]) == {k: list(v) for k, v in ObjectFlow.groups.items()}


def test_force_reingests_and_thumbnails_can_be_off(archive, tmp_path, capsys):
    folder, good, bad = archive
    data = tmp_path / "data"
    index(capsys, good["h264_25.mp4"], "--data-dir", data)
    rc, out, _ = index(capsys, good["h264_25.mp4"], "--data-dir", data, "--force", "--no-thumbnails")
    assert rc == 0 and "files: 1 ok" in out
    assert Catalog(data).read_table("clips")["thumbnail"].null_count() == SPEC["h264_25.mp4"].expected_clips


def test_fixed_file_clears_its_error(archive, tmp_path, capsys):
    folder, good, bad = archive
    data = tmp_path / "data"
    broken = bad["random.mp4"]
    assert index(capsys, broken, "--data-dir", data)[0] == 1
    assert Catalog(data).read_table("errors")["path"].to_list() == [str(broken)]
    shutil.copy(good["h264_25.mp4"], broken)
    assert index(capsys, broken, "--data-dir", data)[0] == 0
    assert len(Catalog(data).read_table("errors")) == 0


def test_ctrl_c_stops_after_the_current_file(archive, tmp_path, monkeypatch):
    folder, good, bad = archive
    real_call = VisualStage.__call__
    calls = []

    def interrupted(self, job, timer):
        calls.append(job.info.path)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # as if the operator pressed Ctrl-C now
        real_call(self, job, timer)

    monkeypatch.setattr(VisualStage, "__call__", interrupted)
    before = signal.getsignal(signal.SIGINT)  # the default handler, or SIG_IGN in a background job
    summary = index_paths(list(good.values()), Settings(data_dir=tmp_path / "data"))
    assert summary.interrupted and len(calls) == 1 and len(summary.ok) == 1
    assert Catalog(tmp_path / "data").video_ids() == {video_id(calls[0])}
    assert signal.getsignal(signal.SIGINT) is before  # the run's own handler is gone again


def test_missing_s3d_weights_is_one_setup_error(archive, tmp_path, capsys):
    folder, good, bad = archive
    rc, out, err = index(capsys, good["h264_25.mp4"], "--data-dir", tmp_path / "data", "--features", "s3d",
                         "--s3d-weights", tmp_path / "none.safetensors")
    assert rc == 2 and "S3D weights file not found" in err and "FAILED" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_reported(archive, tmp_path, capsys):
    folder, good, bad = archive
    locked = good["h264_25.mp4"]
    locked.chmod(0)
    try:
        rc, _, err = index(capsys, locked, "--data-dir", tmp_path / "data")
    finally:
        locked.chmod(0o644)
    assert rc == 1 and f"FAILED {locked}: discover: permission denied" in err
