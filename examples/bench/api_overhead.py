"""Per-decode-step time through the Python module (copying and zero-copy logits) on one model.
Compare with `bench_api MODEL_DIR` (C++ and C ABI) run on the same machine.
Usage: python3 api_overhead.py MODEL_DIR [steps]"""
import sys
import time

import dsv4


def main():
    path = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    model = dsv4.Model(path)
    V = model.vocab_size
    prompt = [(i * 37 + 5) % V for i in range(32)]
    for copy in (True, False):
        s = dsv4.Session(model, threads=2)
        s.forward(prompt)
        t0 = time.perf_counter()
        for i in range(steps):
            s.forward([(i * 13 + 1) % V], copy=copy)
        us = (time.perf_counter() - t0) / steps * 1e6
        print(f"decode step Python (copy={copy!s:5}) {us:8.1f} us")
    sampler = dsv4.Sampler(seed=1, temperature=0.7, top_k=50)
    import numpy as np
    logits = np.random.default_rng(1).normal(0, 3, 129280).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(300):
        sampler.sample(logits)
    print(f"sampler top-k 50 from Python {((time.perf_counter() - t0) / 300 * 1e6):8.1f} us/token")


if __name__ == "__main__":
    main()
