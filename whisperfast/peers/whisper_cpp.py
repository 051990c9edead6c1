"""whisper.cpp (pywhispercpp's build) on a loaded model's weights, written as its ggml file."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import WhisperfastError
from . import ggml


def whisper_cpp(model, batch_size: int) -> tuple[Callable[[list[np.ndarray]], list[str]], str]:
    """whisper.cpp's `whisper_full` (greedy, its temperature fallback), every core a thread. It has
    no batched mode, so each audio runs on its own whatever `batch_size` says."""
    if importlib.util.find_spec("pywhispercpp") is None:
        raise WhisperfastError("lane 'whisper.cpp' needs the pywhispercpp package (pip install pywhispercpp)")
    from pywhispercpp.model import Model

    folder = Path(tempfile.mkdtemp(prefix="whisperfast-ggml-"))
    path = folder / "ggml-model.bin"
    ggml.write(model.whisper, path)  # whisper.cpp reads it whole at load; the file goes with the runner
    threads = os.cpu_count() or 1
    language = "auto" if model.whisper.is_multilingual else "en"  # auto: detected, as in the other lanes
    cpp = Model(str(path), redirect_whispercpp_logs_to=None, n_threads=threads, language=language,
                print_progress=False, print_realtime=False)

    def run(audio: list[np.ndarray]) -> list[str]:
        return [" ".join(s.text.strip() for s in cpp.transcribe(a.astype(np.float32))) for a in audio]

    weakref.finalize(run, shutil.rmtree, folder, True)
    how = f"whisper.cpp (pywhispercpp) on the CPU, {threads} threads, float16 weights"
    return run, how + ("" if batch_size == 1 else ", one audio at a time (it has no batched mode)")
