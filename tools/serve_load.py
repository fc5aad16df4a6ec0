#!/usr/bin/env python3
"""Bounded load test for `polar serve`: a fixed number of requests from several concurrent clients.

Each request carries --batch formatted strings built the way POLAR's RewardModelClient builds them
(prompt\\nreference<|reward|>prompt\\noutput[UNUSED_TOKEN_130]) and posts them as the chosen server
type does. Prints one JSON line: sequences/s, requests/s, p50/p99 request latency, errors.
With --big N one more client sends requests of N sequences (as verl sends a whole batch in one
call) back to back while the others run; its requests are reported apart ("big_*"), so the small
clients' p50/p99 can be compared with a run without it.
Standard library only.
"""
import argparse
import http.client
import json
import sys
import threading
import time


def text(v):
    return "\n".join(m["content"] for m in v) if isinstance(v, list) else v


def load_records(path):
    """(prompt, reference, output) from scoring lines or both outputs of preference lines."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            outputs = [r["output"]] if "output" in r else [r["chosen"], r["rejected"]]
            out += [(text(r["prompt"]), text(r["reference"]), text(o)) for o in outputs]
    return out


def request_body(kind, strings):
    if kind == "sglang":
        return "/classify", {"model": "polar", "text": strings}
    return "/pooling", {"input": strings}


def parse_rewards(kind, body):
    if kind == "sglang":
        return [e["embedding"][0] for e in body]
    if kind == "lmdeploy":
        return [e["data"] for e in body["data"]]
    return [e["data"][-1][0] for e in body["data"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--input", required=True, help="JSONL with prompt/reference and output or chosen/rejected")
    ap.add_argument("--server-type", default="vllm", choices=["vllm", "lmdeploy", "sglang"])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200, help="total requests, shared by the clients")
    ap.add_argument("--batch", type=int, default=16, help="sequences per request")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--big", type=int, default=0, help="sequences per request of one extra client")
    a = ap.parse_args()

    records = load_records(a.input)
    strings = [f"{p}\n{r}<|reward|>{p}\n{o}[UNUSED_TOKEN_130]" for p, r, o in records]
    next_request = [0]
    lock = threading.Lock()
    latencies, errors, sequences = [], [], [0]

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=a.timeout)
        while True:
            with lock:
                i = next_request[0]
                if i >= a.requests:
                    break
                next_request[0] += 1
            batch = [strings[(i * a.batch + k) % len(strings)] for k in range(a.batch)]
            path, body = request_body(a.server_type, batch)
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                res = conn.getresponse()
                payload = res.read()
                dt = time.perf_counter() - t0
                if res.status != 200:
                    raise RuntimeError(f"status {res.status}: {payload[:200]!r}")
                rewards = parse_rewards(a.server_type, json.loads(payload))
                if len(rewards) != len(batch):
                    raise RuntimeError(f"{len(rewards)} rewards for {len(batch)} sequences")
                with lock:
                    latencies.append(dt)
                    sequences[0] += len(batch)
            except Exception as e:  # counted and reported; the run continues
                with lock:
                    errors.append(str(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=a.timeout)
        conn.close()

    done = threading.Event()
    big_latencies, big_sequences = [], [0]

    def big_client():
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=max(a.timeout, 600))
        batch = [strings[k % len(strings)] for k in range(a.big)]
        path, body = request_body(a.server_type, batch)
        payload_text = json.dumps(body)
        while not done.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, payload_text, {"Content-Type": "application/json"})
                res = conn.getresponse()
                payload = res.read()
                if res.status != 200:
                    raise RuntimeError(f"big request: status {res.status}: {payload[:200]!r}")
                if len(parse_rewards(a.server_type, json.loads(payload))) != a.big:
                    raise RuntimeError("big request: wrong number of rewards")
                with lock:
                    big_latencies.append(time.perf_counter() - t0)
                    big_sequences[0] += a.big
            except Exception as e:
                with lock:
                    errors.append(str(e))
                return
        conn.close()

    big = threading.Thread(target=big_client) if a.big > 0 else None
    if big:
        big.start()
        time.sleep(0.5)  # the big request is queued before the small clients start
    start = time.perf_counter()  # the small clients' wall time
    threads = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done.set()
    if big:
        big.join()
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    print(json.dumps({
        "server_type": a.server_type, "clients": a.clients, "requests": a.requests, "batch": a.batch,
        "ok_requests": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
        "wall_s": round(wall, 3), "sequences_per_s": round(sequences[0] / wall, 1),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(pct(0.50) * 1000, 1), "p99_ms": round(pct(0.99) * 1000, 1),
        "big": a.big, "big_requests": len(big_latencies), "big_sequences": big_sequences[0],
        "big_latency_s": [round(x, 2) for x in big_latencies]}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
