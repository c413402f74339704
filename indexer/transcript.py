"""`vbsearch transcript VIDEO`: export a video's recognised speech as srt, vtt, ass, json or txt.

srt, vtt and ass are written by pysubs2 (indexer/sidecar.py); json and txt are written here.

When the video is in the catalog (matched by path, or VIDEO is its id) the stored sentences
are exported; otherwise the video is transcribed now with the chosen `--asr` backend.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vbsearch.config import Settings

log = logging.getLogger(__name__)

FORMATS = ("srt", "vtt", "ass", "json", "txt")  # the first three are sidecar.WRITE_FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="video file (or the id of a catalogued video)")
    parser.add_argument("--format", choices=FORMATS, default="srt",
                        help="output format: srt, vtt or ass subtitles; json (the sentences with every field, "
                             "and the transcript's backend, source, language and problems); txt (one sentence "
                             "a line); default: srt")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    parser.add_argument("--language", help="language code for ASR / which sidecar to prefer (default: detect)")
    parser.add_argument("--fresh", action="store_true", help="transcribe now even if the catalog has the video")


def find_in_catalog(data_dir: Path, video: str):
    """The stored Transcript of `video` (a path or a video id), or None when it is not catalogued."""
    from indexer.catalog import Catalog
    from indexer.speech import transcript_from_frame

    catalog = Catalog(data_dir)
    video_id = catalog.find_video(video)
    if video_id is None:
        return None
    return transcript_from_frame(catalog.read_video(video_id, "sentences"))


def render(transcript, fmt: str, video: str) -> str:
    from dataclasses import asdict

    from indexer.sidecar import WRITE_FORMATS, write_subtitles

    if fmt in WRITE_FORMATS:
        return write_subtitles(transcript.sentences, fmt)
    if fmt == "txt":
        return "".join(s.text + "\n" for s in transcript.sentences)
    return json.dumps({
        "video": video,
        "backend": transcript.backend,
        "source": transcript.source,
        "language": transcript.language,
        "skipped_reason": transcript.skipped_reason,
        "problems": list(transcript.problems),
        "sentences": [asdict(s) for s in transcript.sentences],
    }, indent=2, ensure_ascii=False) + "\n"


def run(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.audio import AudioError
    from indexer.speech import AsrOptions, transcribe_video

    transcript = None if args.fresh else find_in_catalog(settings.data_dir, args.video)
    label = args.video
    if transcript is None:
        path = Path(args.video).expanduser()
        if not path.is_file():
            print(f"vbsearch transcript: {args.video}: no such file (and not in the catalog at "
                  f"{settings.data_dir})", file=sys.stderr)
            return 1
        label = str(path.resolve())
        try:
            transcript = transcribe_video(path, AsrOptions.from_settings(settings, language=args.language))
        except (AudioError, ImportError, OSError, RuntimeError, ValueError) as exc:
            print(f"vbsearch transcript: {path}: {exc}", file=sys.stderr)
            return 1
    if transcript.skipped_reason:
        print(f"vbsearch transcript: {label}: no transcript: {transcript.skipped_reason}", file=sys.stderr)
    text = render(transcript, args.format, label)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
