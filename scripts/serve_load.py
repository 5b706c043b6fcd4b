#!/usr/bin/env python3
"""Load generator for `biomedq serve` (standard library only): at each concurrency, that many clients send streaming
/v1/completions requests back to back (greedy, fixed max_tokens, usage requested in the stream), and the run reports
requests/s, output tokens/s over the level's wall time, and time to first token p50/p95. Every response is checked
(HTTP 200, a stream ending in [DONE] with usage) and failures are counted; any failure makes the exit status 1.
Usage:
    serve_load.py --port 8080 --clients 1,8,32,128 --requests 4 --prompt-words 400 --max-tokens 128 --out load.json
"""
import argparse, http.client, json, statistics, sys, threading, time


def one_request(port, prompt, max_tokens, timeout):
    """Sends one streaming completion; returns (ttft_s, total_s, completion_tokens, prompt_tokens, error)."""
    body = json.dumps({"model": "local", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}})
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            return None, None, 0, 0, f"HTTP {resp.status}: {resp.read()[:200]!r}"
        ttft, usage, done, chunks = None, None, False, 0
        for raw in resp:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            event = json.loads(data)
            if event.get("choices"):
                chunks += 1
                if ttft is None:
                    ttft = time.perf_counter() - start
            if event.get("usage"):
                usage = event["usage"]
        total = time.perf_counter() - start
        if not done:
            return None, None, 0, 0, "stream ended without [DONE]"
        if usage is None:
            return None, None, 0, 0, "no usage in the stream"
        return ttft, total, usage["completion_tokens"], usage["prompt_tokens"], None
    except Exception as e:  # a failed request is counted and reported, the run goes on
        return None, None, 0, 0, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def percentile(values, q):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def run_level(port, clients, requests, prompt_words, max_tokens, timeout):
    results, lock = [], threading.Lock()

    def client(c):
        for r in range(requests):
            # Distinct prompts of the same length: no two clients ask the same thing.
            words = [f"w{(c * 7919 + r * 104729 + i) % 5000}" for i in range(prompt_words)]
            out = one_request(port, " ".join(words), max_tokens, timeout)
            with lock:
                results.append(out)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ok = [r for r in results if r[4] is None]
    errors = [r[4] for r in results if r[4] is not None]
    ttfts = [r[0] for r in ok if r[0] is not None]
    out_tokens = sum(r[2] for r in ok)
    return {
        "clients": clients, "requests": len(results), "failed": len(errors), "errors": errors[:5],
        "wall_s": wall, "requests_per_s": len(ok) / wall, "output_tokens_per_s": out_tokens / wall,
        "output_tokens": out_tokens,
        "mean_prompt_tokens": statistics.mean(r[3] for r in ok) if ok else None,
        "mean_completion_tokens": statistics.mean(r[2] for r in ok) if ok else None,
        "ttft_ms_p50": 1000 * percentile(ttfts, 0.50) if ttfts else None,
        "ttft_ms_p95": 1000 * percentile(ttfts, 0.95) if ttfts else None,
        "latency_s_mean": statistics.mean(r[1] for r in ok) if ok else None,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", default="1,8,32,128")
    ap.add_argument("--requests", type=int, default=4, help="requests per client, back to back")
    ap.add_argument("--prompt-words", type=int, default=400)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--label", default="")
    ap.add_argument("--out")
    a = ap.parse_args()
    one_request(a.port, "warm up", 8, a.timeout)  # graphs and first-call costs out of the first level
    levels = []
    for c in (int(x) for x in a.clients.split(",")):
        level = run_level(a.port, c, a.requests, a.prompt_words, a.max_tokens, a.timeout)
        level["label"] = a.label
        levels.append(level)
        print(f"{a.label} clients {c:>3}: {level['requests_per_s']:.2f} req/s, {level['output_tokens_per_s']:.0f} "
              f"output tok/s, TTFT p50 {level['ttft_ms_p50'] or 0:.0f} ms p95 {level['ttft_ms_p95'] or 0:.0f} ms, "
              f"prompt {level['mean_prompt_tokens'] or 0:.0f} tok, failed {level['failed']}", flush=True)
        for e in level["errors"][:2]:
            print(f"  error: {e}", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(levels, f, indent=1)
    sys.exit(1 if any(l["failed"] for l in levels) else 0)


if __name__ == "__main__":
    main()
