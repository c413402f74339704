"""Ingest throughput and memory: decode alone, features per extractor, full ingest with each weights-free one.

    .venv/bin/python bench/bench_ingest.py               # 10-minute 720p video (about 2-4 min on 2 cores)
    .venv/bin/python bench/bench_ingest.py --minutes 1   # quick look

Generates a 720p H.264 video in a temp dir (scrolling textures, a new scene every 10 s, so the
encoder and decoder see ordinary motion and cuts), then measures:
- decode alone: clips decoded at each extractor's input size (decord), as a multiple of real time;
- features: clip features per extractor on already-decoded clips (S3D with random weights: same
  arithmetic as the real ones; on CPU timed on a few clips), as a multiple of real time;
- full ingest of the file with objectflow (the default) and with colormotion (the extractor it replaced),
  side by side (`indexer.run.index_paths`: decode, features, thumbnails, catalog): each as a multiple of
  real time (goal for objectflow: >= 20x on 2 cores), its ratio to decode alone, and its peak resident
  memory (must stay under 1 GB). Decode alone and each full ingest run in a fresh child process, which
  reports its own peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.decode import CLIP_SECONDS, ClipReader, DecodeOptions  # noqa: E402
from model.features import create_extractor  # noqa: E402

MEMORY_LIMIT_MB = 1024  # the bound for a 10-minute 720p ingest
INGEST_GOAL = 20.0  # x real time on 2 cores for 720p with the default extractor
WEIGHTS_FREE = ("objectflow", "colormotion")  # ingested in full, side by side
SCENE_SECONDS = 10  # a cut every 10 s
FEATURE_MIN_S = 3.0  # time each extractor for at least this long


def make_video(path: Path, minutes: float, height: int, fps: int) -> Path:
    from vbsearch.synth import write_video

    width = height * 16 // 9 // 2 * 2
    n = int(minutes * 60 * fps)
    rng = np.random.default_rng(0)

    def frames():
        for i in range(n):
            if i % (SCENE_SECONDS * fps) == 0:  # new scene: colour, texture, direction
                cells = rng.random((height // 16 + 1, (width + 2 * SCENE_SECONDS * fps * 3) // 16 + 2))
                tint = rng.uniform(0.3, 1.0, 3)
                scene = (np.kron(cells, np.ones((16, 16)))[:height, :, None] * tint * 255).astype(np.uint8)
                direction = rng.choice([-3, 3])
                x0 = SCENE_SECONDS * fps * 3 if direction < 0 else 0
            x = x0 + direction * (i % (SCENE_SECONDS * fps))
            yield scene[:, x : x + width]

    t = time.perf_counter()
    write_video(path, frames(), fps=fps, crf=28)
    print(f"generated {path.name}: {minutes:g} min {width}x{height} @ {fps} fps, "
          f"{path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t:.0f} s", flush=True)
    return path


def child(mode: str, video: Path, data_dir: Path) -> dict:
    """Run in a fresh process: decode alone, or full ingest with the extractor `mode` names; report wall time
    and peak RSS."""
    t = time.perf_counter()
    if mode == "decode":
        ex = create_extractor("objectflow")
        reader = ClipReader(video, DecodeOptions(*ex.input_size))
        clips = sum(len(b) for b in reader)
        duration = reader.duration
    else:
        from indexer.ingest import IngestOptions
        from indexer.run import index_paths
        from vbsearch.config import Settings

        summary = index_paths([video], Settings(data_dir=data_dir / mode, features=mode),
                              IngestOptions(progress=False), force=True)
        if summary.failed:
            raise SystemExit(f"ingest failed: {summary.failed}")
        clips, duration = summary.clips, summary.seconds_of_video
        print("stages:", summary.timer.summary(), file=sys.stderr)
    wall = time.perf_counter() - t
    return {"wall_s": wall, "clips": clips, "duration_s": duration, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss across
    exec, so a child forked from a big parent would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; macOS: bytes


def run_child(mode: str, video: Path, data_dir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(video), str(data_dir)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{out.stderr}")
    if out.stderr.strip():
        print(out.stderr.strip())
    return json.loads(out.stdout.strip().splitlines()[-1])


def decode_clips(video: Path, size: tuple[int, int], n_clips: int) -> np.ndarray:
    batches = []
    for batch in ClipReader(video, DecodeOptions(*size)):
        batches.append(batch.frames)
        if sum(len(b) for b in batches) >= n_clips:
            break
    return np.concatenate(batches)[:n_clips]


def feature_speed(name: str, video: Path, device: str, s3d_weights: Path | None) -> dict:
    ex = create_extractor(name, device=device, s3d_weights=s3d_weights)
    n = ex.batch_size * (4 if name in WEIGHTS_FREE or device == "cuda" else 1)
    clips = decode_clips(video, ex.input_size, n)
    ex(clips[: min(len(clips), ex.batch_size)])  # warm-up (allocations, cuDNN autotuning)
    done, t = 0, time.perf_counter()
    while True:
        ex(clips)
        done += len(clips)
        wall = time.perf_counter() - t
        if wall >= FEATURE_MIN_S:
            break
    per_s = done / wall
    return {"extractor": name, "device": device, "clips_per_s": per_s, "x_real_time": per_s * CLIP_SECONDS}


def random_s3d_weights(folder: Path) -> Path:
    import torch
    from safetensors.torch import save_file
    from torchvision.models.video import s3d

    torch.manual_seed(0)
    path = folder / "s3d-random.safetensors"
    save_file({k: v.contiguous() for k, v in s3d(weights=None).state_dict().items()}, str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the generated video")
    p.add_argument("--height", type=int, default=720, help="frame height (16:9)")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--device", default=None, help="device for S3D (default: cuda when available)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--child", nargs=3, metavar=("MODE", "VIDEO", "DATA_DIR"), help=argparse.SUPPRESS)  # decode | an extractor
    args = p.parse_args(argv)
    if args.child:
        mode, video, data_dir = args.child
        print(json.dumps(child(mode, Path(video), Path(data_dir))))
        return 0

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp = Path(tmp)
        video = make_video(tmp / "bench.mp4", args.minutes, args.height, args.fps)
        decode = run_child("decode", video, tmp / "data")
        speed = decode["duration_s"] / decode["wall_s"]
        print(f"decode alone (decord, 160x120 out): {decode['wall_s']:.1f} s = {speed:.1f}x real time, "
              f"{decode['clips']} clips, peak RSS {decode['peak_rss_mb']:.0f} MB", flush=True)
        s3d_decode_t = time.perf_counter()
        n = sum(len(b) for b in ClipReader(video, DecodeOptions(256, 256)))
        s3d_decode = n * CLIP_SECONDS / (time.perf_counter() - s3d_decode_t)
        print(f"decode alone (decord, 256x256 out, S3D's size): {s3d_decode:.1f}x real time", flush=True)

        feats = [*(feature_speed(name, video, "cpu", None) for name in WEIGHTS_FREE),
                 feature_speed("s3d", video, device, random_s3d_weights(tmp))]
        for f in feats:
            print(f"features {f['extractor']:<11} on {f['device']}: {f['clips_per_s']:.1f} clips/s "
                  f"= {f['x_real_time']:.1f}x real time", flush=True)
        print(f"features objectflow / colormotion time per clip: {feats[1]['clips_per_s'] / feats[0]['clips_per_s']:.2f}",
              flush=True)

        ingests, ok = {}, True
        for name in WEIGHTS_FREE:
            ingest = run_child(name, video, tmp / "data")
            ingest["x_real_time"] = ingest["duration_s"] / ingest["wall_s"]
            ingest["ratio_to_decode"] = ingest["wall_s"] / decode["wall_s"]
            under = ingest["peak_rss_mb"] < MEMORY_LIMIT_MB
            ok &= under
            print(f"full ingest ({name}, thumbnails, catalog): {ingest['wall_s']:.1f} s = {ingest['x_real_time']:.1f}x "
                  f"real time; full ingest / decode alone = {ingest['ratio_to_decode']:.2f}; peak RSS "
                  f"{ingest['peak_rss_mb']:.0f} MB ({'under' if under else 'OVER'} the {MEMORY_LIMIT_MB} MB bound)",
                  flush=True)
            ingests[name] = ingest
        new, old = (ingests[n] for n in WEIGHTS_FREE)
        print(f"full ingest objectflow / colormotion wall time: {new['wall_s'] / old['wall_s']:.2f}; objectflow "
              f"{'meets' if new['x_real_time'] >= INGEST_GOAL else 'MISSES'} the {INGEST_GOAL:g}x goal "
              f"for {new['duration_s'] / 60:.1f} min of {args.height}p", flush=True)
        results = {
            "video": {"minutes": args.minutes, "height": args.height, "fps": args.fps},
            "decode": {**decode, "x_real_time": speed, "x_real_time_256": s3d_decode},
            "features": feats,
            "ingest": ingests,
        }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
