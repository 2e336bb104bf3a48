"""dsv4: an inference engine for the DeepSeek-V4 model family.

    import dsv4
    model = dsv4.Model("DeepSeek-V4-Flash")
    session = dsv4.Session(model)
    sampler = dsv4.Sampler(seed=1, temperature=0.7, top_k=50)
    logits = session.forward([0, 1234, 5678])        # float32 [vocab]
    token = sampler.sample(logits)

Serving several sequences: dsv4.forward_batch([(session_a, tokens_a), (session_b, tokens_b)])
returns each session's last-token logits, computed in shared steps.
"""
from ._dsv4 import (  # noqa: F401
    CancelledError,
    CapacityError,
    ChatFormat,
    StreamDecoder,
    TextStream,
    Tokenizer,
    ConfigError,
    Error,
    FormatError,
    InvalidArgument,
    IoError,
    MissingTensorError,
    Model,
    Sampler,
    Session,
    ShapeError,
    Snapshot,
    UnsupportedError,
    __version__,
    backends,
    best_cpu_tier,
    cpu_tiers,
    devices,
    forward_batch,
    log_level,
    set_log_callback,
    set_log_level,
)


def generate(session, tokenizer, prompt, sampler=None, max_tokens=256, stop_tokens=None, think=None, stop=None):
    """Yield generated text pieces (complete UTF-8) as tokens are produced (the library's TextStream).

    prompt: a str (plain text, no chat format), a list of message dicts (the V4 chat format, as
    the CLI and the server use), or a list of token ids (e.g. ChatFormat.encode(...)).
    sampler: a Sampler (default: greedy). stop_tokens: ids that end generation besides
    end-of-sentence. stop: strings that end generation (not emitted).
    think: None, or "high"/"max" when the prompt asked for reasoning: then each item is a pair
    (channel, text) with channel "reasoning" or "answer", split at </think>.
    """
    chat = False
    if isinstance(prompt, str):
        ids = tokenizer.encode(prompt, parse_special=False)
    elif prompt and isinstance(prompt[0], dict):
        ids = ChatFormat(tokenizer).encode(prompt, think=think or "none")
        chat = True
    else:
        ids = list(prompt)
        chat = bool(think)
    ts = TextStream(tokenizer, chat=chat or bool(think), think=think or "none", max_tokens=max_tokens, stop=list(stop or []),
                    stop_tokens=list(stop_tokens or []), sampler=sampler if sampler is not None else Sampler.greedy())
    logits = session.forward(ids) if ids else session.last_logits()
    if logits is None:
        raise InvalidArgument("generate: empty prompt and nothing fed yet")
    while not ts.done:
        d = ts.step(logits)
        if think:
            if d["reasoning"]:
                yield ("reasoning", d["reasoning"])
            if d["content"]:
                yield ("answer", d["content"])
        elif d["content"]:
            yield d["content"]
        if ts.done:
            break
        if session.position >= session.max_context:
            d = ts.end("context_full")
            if d["content"]:
                yield ("answer", d["content"]) if think else d["content"]
            break
        logits = session.forward([ts.token])
