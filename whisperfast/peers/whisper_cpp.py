"""whisper.cpp (pywhispercpp's build) on a loaded model's weights, written as its ggml file."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from . import cpu_threads, ggml, need


def whisper_cpp(model, batch_size: int, gpu: bool) -> tuple[Callable[[list[np.ndarray]], list[str]], str]:
    """whisper.cpp's `whisper_full` (greedy, its temperature fallback) on the CPU (pywhispercpp's
    wheels are CPU builds), a thread per core. It has no batched mode, so each audio runs on its
    own whatever `batch_size` says."""
    need("whisper.cpp", pywhispercpp="pywhispercpp.model")
    from pywhispercpp.model import Model

    threads = cpu_threads()
    language = "auto" if model.whisper.is_multilingual else "en"  # auto: detected, as in the other lanes
    folder = Path(tempfile.mkdtemp(prefix="whisperfast-ggml-"))
    try:  # whisper.cpp reads the file whole at load, so it goes at once
        path = folder / "ggml-model.bin"
        ggml.write(model.whisper, path)
        cpp = Model(str(path), redirect_whispercpp_logs_to=None, n_threads=threads, language=language,
                    print_progress=False, print_realtime=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def run(audio: list[np.ndarray]) -> list[str]:
        return [" ".join(s.text.strip() for s in cpp.transcribe(a.astype(np.float32))) for a in audio]

    how = f"whisper.cpp (pywhispercpp) on the CPU, {threads} threads, float16 weights, greedy"
    return run, how + ("" if batch_size == 1 else ", one audio at a time (it has no batched mode)")
