"""Latency of the demo's ``POST /api/predict``: one client, then 20 at once.

    python benchmarks/bench_demo.py [--requests 60] [--clients 20] [--per-client 3]

Starts ``minireptile demo --port 0`` (the built-in model, one BLAS thread) in its own process
and sends it 3-way 1-shot requests over loopback: three human drawings from the held-out
alphabets of ``../shared/data/omniglot/strokes_background_small2.zip`` and another drawer's
version of one of them as the input (hand-made shapes when the stroke file is absent).

1. One client, requests one after another, alternating the API's plain request
   (``compare_random: false``) and the page's (with the random-initialisation comparison):
   median and 95th percentile of the wall-clock latency, beside the server's own time for
   fine-tuning and classifying (the baseline: what is left is JSON, HTTP and preprocessing)
   and the processor time of the thread that did it (what the machine's other work does
   not inflate).
2. ``--clients`` threads each sending ``--per-client`` plain requests at once, every request
   bounded by a timeout: errors, latency median / 95th percentile / maximum, throughput.
"""

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STROKES = ROOT.parent / "shared" / "data" / "omniglot" / "strokes_background_small2.zip"
HELD_OUT = ("Japanese_(katakana)", "Sanskrit", "Tagalog")
TIMEOUT = 120  # seconds, any one request


def requests(count, seed=0):
    """``count`` request bodies of 3 classes, 1 drawing each, and an input."""
    if not STROKES.is_file():
        circle = [[0.5 + 0.3 * np.cos(a), 0.5 + 0.3 * np.sin(a)]
                  for a in np.linspace(0, 2 * np.pi, 30)]
        shapes = [[circle], [[[0.5, 0.2], [0.8, 0.8], [0.2, 0.8], [0.5, 0.2]]],
                  [[[0.2, 0.2], [0.8, 0.8]], [[0.8, 0.2], [0.2, 0.8]]]]
        body = {"classes": [[{"strokes": s}] for s in shapes], "input": {"strokes": shapes[0]}}
        return [body] * count
    from minireptile.data.strokes import StrokeArchive

    rng = np.random.default_rng(seed)
    bodies = []
    with StrokeArchive(STROKES) as archive:
        characters = [c for c in sorted(archive.characters) if c.split("/")[0] in HELD_OUT]
        for _ in range(count):
            chosen = [characters[i] for i in rng.choice(len(characters), 3, replace=False)]
            a, b = rng.choice(20, 2, replace=False)
            target = chosen[int(rng.integers(3))]
            drawing = lambda name: {"strokes": [s.tolist() for s in archive.read(name)]}
            bodies.append({"classes": [[drawing(archive.characters[c][a])] for c in chosen],
                           "input": drawing(archive.characters[target][b])})
    return bodies


def post(port, body):
    """``(seconds, answer)`` of one request on a fresh connection."""
    data = json.dumps(body).encode()
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("POST", "/api/predict", body=data,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
    finally:
        connection.close()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {answer.get('error')}")
    return elapsed, answer


def summary(times):
    ms = sorted(1000 * t for t in times)
    p95 = ms[min(len(ms) - 1, int(np.ceil(0.95 * len(ms))) - 1)]
    return f"median {statistics.median(ms):6.1f} ms   p95 {p95:6.1f} ms   max {ms[-1]:6.1f} ms"


def start_server():
    # One BLAS thread, so the thread's processor time is all the work of a request.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "minireptile", "demo", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT, env=env)
    line = process.stdout.readline()
    match = re.search(r"127\.0\.0\.1:(\d+)/", line)
    if not match:
        process.kill()
        raise RuntimeError(f"the demo did not start: {line}{process.stderr.read()}")
    return process, int(match.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60,
                        help="sequential requests of each kind")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--per-client", type=int, default=3)
    args = parser.parse_args()

    process, port = start_server()
    try:
        bodies = requests(args.requests)
        for body in bodies[:5]:  # warm-up: compiled kernels load, work arrays are allocated
            post(port, {**body, "compare_random": False})
        plain, plain_server, plain_cpu, page, page_server, page_cpu = [], [], [], [], [], []
        for body in bodies:
            elapsed, answer = post(port, {**body, "compare_random": False})
            plain.append(elapsed)
            plain_server.append(answer["seconds"])
            plain_cpu.append(answer["cpu_seconds"])
            elapsed, answer = post(port, body)
            page.append(elapsed)
            page_server.append(answer["seconds"])
            page_cpu.append(answer["cpu_seconds"])
        print(f"1 client, {args.requests} requests of each kind (3 classes, 1 shot, "
              "built-in model):")
        print(f"  POST /api/predict                         {summary(plain)}")
        print(f"    of which fine-tuning + classifying      {summary(plain_server)}")
        print(f"      processor time of that thread         {summary(plain_cpu)}")
        print(f"  POST /api/predict, with random comparison {summary(page)}")
        print(f"    of which fine-tuning + classifying      {summary(page_server)}")
        print(f"      processor time of that thread         {summary(page_cpu)}")
        print(f"  HTTP, JSON and preprocessing: median "
              f"{1000 * (statistics.median(plain) - statistics.median(plain_server)):.1f} ms "
              f"per request; median latency / server time = "
              f"{statistics.median(plain) / statistics.median(plain_server):.2f}x")

        latencies, errors = [], []
        lock = threading.Lock()

        def client(index):
            for k in range(args.per_client):
                body = bodies[(index * args.per_client + k) % len(bodies)]
                try:
                    elapsed, _ = post(port, {**body, "compare_random": False})
                    with lock:
                        latencies.append(elapsed)
                except Exception as err:  # noqa: BLE001 - counted and reported
                    with lock:
                        errors.append(f"{type(err).__name__}: {err}")

        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(args.clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        deadline = started + TIMEOUT * args.per_client + 30
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.perf_counter()))
        wall = time.perf_counter() - started
        unfinished = sum(thread.is_alive() for thread in threads)
        total = args.clients * args.per_client
        print(f"{args.clients} concurrent clients x {args.per_client} requests: "
              f"{len(latencies)}/{total} answered, {len(errors)} errors, "
              f"{unfinished} clients unfinished, {wall:.1f} s in all "
              f"({len(latencies) / wall:.1f} requests/s)")
        if latencies:
            print(f"  latency {summary(latencies)}")
        for error in errors[:5]:
            print(f"  error: {error}")
        return 1 if errors or unfinished else 0
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
