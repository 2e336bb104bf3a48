"""Load on `dsv4 serve`: N concurrent streaming completions (different prompts, fixed length),
aggregate decode tokens/s, per-stream tokens/s and time to first token; and the server's
overhead against the same generation through the library directly (Python `Session.complete`).

    python3 examples/bench/serve_load.py [--cli build/bin/dsv4] [--model models/demo-code]
                                         [--streams 1,4,16] [--tokens 128] [--parallel 16]
    python3 examples/bench/serve_load.py --synthetic flash --layers 4 --tokenizer tests/data/tokenizer/tokenizer.json

With --synthetic the server runs random weights at real V4 dimensions (as `dsv4 bench`); every
request asks for log-probabilities so that each token is an event even when it carries no text,
and the library comparison is left out.

Standard library only (http.client); loopback.
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

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def start(cli, source, parallel, context):
    p = subprocess.Popen([cli, "serve", *source, "--port", "0", "--parallel", str(parallel), "--queue", "64",
                          "--context", str(context)], stderr=subprocess.PIPE, text=True)
    m = None
    while m is None:
        line = p.stderr.readline()
        if not line:
            raise SystemExit("the server did not start")
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    threading.Thread(target=p.stderr.read, daemon=True).start()
    return p, int(m.group(1))


LOGPROBS = {}


def one_stream(port, prompt, tokens, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body=json.dumps({"prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
                                                          "stream_options": {"include_usage": True}, **LOGPROBS}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    first, n = None, 0
    for line in r:
        line = line.decode().strip()
        if not line.startswith("data: {"):
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            n = ev["usage"]["completion_tokens"]
        elif ev["choices"] and first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    c.close()
    out.append({"ttft": first - t0, "total": end - t0, "tokens": n, "decode_tps": (n - 1) / (end - first) if n > 1 else 0.0})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "bin", "dsv4"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo-code"))
    ap.add_argument("--streams", default="1,4,16")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--synthetic", help="flash or pro: random weights at V4 size instead of --model")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "tests", "data", "tokenizer", "tokenizer.json"))
    a = ap.parse_args()
    if a.synthetic:
        source = ["--synthetic", a.synthetic, "--layers", str(a.layers), "--tokenizer", a.tokenizer]
        LOGPROBS["logprobs"] = 0
    else:
        source = ["-m", a.model]
    proc, port = start(a.cli, source, a.parallel, a.context)
    try:
        prompts = [f"def f{i}(x):\n    return x * {i}\n\n\ndef g{i}(y):\n" for i in range(64)]
        one_stream(port, "# warm-up\n", 8, [])  # warm-up (another prompt: TTFT below includes the prefill)
        print(f"{'streams':>8} {'aggregate tok/s':>16} {'per-stream tok/s':>17} {'TTFT median ms':>15} {'TTFT max ms':>12} {'wall s':>7}")
        for n in [int(x) for x in a.streams.split(",")]:
            res, th = [], []
            t0 = time.perf_counter()
            for i in range(n):
                th.append(threading.Thread(target=one_stream, args=(port, prompts[i], a.tokens, res)))
                th[-1].start()
            for t in th:
                t.join()
            wall = time.perf_counter() - t0
            agg = sum(r["tokens"] for r in res) / wall
            print(f"{n:>8} {agg:>16.1f} {statistics.median(r['decode_tps'] for r in res):>17.1f} "
                  f"{1000 * statistics.median(r['ttft'] for r in res):>15.1f} {1000 * max(r['ttft'] for r in res):>12.1f} {wall:>7.2f}")
    finally:
        proc.terminate()
        proc.wait()
    if a.synthetic:
        return
    # The same single generation through the library, without HTTP.
    sys.path.insert(0, os.path.join(ROOT, "build", "python"))
    import dsv4
    model = dsv4.Model(a.model)
    tok = dsv4.Tokenizer(os.path.join(a.model, "tokenizer.json"))
    s = dsv4.Session(model, max_context=a.context)
    s.complete(tok, prompts[0], max_tokens=8, temperature=0)
    s.reset()
    t0 = time.perf_counter()
    r = s.complete(tok, prompts[0], max_tokens=a.tokens, temperature=0)
    lib = time.perf_counter() - t0
    res = []
    proc, port = start(a.cli, source, a.parallel, a.context)
    try:
        one_stream(port, "# warm-up\n", 8, [])
        one_stream(port, prompts[0], a.tokens, res)
    finally:
        proc.terminate()
        proc.wait()
    http_s = res[0]["total"]
    print(f"\none stream of {r['completion_tokens']} tokens: library {lib * 1000:.1f} ms, server {http_s * 1000:.1f} ms "
          f"(overhead {100 * (http_s - lib) / lib:+.1f}%, {1000 * (http_s - lib) / max(1, r['completion_tokens']):.2f} ms per token)")


if __name__ == "__main__":
    main()
