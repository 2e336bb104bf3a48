"""Python text API: Tokenizer, ChatFormat, the generate iterator on the demo model."""
import json
import os

import pytest

import dsv4

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DEMO = os.path.join(ROOT, "models", "demo-code")
DATA = os.environ.get("DSV4_TEST_DATA", os.path.join(ROOT, "tests", "data"))


@pytest.fixture(scope="module")
def tok():
    return dsv4.Tokenizer(os.path.join(DEMO, "tokenizer.json"))


def test_tokenizer_goldens(tok):
    with open(os.path.join(DATA, "tokenizer", "encodings.json"), encoding="utf-8") as f:
        cases = json.load(f)
    bad = [c["text"] for c in cases if tok.encode(c["text"]) != c["ids"]]
    assert not bad, bad[:3]
    assert all(tok.decode(c["ids"]) == c["decoded"] for c in cases)


def test_stream_decoder_holds_back_partial_characters(tok):
    ids = tok.encode("emoji 👍🏽 深度")
    dec = dsv4.StreamDecoder(tok)
    pieces = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(pieces) == "emoji 👍🏽 深度"


def test_chat_format(tok):
    f = dsv4.ChatFormat(tok)
    msgs = [{"role": "user", "content": "Hello, 世界"}]
    assert f.render(msgs) == "<｜begin▁of▁sentence｜><｜User｜>Hello, 世界<｜Assistant｜></think>"
    assert f.render(msgs, think="high").endswith("<｜Assistant｜><think>")
    assert f.encode(msgs)[0] == tok.token_to_id("<｜begin▁of▁sentence｜>")
    with pytest.raises(dsv4.InvalidArgument):
        f.render(msgs, think="medium")
    with pytest.raises(dsv4.InvalidArgument, match="not valid UTF-8"):
        tok.encode(b"ok \xc3(")
    assert tok.encode("def".encode()) == tok.encode("def")


def test_generate_iterator_reproduces_reference(tok):
    with open(os.path.join(DEMO, "reference.json"), encoding="utf-8") as f:
        ref = json.load(f)["generations"][0]
    model = dsv4.Model(DEMO)
    session = dsv4.Session(model)
    pieces = list(dsv4.generate(session, tok, ref["prompt"], dsv4.Sampler.greedy(), max_tokens=32))
    assert "".join(pieces) == ref["text"]
    # thinking mode yields (channel, text) pairs
    s2 = dsv4.Session(model)
    ids = dsv4.ChatFormat(tok).encode([{"role": "user", "content": "def add(a, b):"}], think="high")
    out = list(dsv4.generate(s2, tok, ids, dsv4.Sampler.greedy(), max_tokens=8, think="high"))
    assert all(ch in ("reasoning", "answer") for ch, _ in out)


def test_one_generation_layer_chat_complete_and_stream(tok):
    model = dsv4.Model(DEMO)
    prompt = "import os\nimport sys\n\n\ndef read_config(path):\n"
    full = dsv4.Session(model).complete(tok, prompt, max_tokens=24, temperature=0)
    assert full["finish_reason"] == "length" and full["completion_tokens"] == 24
    assert full["content"] == tok.decode(full["tokens"])
    # A stop string taken from the greedy text: the text ends right before it, not including it.
    stop = full["content"][10:14]
    cut = dsv4.Session(model).complete(tok, prompt, max_tokens=24, temperature=0, stop=[stop])
    assert cut["finish_reason"] == "stop"
    assert cut["content"] == full["content"][: full["content"].index(stop)]
    # Streaming deltas add up to the result; False cancels.
    seen = []
    r = dsv4.Session(model).complete(tok, prompt, max_tokens=24, temperature=0, on_delta=lambda d: seen.append(d["content"]))
    assert "".join(seen) == r["content"] == full["content"]
    n = [0]
    def cancel(d):
        n[0] += 1
        return n[0] < 3
    c = dsv4.Session(model).complete(tok, prompt, max_tokens=24, temperature=0, on_delta=cancel)
    assert c["finish_reason"] == "cancelled" and c["completion_tokens"] == 3
    # chat() renders the messages in the V4 chat format, as the CLI does.
    msgs = [{"role": "user", "content": "def add(a, b):"}]
    ch = dsv4.Session(model).chat(tok, msgs, max_tokens=8, temperature=0, logprobs=2)
    assert ch["prompt_tokens"] == len(dsv4.ChatFormat(tok).encode(msgs))
    assert len(ch["logprobs"]) == ch["completion_tokens"] and len(ch["logprobs"][0]["top"]) == 2
    # The iterator takes messages too and agrees with chat().
    pieces = list(dsv4.generate(dsv4.Session(model), tok, msgs, max_tokens=8))
    assert "".join(pieces) == ch["content"]
    with pytest.raises(dsv4.InvalidArgument):
        dsv4.Session(model).complete(tok, prompt, temperature=float("nan"))
    with pytest.raises(dsv4.InvalidArgument):
        dsv4.Session(model).complete(tok, prompt, top_p=2.0)


def test_decode_errors_behave_as_bytes_decode(tok):
    # A lone continuation byte: a token that is not valid UTF-8 on its own.
    i = next(i for i in range(tok.vocab_size) if not _utf8(tok.decode_bytes([i])))
    raw = tok.decode_bytes([i])
    assert tok.decode([i]) == raw.decode("utf-8", errors="replace")
    assert tok.decode([i], errors="ignore") == raw.decode("utf-8", errors="ignore")
    with pytest.raises(UnicodeDecodeError):
        tok.decode([i], errors="strict")
    with pytest.raises(LookupError):
        tok.decode([i], errors="no-such-handler")
    assert tok.decode(tok.encode("héllo"), errors="strict") == "héllo"


def _utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@pytest.mark.parametrize("call", ["generate", "complete"])
def test_ctrl_c_stops_generation_and_keeps_the_tokens(tok, call):
    import signal
    import threading
    import time

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    m = dsv4.Model(DEMO)
    s = dsv4.Session(m, max_context=200000)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt) as exc:
            if call == "generate":
                s.generate(tok.encode("def main():\n"), dsv4.Sampler.greedy(), max_tokens=190000)
            else:
                s.complete(tok, "def main():\n", max_tokens=190000, temperature=0, stop_tokens=[])
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 30  # stopped at once, not after 190000 tokens
    partial = exc.value.partial
    tokens = partial if call == "generate" else partial["tokens"]
    assert 0 < len(tokens) < 190000
    if call == "complete":
        assert partial["finish_reason"] == "cancelled"
    # The session is consistent and usable: the last token is sampled, not yet fed.
    assert s.position == len(tok.encode("def main():\n")) + len(tokens) - 1
    s.forward([tokens[-1]])
