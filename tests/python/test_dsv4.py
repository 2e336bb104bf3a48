"""The Python module: goldens, numpy in/out, errors, lifetimes, sampler, snapshots."""
import json
import os
import struct
import threading

import numpy as np
import pytest

import dsv4

DATA = os.environ.get("DSV4_TEST_DATA", os.path.join(os.path.dirname(__file__), "..", "data"))
OFFICIAL = os.path.join(DATA, "goldens", "official_a")


def read_golden(case_dir):
    with open(os.path.join(case_dir, "golden.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()

    def get(name, dtype):
        b, e = header[name]["data_offsets"]
        return np.frombuffer(body[b:e], dtype=dtype).reshape(header[name]["shape"])

    return get("input_ids", np.int64)[0], get("logits_full", np.float32)


@pytest.fixture(scope="module")
def model():
    return dsv4.Model(OFFICIAL)


@pytest.fixture(scope="module")
def golden():
    return read_golden(OFFICIAL)


def rel_err(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))


def test_official_a_matches_golden(model, golden):
    ids, ref = golden
    s = dsv4.Session(model, threads=2)
    out = s.forward(ids[:97], all=True)
    assert out.dtype == np.float32 and out.shape == (97, model.vocab_size)
    rest = s.forward(list(map(int, ids[97:])), all=True)
    got = np.concatenate([out, rest])
    assert rel_err(got, ref) < 1e-4
    assert (got.argmax(-1) == ref.argmax(-1)).all()
    assert s.position == len(ids)


def test_zero_copy_view_is_read_only_and_keeps_session_alive(model, golden):
    ids, ref = golden
    s = dsv4.Session(model)
    view = s.forward(ids[:10], copy=False)
    assert not view.flags.writeable
    assert rel_err(view, ref[9]) < 1e-4
    del s  # the view holds a reference to the session
    assert np.isfinite(view).all()


def test_errors_are_typed(model):
    with pytest.raises(dsv4.IoError, match="does not exist"):
        dsv4.Model("/nonexistent/dsv4-model")
    s = dsv4.Session(model)
    with pytest.raises(dsv4.InvalidArgument, match="outside the vocabulary"):
        s.forward([1, model.vocab_size])
    with pytest.raises(dsv4.InvalidArgument):
        s.forward([])
    with pytest.raises(TypeError, match="integer array"):
        s.forward(np.array([1.5, 2.0]))
    with pytest.raises(TypeError):
        s.forward(["a"])
    assert s.position == 0  # rejected calls change nothing
    small = dsv4.Session(model, max_context=4)
    with pytest.raises(dsv4.CapacityError):
        small.forward([1, 2, 3, 4, 5])
    assert issubclass(dsv4.CapacityError, dsv4.Error)


def test_closed_session_refuses_use(model):
    s = dsv4.Session(model)
    s.forward([1, 2, 3])
    s.close()
    assert s.closed
    with pytest.raises(ValueError, match="closed"):
        s.forward([1])
    with dsv4.Session(model) as t:
        t.forward([1])
    with pytest.raises(ValueError):
        t.position


def test_snapshot_and_fork_continue_like_recomputing(model, golden):
    ids, ref = golden
    s = dsv4.Session(model)
    s.forward(ids[:120])
    snap = s.snapshot()
    assert snap.position == 120
    f = s.fork()
    a = f.forward(ids[120:160], all=True)
    s.forward([3, 3, 3])
    s.restore(snap)
    b = s.forward(ids[120:160], all=True)
    assert rel_err(a, ref[120:160]) < 1e-4
    assert rel_err(b, ref[120:160]) < 1e-4


def test_sampler_determinism_and_custom_stage(model):
    logits = np.random.default_rng(0).normal(size=model.vocab_size).astype(np.float32)
    a = dsv4.Sampler(seed=5, temperature=0.8, top_p=0.9)
    b = dsv4.Sampler(seed=5, temperature=0.8, top_p=0.9)
    assert [a.sample(logits) for _ in range(50)] == [b.sample(logits) for _ in range(50)]
    assert dsv4.Sampler.greedy().sample(logits) == int(logits.argmax())
    banned = int(logits.argmax())

    def ban(ids, lg):
        lg[ids == banned] = -np.inf

    g = dsv4.Sampler.empty(0).add_custom(ban).add_greedy()
    assert g.stages == ["custom_python", "greedy"]
    assert g.sample(logits) == int(np.argsort(-logits)[1])

    def boom(ids, lg):
        raise KeyError("from the stage")

    with pytest.raises(KeyError):
        dsv4.Sampler.empty(0).add_custom(boom).sample(logits)


def test_generate_streams_and_cancels(model, golden):
    ids, _ = golden
    s = dsv4.Session(model)
    seen = []
    out = s.generate(ids[:20], dsv4.Sampler.greedy(), max_tokens=10, on_token=lambda t: seen.append(t) or len(seen) < 4)
    assert out == seen and len(out) == 4
    more = s.generate([out[-1]], dsv4.Sampler.greedy(), max_tokens=3)
    ref = dsv4.Session(model).generate(ids[:20], dsv4.Sampler.greedy(), max_tokens=7)
    assert out + more == ref


def test_forward_releases_the_gil(model, golden):
    ids, _ = golden
    sessions = [dsv4.Session(model, threads=1) for _ in range(2)]
    results = [None, None]

    def work(i):
        results[i] = sessions[i].forward(ids[:64])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(results[0], results[1])


def test_forward_batch_equals_each_session_alone(model, golden):
    ids, logits = golden
    ids = [int(t) for t in ids]
    starts = [0, 17, 60]
    batch, alone = [], []
    for p in starts:
        a, b = dsv4.Session(model), dsv4.Session(model)
        if p:
            a.forward(ids[:p])
            b.forward(ids[:p])
        batch.append(a)
        alone.append(b)
    for step in range(4):
        items = []
        for i, s in enumerate(batch):
            n = 9 if (i == 0 and step == 0) else 1  # a fresh session's prompt joins running decodes
            items.append((s, ids[s.position:s.position + n]))
        out = dsv4.forward_batch(items)
        assert len(out) == len(items)
        for (s, toks), got, ref_s in zip(items, out, alone):
            ref = ref_s.forward(toks)
            assert got.shape == (model.vocab_size,)
            assert rel_err(got, ref) <= 1e-5
            assert rel_err(got, logits[s.position - 1]) <= 1e-4
    # validation before any change
    pos = [s.position for s in batch]
    with pytest.raises(ValueError):
        dsv4.forward_batch([(batch[0], [1]), (batch[0], [2])])
    with pytest.raises(dsv4.InvalidArgument):
        dsv4.forward_batch([(batch[0], [1]), (batch[1], [model.vocab_size])])
    with pytest.raises(TypeError):
        dsv4.forward_batch([(batch[0],)])
    assert [s.position for s in batch] == pos


def test_model_load_options_and_backend_info():
    m = dsv4.Model(OFFICIAL, backend="cpu", device=0, threads=1)
    info = m.backend
    assert info["name"] == "cpu" and info["threads"] == 1 and "FP4" in info["formats"]
    assert "cpu" in dsv4.backends()
    assert dsv4.devices()[0]["backend"] == "cpu"
    with pytest.raises(dsv4.UnsupportedError):
        dsv4.Model(OFFICIAL, backend="cuda", device=99)  # not built, or no such device
    with pytest.raises(dsv4.UnsupportedError):
        dsv4.Model(OFFICIAL, device=2)
    import pathlib
    seen = []
    m2 = dsv4.Model(pathlib.Path(OFFICIAL), progress=lambda f, stage: seen.append((f, stage)))
    assert seen and seen[-1] == (1.0, "ready")
    assert m2.vocab_size == m.vocab_size


def test_sampler_sees_edits_after_top_k():
    logits = np.full(12, -10.0, dtype=np.float32)
    logits[5], logits[7], logits[9] = 3, 2, 1
    s = dsv4.Sampler.empty(0).add_top_k(3).add_logit_bias({9: 100.0}).add_greedy()
    assert s.sample(logits) == 9


def test_cache_types_and_pool(model, golden):
    ids, logits = golden
    f32 = dsv4.Session(model)
    assert f32.cache_type == "f32"
    assert f32.max_context == 1048576  # the model's maximum
    fresh = f32.memory()
    assert fresh["state_bytes"] < fresh["state_max_bytes"]
    out32 = f32.forward(ids, all=True)
    assert rel_err(out32, logits) < 1e-4
    assert f32.memory()["state_bytes"] > fresh["state_bytes"]  # a cache block
    for t, tol in (("bf16", 0.05), ("fp8", 0.3)):
        s = dsv4.Session(model, cache_type=t)
        assert s.cache_type == t
        out = s.forward(ids, all=True)
        assert rel_err(out, out32) < tol
        assert model.session_state_bytes(1 << 20, t) < model.session_state_bytes(1 << 20)
    pool = model.cache_pool()
    assert pool["in_use_bytes"] > 0 and pool["block_tokens"] == 1024
    with pytest.raises(dsv4.InvalidArgument, match="cache type"):
        dsv4.Session(model, cache_type="fp4")
