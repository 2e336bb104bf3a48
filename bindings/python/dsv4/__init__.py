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
    CapacityError,
    ChatFormat,
    StreamDecoder,
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
)


def generate(session, tokenizer, prompt, sampler, max_tokens=256, stop_tokens=None, think=None):
    """Yield generated text pieces (complete UTF-8) as tokens are produced.

    prompt: a str (encoded as plain text) or a list of token ids (e.g. ChatFormat.encode(...)).
    stop_tokens: ids that end generation (default: the tokenizer's end-of-sentence token).
    think: None, or "high"/"max" when the prompt asked for reasoning: then each item is a pair
    (channel, text) with channel "reasoning" or "answer", split at </think>.
    """
    ids = tokenizer.encode(prompt, parse_special=False) if isinstance(prompt, str) else list(prompt)
    if stop_tokens is None:
        eos = tokenizer.token_to_id("<\uff5cend\u2581of\u2581sentence\uff5c>")
        stop_tokens = [] if eos is None else [eos]
    end_think = tokenizer.token_to_id("</think>") if think else None
    in_reasoning = bool(think)
    dec = StreamDecoder(tokenizer)
    logits = session.forward(ids) if ids else session.last_logits()
    if logits is None:
        raise InvalidArgument("generate: empty prompt and nothing fed yet")
    for i in range(max_tokens):
        tok = sampler.sample(logits)
        if tok in stop_tokens:
            break
        if in_reasoning and tok == end_think:
            tail = dec.flush()
            if tail:
                yield ("reasoning", tail)
            in_reasoning = False
        else:
            piece = dec.push(tok)
            if piece:
                yield (("reasoning" if in_reasoning else "answer"), piece) if think else piece
        if i + 1 < max_tokens:
            logits = session.forward([tok])
    tail = dec.flush()
    if tail:
        yield (("reasoning" if in_reasoning else "answer"), tail) if think else tail
