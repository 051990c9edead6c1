"""The `whisperfast` command (app.py: parse, call the library, print) and its tables (render.py).

`main` is the installed entry point. It imports typer and the command only after it has
started a plain `transcribe`'s GPU thread (runtime.warm_up_gpu): it then makes its first
calls while typer loads too (benchmarks/h200-coldstart/), and later the command's own. Before
that, while mlx.core loads, a thread makes the CUDA context (_cuda_context)."""

from __future__ import annotations

import sys

__all__ = ["app", "main"]


def main() -> None:
    from ..config import config
    from ..errors import WhisperfastError

    try:  # a test knob set to a value it does not take: one line, before any command
        config()
    except WhisperfastError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)
    warm_up = _early_warm_up(sys.argv[1:])
    from .app import main as run

    __getattr__("app")
    run(warm_up)


def _early_warm_up(args: list[str]):
    """The GPU thread of `transcribe ...` on the default device and dtype, or None (any other
    command, --help, or a --device or --dtype that the command itself parses first)."""
    if args[:1] != ["transcribe"] or any(a in ("-h", "--help") or a.split("=")[0] in ("--device", "--dtype")
                                         for a in args[1:]):
        return None
    from .. import _cuda_context
    from ..config import config

    context = _cuda_context.start() if config().gpu_warmup else None  # while mlx.core loads
    from .. import models, runtime

    if context is not None:
        context.join()  # its driver calls end before MLX's first
    return runtime.warm_up_gpu(models.default_dtype(), fast="--fast" in args)


def __getattr__(name: str):
    if name == "app":  # the typer app, for tests and embedding (imports typer)
        from .app import app

        # importing the submodule .app bound its module to this name: the typer app replaces it
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
