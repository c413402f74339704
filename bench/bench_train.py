"""VideoBERT pretraining throughput: tokens/s, and model FLOPs utilisation on CUDA.

    python bench/bench_train.py                       # CPU, small config
    python bench/bench_train.py --config minilm       # the offline initial checkpoint's shape (6 layers)
    python bench/bench_train.py --config default      # the default model: its first 2 layers
    python bench/bench_train.py --device cuda --config minilm --batch-size 64
    python bench/bench_train.py --processes 1,2       # data parallel under torchrun (gloo on CPU), side by side

Tokens are the real (non-pad) tokens through the encoder per second, all passes of a step
counted (text-only, video-only and joint). MFU = 6 * N * tokens/s / peak, N = the encoder's
non-embedding parameters (the usual 6N-per-token estimate for forward + backward, attention
score FLOPs left out), peak = the GPU's dense bf16 rate (table below, or --peak-tflops).
Data is a synthetic archive made here (random words and visual tokens): speed, not quality.
With --processes, each count runs under torchrun with the same global batch (--grad-accum micro-batches
per step, dealt out to the processes, each process on --threads threads), and the table gives tokens/s
of all processes together and the ratio to the first count.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Dense bf16 tensor-core peaks, TFLOP/s (vendor data sheets, SXM parts where there is a choice).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "RTX 4090": 165.0, "V100": 125.0, "T4": 65.0}
CONFIGS = {  # name -> (hidden, layers, heads, intermediate)
    "small": (128, 2, 4, 512),
    "default": (384, 2, 12, 1536),  # what `vbsearch train` trains: MiniLM's first 2 layers
    "minilm": (384, 6, 12, 1536),
}
WORDS = ("pour", "cut", "stir", "the", "onion", "water", "pan", "now", "a", "hand", "glass", "slowly",
         "into", "and", "then", "add", "salt", "mix", "bowl", "knife")


def synthetic_tables(n_videos: int, sentences_per_video: int, n_words: int, tokens_per_clip: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sentences, clips, tokens = [], [], []
    for v in range(n_videos):
        t = 0.0
        for _ in range(sentences_per_video):
            n_clips = int(rng.integers(2, 6))
            sentences.append({"video_id": f"v{v}", "start": t, "end": t + 1.5 * n_clips,
                              "text": " ".join(rng.choice(WORDS, size=int(rng.integers(5, 15))))})
            for _ in range(n_clips):
                clips.append({"video_id": f"v{v}", "start": t, "end": t + 1.5})
                tokens.append(rng.integers(0, n_words, size=tokens_per_clip))
                t += 1.5
    return sentences, clips, np.asarray(tokens, dtype=np.int64)


def main(argv: list[str] | None = None) -> int:
    import torch

    from model.pretrain import Pretrainer, PretrainOptions
    from model.pretrain_data import DataOptions, PretrainData
    from model.tokenization import VideoBertTokenizer
    from model.videobert import VideoBert, VideoBertConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=tuple(CONFIGS), default="small")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=8, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--n-visual-words", type=int, default=400)
    p.add_argument("--tokens-per-clip", type=int, default=4)
    p.add_argument("--peak-tflops", type=float, help="override the GPU peak (dense bf16 TFLOP/s)")
    p.add_argument("--grad-accum", type=int, default=2, help="micro-batches per step, over all processes")
    p.add_argument("--processes", help="comma-separated process counts to compare under torchrun, e.g. 1,2")
    p.add_argument("--json", action="store_true", help="print one JSON line only")
    args = p.parse_args(argv)
    if args.processes:
        return compare_processes(args, argv if argv is not None else sys.argv[1:])
    if args.threads:
        torch.set_num_threads(args.threads)
    from model.distributed import start, stop

    process, args.device = start(args.device)

    hidden, layers, heads, inter = CONFIGS[args.config]
    tok = VideoBertTokenizer.from_pretrained(None, args.n_visual_words, args.tokens_per_clip,
                                             max_len=args.max_len, max_text_len=args.max_len // 2)
    cfg = VideoBertConfig(text_vocab_size=tok.text_vocab_size, n_visual_words=args.n_visual_words,
                          tokens_per_clip=args.tokens_per_clip, hidden_size=hidden, num_hidden_layers=layers,
                          num_attention_heads=heads, intermediate_size=inter, embed_dim=hidden)
    torch.manual_seed(0)
    model = VideoBert(cfg)
    data = PretrainData(*synthetic_tables(8, 40, args.n_visual_words, args.tokens_per_clip), DataOptions())
    opts = PretrainOptions(steps=args.warmup + args.steps, batch_size=args.batch_size, warmup_steps=1,
                           grad_accum=args.grad_accum, checkpoint_every=0, eval_every=0, progress=False)
    trainer = Pretrainer(model, tok, data, opts, device=args.device, process=process)
    for step in range(args.warmup):
        trainer.train_step(step)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    tokens = 0
    for step in range(args.warmup, args.warmup + args.steps):
        tokens += int(trainer.train_step(step)["tokens"])
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0

    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.word_embeddings.numel() + model.bert.embeddings.position_embeddings.weight.numel()
    n_nonembed = n_params - n_embed
    stop(process)
    if not process.is_main:
        return 0
    result = {"config": args.config, "device": args.device, "processes": process.world_size,
              "threads": torch.get_num_threads(),
              "batch_size": args.batch_size, "max_len": args.max_len, "params": n_params,
              "non_embedding_params": n_nonembed, "steps": args.steps, "seconds": round(seconds, 3),
              "steps_per_s": round(args.steps / seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}
    if args.device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        result["gpu"] = name
        if peak:
            result["peak_tflops"] = peak
            result["mfu"] = round(6 * n_nonembed * tokens / seconds / (peak * 1e12), 5)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    return 0


def compare_processes(args, argv: list[str]) -> int:
    """This bench under torchrun once per process count; tokens/s side by side and the scaling ratio."""
    counts = [int(n) for n in args.processes.split(",")]
    rest, skip = [], False
    for a in argv:  # the same flags, minus --processes
        if skip:
            skip = False
        elif a == "--processes":
            skip = True
        elif not a.startswith("--processes="):
            rest.append(a)
    rows = []
    for n in counts:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), __file__,
               *rest, "--json"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    base = rows[0]["tokens_per_s"]
    print(f"| processes | threads each | global batch | steps/s | tokens/s | vs {counts[0]} |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['threads']} | {r['batch_size']} x {args.grad_accum} | {r['steps_per_s']} | "
              f"{r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
