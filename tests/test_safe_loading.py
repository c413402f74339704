"""Safe loading and safe access: tampered models and vocabularies, pickles, paths, odd queries, Qdrant servers.

- A VideoBERT checkpoint that is truncated, a pickle renamed .safetensors, or whose config.json no
  longer fits its weights is refused with a one-line CheckpointError (before allocating what a
  tampered config asks for); the CLI answers one line and a non-zero status, never a traceback.
- Nothing in the source unpickles: torch.load only with weights_only=True, no pickle/joblib/np.load
  with pickles (checked on the syntax tree).
- The UI and the service open only catalogued files; thumbnails only from the data dir's folder.
- The engine takes any query string; a Qdrant server URL (https) and API key reach the client.
(Flipped bytes in a checkpoint and a swapped weights file: tests/test_videobert.py.)
"""

from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from videobert_synth import N_VISUAL, tiny_model, tiny_tokenizer

from indexer.catalog import Catalog
from model.checkpoint import CONFIG_FILE, MODEL_FILE, CheckpointError, load_model, save_model, sha256
from model.vocab import META_FILE, WEIGHTS_FILE, VisualVocab, VocabConfig
from vbsearch.cli import main
from vbsearch.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("vbsearch", "indexer", "model", "search", "ui")
HIDDEN = 32


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tok) -> Path:
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    save_model(folder, tiny_model(tok, hidden=HIDDEN), tok)
    return folder


@pytest.fixture
def ckpt(saved, tmp_path) -> Path:
    """A private copy of the saved checkpoint, to damage."""
    import shutil

    return Path(shutil.copytree(saved, tmp_path / "model"))


def _resign(folder: Path) -> None:
    """Record the weights file's current hash in config.json, as someone tampering with both would."""
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["sha256"][MODEL_FILE] = sha256(folder / MODEL_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(config))


