"""The CTranslate2 -> openai-whisper converter on a tiny synthetic model.bin (real weights: test_asr.py)."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.whisper_convert import (
    ConversionError,
    cached_checkpoint,
    convert,
    ct2_to_whisper,
    read_ct2_model,
)

whisper = pytest.importorskip("whisper")

STATE, HEADS, MELS, VOCAB, AUDIO_CTX, TEXT_CTX = 8, 2, 4, 12, 6, 5
TYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}


def _string(s: str) -> bytes:
    b = s.encode() + b"\0"
    return struct.pack("<H", len(b)) + b


def write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str]) -> None:
    """The CTranslate2 v6 layout, written independently of the reader under test."""
    out = [struct.pack("<I", 6), _string("WhisperSpec"), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, arr in variables.items():
        arr = np.asarray(arr)  # (ascontiguousarray would turn 0-d scalars into 1-d)
        out += [_string(name), struct.pack("<B", arr.ndim), *(struct.pack("<I", d) for d in arr.shape),
                struct.pack("<B", TYPE_IDS[arr.dtype]), struct.pack("<I", arr.nbytes), arr.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))


def tiny_ct2(rng: np.random.Generator) -> dict[str, np.ndarray]:
    def r(*shape, dtype=np.float32):
        return rng.standard_normal(shape).astype(dtype)

    v: dict[str, np.ndarray] = {
        "encoder/conv1/weight": r(STATE, MELS, 3), "encoder/conv1/bias": r(STATE),
        "encoder/conv2/weight": r(STATE, STATE, 3), "encoder/conv2/bias": r(STATE),
        "encoder/position_encodings/encodings": r(AUDIO_CTX, STATE),
        "encoder/num_heads": np.array(HEADS, np.int16), "decoder/num_heads": np.array(HEADS, np.int16),
        "decoder/embeddings/weight": r(VOCAB, STATE, dtype=np.float16),
        "decoder/position_encodings/encodings": r(TEXT_CTX, STATE),
        "decoder/scale_embeddings": np.array(0, np.int8),
    }
    for side in ("encoder", "decoder"):
        v[f"{side}/layer_norm/gamma"], v[f"{side}/layer_norm/beta"] = r(STATE), r(STATE)
        p = f"{side}/layer_0"
        blocks = {"self_attention/linear_0": 3 * STATE, "self_attention/linear_1": STATE,
                  "ffn/linear_0": 4 * STATE}
        if side == "decoder":
            blocks.update({"attention/linear_0": STATE, "attention/linear_1": 2 * STATE, "attention/linear_2": STATE})
        for name, rows in blocks.items():
            v[f"{p}/{name}/weight"], v[f"{p}/{name}/bias"] = r(rows, STATE), r(rows)
        v[f"{p}/ffn/linear_1/weight"], v[f"{p}/ffn/linear_1/bias"] = r(STATE, 4 * STATE), r(STATE)
        for norm in ("self_attention", "ffn") + (("attention",) if side == "decoder" else ()):
            v[f"{p}/{norm}/layer_norm/gamma"], v[f"{p}/{norm}/layer_norm/beta"] = r(STATE), r(STATE)
    # One int8-quantised linear, as `ct2 --quantization int8` writes it.
    w = v["encoder/layer_0/ffn/linear_0/weight"]
    scale = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)
    v["encoder/layer_0/ffn/linear_0/weight"] = np.round(w * scale[:, None]).astype(np.int8)
    v["encoder/layer_0/ffn/linear_0/weight_scale"] = scale
    return v


@pytest.fixture()
def ct2_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ct2"
    d.mkdir()
    write_ct2(d / "model.bin", tiny_ct2(np.random.default_rng(0)), {"decoder/projection/weight": "decoder/embeddings/weight"})
    (d / "config.json").write_text(json.dumps({"alignment_heads": [[0, 1]]}))
    return d


def test_reader_returns_every_variable_with_dtype_and_aliases(ct2_dir: Path):
    spec, v = read_ct2_model(ct2_dir / "model.bin")
    assert spec == "WhisperSpec"
    assert v["decoder/embeddings/weight"].dtype == np.float16 and v["decoder/embeddings/weight"].shape == (VOCAB, STATE)
    assert v["encoder/layer_0/ffn/linear_0/weight"].dtype == np.int8
    assert int(v["encoder/num_heads"]) == HEADS
    assert v["decoder/projection/weight"] is v["decoder/embeddings/weight"]


def test_mapping_fills_openai_whisper_exactly(ct2_dir: Path):
    _, v = read_ct2_model(ct2_dir / "model.bin")
    dims, state = ct2_to_whisper(v)
    assert dims == {"n_mels": MELS, "n_audio_ctx": AUDIO_CTX, "n_audio_state": STATE, "n_audio_head": HEADS,
                    "n_audio_layer": 1, "n_vocab": VOCAB, "n_text_ctx": TEXT_CTX, "n_text_state": STATE,
                    "n_text_head": HEADS, "n_text_layer": 1}
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**dims))
    model.load_state_dict({k: torch.from_numpy(a) for k, a in state.items()}, strict=True)  # no key missing or extra
    qkv_w, qkv_b = v["decoder/layer_0/self_attention/linear_0/weight"], v["decoder/layer_0/self_attention/linear_0/bias"]
    np.testing.assert_array_equal(state["decoder.blocks.0.attn.key.weight"], qkv_w[STATE:2 * STATE])
    np.testing.assert_array_equal(state["decoder.blocks.0.attn.value.bias"], qkv_b[2 * STATE:])
    kv = v["decoder/layer_0/attention/linear_1/weight"]
    np.testing.assert_array_equal(state["decoder.blocks.0.cross_attn.value.weight"], kv[STATE:])
    np.testing.assert_array_equal(state["decoder.blocks.0.mlp_ln.weight"], v["decoder/layer_0/ffn/layer_norm/gamma"])
    # int8 dequantised back to within one quantisation step of the original
    rng_w = tiny_ct2(np.random.default_rng(0))
    w8, scale = rng_w["encoder/layer_0/ffn/linear_0/weight"], rng_w["encoder/layer_0/ffn/linear_0/weight_scale"]
    np.testing.assert_allclose(state["encoder.blocks.0.mlp.0.weight"], w8 / scale[:, None], rtol=1e-6)


def test_checkpoint_loads_with_weights_only_and_cache_converts_once(ct2_dir: Path, tmp_path: Path):
    out = convert(ct2_dir, tmp_path / "out.pt")
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["alignment_heads"] == [[0, 1]] and ckpt["dims"]["n_vocab"] == VOCAB
    whisper.load_model(str(out), device="cpu")  # the stock openai-whisper loader accepts it
    first = cached_checkpoint(ct2_dir, tmp_path / "cache")
    stamp = first.stat().st_mtime_ns
    assert cached_checkpoint(ct2_dir, tmp_path / "cache") == first and first.stat().st_mtime_ns == stamp


def test_bad_inputs_raise_conversion_errors(ct2_dir: Path, tmp_path: Path):
    data = (ct2_dir / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="truncated"):
        read_ct2_model(tmp_path / "cut.bin")
    (tmp_path / "v99.bin").write_bytes(struct.pack("<I", 99) + data[4:])
    with pytest.raises(ConversionError, match="version 99"):
        read_ct2_model(tmp_path / "v99.bin")
    with pytest.raises(ConversionError, match="no model.bin"):
        cached_checkpoint(tmp_path, tmp_path / "cache")
    with pytest.raises(ConversionError, match="not a Whisper model"):
        ct2_to_whisper({"decoder/embeddings/weight": np.zeros((2, 2), np.float32)})
