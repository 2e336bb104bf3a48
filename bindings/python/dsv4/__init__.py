"""dsv4: an inference engine for the DeepSeek-V4 model family.

    import dsv4
    model = dsv4.Model("DeepSeek-V4-Flash")
    session = dsv4.Session(model)
    sampler = dsv4.Sampler(seed=1, temperature=0.7, top_k=50)
    logits = session.forward([0, 1234, 5678])        # float32 [vocab]
    token = sampler.sample(logits)
"""
from ._dsv4 import (  # noqa: F401
    CapacityError,
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
    __version__,
)