class _Payload:
    """Unpickling this runs code: it creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _write_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"weight": _Payload(marker)}))


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


# -- checkpoints ---------------------------------------------------------------------------------------------

def test_truncated_weights_are_refused(ckpt):
    weights = ckpt / MODEL_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="checksum mismatch") as err:
        load_model(ckpt)
    assert str(ckpt) in _one_line(err.value)


def test_a_pickle_renamed_safetensors_is_never_unpickled(ckpt, tmp_path):
    marker = tmp_path / "pwned"
    _write_pickle(ckpt / MODEL_FILE, marker)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_model(ckpt)
    _resign(ckpt)  # the hash matches now: the file itself must still be refused
    with pytest.raises(CheckpointError, match="unreadable safetensors file") as err:
        load_model(ckpt)
    _one_line(err.value)
    assert not marker.exists()


def test_a_config_that_does_not_fit_the_weights_is_refused_without_allocating_it(ckpt):
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    config["model"].update(hidden_size=1 << 15, intermediate_size=1 << 17, num_hidden_layers=24)  # ~4 TB of weights
    (ckpt / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="weights do not fit the config: .*of another shape") as err:
        load_model(ckpt)
    _one_line(err.value)


def test_damaged_config_and_tokenizer_are_refused(ckpt):
    (ckpt / CONFIG_FILE).write_text('{"format": "vbsearch-videobert", "model": {')
    with pytest.raises(CheckpointError, match="damaged JSON"):
        load_model(ckpt)


def test_missing_tokenizer_vocabulary_is_refused(ckpt):
    for file in (ckpt / "tokenizer").iterdir():
        file.write_bytes(b"\x00\xff garbage")
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt)
    _one_line(err.value)


def test_search_cli_answers_one_line_for_a_tampered_model(saved, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(saved, data / "model")
    weights = data / "model" / MODEL_FILE
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit in the middle of the weights
    weights.write_bytes(bytes(raw))
    assert main(["search", "a red ball", "--data-dir", str(data)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checksum mismatch" in err[0] and err[0].startswith("vbsearch search: ")


# -- visual vocabularies ---------------------------------------------------------------------------------------

def _vocab(folder: Path, dim: int = 12) -> Path:
    x = np.random.default_rng(0).normal(size=(300, dim)).astype(np.float32)
    VisualVocab.fit(x, VocabConfig(mode="paper", depth=2, branching=3, niter=3, min_points_per_centroid=5, gpu=False),
                    extractor="colormotion").save(folder)
    return folder


def _damage(folder: Path, how: str, marker: Path) -> None:
    weights = folder / WEIGHTS_FILE
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "pickle":
        _write_pickle(weights, marker)
    elif how == "flipped":  # one byte of the tensor data (the header stays valid)
        raw = bytearray(weights.read_bytes())
        raw[-3] ^= 0xFF
        weights.write_bytes(bytes(raw))
    elif how == "json":
        (folder / META_FILE).write_text("{ not json")
    elif how == "mismatched":  # the JSON's word counts no longer match the trees
        meta = json.loads((folder / META_FILE).read_text())
        meta["groups"][0]["n_words"] += 1
        (folder / META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize("how", ["json", "mismatched", "truncated", "pickle", "flipped"])
def test_damaged_vocabulary_is_a_value_error_naming_it(tmp_path, how):
    folder = _vocab(tmp_path / "vocab")
    marker = tmp_path / "pwned"
    _damage(folder, how, marker)
    with pytest.raises(ValueError, match=str(folder)) as err:
        VisualVocab.load(folder)
    _one_line(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("how", ["truncated", "pickle", "json", "mismatched"])
def test_index_cli_answers_one_line_for_a_damaged_vocabulary(saved, tmp_path, capsys, how):
    """The whole `vbsearch index` path: a catalog to embed, a model, and a vocabulary that cannot be used."""
    import shutil

    from ingest_media import moving_texture

    from vbsearch.synth import write_video

    data, videos = tmp_path / "data", tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "v.mp4", moving_texture(30, (200, 60, 60), 2.0, seed=0, size=(48, 64)), fps=20)
    assert main(["index", str(videos), "--data-dir", str(data), "--catalog-only", "--asr", "none"]) == 0
    shutil.copytree(saved, data / "model")
    _damage(_vocab(data / "vocab"), how, tmp_path / "pwned")
    capsys.readouterr()
    assert main(["index", str(videos), "--data-dir", str(data), "--asr", "none"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("vbsearch index: cannot build the search index: "), err
    assert not (tmp_path / "pwned").exists()


# -- nothing unpickles ---------------------------------------------------------------------------------------

def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield owner, name, node


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_no_source_file_loads_pickles():
    problems, torch_loads = [], 0
    files = [p for pkg in SOURCE_PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    assert len(files) > 30
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "cloudpickle") for n in names):
                    problems.append(f"{path}:{node.lineno}: imports a pickle module")
        for owner, name, call in _calls(tree):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            if owner == "torch" and name == "load":
                torch_loads += 1
                if _keyword(call, "weights_only") is not True:
                    problems.append(f"{where}: torch.load without weights_only=True")
            if owner in ("np", "numpy") and name == "load" and _keyword(call, "allow_pickle") is True:
                problems.append(f"{where}: np.load(allow_pickle=True)")
            if owner == "torch" and name == "jit":
                problems.append(f"{where}: torch.jit")
            if name in ("load_state_dict_from_url", "from_pretrained") and _keyword(call, "use_safetensors") is False:
                problems.append(f"{where}: {name} without safetensors")
    assert not problems, problems
    assert torch_loads >= 2  # the S3D and whisper loaders: the scan does see them


# -- paths: only catalogued files ---------------------------------------------------------------------------

@pytest.fixture
def catalogued(tmp_path):
    """A data dir whose catalog holds one video (the file exists), and a SearchEngine over it (no model needed)."""
    from search.engine import SearchEngine

    video = tmp_path / "archive" / "clip one.mp4"
    video.parent.mkdir()
    video.write_bytes(b"\x00" * 100)
    data = tmp_path / "data"
    Catalog(data).put_video("vid1", {"video_id": "vid1", "path": str(video), "duration": 3.0, "indexed_at": 1.0})
    return SearchEngine(data, inference=None, store=None, model_id="m"), video, data


def test_engine_vouches_only_for_catalogued_paths(catalogued):
    engine, video, _ = catalogued
    assert engine.is_catalogued(str(video))
    for path in ("../../etc/passwd", "/etc/passwd", f"{video}/../../../etc/passwd",
                 str(video.parent / ".." / "archive" / video.name),  # the same file, spelled another way
                 f"{video}\x00.jpg", str(video) + " ", video.name, "", "~/" + video.name):
        assert not engine.is_catalogued(path), path


def test_thumbnails_resolve_only_inside_the_data_dir(catalogued, tmp_path):
    from search.service import thumbnail_file

    _, _, data = catalogued
    folder = data / "thumbnails" / "vid1"
    folder.mkdir(parents=True)
    (folder / "0.jpg").write_bytes(b"\xff\xd8\xff")
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"secret")
    (folder / "1.jpg").symlink_to(secret)  # a link planted in the thumbnail folder
    assert thumbnail_file(data, "vid1", "thumbnails/vid1/0.jpg") == (folder / "0.jpg").resolve()
    assert thumbnail_file(data, "vid1", "/anywhere/else/0.jpg") == (folder / "0.jpg").resolve()  # found by name
    assert thumbnail_file(data, "vid1", "thumbnails/vid1/1.jpg") is None
    assert thumbnail_file(data, "../..", "secret.jpg") is None
    assert thumbnail_file(data, "vid1", "../../../secret.jpg") is None
    assert thumbnail_file(data, "vid1", "") is None


# -- queries -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory, tok):
    """A SearchEngine with a tiny random model over a store of a few points."""
    from model.inference import VideoBertInference
    from search.engine import SearchEngine
    from search.store import SegmentStore, StorePoint

    inference = VideoBertInference(tiny_model(tok, hidden=HIDDEN), tok)
    rng = np.random.default_rng(0)
    points = []
    for i in range(6):
        tokens = rng.integers(0, N_VISUAL, size=(2, 3))
        points.append(StorePoint("vid1", 3.0 * i, {
            "video": inference.encode_video([tokens])[0].tolist(),
            "text": inference.encode_text([f"the red ball rolls {i}"])[0].tolist()},
            {"path": "/archive/a.mp4", "end": 3.0 * i + 3, "duration": 3.0, "text": f"the red ball rolls {i}",
             "kind": "speech", "tokens": tokens.reshape(-1).tolist(), "tokens_per_clip": 3}))
    data = tmp_path_factory.mktemp("engine") / "data"
    with SegmentStore.update(data) as writer:
        writer.ensure(inference.embed_dim)
        writer.upsert(points)
    engine = SearchEngine(data, inference, SegmentStore.open(data), "m")
    yield engine
    engine.close()


@pytest.mark.parametrize("query, hits", [
    ("", False), ("   \t\n", False), ("\x00\x07\x1b\x7f\x9b\u200b", False),
    ("a" * 10_000, True), ("red " * 3_000, True), ("\x00red\x1b[31m ball\r\n", True),
    (os.fsdecode(b"caf\xe9 ball"), True),  # bytes that are not UTF-8, as argv hands them over
    ("名前 ünïcode \u202e ball \ufeff", True),
])
def test_engine_takes_any_query_string(tiny_engine, query, hits):
    found = tiny_engine.search(query, top_k=3)
    assert isinstance(found, list) and bool(found) == hits and len(found) <= 3


# -- Qdrant servers ------------------------------------------------------------------------------------------

def test_qdrant_https_url_and_api_key_reach_the_client(tmp_path):
    from search.store_server import remote_client

    settings = load_settings({"data_dir": str(tmp_path / "data"), "qdrant_url": "https://qdrant.example.org:6333"},
                             environ={"VBSEARCH_QDRANT_API_KEY": "s3cret-key"})
    assert settings.qdrant_api_key == "s3cret-key" and "s3cret" not in repr(settings)
    client = remote_client(settings.qdrant_url, settings.qdrant_api_key, timeout=1)
    try:
        remote = client._client  # qdrant-client's REST transport: what every request is built from
        assert remote._https is True and remote.rest_uri == "https://qdrant.example.org:6333"
        assert remote._rest_headers["api-key"] == "s3cret-key"
    finally:
        client.close()
    assert not (tmp_path / "data" / "index").exists()  # a server URL never creates the embedded index


def test_unreachable_qdrant_server_is_one_clear_error(tmp_path, capsys, saved):
    import shutil

    from search.store import SegmentStore, StoreError

    with pytest.raises(StoreError, match=r"cannot use the Qdrant server at https://127.0.0.1:9: .*refused"):
        SegmentStore.open(tmp_path, "https://127.0.0.1:9", "key")
    shutil.copytree(saved, tmp_path / "data" / "model")
    assert main(["search", "ball", "--data-dir", str(tmp_path / "data"), "--qdrant-url", "https://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot use the Qdrant server" in err[0]
