"""dsv4 serve end to end with clients no one here wrote (http.client / urllib, and curl): the
OpenAI chat and completion APIs, streaming, greedy equality with `dsv4 generate`, concurrent
streams kept apart, cancellation by disconnect, prefix reuse, every bad-input class.
Loopback only; each server starts on a free port."""
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

CLI = os.environ.get("DSV4_CLI", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin", "dsv4"))
DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "models", "demo-code")
PROMPT = "import os\nimport sys\n\n\ndef read_config(path):\n"


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([CLI, "serve", "-m", DEMO, "--port", "0", *args], stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert m, line
        self.port = int(m.group(1))
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(self, method, path, body=None, headers=None, raw=None):
        c = self.conn()
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        c.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        return r.status, (json.loads(text) if text.strip() else None)

    def chat(self, content, **kw):
        return self.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": content}], **kw})

    def stream(self, path, body):
        """The SSE events of a streaming request, as parsed JSON (without [DONE])."""
        c = self.conn()
        c.request("POST", path, body=json.dumps({**body, "stream": True}), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200
        events, done = [], False
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            events.append(json.loads(line[6:]))
        c.close()
        assert done
        return events

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def srv():
    s = Server("--parallel", "4", "--queue", "16", "--context", "2048")
    yield s
    s.close()


def cli_generate(text, n):
    out = subprocess.run([CLI, "generate", "-m", DEMO, "-p", text, "--greedy", "-n", str(n)], capture_output=True, text=True, check=True)
    return out.stdout


def test_health_and_models(srv):
    st, h = srv.request("GET", "/health")
    assert st == 200 and h["status"] == "ok" and h["slots"] == 4
    st, m = srv.request("GET", "/v1/models")
    assert st == 200 and m["data"][0]["id"] == "demo-code"


def test_chat_greedy_equals_dsv4_generate_and_streaming_equals_plain(srv):
    text = "def add(a, b):"
    st, r = srv.chat(text, max_tokens=24, temperature=0)
    assert st == 200, r
    choice = r["choices"][0]
    assert choice["finish_reason"] in ("stop", "length")
    assert choice["message"]["content"] == cli_generate(text, 24)
    assert r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"]
    events = srv.stream("/v1/chat/completions", {"messages": [{"role": "user", "content": text}], "max_tokens": 24, "temperature": 0,
                                                 "stream_options": {"include_usage": True}})
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert content == choice["message"]["content"]
    assert events[-1]["usage"]["completion_tokens"] == r["usage"]["completion_tokens"]
    assert any(e["choices"] and e["choices"][0]["finish_reason"] for e in events)


def test_completions_logprobs_and_stop_strings(srv):
    st, r = srv.request("POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 20, "temperature": 0, "logprobs": 2})
    assert st == 200, r
    text = r["choices"][0]["text"]
    lp = r["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == 20 and all(v <= 0 for v in lp["token_logprobs"]) and all(len(t) == 2 for t in lp["top_logprobs"])
    stop = text[8:12]
    st, r2 = srv.request("POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 20, "temperature": 0, "stop": [stop]})
    assert r2["choices"][0]["finish_reason"] == "stop"
    assert r2["choices"][0]["text"] == text[: text.index(stop)]
    # chat logprobs in the OpenAI shape
    st, c = srv.chat("x = ", max_tokens=3, temperature=0, logprobs=True, top_logprobs=3)
    items = c["choices"][0]["logprobs"]["content"]
    assert len(items) == 3 and len(items[0]["top_logprobs"]) == 3 and isinstance(items[0]["bytes"], list)


def test_reasoning_content_is_separate(srv):
    st, r = srv.chat("def add(a, b):", max_tokens=16, temperature=0, reasoning_effort="high")
    assert st == 200, r
    msg = r["choices"][0]["message"]
    assert "reasoning_content" in msg
    assert "</think>" not in msg["content"] and "</think>" not in msg["reasoning_content"]


def test_eight_concurrent_streams_get_exactly_their_own_tokens(srv):
    prompts = [f"def f{i}(x):\n    return x + {i}\n\n\ndef g{i}(" for i in range(8)]
    alone = []
    for p in prompts:
        st, r = srv.request("POST", "/v1/completions", {"prompt": p, "max_tokens": 24, "temperature": 0})
        alone.append(r["choices"][0]["text"])
    got = [None] * 8

    def run(i):
        events = srv.stream("/v1/completions", {"prompt": prompts[i], "max_tokens": 24, "temperature": 0})
        got[i] = "".join(e["choices"][0]["text"] for e in events if e["choices"])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert got == alone
    assert len(set(alone)) > 1  # the prompts lead to different texts: a mix-up would show


def test_disconnect_frees_the_slot():
    s = Server("--parallel", "1", "--queue", "4")
    try:
        sock = socket.create_connection(("127.0.0.1", s.port))
        body = json.dumps({"prompt": PROMPT, "max_tokens": 100000, "stream": True, "temperature": 0})
        sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
        got = b""
        while b"data:" not in got:
            chunk = sock.recv(4096)
            assert chunk, "the server closed the stream"
            got += chunk
        sock.close()
        t0 = time.time()
        while s.request("GET", "/health")[1]["active"] != 0:
            assert time.time() - t0 < 5, "the slot was not freed after the client left"
            time.sleep(0.05)
        st, r = s.request("POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 4, "temperature": 0})
        assert st == 200 and r["usage"]["completion_tokens"] == 4
    finally:
        s.close()


def test_a_conversation_that_goes_on_reuses_its_prefix(srv):
    msgs = [{"role": "user", "content": "def add(a, b):"}]
    st, r1 = srv.request("POST", "/v1/chat/completions", {"messages": msgs, "max_tokens": 8, "temperature": 0})
    msgs += [{"role": "assistant", "content": r1["choices"][0]["message"]["content"]}, {"role": "user", "content": "def sub(a, b):"}]
    st, r2 = srv.request("POST", "/v1/chat/completions", {"messages": msgs, "max_tokens": 8, "temperature": 0})
    assert st == 200
    assert r2["usage"]["prompt_tokens_details"]["cached_tokens"] >= r1["usage"]["prompt_tokens"]


@pytest.mark.parametrize("body,status,param", [
    ('{"messages": [{"role": "user", "content": "x"}', 400, None),                      # malformed JSON
    ('[1, 2]', 400, None),                                                             # not an object
    ('{"messages": "hello"}', 400, "messages"),                                       # wrong type
    ('{"messages": []}', 400, "messages"),                                             # empty
    ('{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
    ('{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', 400, "max_tokens"),
    ('{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', 400, None),  # NaN is not JSON
    ('{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "temperature"),
    ('{"messages": [{"role": "user", "content": "x"}], "top_p": 1.5}', 400, "top_p"),
    ('{"messages": [{"role": "wizard", "content": "x"}]}', 400, "messages"),
    ('{"messages": [{"role": "user", "content": "x"}], "n": 2}', 400, "n"),
    ('{"messages": [{"role": "user", "content": "x"}], "stop": [""]}', 400, "stop"),
    ('{"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "extreme"}', 400, "reasoning_effort"),
    ('{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}', 400, "top_logprobs"),
    ('{"messages": ' + '['*60 + ']'*60 + '}', 400, None),                           # nesting
])
def test_bad_input_gets_an_openai_error(srv, body, status, param):
    st, r = srv.request("POST", "/v1/chat/completions", raw=body)
    assert st == status, r
    assert set(r["error"]) >= {"message", "type", "param", "code"}
    if param:
        assert r["error"]["param"] == param


def test_too_long_prompt_huge_body_and_bad_path(srv):
    st, r = srv.chat("x = 1\n" * 3000, max_tokens=4)
    assert st == 400 and r["error"]["code"] == "context_length_exceeded"
    st, r = srv.request("POST", "/v1/chat/completions", raw='{"messages": [{"role": "user", "content": "' + "a" * (2 << 20) + '"}]}')
    assert st == 413 and r["error"]["code"] == "request_too_large"
    st, r = srv.request("GET", "/v2/nothing")
    assert st == 404 and "error" in r


def test_api_key_and_a_full_queue():
    s = Server("--parallel", "1", "--queue", "0", "--api-key", "sekret")
    try:
        st, r = s.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
        assert st == 401 and r["error"]["type"] == "authentication_error"
        auth = {"Authorization": "Bearer sekret"}
        st, r = s.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}, headers=auth)
        assert st == 200
        assert s.request("GET", "/health")[0] == 200  # health needs no key
        # One long request holds the only slot; with no queue, the next one is refused at once.
        c = s.conn()
        c.request("POST", "/v1/completions", body=json.dumps({"prompt": PROMPT, "max_tokens": 100000, "stream": True}),
                  headers={"Content-Type": "application/json", **auth})
        r1 = c.getresponse()
        assert r1.status == 200, r1.read()
        while True:  # until a token has come: the request then holds the slot
            line = r1.readline()
            assert line, "the stream ended before its first token"
            if line.startswith(b"data:"):
                break
        st, r = s.request("POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 2}, headers=auth)
        assert st == 503 and r["error"]["code"] == "server_overloaded"
        c.close()
    finally:
        s.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_streams_a_chat(srv):
    out = subprocess.run(["curl", "-sN", f"http://127.0.0.1:{srv.port}/v1/chat/completions", "-H", "Content-Type: application/json",
                          "-d", json.dumps({"messages": [{"role": "user", "content": "def add(a, b):"}], "max_tokens": 8, "stream": True, "temperature": 0})],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    chunks = [json.loads(l[6:]) for l in out.splitlines() if l.startswith("data: {")]
    assert out.rstrip().endswith("data: [DONE]")
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == cli_generate("def add(a, b):", 8)


def test_synthetic_needs_a_tokenizer_and_a_known_preset():
    r = subprocess.run([CLI, "serve", "--synthetic", "flash"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--tokenizer" in r.stderr
    tok = os.path.join(os.path.dirname(__file__), "..", "data", "tokenizer", "tokenizer.json")
    r = subprocess.run([CLI, "serve", "--synthetic", "nano", "--tokenizer", tok], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "unknown preset" in r.stderr
    r = subprocess.run([CLI, "serve", "--synthetic", "flash", "-m", DEMO, "--tokenizer", tok], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "not both" in r.stderr
