"""The `whisperfast` command: parses arguments, calls the library, prints.

stdout carries only the transcript (or JSON with --json); tables, progress and errors go to stderr.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

import whisperfast  # noqa: F401  (BLAS preload, before mlx)

from .. import models  # light: its mlx, numpy and mlx-whisper imports are inside its functions
from ..config import config
from ..errors import WhisperfastError
from ..options import whole_count
from . import render

# A fresh process pays only for what its command needs: `pipeline`, `output`, `runtime` and
# `bench` (mlx, numpy, mlx-whisper and what mlx-whisper imports) are imported inside the
# commands that use them, so `--help`, `models` and `info` start fast.

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Whisper speech-to-text on MLX, with fused kernels proven transcript-equal.")
err = render.Stderr()


@app.callback()
def _warnings_as_lines() -> None:
    """The library's warnings (a file that ends early, word timestamps on a translation) as one
    `warning:` line each on stderr, not Python's two lines naming its source file."""
    import warnings

    warnings.showwarning = lambda message, *_: err.print(render.styled("warning:", "yellow", str(message)),
                                                         highlight=False, soft_wrap=True)


class Task(str, Enum):
    transcribe = "transcribe"
    translate = "translate"


class Format(str, Enum):
    txt = "txt"
    srt = "srt"
    vtt = "vtt"
    json = "json"
    all = "all"


class Device(str, Enum):
    cpu = "cpu"
    gpu = "gpu"


class DType(str, Enum):
    float16 = "float16"
    float32 = "float32"
    bfloat16 = "bfloat16"


QUANTIZE_HELP = "Quantize the model's Linear and Embedding weights to 8 or 4 bits (affine; cached after the first load)."
GROUP_SIZE_HELP = (f"Weights per scale with --quantize: {', '.join(map(str, models.GROUP_SIZES))} (default "
                   + ", ".join(f"{g} at {b} bits" for b, g in models.DEFAULT_GROUP_SIZES.items()) + ").")


def _error(msg: str) -> None:
    """One line: a file name's line breaks are written as \\n (an internal error keeps its
    first line: _guard)."""
    line = msg.strip().replace("\r", "\\r").replace("\n", "\\n")
    err.print(render.styled("Error:", "red", line), highlight=False, soft_wrap=True)


def _guard(fn, *args, **kwargs):
    """Run a library call; a failure becomes one `Error:` line and exit 1, never a traceback."""
    try:
        return fn(*args, **kwargs)
    except WhisperfastError as e:
        _error(str(e))
    except Exception as e:  # noqa: BLE001 (a traceback is for WHISPERFAST_DEBUG=1)
        if config().debug:
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        _error(f"internal error: {type(e).__name__}: {first} (set WHISPERFAST_DEBUG=1 for a traceback)")
    raise typer.Exit(1)


def _usage(fn, *args):
    """A check of the command line that needs the library: its refusal is a usage error (exit 2)."""
    try:
        return fn(*args)
    except WhisperfastError as e:
        _error(str(e))
        raise typer.Exit(2) from None


def _here(fn, *args, **kwargs):
    return fn(*args, **kwargs)


