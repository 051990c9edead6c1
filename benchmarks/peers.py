"""Issue 15's record on long audio: whisperfast and its peers on the tests' long clip (the English
samples back to back, cut back to whole
samples), each lane's WER against their text; or, with --random NAME,
whisperfast's batched throughput on a random-weight model of NAME's shapes.

    python3 benchmarks/peers.py OUT.json --seconds 600 -m tiny.en --batch-size 32 \
        --lanes fused,transformers,openai-whisper,whisper.cpp [--runs 1 --warmup 1]
    python3 benchmarks/peers.py OUT.json --seconds 600 --random large-v3-turbo --batch-size 32

Lanes as `whisperfast bench` runs them (alternated, the same process; `bench.run`). A printed
line per lane (median total, audio-seconds per second, WER), the JSON (bench's report plus
`wer`) at OUT. --random: tests/test_large_shapes.py's seeded weights, batched mode at
temperature 0 with timestamps off (a random model's timestamps would send the rest of every
chunk round again), each row up to 224 tokens; no WER (the text is noise)."""

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import whisperfast  # noqa: F401  (BLAS preload before mlx)

import soundfile as sf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from quant_wer_long import clip  # noqa: E402  (long_clip cut back to whole samples, and their text)
from tests.text import error_rate, units  # noqa: E402

from whisperfast import bench, runtime  # noqa: E402
from whisperfast.batched import BatchOptions, transcribe_batched  # noqa: E402
from whisperfast.errors import WhisperfastError  # noqa: E402
from whisperfast.pipeline import TranscribeOptions, load, rewritten  # noqa: E402


def random_run(args, audio) -> dict:
    from tests.test_large_shapes import random_model

    folder = Path(tempfile.mkdtemp())
    model = rewritten(load(str(random_model(folder, args.random))))  # float16 on a GPU
    options = TranscribeOptions(language="en", temperature=(0.0,))
    batch = BatchOptions(batch_size=args.batch_size, without_timestamps=True)
    runs = []
    for r in range(args.warmup + args.runs):
        t0 = time.perf_counter()
        (t,) = transcribe_batched(model, [audio], options, batch)
        wall = time.perf_counter() - t0
        if r >= args.warmup:
            runs.append({"wall_s": wall, **{k: getattr(t.timings, k) for k in ("vad", "mel", "encode", "decode", "total", "tokens")}})
    seconds = len(audio) / 16000
    med = statistics.median(r["total"] for r in runs)
    print(f"{args.random} (random) b{args.batch_size}: total {med * 1000:.1f} ms, {seconds / med:,.0f}x real time; "
          + ", ".join(f"{k} {statistics.median(r[k] for r in runs) * 1000:.1f}" for k in ("vad", "mel", "encode", "decode"))
          + f" ms; tokens {runs[0]['tokens']}", flush=True)
    return {"model": f"{args.random} (random weights)", "batch_size": args.batch_size, "audio_seconds": seconds,
            "runs": runs, "median_total_s": med, "x_real_time": seconds / med, "device": runtime.info()["device"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("-m", "--model", default="tiny.en")
    ap.add_argument("--random", help="a tests/test_large_shapes.py name: random weights at its shapes")
    ap.add_argument("--lanes", default="fused,transformers,openai-whisper,whisper.cpp")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists; not overwriting it")
    audio, reference, desc = clip(args.seconds, whole=True)
    if args.random:
        args.out.write_text(json.dumps(random_run(args, audio), indent=1))
        return
    wav = Path(tempfile.mkdtemp()) / f"clip{int(args.seconds)}.wav"
    sf.write(wav, audio, 16000, subtype="FLOAT")
    report = bench.run([wav], args.model, lanes=tuple(args.lanes.split(",")), runs=args.runs, warmup=args.warmup,
                       kernels=False, batch_size=args.batch_size, progress=lambda m: print(m, file=sys.stderr, flush=True))
    words = len(units(reference))
    wer = {lane: error_rate(reference, r.transcript) for lane, r in report.lanes.items()}
    for lane, r in report.lanes.items():
        print(f"{args.model} {int(args.seconds)} s b{args.batch_size} {lane}: {r.total_ms.median:.1f} ms, "
              f"{r.audio_s_per_s:,.0f} audio-s/s, WER {100 * wer[lane]:.2f} % of {words} words", flush=True)
    for note in report.notes:
        print("note:", note, flush=True)
    args.out.write_text(json.dumps({**asdict(report), "clip": desc, "wer": wer, "reference_words": words}, indent=1))
    try:
        from whisperfast.plot import plot

        plot(report, args.out.with_suffix(".png"))
    except WhisperfastError as e:  # matplotlib missing: the JSON holds it all
        print("no plot:", e, flush=True)


if __name__ == "__main__":
    main()
