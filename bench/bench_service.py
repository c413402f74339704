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
Then two hardening checks (search/guards.py):
- overload: 4x as many clients as the service admits (--max-concurrent + --max-queued): searches that get
  a turn (p95), those shed with 503 (how many, how fast), and /health p99 meanwhile;
- a 30 MB body without a token: how fast the 413 comes and how much the service's memory grew.
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
    if not len(a):
        return {"requests": 0, "rps": 0.0, "p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"),
                "mean_ms": float("nan")}
    return {"requests": len(lat), "rps": len(lat) / wall, "p50_ms": float(np.percentile(a, 50)),
            "p95_ms": float(np.percentile(a, 95)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def _searches(url: str, n: int, offset: int, out: list[float]) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=300) as c:
        for i in range(n):
            t0 = time.perf_counter()
            r = c.post("/search", json={"query": QUERIES[(offset + i) % len(QUERIES)], "top_k": TOP_K})
            out.append(time.perf_counter() - t0)
            r.raise_for_status()


def _probe_health(url: str, stop, out) -> None:
    import httpx

    latency = []
    with httpx.Client(base_url=url, timeout=60) as c:
        while not stop.is_set():
            t = time.perf_counter()
            c.get("/health").raise_for_status()
            latency.append(time.perf_counter() - t)
            time.sleep(0.05)
    out.put(latency)


class _HealthProbe:
    """/health asked every 50 ms by a client in its own process (so the load's client threads in this one do
    not delay it) while the load runs."""

    def __init__(self, url: str):
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.latency: list[float] = []
        self._stop, self._out = ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(target=_probe_health, args=(url, self._stop, self._out), daemon=True)

    def __enter__(self) -> _HealthProbe:
        self._proc.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.latency = self._out.get(timeout=60)
        self._proc.join()


def _load(url: str, clients: list[threading.Thread]) -> tuple[float, list[float]]:
    """Run the client threads to the end with /health probed meanwhile: (wall seconds, /health latencies)."""
    t0 = time.perf_counter()
    with _HealthProbe(url) as health:
        for t in clients:
            t.start()
        for t in clients:
            t.join()
    return time.perf_counter() - t0, health.latency


def overload(url: str, clients: int, requests: int) -> dict:
    """`clients` clients at once, `requests` searches each, a 503 counted as shed (not retried)."""
    import httpx

    accepted: list[float] = []
    shed: list[float] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as c:
            for i in range(requests):
                t0 = time.perf_counter()
                r = c.post("/search", json={"query": QUERIES[(k + i) % len(QUERIES)], "top_k": TOP_K})
                with lock:
                    (shed if r.status_code == 503 else accepted).append(time.perf_counter() - t0)
                if r.status_code != 503:
                    r.raise_for_status()

    wall, health = _load(url, [threading.Thread(target=client, args=(k,)) for k in range(clients)])
    return {"clients": clients, "accepted": _stats(accepted, wall), "shed": _stats(shed, wall),
            "health": _stats(health, wall)}


def oversized_body(url: str, pid: int, megabytes: int = 30) -> dict:
    """A body of `megabytes` MB of nested JSON without a token, declared by Content-Length and sent as fast as
    the socket takes it: how soon the answer comes, how much of the body was sent by then, and how much the
    service's memory grew."""
    import select
    from urllib.parse import urlparse

    def rss_mb() -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    u = urlparse(url)
    total = megabytes * 1_000_000
    chunk = b"[" * 65_536
    before = rss_mb()
    with socket.create_connection((u.hostname, u.port)) as sock:
        t0 = time.perf_counter()
        sock.sendall(f"POST /search HTTP/1.1\r\nHost: {u.hostname}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {total}\r\n\r\n".encode())
        sent = 0
        while True:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 10)
            if readable:
                head = sock.recv(4096)
                break
            if not writable:
                head = b""
                break
            sent += sock.send(chunk[: total - sent])
        ms = (time.perf_counter() - t0) * 1000
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else 0
    return {"status": status, "ms": ms, "sent_mb": sent / 1e6, "rss_growth_mb": rss_mb() - before}


def bench(url: str, clients: int, requests: int) -> dict:
    warm: list[float] = []
    _searches(url, WARMUP, 0, warm)

    single: list[float] = []
    t0 = time.perf_counter()
    _searches(url, requests, 0, single)
    single_stats = _stats(single, time.perf_counter() - t0)

    per_client: list[list[float]] = [[] for _ in range(clients)]
    wall, health = _load(url, [threading.Thread(target=_searches, args=(url, requests, k, per_client[k]))
                               for k in range(clients)])
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
    ap.add_argument("--overload-requests", type=int, default=3, help="searches per client in the overload phase")
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
            from search.guards import ServiceLimits

            limits = ServiceLimits()
            result["overload"] = overload(url, 4 * (limits.max_concurrent + limits.max_queued), args.overload_requests)
            result["oversized_body"] = oversized_body(url, proc.pid)
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
    o = result["overload"]
    print(f"overload, {o['clients']} clients (4x what the service admits): {o['accepted']['requests']} searches "
          f"answered, p95 {o['accepted']['p95_ms']:.0f} ms; {o['shed']['requests']} shed with 503, p95 "
          f"{o['shed']['p95_ms']:.1f} ms; /health p99 {o['health']['p99_ms']:.1f} ms over "
          f"{o['health']['requests']} probes")
    b = result["oversized_body"]
    print(f"30 MB body without a token: {b['status']} after {b['ms']:.1f} ms ({b['sent_mb']:.1f} MB of it sent); "
          f"service memory grew {b['rss_growth_mb']:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
