"""faster-whisper (CTranslate2) on the embedded bundles: the same weights whisperfast converts."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import WhisperfastError
from ..models import EMBEDDED, ct2_dir
from . import cpu_threads, need


def faster_whisper(model, batch_size: int, gpu: bool) -> tuple[Callable[[list[np.ndarray]], list[str]], str]:
    """Its sequential `transcribe` (beam 1, mlx-whisper's fallback), or with `batch_size` > 1 its
    `BatchedInferencePipeline` (its Silero VAD chunks, `batch_size` a batch, greedy, timestamps
    on as in whisperfast's batched mode). A quantized model races CTranslate2's int8, whether
    whisperfast runs 8 or 4 bits (int8 is its only integer type on the CPU); a float model
    runs at the model's dtype where CTranslate2 has it on that device, else float32."""
    need("faster-whisper", faster_whisper="faster_whisper")
    if model.name not in EMBEDDED:
        raise WhisperfastError(f"lane 'faster-whisper' runs the embedded bundles ({', '.join(EMBEDDED)}), "
                               f"not {model.name}")
    import ctranslate2
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    device = "cuda" if gpu and ctranslate2.get_cuda_device_count() > 0 else "cpu"
    wanted = "int8" if model.quantization else model.dtype
    compute_type = wanted if wanted in ctranslate2.get_supported_compute_types(device) else "float32"
    threads = cpu_threads()
    fw = WhisperModel(str(ct2_dir(model.name)), device=device, compute_type=compute_type, cpu_threads=threads)
    language = None if model.whisper.is_multilingual else "en"

    if batch_size == 1:
        def run(audio: list[np.ndarray]) -> list[str]:
            return [" ".join(s.text.strip() for s in fw.transcribe(a, beam_size=1, language=language)[0]) for a in audio]
    else:
        batched = BatchedInferencePipeline(model=fw)

        def run(audio: list[np.ndarray]) -> list[str]:
            return [" ".join(s.text.strip() for s in batched.transcribe(
                a, beam_size=1, language=language, batch_size=batch_size, without_timestamps=False)[0]) for a in audio]

    how = "its transcribe, beam 1" if batch_size == 1 else f"its BatchedInferencePipeline, {batch_size} a batch, beam 1"
    kind = compute_type if compute_type == wanted else f"{compute_type} (CTranslate2 has no {wanted} on the {device})"
    return run, f"faster-whisper on {device}, {kind}, {threads} CPU threads, {how}"
