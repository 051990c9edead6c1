"""mlx-whisper's package, with its eager `__init__` deferred to first use.

mlx_whisper/__init__.py (0.4.3) imports its `transcribe()` at once, and with it numba and
scipy.signal (word timestamps) and huggingface_hub (hub downloads): most of a fresh process's
import time (benchmarks/cold-start-cpu.md). whisperfast needs the package's model, tokenizer,
decoding and audio modules, each of which imports only what it uses. So before anything imports
mlx_whisper, the package is registered from its own spec with `__init__` not yet run:

- submodules import as usual (`mlx_whisper.whisper`, `from mlx_whisper import decoding`);
- the first attribute that only `__init__` defines (`mlx_whisper.transcribe`, the function,
  `__version__`) runs `__init__` then, as a plain `import mlx_whisper` would have.

It is one module object, so classes keep one identity, and a caller who imported mlx_whisper
before whisperfast keeps the package exactly as it was. One difference remains: a caller who
imports the submodule `mlx_whisper.transcribe` by name before anything runs `__init__` finds the
package's `transcribe` attribute to be that module (Python binds it so) until `__init__` runs
and rebinds it to the function, as an ordinary import does at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

# Names that mlx_whisper/__init__.py binds to something other than the submodule of that name.
_REBOUND = frozenset({"transcribe"})


def defer_package_init() -> None:
    if "mlx_whisper" in sys.modules:
        return
    spec = importlib.util.find_spec("mlx_whisper")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not installed (or not a package): the first real import says so
    package = importlib.util.module_from_spec(spec)

    def __getattr__(name: str):
        # `from mlx_whisper import audio` asks for the attribute before importing the submodule
        if name not in _REBOUND and importlib.util.find_spec(f"mlx_whisper.{name}") is not None:
            return importlib.import_module(f"mlx_whisper.{name}")
        if name.startswith("__") and name != "__version__":
            raise AttributeError(name)  # introspection (copy, inspect, pickle): no side effect
        del package.__getattr__
        spec.loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = __getattr__
    sys.modules["mlx_whisper"] = package
