"""A custom sampling loop in Python: the same chain as the C and C++ examples (ban ids divisible
by 7, temperature 0.8, top-k 20, seeded draw), so all three print the same tokens and hash.

Usage: python3 custom_sampling.py MODEL_DIR
"""
import sys

import numpy as np

import dsv4


def ban_multiples_of_7(ids, logits):
    logits[ids % 7 == 0] = -np.inf


def fnv1a(arr):
    h = 1469598103934665603
    for b in np.ascontiguousarray(arr, dtype=np.float32).tobytes():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    if len(sys.argv) < 2:
        print(f"usage: {sys.argv[0]} MODEL_DIR", file=sys.stderr)
        return 2
    model = dsv4.Model(sys.argv[1])
    session = dsv4.Session(model, threads=2)
    sampler = dsv4.Sampler.empty(1234).add_custom(ban_multiples_of_7).add_temperature(0.8).add_top_k(20).add_dist()
    logits = session.forward([0, 5, 7, 9, 11, 300, 42, 17])
    tokens = []
    for _ in range(16):
        tok = sampler.sample(logits)
        tokens.append(tok)
        logits = session.forward([tok])
    print("tokens: " + " ".join(map(str, tokens)))
    print(f"logits_hash: {fnv1a(logits):016x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
