"""Python embedding ergonomics: paths, array-like tokens, cancellation, logging, docstrings."""
import array
import os
import pathlib

import numpy as np
import pytest

import dsv4

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
DEMO = ROOT / "models" / "demo-code"
DATA = pathlib.Path(os.environ.get("DSV4_TEST_DATA", ROOT / "tests" / "data"))
GOLDEN = DATA / "goldens" / "official_a"


@pytest.fixture(scope="module")
def model():
    return dsv4.Model(GOLDEN)  # a pathlib.Path


def test_paths_and_directories():
    by_dir = dsv4.Tokenizer(DEMO)  # a model directory where the tokenizer file is meant
    by_file = dsv4.Tokenizer(str(DEMO / "tokenizer.json"))
    by_bytes = dsv4.Tokenizer(os.fsencode(DEMO))
    text = "def add(a, b):\n    return a + b"
    assert by_dir.encode(text) == by_file.encode(text) == by_bytes.encode(text)
    with pytest.raises(dsv4.IoError):
        dsv4.Tokenizer(DEMO / "missing")
    with pytest.raises(TypeError):
        dsv4.Model(42)


def test_tokens_from_any_integer_sequence_or_buffer(model):
    ids = [0, 17, 4, 99, 3]
    ref = dsv4.Session(model).forward(ids)
    for form in (tuple(ids), np.array(ids, dtype=np.int64), np.array(ids, dtype=np.uint16), array.array("i", ids),
                 memoryview(array.array("q", ids)), range(0, 0) if False else ids):
        got = dsv4.Session(model).forward(form)
        assert np.array_equal(got, ref), type(form)
    for bad, err in (("hello", TypeError), (b"\x00\x01", TypeError), (np.array([1.5, 2.0]), TypeError),
                     (np.zeros((2, 2), dtype=np.int32), ValueError), (7, TypeError)):
        with pytest.raises(err):
            dsv4.Session(model).forward(bad)


def test_array_protocols_as_torch_tensors_use_them(model):
    ids = np.array([0, 17, 4, 99, 3], dtype=np.int64)
    ref = dsv4.Session(model).forward(ids)

    class OnlyArray:  # __array__ only (torch.Tensor has it)
        def __array__(self, dtype=None, copy=None):
            return ids

    class OnlyDLPack:  # __dlpack__ only (the DLPack protocol torch and JAX speak)
        def __dlpack__(self, stream=None):
            return ids.__dlpack__()

        def __dlpack_device__(self):
            return ids.__dlpack_device__()
    assert np.array_equal(dsv4.Session(model).forward(OnlyArray()), ref)
    if hasattr(np, "from_dlpack"):
        assert np.array_equal(dsv4.Session(model).forward(OnlyDLPack()), ref)


def test_torch_cpu_tensor_when_torch_is_installed(model):
    torch = pytest.importorskip("torch")
    ids = [0, 17, 4, 99, 3]
    ref = dsv4.Session(model).forward(ids)
    assert np.array_equal(dsv4.Session(model).forward(torch.tensor(ids)), ref)


def test_cancel_a_long_forward_and_continue(model):
    ids = list(range(1, 41))
    ref = dsv4.Session(model, max_batch=8)
    ref.forward(ids[:16])
    ref16 = ref.last_logits()
    ref.forward(ids[16:])
    ref40 = ref.last_logits()

    s = dsv4.Session(model, max_batch=8)
    asked = []
    s.set_cancel(lambda: asked.append(1) or len(asked) == 2)
    with pytest.raises(dsv4.CancelledError):
        s.forward(ids)
    assert s.position == 16
    assert np.allclose(s.last_logits(), ref16, rtol=0, atol=1e-5)
    s.set_cancel(None)
    out = s.forward(ids[16:])
    assert np.allclose(out, ref40, rtol=0, atol=1e-5)

    def boom():
        raise ValueError("host says stop")
    s.reset()
    s.set_cancel(boom)
    with pytest.raises(ValueError, match="host says stop"):
        s.forward(ids)
    assert s.position == 8
    s.set_cancel(None)
    assert np.allclose(s.forward(ids[8:]), ref40, rtol=0, atol=1e-5)
    with pytest.raises(TypeError):
        s.set_cancel(3)


def test_log_callback_and_level():
    got = []
    try:
        dsv4.set_log_level("info")
        assert dsv4.log_level() == "info"
        dsv4.set_log_callback(lambda level, msg: got.append((level, msg)))
        dsv4.Model(GOLDEN)
        assert any(level == "info" and "loaded" in msg for level, msg in got), got
        got.clear()
        dsv4.set_log_level("off")
        dsv4.Model(GOLDEN)
        assert got == []
        with pytest.raises(ValueError):
            dsv4.set_log_level("loud")
    finally:
        dsv4.set_log_callback(None)
        dsv4.set_log_level("warning")


def test_every_public_object_has_a_docstring_and_the_stub_names_it():
    stub = (pathlib.Path(dsv4.__file__).parent / "__init__.pyi").read_text()
    missing_doc, missing_stub = [], []
    for name in dir(dsv4):
        if name.startswith("_"):
            continue
        obj = getattr(dsv4, name)
        if isinstance(obj, type(os)):
            continue
        if not (getattr(obj, "__doc__", None) or "").strip():
            missing_doc.append(name)
        if name not in stub:
            missing_stub.append(name)
        if isinstance(obj, type):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not callable(member) and not isinstance(member, property):
                    continue
                if not (getattr(member, "__doc__", None) or "").strip():
                    missing_doc.append(f"{name}.{attr}")
                if f"def {attr}" not in stub and f"{attr}:" not in stub:
                    missing_stub.append(f"{name}.{attr}")
    assert not missing_doc, missing_doc
    assert not missing_stub, missing_stub


def test_state_file_round_trip(model, tmp_path):
    ids = list(range(1, 41))
    a = dsv4.Session(model)
    a.forward(ids[:25])
    a.save_state(tmp_path / "s.dsv4s", metadata=b"25 tokens")
    want = a.forward(ids[25:])
    b = dsv4.Session(model)
    assert b.load_state(str(tmp_path / "s.dsv4s")) == b"25 tokens"
    assert b.position == 25
    assert np.allclose(b.forward(ids[25:]), want, rtol=0, atol=1e-6)
    (tmp_path / "bad").write_bytes(b"DSV4SESS" + b"\0" * 40)
    with pytest.raises(dsv4.FormatError):
        b.load_state(tmp_path / "bad")
    assert b.position == 40
