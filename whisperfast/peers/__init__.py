"""Other engines on the same weights, for `bench`'s peer lanes. Each is imported only when its
lane is asked for, and says what it ran (device, precision, batching) for the report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

PEERS = ("faster-whisper", "openai-whisper", "transformers", "whisper.cpp")


@dataclass(frozen=True)
class Peer:
    lane: str
    run: Callable[[list[np.ndarray]], list[str]]  # audio (16 kHz) -> one text each
    how: str  # what ran, for the report's notes


def peer(lane: str, model, batch_size: int) -> Peer:
    """The peer `lane` on `model`'s weights (a pipeline.LoadedModel), batching where it can."""
    if lane == "faster-whisper":
        from .faster_whisper import faster_whisper as make
    elif lane == "openai-whisper":
        from .torch_peers import openai_whisper as make
    elif lane == "transformers":
        from .torch_peers import transformers as make
    elif lane == "whisper.cpp":
        from .whisper_cpp import whisper_cpp as make
    else:
        raise ValueError(lane)
    run, how = make(model, batch_size)
    return Peer(lane, run, how)
