"""Search service under load: throughput and latency with 8 concurrent clients vs one, on loopback.

    .venv/bin/python bench/bench_service.py --data-dir DIR     # an indexed data dir (not open elsewhere)
    .venv/bin/python bench/bench_service.py                    # builds the tests' 1.5-minute sample archive first

Starts `vbsearch serve` on a free loopback port, warms it up, then:
- one client: REQUESTS searches back to back -> latency p50/p95 and requests/s;
- CLIENTS clients at once, REQUESTS searches each -> the same, plus /health latency measured by one more
  client during the load (it must not queue behind the searches: they run in the threadpool);
and prints the ratios concurrent/single for throughput and p95 latency. Forward passes are serialised
(search/service.py), so on CPU throughput stays near the single-client figure while latency grows with
the queue; the ratio says how much the overlap of HTTP, store lookups and JSON with the model buys.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIENTS = 8
REQUESTS = 25  # per client; bounded so the run takes a minute or two on 2 cores
WARMUP = 5
TOP_K = 10
STARTUP_S = 300  # model load on a busy machine
QUERIES = ["a red circle moving left", "a blue square", "someone talks about the weather", "green stripes",
           "a ball bounces", "the camera pans right", "a person reads the news", "yellow triangle"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(lat: list[float], wall: float) -> dict[str, float]:
    a = np.asarray(lat) * 1000
    return {"requests": len(lat), "rps": len(lat) / wall, "p50_ms": float(np.percentile(a, 50)),
            "p95_ms": float(np.percentile(a, 95)), "mean_ms": float(a.mean())}


def _searches(url: str, n: int, offset: int, out: list[float]) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=300) as c:
        for i in range(n):
            t0 = time.perf_counter()
            r = c.post("/search", json={"query": QUERIES[(offset + i) % len(QUERIES)], "top_k": TOP_K})
            out.append(time.perf_counter() - t0)
            r.raise_for_status()


def bench(url: str, clients: int, requests: int) -> dict:
    import httpx

    warm: list[float] = []
    _searches(url, WARMUP, 0, warm)

    single: list[float] = []
    t0 = time.perf_counter()
    _searches(url, requests, 0, single)
    single_stats = _stats(single, time.perf_counter() - t0)

    per_client: list[list[float]] = [[] for _ in range(clients)]
    health: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while not done.is_set():
                t = time.perf_counter()
                c.get("/health").raise_for_status()
                health.append(time.perf_counter() - t)
                time.sleep(0.05)

    threads = [threading.Thread(target=_searches, args=(url, requests, k, per_client[k])) for k in range(clients)]
    prober = threading.Thread(target=probe)
    t0 = time.perf_counter()
    prober.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done.set()
    prober.join()
    conc_stats = _stats([x for lat in per_client for x in lat], wall)
    return {
        "clients": clients,
        "single": single_stats,
        "concurrent": conc_stats,
        "health_under_load": _stats(health, wall),
        "throughput_ratio": conc_stats["rps"] / single_stats["rps"],
        "p95_ratio": conc_stats["p95_ms"] / single_stats["p95_ms"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, help="an indexed data dir (default: build the sample archive)")
    ap.add_argument("--clients", type=int, default=CLIENTS)
    ap.add_argument("--requests", type=int, default=REQUESTS, help="searches per client")
    ap.add_argument("--json", action="store_true", help="print only the results as JSON")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            sys.path.insert(0, str(ROOT / "tests"))
            from conftest import build_indexed_archive

            print("building the sample archive (several minutes on 2 cores)...", file=sys.stderr)
            data_dir = build_indexed_archive(Path(tmp)).data_dir
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "VBSEARCH_API_TOKEN"}
        proc = subprocess.Popen([sys.executable, "-m", "vbsearch.cli", "serve", "--port", str(port),
                                 "--data-dir", str(data_dir)], env=env)
        try:
            import httpx

            deadline = time.monotonic() + STARTUP_S
            while True:
                if proc.poll() is not None:
                    print("bench_service: the service exited", file=sys.stderr)
                    return 1
                try:
                    if httpx.get(url + "/health", timeout=2).json().get("ready"):
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    print("bench_service: the service did not become ready", file=sys.stderr)
                    return 1
                time.sleep(0.3)
            result = bench(url, args.clients, args.requests)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    result["cpus"] = os.cpu_count()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'':<22}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}")
    for name, key in (("1 client", "single"), (f"{args.clients} clients", "concurrent"),
                      ("/health under load", "health_under_load")):
        s = result[key]
        print(f"{name:<22}{s['requests']:>9}{s['rps']:>9.1f}{s['p50_ms']:>9.1f}{s['p95_ms']:>9.1f}")
    print(f"throughput ratio ({args.clients} clients / 1): {result['throughput_ratio']:.2f}; "
          f"p95 latency ratio: {result['p95_ratio']:.2f}  ({result['cpus']} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
