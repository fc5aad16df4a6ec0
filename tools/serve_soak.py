#!/usr/bin/env python3
"""Soak load for `polar serve` on 127.0.0.1, bounded in time and in requests.

Runs --clients steady clients (--batch sequences per /pooling request), one client posting large
batches (--large-batch sequences) and one client posting malformed bodies (which must all get a
4xx). Every --interval seconds it records sequences/s, p50/p99 latency of the steady clients,
the server's RSS (from /proc/PID/status, read every second: the row has the highest and lowest
reading, since a reading taken while a batch runs includes that batch's activations) and error
counts. A sample of the returned rewards is
written to --sample (JSONL: prompt, reference, output) and the served rewards to --sample + ".rewards"
(one a line), for rescoring with `polar score`.
Prints one JSON object: {"minutes": [...], "totals": {...}}. Standard library only.
"""
import argparse
import http.client
import json
import os
import random
import sys
import threading
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_load import load_records  # noqa: E402  (prompt, reference, output) per record


def formatted(rec):
    p, r, o = rec
    return f"{p}\n{r}<|reward|>{p}\n{o}[UNUSED_TOKEN_130]"


def heap_mib(port, api_key):
    """(allocated, free) MiB from the server's /metrics (polar_heap_*), or (None, None)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
        text = conn.getresponse().read().decode()
        conn.close()
    except OSError:
        return None, None
    values = dict(line.split(" ", 1) for line in text.splitlines() if line.startswith("polar_heap_"))
    get = lambda k: round(float(values[k]) / 2**20, 1) if k in values else None
    return get("polar_heap_allocated_bytes"), get("polar_heap_free_bytes")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# Bodies a confused or hostile client sends; each must be answered with a 4xx, never a 5xx.
MALFORMED = [
    b"{not json",
    b"",
    b"[]",
    b'{"input": 5}',
    b'{"input": [1, 2, 3]}',
    b'{"input": []}',
    b'{"input": ["ok", {"nested": true}]}',
    b'{"text": "x"}',
    b'{"input": "\xff\xfe invalid utf-8"}',
    b'{"input": ["' + b"a" * 200000 + b'"]}',
    json.dumps({"input": ["x"] * 5000}).encode(),
    b"null",
    b'{"input": [' + b"[" * 1000 + b"]" * 1000 + b"]}",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--input", required=True, help="JSONL scoring records (prompt, reference, output)")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--seconds", type=float, default=1800)
    ap.add_argument("--interval", type=float, default=60, help="seconds per reported row")
    ap.add_argument("--max-requests", type=int, default=2_000_000, help="bound on requests in all")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--large-batch", type=int, default=256)
    ap.add_argument("--sample", required=True, help="where to write sampled (record, reward) lines")
    ap.add_argument("--sample-every", type=int, default=97)
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()

    records = load_records(a.input)
    headers = {"Content-Type": "application/json"}
    if a.api_key:
        headers["Authorization"] = f"Bearer {a.api_key}"
    lock = threading.Lock()
    stop = threading.Event()
    issued = [0]
    window = {"sequences": 0, "lat": [], "errors": 0, "bad_4xx": 0, "malformed_4xx": 0, "malformed_other": 0,
              "large_lat": []}
    totals = {"requests": 0, "sequences": 0, "errors": 0, "first_errors": [], "malformed_4xx": 0,
              "malformed_other": 0}
    samples = []

    def take_ticket():
        with lock:
            if issued[0] >= a.max_requests:
                stop.set()
                return False
            issued[0] += 1
            return True

    def note_error(msg):
        with lock:
            window["errors"] += 1
            totals["errors"] += 1
            if len(totals["first_errors"]) < 5:
                totals["first_errors"].append(msg[:300])

    def scorer(batch_size, large, seed):
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=a.timeout)
        n = 0
        while not stop.is_set() and take_ticket():
            idx = [rng.randrange(len(records)) for _ in range(batch_size)]
            body = json.dumps({"input": [formatted(records[i]) for i in idx]})
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/pooling", body, headers)
                res = conn.getresponse()
                payload = res.read()
                dt = time.perf_counter() - t0
                if res.status != 200:
                    raise RuntimeError(f"status {res.status}: {payload[:200]!r}")
                rewards = [e["data"][-1][0] for e in json.loads(payload)["data"]]
                if len(rewards) != batch_size:
                    raise RuntimeError(f"{len(rewards)} rewards for {batch_size} sequences")
                with lock:
                    window["large_lat" if large else "lat"].append(dt)
                    window["sequences"] += batch_size
                    totals["requests"] += 1
                    totals["sequences"] += batch_size
                    n += 1
                    if n % a.sample_every == 1:  # the first answer, then every sample_every-th
                        p, r, o = records[idx[0]]
                        samples.append({"prompt": p, "reference": r, "output": o, "reward": rewards[0]})
            except Exception as e:  # counted; the client reconnects and goes on
                note_error(f"{'large' if large else 'steady'} client: {e}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=a.timeout)
        conn.close()

    def malformed():
        rng = random.Random(7)
        while not stop.is_set() and take_ticket():
            body = rng.choice(MALFORMED)
            conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=a.timeout)
            try:
                conn.request("POST", rng.choice(["/pooling", "/classify", "/score"]), body, headers)
                res = conn.getresponse()
                res.read()
                with lock:
                    key = "malformed_4xx" if 400 <= res.status < 500 else "malformed_other"
                    window[key] += 1
                    totals[key] += 1
            except Exception as e:
                with lock:
                    window["malformed_other"] += 1
                    totals["malformed_other"] += 1
                note_error(f"malformed client: {e}")
            finally:
                conn.close()
            time.sleep(0.05)

    threads = [threading.Thread(target=scorer, args=(a.batch, False, i)) for i in range(a.clients)]
    threads.append(threading.Thread(target=scorer, args=(a.large_batch, True, 1000)))
    threads.append(threading.Thread(target=malformed))
    start = time.perf_counter()
    for t in threads:
        t.start()

    def pct(xs, q):
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 1) if xs else None

    rows, rss = [], []
    next_row = start + a.interval
    end = start + a.seconds
    while not stop.is_set():
        time.sleep(max(0.0, min(next_row, end, time.perf_counter() + 1.0) - time.perf_counter()))
        rss.append(rss_mib(a.server_pid))
        now = time.perf_counter()
        if now >= next_row or now >= end:
            with lock:
                w = dict(window)
                for k in window:
                    window[k] = [] if isinstance(window[k], list) else 0
            span = now - (next_row - a.interval)
            heap = heap_mib(a.port, a.api_key)
            rows.append({"row": len(rows) + 1, "end_s": round(now - start), "seconds": round(span, 1),
                         "sequences_per_s": round(w["sequences"] / span, 1),
                         "p50_ms": pct(w["lat"], 0.50), "p99_ms": pct(w["lat"], 0.99),
                         "large_p50_ms": pct(w["large_lat"], 0.50),
                         "rss_mib": round(max(rss), 1), "rss_low_mib": round(min(rss), 1),
                         "heap_allocated_mib": heap[0], "heap_free_mib": heap[1], "errors": w["errors"],
                         "malformed_4xx": w["malformed_4xx"], "malformed_other": w["malformed_other"]})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            rss = []
            next_row += a.interval
        if now >= end:
            stop.set()
    for t in threads:
        t.join()
    # The records as `polar score` reads them, and the served rewards beside them, line for line.
    with open(a.sample, "w", encoding="utf-8") as f, open(a.sample + ".rewards", "w") as g:
        for s in samples:
            g.write(f"{s.pop('reward')!r}\n")
            f.write(json.dumps(s) + "\n")
    totals["wall_s"] = round(time.perf_counter() - start, 1)
    totals["samples"] = len(samples)
    print(json.dumps({"minutes": rows, "totals": totals}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