@app.command()
def transcribe(
    ctx: typer.Context,
    # readable=False: click's check made an unreadable file a usage error that stopped every file
    files: List[Path] = typer.Argument(..., readable=False, help="Audio files (WAV, FLAC, OGG, MP3; any rate and channel count)."),
    model: str = typer.Option(models.DEFAULT_MODEL, "--model", "-m", help="tiny.en, base, a model directory, or a Hugging Face repo id."),
    language: Optional[str] = typer.Option(None, help="Spoken language (default: detect, or en for .en models)."),
    task: Task = typer.Option(Task.transcribe, help="transcribe, or translate to English."),
    word_timestamps: bool = typer.Option(False, "--word-timestamps", help="Add per-word start/end times."),
    output_format: Optional[Format] = typer.Option(None, "--output-format", "-f", help="Also write files in this format."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", file_okay=False, help="Where to write files (default: beside the input)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace output files that already exist."),
    dtype: Optional[DType] = typer.Option(None, help="Compute dtype (default: float16 on a GPU, float32 on the CPU)."),
    device: Optional[Device] = typer.Option(None, help="cpu or gpu (default: MLX's default device)."),
    fast: bool = typer.Option(False, "--fast", help="Rewrite norms and attention onto fused mx.fast kernels."),
    compare: bool = typer.Option(False, "--compare", help="Run baseline and fused on each file; show both timings."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per file on stdout, nothing else."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No timing table or progress on stderr."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**64 - 1,
                             help="Seed for the sampled temperature fallback (each lane of --compare gets the same)."),
    temperature: str = typer.Option("0,0.2,0.4,0.6,0.8,1", "--temperature", metavar="T[,T...]",
                                    help="Temperatures tried in turn while a window fails the thresholds below."),
    beam_size: Optional[str] = typer.Option(None, "--beam-size", metavar="N", help="Beams at temperature 0 (default: greedy)."),
    best_of: Optional[str] = typer.Option(None, "--best-of", metavar="N", help="Candidates sampled at temperature > 0."),
    patience: Optional[str] = typer.Option(None, "--patience", metavar="F", help="Beam search patience (needs --beam-size)."),
    length_penalty: Optional[str] = typer.Option(None, "--length-penalty", metavar="F",
                                                 help="Length penalty alpha in [0, 1] (default: average log probability)."),
    initial_prompt: Optional[str] = typer.Option(None, "--initial-prompt", metavar="TEXT", help="Text to prompt the first window with."),
    condition_on_previous_text: bool = typer.Option(True, "--condition-on-previous-text/--no-condition-on-previous-text",
                                                    help="Prompt each window with the text before it."),
    compression_ratio_threshold: str = typer.Option("2.4", "--compression-ratio-threshold", metavar="F|none",
                                                    help="Above this gzip ratio a window is decoded again, hotter."),
    logprob_threshold: str = typer.Option("-1.0", "--logprob-threshold", metavar="F|none",
                                          help="Below this average log probability a window is decoded again, hotter."),
    no_speech_threshold: str = typer.Option("0.6", "--no-speech-threshold", metavar="F|none",
                                            help="Above this no-speech probability (and under the logprob threshold) a window is silence."),
    hallucination_silence_threshold: Optional[str] = typer.Option(
        None, "--hallucination-silence-threshold", metavar="SECONDS",
        help="With --word-timestamps: skip silences longer than this around a likely hallucination."),
    clip_timestamps: str = typer.Option("0", "--clip-timestamps", metavar="START,END,...",
                                        help="Clips to decode, in seconds; a last END may be left out. As mlx-whisper "
                                             "0.4.3: a clip's last window may run on past its END into the next."),
    quantize: Optional[str] = typer.Option(None, "--quantize", metavar="8|4", help=QUANTIZE_HELP),
    group_size: Optional[str] = typer.Option(None, "--group-size", metavar="N", help=GROUP_SIZE_HELP),
    batch_size: str = typer.Option("1", "--batch-size", metavar="N",
                                   help="N > 1: VAD chunks of <= 30 s, from all the files, N a decode (encoded together on a GPU, "
                                        "one at a time on the CPU), no conditioning across chunks (1: sequential windows)."),
    vad: Optional[bool] = typer.Option(None, "--vad/--no-vad",
                                       help="Decode only the speech Silero VAD finds (default: on with --batch-size > 1, else off)."),
):
    """Transcribe audio files; print the text on stdout and a timing table on stderr."""
    from .. import runtime
    from ..options import TranscribeOptions

    # a bad option is a usage error (exit 2), found before any work
    try:
        n_batch = _number("--batch-size", batch_size, int)
        # a bar over the audio: sequential mode's for one file, batched mode's for all of them at once
        bar_wanted = sys.stderr.isatty() and not quiet and (len(files) == 1 or (n_batch or 1) > 1)
        options = TranscribeOptions(
            language=language, task=task.value, word_timestamps=word_timestamps, seed=seed,
            temperature=_numbers("--temperature", temperature), beam_size=_number("--beam-size", beam_size, int),
            best_of=_number("--best-of", best_of, int), patience=_number("--patience", patience),
            length_penalty=_number("--length-penalty", length_penalty), initial_prompt=initial_prompt,
            condition_on_previous_text=condition_on_previous_text,
            compression_ratio_threshold=_number("--compression-ratio-threshold", compression_ratio_threshold),
            logprob_threshold=_number("--logprob-threshold", logprob_threshold),
            no_speech_threshold=_number("--no-speech-threshold", no_speech_threshold),
            hallucination_silence_threshold=_number("--hallucination-silence-threshold", hallucination_silence_threshold),
            clip_timestamps=clip_timestamps, progress=bar_wanted, vad=vad)
        bits, group = _quantization(quantize, group_size)
        batch = _batch_options(n_batch, options, compare)
    except WhisperfastError as e:
        _error(str(e))
        raise typer.Exit(2) from None
    _guard(runtime.use_device, device.value if device else None)
    compute_dtype = _guard(runtime.parse_dtype, dtype.value if dtype else None)
    # while the rest is imported; cli.main may have started it already, before typer loaded
    warm_up = ctx.obj if ctx.obj is not None else runtime.warm_up_gpu(compute_dtype or models.default_dtype(), fast=fast)

    from .. import batched, output, pipeline

    if language is not None:
        _usage(pipeline.language_code, language)  # an unknown language, before the model loads

    # -o alone writes .txt; neither -f nor -o writes nothing but stdout
    formats = output.expand_formats(output_format.value) if output_format else ("txt",) if output_dir else ()
    # before any work: refuse to clobber, and two inputs that would write one file (exit 1, like "exists")
    plan = _guard(output.plan_outputs, files, formats, output_dir, overwrite)

    # MLX's calls go to the warm-up's thread, once it is done (runtime.GpuThread); this one
    # builds the tokenizer meanwhile
    gpu = warm_up.run if warm_up is not None else _here
    if warm_up is not None:
        _guard(pipeline.warm_tokenizer, model, fast=fast and not compare)
    loaded = _guard(gpu, pipeline.load, model, dtype=compute_dtype, fast=fast and not compare, quantize=bits,
                    group_size=group)
    if language is not None:
        _usage(pipeline.checked_language, loaded, language)  # e.g. German on an English-only model
    fused = _guard(gpu, pipeline.rewritten, loaded) if compare else None
    if (fast or compare) and not quiet:
        counts = (fused or loaded).rewrites["counts"]
        err.print("rewrites: " + "; ".join(f"{k} {c['rewritten']}/{c['sites']} rewritten" + (f", {c['skipped']} kept" if c["skipped"] else "")
                                            for k, c in counts.items()), highlight=False)
        for note in (fused or loaded).rewrites["notes"]:
            err.print(f"note: {note}", highlight=False)
    failed = 0
    # (batched mode has transcribed every file before the first is written: its bar was the audio's)
    bar = render.file_bar(err, len(files) > 1 and not quiet and sys.stderr.isatty() and not batch)
    done = _guard(gpu, batched.transcribe_batched, loaded, files, options, batch, errors="return") if batch else None
    with bar:
        job = bar.add_task("transcribing", total=len(files))
        for i, f in enumerate(files):
            bar.update(job, description=f.name)
            failed += _transcribe_one(gpu, f, i, plan, loaded, fused, options, as_json, quiet, fast, done and done[i])
            bar.advance(job)
    if failed:
        raise typer.Exit(1)


def _batch_options(n: Optional[int], options, compare: bool):
    """--batch-size -> batched.BatchOptions, or None for sequential mode (1)."""
    if n is None or n < 1:
        raise WhisperfastError(f"--batch-size must be at least 1, not {n}")
    if n == 1:
        return None
    from .. import batched

    if compare:
        raise WhisperfastError("--compare runs sequential mode only: leave out --batch-size")
    batched.check_options(options)
    return batched.BatchOptions(batch_size=n)


def _number(flag: str, text: Optional[str], kind=float):
    """A flag's number; None (not given) or "none" (a threshold turned off) is None."""
    if text is None or text.strip().lower() == "none":
        return None
    try:
        return kind(text)
    except ValueError:
        raise WhisperfastError(f"{flag} takes {'an integer' if kind is int else 'a number'}, not '{text}'") from None


def _quantization(bits: Optional[str], group_size: Optional[str]) -> tuple:
    """--quantize and --group-size -> (bits or None, group size), checked by the library's rules."""
    if group_size is not None and bits is None:
        raise WhisperfastError("--group-size needs --quantize")
    n = _number("--quantize", bits, int)
    group = models.default_group_size(n) if group_size is None else _number("--group-size", group_size, int)
    models.check_quantization(n, group)
    return n, group


def _numbers(flag: str, text: str) -> tuple:
    """'0,0.2,0.4' -> (0.0, 0.2, 0.4)."""
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise WhisperfastError(f"{flag} takes comma-separated numbers, not '{text}'") from None


def _transcribe_one(gpu, f: Path, index: int, plan, loaded, fused, options, as_json: bool, quiet: bool, fast: bool,
                    done=None) -> int:
    """One file: transcribe (or compare; or take `done`, batched mode's transcript) through
    `gpu` (the thread that makes MLX's calls, or _here), print, write files. Returns 1 on
    failure, else 0."""
    from .. import output, pipeline

    if isinstance(done, Exception):  # batched mode: this file's audio could not be read; the others were transcribed
        _error(str(done))
        return 1
    try:
        if fused is not None:
            c = _guard(gpu, pipeline.compare, loaded, fused, f, options)
            t, columns, record = c.fused, {"baseline": c.baseline.timings, "fused": c.fused.timings}, output.comparison_to_json(c)
        else:
            t = done or _guard(gpu, pipeline.transcribe, loaded, f, options)
            columns, record = {"time": t.timings}, output.to_json(t)
        record = {"file": str(f), **record}  # which input: with one failed among several, the records' order no longer tells
        try:  # the files first: a stdout that fails (a full disk, `| head`) loses none
            _guard(plan.write, index, t)
            unwritten = False
        except typer.Exit:  # said in one line; the transcript still reaches stdout
            unwritten = True
        _stdout(json.dumps(record, ensure_ascii=False) if as_json else t.text)
        if not quiet:
            bits = f" · {loaded.quantization['bits']}-bit" if loaded.quantization else ""
            err.print(f"{f.name} · {t.model} · {t.device} · {t.dtype}{bits}{' · fused' if fast and fused is None else ''}",
                      highlight=False)
            err.print(render.timing_table(columns))
            if fused is not None:
                err.print(f"baseline vs fused tokens: {'identical' if c.tokens_match else 'DIFFERENT'}; windows sampled at"
                          f" temperature > 0: {c.baseline.sampled_windows} and {c.fused.sampled_windows} of"
                          f" {c.baseline.windows} and {c.fused.windows}" + ("" if t.device != "cpu" else
                          " (on the CPU mx.fast ops fall back to composed ops, so fusion itself gives a ratio near 1.0;"
                          " the fused lane's CPU gain is attention heads spread across CPU streams)"), highlight=False)
    except typer.Exit:
        return 1
    return 1 if unwritten else 0


def _stdout(text: str) -> None:
    """A transcript on stdout. A reader that left (`| head`) ends the printing, not the run:
    the other files are still transcribed and written. A stdout that cannot take the text (a
    full disk, an encoding without its characters) is one Error line and exit 1. Either way
    stdout then leads nowhere, so later files print nothing more and say nothing more."""
    if sys.stdout is None:  # started with it closed (`>&-`)
        return
    try:
        print(text, flush=True)
    except BrokenPipeError:
        _to_nowhere()
    except (OSError, UnicodeEncodeError) as e:
        _error(f"cannot write the transcript to stdout: {e}")
        _to_nowhere()
        raise typer.Exit(1) from None


def _to_nowhere() -> None:
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, AttributeError, ValueError):  # a stdout without a descriptor (tests' captures)
        pass


