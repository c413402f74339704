"""Sample-archive generator: narrated synthetic scenes whose truth is known.

Each video is a run of scenes. A scene shows one object (a shape in a colour)
moving in one direction over a background, with pixel noise, jitter and clutter.
Each scene gets one spoken sentence (espeak-ng) that describes it fully, partly,
or not at all ("chatter"), so some scenes can only be found by their pictures.

Writes:
    OUT/videos/archive_NNN.mp4   H.264 + AAC, 20 fps (with --sidecar also .srt subtitles)
    OUT/truth.json               every scene: video, start, end, attributes, narration and its kind
    OUT/queries.json             natural-language queries with the scenes relevant to each
    OUT/labels.csv               each scene's window and direction (video, start, end, label) for finetune-classify

Usage: python -m vbsearch.samplegen OUT [--minutes 3] [--seed 0] [--sidecar] [--variant classic]
       python -m vbsearch.samplegen --list-variants

--variant NAME other than "classic" (this generator) makes an archive of that variant of the generator
family (vbsearch.samplefamily): other shapes, colours, motions, backgrounds, cameras and narrators.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from indexer.labels import write_labels
from vbsearch.synth import SAMPLE_RATE, place, speak, write_video

log = logging.getLogger(__name__)

FPS = 20  # frames per second of the generated videos (the pipeline's own sampling rate)
SIZE = (144, 192)  # (height, width) in pixels
SCENE_SECONDS = (6.0, 9.0)  # scene length range
SCENES_PER_VIDEO = 8
NARRATION_KINDS = (("full", 0.5), ("partial", 0.25), ("chatter", 0.25))  # kind, probability

COLOURS = {  # name -> RGB
    "red": (215, 35, 35),
    "green": (40, 190, 60),
    "blue": (40, 80, 225),
    "yellow": (235, 215, 40),
    "purple": (150, 50, 190),
}
SHAPES = ("circle", "square", "triangle", "cross")
DIRECTIONS = {  # name -> unit vector (x right, y down)
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
BACKGROUNDS = ("sky", "grass", "night", "sand")

# Narration templates. {c} colour, {s} shape, {d} direction phrase, {b} background.
FULL = (
    "The {c} {s} moves {d}.",
    "Now a {c} {s} slides {d} across the {b}.",
    "Here you can see a {c} {s} travelling {d}.",
    "Watch the {c} {s} as it goes {d}.",
)
PARTIAL = (
    "Look at this {s}.",
    "Something {c} is on the screen now.",
    "This one is heading {d}.",
    "A {s} appears in this shot.",
)
CHATTER = (
    "This footage comes from the city archive.",
    "We will take a short break after this part.",
    "Thank you for staying with us.",
    "The next reel was recorded last spring.",
    "Please keep the volume at a comfortable level.",
    "Our team restored these tapes by hand.",
)
DIRECTION_PHRASES = {"left": "to the left", "right": "to the right", "up": "upwards", "down": "downwards"}
# Queries are worded unlike the narration, so lexical overlap alone does not solve them.
QUERY_TEMPLATES = ("a {c} {s} moving {q}", "{c} {s} going {q}")
QUERY_DIRECTIONS = {"left": "left", "right": "right", "up": "up", "down": "down"}


@dataclass(frozen=True)
class Scene:
    scene_id: str  # "<video stem>#<index>"
    video: str  # file name under OUT/videos
    start: float  # seconds
    end: float  # seconds
    colour: str
    shape: str
    direction: str
    background: str
    narration: str  # the sentence spoken during the scene
    narration_kind: str  # full | partial | chatter
    speech_start: float  # seconds, when the sentence starts
    speech_end: float


@dataclass(frozen=True)
class Query:
    text: str
    relevant: list[str]  # scene ids
    visual_only: bool  # every relevant scene's narration is chatter: only the pictures can find them


def _background(name: str, rng: np.random.Generator) -> np.ndarray:
    h, w = SIZE
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    if name == "sky":  # light blue, brighter towards the horizon
        img = np.array([110, 170, 235]) * (0.75 + 0.25 * y) + 0 * x
    elif name == "grass":  # green with horizontal stripes
        img = np.array([60, 130, 50]) * (0.85 + 0.15 * np.sin(y * 40)) + 0 * x
    elif name == "night":  # dark navy with stars
        img = np.array([15, 20, 50]) + 0 * x * y
        img = np.broadcast_to(img, (h, w, 3)).copy()
        stars = rng.integers(0, [h, w], size=(40, 2))
        img[stars[:, 0], stars[:, 1]] = 200
    else:  # sand: beige with a diagonal ripple
        img = np.array([210, 185, 130]) * (0.9 + 0.1 * np.sin((x + y) * 30))
    return np.broadcast_to(img, (h, w, 3)).astype(np.float32)


def _shape_mask(shape: str, size: int, angle: float = 0.0) -> np.ndarray:
    r = size / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - r + 0.5
    if shape == "circle":
        return xx**2 + yy**2 <= r**2
    if shape == "square":
        return (np.abs(xx) <= r * 0.85) & (np.abs(yy) <= r * 0.85)
    if shape == "triangle":  # pointing up
        return (yy <= r * 0.8) & (yy >= -r * 0.9 + 1.9 * np.abs(xx))
    # cross
    arm = r * 0.33
    return ((np.abs(xx) <= arm) & (np.abs(yy) <= r)) | ((np.abs(yy) <= arm) & (np.abs(xx) <= r))


def _render_scene(colour: str, shape: str, direction: str, background: str, n_frames: int,
                  rng: np.random.Generator):
    h, w = SIZE
    bg = _background(background, rng)
    size = int(rng.integers(28, 44))
    mask = _shape_mask(shape, size)
    rgb = np.array(COLOURS[colour], dtype=np.float32) * rng.uniform(0.85, 1.1)
    dx, dy = DIRECTIONS[direction]
    # Cross the frame once: enter at one edge, leave at the other.
    span = (w + size) if dx else (h + size)
    speed = span / n_frames
    lane = rng.uniform(0.25, 0.75)
    start_x = (-size if dx > 0 else w) if dx else lane * (w - size)
    start_y = (-size if dy > 0 else h) if dy else lane * (h - size)
    clutter = [(rng.integers(0, h - 6), rng.integers(0, w - 6), rng.uniform(60, 200, 3)) for _ in range(3)]
    for i in range(n_frames):
        frame = bg.copy()
        for cy, cx, cc in clutter:  # small static distractors
            frame[cy : cy + 5, cx : cx + 5] = cc
        jitter = rng.normal(0, 0.6, 2)
        x = int(round(start_x + dx * speed * i + jitter[0]))
        y = int(round(start_y + dy * speed * i + jitter[1]))
        y0, y1, x0, x1 = max(y, 0), min(y + size, h), max(x, 0), min(x + size, w)
        if y1 > y0 and x1 > x0:
            m = mask[y0 - y : y1 - y, x0 - x : x1 - x]
            frame[y0:y1, x0:x1][m] = rgb
        frame += rng.normal(0, 6, frame.shape).astype(np.float32)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def _narration(kind: str, colour: str, shape: str, direction: str, background: str,
               rng: np.random.Generator) -> str:
    templates = {"full": FULL, "partial": PARTIAL, "chatter": CHATTER}[kind]
    return str(rng.choice(templates)).format(c=colour, s=shape, d=DIRECTION_PHRASES[direction], b=background)


def _srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def generate(out: Path, minutes: float = 3.0, seed: int = 0, sidecar: bool = False) -> tuple[list[Scene], list[Query]]:
    """Generate an archive of about `minutes` minutes into `out`; returns its scenes and queries."""
    rng = np.random.default_rng(seed)
    videos_dir = out / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    scenes: list[Scene] = []
    n_videos = max(1, math.ceil(minutes * 60 / (SCENES_PER_VIDEO * np.mean(SCENE_SECONDS))))
    kinds, probs = zip(*NARRATION_KINDS, strict=False)
    for v in range(n_videos):
        name = f"archive_{v:03d}.mp4"
        frames, speech, cues, t = [], [], [], 0.0
        for k in range(SCENES_PER_VIDEO):
            colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
            direction, background = str(rng.choice(list(DIRECTIONS))), str(rng.choice(BACKGROUNDS))
            n_frames = int(rng.uniform(*SCENE_SECONDS) * FPS)
            kind = str(rng.choice(kinds, p=probs))
            text = _narration(kind, colour, shape, direction, background, rng)
            audio = speak(text)
            say_at = t + float(rng.uniform(0.3, 1.0))
            say_end = say_at + len(audio) / SAMPLE_RATE
            speech.append((say_at, audio))
            cues.append((say_at, say_end, text))
            frames.extend(_render_scene(colour, shape, direction, background, n_frames, rng))
            end = t + n_frames / FPS
            scenes.append(Scene(f"{Path(name).stem}#{k}", name, round(t, 3), round(end, 3), colour, shape, direction,
                                background, text, kind, round(say_at, 3), round(say_end, 3)))
            t = end
        write_video(videos_dir / name, frames, fps=FPS, audio=place(speech, t), crf=30)
        if sidecar:
            srt = "".join(f"{i}\n{_srt_time(a)} --> {_srt_time(b)}\n{text}\n\n" for i, (a, b, text) in enumerate(cues, 1))
            (videos_dir / name).with_suffix(".srt").write_text(srt, encoding="utf-8")
        log.info("wrote %s (%.0f s, %d scenes)", name, t, SCENES_PER_VIDEO)
    queries = make_queries(scenes, rng)
    (out / "truth.json").write_text(json.dumps([asdict(s) for s in scenes], indent=1))
    (out / "queries.json").write_text(json.dumps([asdict(q) for q in queries], indent=1))
    write_labels(out)  # labels.csv: each scene's direction, for `vbsearch finetune-classify`
    return scenes, queries


def make_queries(scenes: list[Scene], rng: np.random.Generator) -> list[Query]:
    """One query per (colour, shape, direction) present; relevant = every scene showing it."""
    groups: dict[tuple[str, str, str], list[Scene]] = {}
    for s in scenes:
        groups.setdefault((s.colour, s.shape, s.direction), []).append(s)
    queries = []
    for (colour, shape, direction), members in sorted(groups.items()):
        template = str(rng.choice(QUERY_TEMPLATES))
        text = template.format(c=colour, s=shape, q=QUERY_DIRECTIONS[direction])
        queries.append(Query(text, [s.scene_id for s in members],
                             visual_only=all(s.narration_kind == "chatter" for s in members)))
    return queries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vbsearch.samplegen", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, nargs="?", help="output folder")
    parser.add_argument("--minutes", type=float, default=3.0, help="approximate total length (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--sidecar", action="store_true", help="also write .srt subtitles beside each video")
    parser.add_argument("--variant", default="classic",
                        help="generator: classic (default) or a variant of vbsearch.samplefamily (--list-variants)")
    parser.add_argument("--list-variants", action="store_true", help="list the variants and exit")
    args = parser.parse_args(argv)
    if args.list_variants or args.variant != "classic":
        from vbsearch import samplefamily  # imported here: the classic generator does not need it
    if args.list_variants:
        print("classic: the original generator (5 colours, 4 shapes, 4 directions, 4 backgrounds, 192x144 at 20 fps)")
        for spec in samplefamily.VARIANTS.values():
            print(samplefamily.describe(spec))
        return 0
    if args.out is None:
        parser.error("the output folder OUT is required")
    if args.variant != "classic" and args.variant not in samplefamily.VARIANTS:
        parser.error(f"unknown variant {args.variant!r} (known: classic, {', '.join(samplefamily.VARIANTS)})")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.variant == "classic":
        scenes, queries = generate(args.out, args.minutes, args.seed, args.sidecar)
    else:
        scenes, queries = samplefamily.generate(args.out, args.variant, args.minutes, args.seed, args.sidecar)
    hours = sum(s.end - s.start for s in scenes) / 60
    print(f"{len(scenes)} scenes ({hours:.1f} min), {len(queries)} queries "
          f"({sum(q.visual_only for q in queries)} visual-only) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
