"""Other engines on the same weights, for `bench`'s peer lanes. Each is imported only when its
lane is asked for, and says what it ran (device, precision, threads, batching) for the report."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import WhisperfastError

PEERS = ("faster-whisper", "openai-whisper", "transformers", "whisper.cpp")


@dataclass(frozen=True)
class Peer:
    lane: str
    run: Callable[[list[np.ndarray]], list[str]]  # audio (16 kHz) -> one text each
    how: str  # what ran, for the report's notes


def peer(lane: str, model, batch_size: int, gpu: bool) -> Peer:
    """The peer `lane` on `model`'s weights (a pipeline.LoadedModel), batching where it can; on a
    GPU only where whisperfast's own lanes run on one (`gpu`) and the peer can use it."""
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
    run, how = make(model, batch_size, gpu)
    return Peer(lane, run, how)


def need(lane: str, **packages: str) -> None:
    """Import each module (keyword: the PyPI name that installs it), or say which are missing."""
    missing = []
    for install, module in packages.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(install.replace("_", "-"))
    if missing:
        raise WhisperfastError(f"lane '{lane}' needs {', '.join(missing)} (pip install {' '.join(missing)})")


def cpu_threads() -> int:
    """The cores this process may run on: the peers' CPU threads (whisperfast's MLX uses them all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