@app.command()
def bench(
    audio: Optional[List[Path]] = typer.Argument(None, help="Audio files (default: samples/jfk.wav)."),
    model: str = typer.Option(models.DEFAULT_MODEL, "--model", "-m"),
    dtype: Optional[DType] = typer.Option(None, help="Compute dtype (default: float16 on a GPU, float32 on the CPU)."),
    device: Optional[Device] = typer.Option(None),
    runs: int = typer.Option(5, "--runs", min=1, help="Timed runs per lane."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Untimed rounds first."),
    lanes: Optional[str] = typer.Option(None, "--lanes", help="Comma-separated: stock, fused, composed, and the peers "
                                        "faster-whisper, openai-whisper, transformers, whisper.cpp where installed "
                                        "(default: stock,fused,composed; --cold takes stock,fused)."),
    cold: bool = typer.Option(False, "--cold", help="Each run of each lane in a fresh process, timed from the shell: "
                              "wall, import, load, kernel compile or cache read, transcription (no warm-up)."),
    empty_caches: bool = typer.Option(False, "--empty-caches", help="With --cold: every run from empty caches of its own "
                                      "(model conversion, compiled kernels, MLX's PTX cache), as the first run after install."),
    kernels: Optional[bool] = typer.Option(None, "--kernels/--no-kernels", help="--kernels: only the kernel table; --no-kernels: skip it."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", dir_okay=False, help="Write a PNG bar chart here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --plot file."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**64 - 1,
                             help="Seed for the sampled fallback; every lane's every run gets the same."),
    quantize: Optional[str] = typer.Option(None, "--quantize", metavar="8|4",
                                           help=QUANTIZE_HELP + " Every lane runs it; faster-whisper runs int8."),
    group_size: Optional[str] = typer.Option(None, "--group-size", metavar="N", help=GROUP_SIZE_HELP),
    batch_size: str = typer.Option("1", "--batch-size", metavar="N",
                                   help="N > 1: the lanes run batched mode (VAD chunks, N per batch) over all the audio."),
    beam_size: Optional[str] = typer.Option(None, "--beam-size", metavar="N",
                                            help="Each lane also runs with N beams, reported next to its greedy run."),
):
    """Time stock, fused and composed lanes on the same audio, and each kernel fused vs composed."""
    from dataclasses import asdict

    from .. import bench as bench_lib
    from .. import coldstart, runtime

    try:
        bits, group = _quantization(quantize, group_size)
        if bits is not None and cold:
            raise WhisperfastError("--cold does not take --quantize (its fresh processes load float models)")
        n_batch = _number("--batch-size", batch_size, int)
        if n_batch is None or n_batch < 1:
            raise WhisperfastError(f"--batch-size must be at least 1, not {n_batch}")
        if n_batch > 1 and cold:
            raise WhisperfastError("--cold does not take --batch-size")
        n_beams = _number("--beam-size", beam_size, int)
        if n_beams is not None:
            whole_count("--beam-size", n_beams)
        if n_beams is not None and cold:
            raise WhisperfastError("--cold does not take --beam-size")
        if empty_caches and not cold:
            raise WhisperfastError("--empty-caches goes with --cold")
        lane_names = tuple(dict.fromkeys(x.strip() for x in (lanes or "").split(",") if x.strip()))  # each once
        known = tuple(coldstart.LANES) if cold else bench_lib.LANES
        if bad := [x for x in lane_names if x not in known]:
            raise WhisperfastError(f"unknown lane(s) {', '.join(bad)}{' for --cold' if cold else ''}; "
                                   f"choose from {', '.join(known)}")
        if lanes is not None and not lane_names:
            raise WhisperfastError("--lanes names no lane")
        if cold and audio and len(audio) != 1:
            raise WhisperfastError("--cold times one audio file")
        if cold and plot_path is not None:
            raise WhisperfastError("--cold does not take --plot (it draws the warm lanes' stages)")
    except WhisperfastError as e:
        _error(str(e))
        raise typer.Exit(2) from None
    _guard(runtime.use_device, device.value if device else None)
    paths = audio or [Path("samples/jfk.wav")]
    if plot_path is not None:  # before the runs: a plot that cannot be written fails now, not after them
        from ..output import check_writable

        _guard(check_writable, [plot_path], overwrite, tuple(paths))
    show = sys.stderr.isatty()
    progress = (lambda msg: err.print(render.styled(msg, "dim"), highlight=False)) if show else (lambda _: None)
    lane_names = lane_names or (("stock", "fused") if cold else ("stock", "fused", "composed"))
    wide = None if (sys.stderr if as_json else sys.stdout).isatty() else 150  # records stay readable
    if cold:
        report = _guard(coldstart.run, paths[0], model, dtype.value if dtype else None, device.value if device else None,
                        lanes=lane_names, runs=runs, progress=progress, empty_caches=empty_caches)
        if as_json:
            print(json.dumps(asdict(report), indent=1))
        render.print_cold(report, render.console(stderr=as_json, width=wide))
        return
    report = _guard(bench_lib.run, paths, model, _guard(runtime.parse_dtype, dtype.value if dtype else None),
                    lanes=lane_names, runs=runs, warmup=warmup,
                    pipeline=kernels is not True, kernels=kernels is not False, progress=progress, seed=seed,
                    quantize=bits, group_size=group, batch_size=n_batch, beam_size=n_beams)
    if as_json:
        print(json.dumps(asdict(report), indent=1))
    render.print_bench(report, render.console(stderr=as_json, width=wide))
    if plot_path is not None:
        from ..plot import plot

        _guard(plot, report, plot_path, overwrite)
        err.print(f"plot: {plot_path}", highlight=False)


@app.command("models")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout.")):
    """List the models available without a network."""
    from dataclasses import asdict

    found = _guard(models.list_models)
    if as_json:
        print(json.dumps([asdict(m) for m in found], indent=1))
        return
    table = render.table("name", "kind", "available", "where / how")
    for m in found:
        table.add_row(m.name, m.kind, "yes" if m.available else "no", m.path or m.note)
    render.console().print(table)


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout.")):
    """Versions, device, and the BLAS that MLX's CPU backend uses."""
    from .. import _blas, runtime

    data = runtime.info()
    if as_json:
        print(json.dumps(data, indent=1))
        return
    table = render.table("key", "value", show_header=False)
    for k, v in data.items():
        table.add_row(k, json.dumps(v) if isinstance(v, dict) else str(v))
    render.console().print(table)
    slow = _blas.slow_warning(data["blas"])
    if slow:
        err.print(render.styled("warning:", "yellow", slow), highlight=False, soft_wrap=True)  # a finding: `info` exits 0


def main(warm_up=None) -> None:
    """The `whisperfast` command as installed (`warm_up`: the GPU thread cli.main started, which
    `transcribe` hands its MLX calls to). When the command is done, the process ends
    without the interpreter's teardown: Python freeing every module and object it loaded
    costs 0.1-0.25 s of a fresh transcription's wall time on a 2-core machine
    (benchmarks/cold-start-cpu.md), and nothing is left for it to do. What a normal exit
    does first still happens: the atexit handlers run and stdout and stderr are flushed. On a
    CUDA GPU the driver's teardown of the context is left to a child (runtime.hand_off_teardown)."""
    try:
        app(prog_name="whisperfast", obj=warm_up)
        code = 0
    except SystemExit as e:
        code = _exit_status(e.code)
    atexit._run_exitfuncs()  # noqa: SLF001  (what a normal exit runs; the public atexit has no "run now")
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: started with the stream closed (`>&-`)
                stream.flush()
        except (OSError, ValueError):  # a reader that left (`| head`), a full disk, or a closed stream
            pass
    if "mlx.core" in sys.modules:  # a command that computed: on a CUDA GPU, the context's teardown goes to a child
        from .. import runtime

        runtime.hand_off_teardown()
    os._exit(code)


def _exit_status(code) -> int:
    """SystemExit's code as the interpreter turns it into an exit status."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1
