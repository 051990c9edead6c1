"""Where batched mode's time goes on the ~115 s clip (tests/test_transcribe.py::long_clip):
per batch, the rows, the mel, encoder and decode seconds, and the decode's wasted row-steps
(a batch steps until its longest row ends, so a row that ends early still costs a step each:
sum over rows of (longest - own) tokens); the VAD's seconds; and what a mel of 30 s + one
FFT window per chunk (instead of the chunk plus 30 s of zeros) would save. Sequential mode's
stage times alongside. One warm-up transcription of JFK first; lanes alternate.

    .venv/bin/python benchmarks/batched/profile.py --runs 3 > benchmarks/batched/profile-cpu.json
"""

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import whisperfast  # noqa: E402,F401  (BLAS before mlx)
import mlx.core as mx  # noqa: E402
from mlx_whisper.audio import N_FFT, N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim  # noqa: E402

from whisperfast import batched, chunker, runtime, vad  # noqa: E402
from whisperfast.batched import BatchOptions, transcribe_batched  # noqa: E402
from whisperfast.pipeline import transcribe  # noqa: E402

from run import setup  # noqa: E402  (benchmarks/batched/run.py, beside this file)


def batched_run(model, audio, batch_size):
    calls = []
    real = batched.decode_window

    def traced(whisper, features, options, **kwargs):
        t0 = time.perf_counter()
        out = real(whisper, features, options, **kwargs)
        lengths = [len(r.tokens) + 1 for r in out]
        calls.append({"rows": len(out), "temperature": options.temperature, "s": time.perf_counter() - t0,
                      "tokens": lengths, "wasted_row_steps": sum(max(lengths) - n for n in lengths)})
        return out

    batched.decode_window = traced
    try:
        t0 = time.perf_counter()
        t = transcribe_batched(model, [audio], batch=BatchOptions(batch_size))[0]
        wall = time.perf_counter() - t0
    finally:
        batched.decode_window = real
    return wall, t, calls


def mel_cost(audio, n_mels):
    """Seconds for the clip's chunks' mels: as batched mode builds them, and with 30 s + N_FFT
    of audio per chunk; and the largest difference between the two."""
    ch = chunker.Chunker(vad.BATCHED_VAD, batched.CHUNK_SAMPLES)
    chunks = [x for _, x in ch(audio) + ch.finish()]
    ways = {"padding_30s": lambda c: log_mel_spectrogram(c, n_mels=n_mels, padding=N_SAMPLES),
            "padding_to_30s_plus_fft": lambda c: log_mel_spectrogram(c, n_mels=n_mels, padding=N_SAMPLES - len(c) + N_FFT)}
    out, mels = {}, {}
    for name, f in ways.items():
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            mels[name] = mx.stack([pad_or_trim(f(c), N_FRAMES, axis=-2) for c in chunks])
            mx.eval(mels[name])
            times.append(time.perf_counter() - t0)
        out[name + "_s"] = statistics.median(times)
    out["chunks"] = len(chunks)
    out["max_abs_difference"] = mx.abs(mels["padding_30s"] - mels["padding_to_30s_plus_fft"]).max().item()
    return out


def main():
    args, model, audio, _ = setup()
    stages = ("vad", "mel", "encode", "decode", "total")
    runs = {"sequential": [], "batched": []}
    for _ in range(args.runs):
        t0 = time.perf_counter()
        s = transcribe(model, audio)
        runs["sequential"].append({"wall_s": time.perf_counter() - t0, "windows": s.windows,
                                   **{k: getattr(s.timings, k) for k in stages}})
        wall, b, calls = batched_run(model, audio, args.batch_size)
        runs["batched"].append({"wall_s": wall, "windows": b.windows, **{k: getattr(b.timings, k) for k in stages},
                                "decode_calls": calls})
        print("sequential", round(runs["sequential"][-1]["wall_s"], 2), "batched", round(wall, 2), file=sys.stderr)
    median = {lane: {k: statistics.median(r[k] for r in rs) for k in ("wall_s",) + stages} for lane, rs in runs.items()}
    out = {"model": args.model, "lane": "fused" if args.fast else "stock", "device": runtime.device_name(),
           "audio_seconds": args.seconds, "batch_size": args.batch_size, "runs": runs, "median": median,
           "speedup": median["sequential"]["wall_s"] / median["batched"]["wall_s"],
           "mel": mel_cost(audio, model.whisper.dims.n_mels)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
