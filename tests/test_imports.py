"""A fresh process imports only what its command needs (issue 13). Each check runs in a new
interpreter and reads its sys.modules afterwards; no timings are asserted."""

import json
import subprocess
import sys

from .conftest import ROOT, SAMPLES

# mlx-whisper's word timestamps (mlx_whisper.timing: scipy.signal, numba), the hub client and
# mlx-whisper's model code. (`mlx_whisper` itself is in sys.modules from `import whisperfast` on:
# the package registered with its __init__ deferred, no code of it run; whisperfast/_mlx_whisper.py.)
HEAVY = ("mlx_whisper.whisper", "mlx_whisper.timing", "scipy.signal", "numba", "huggingface_hub")

RUN_CLI = """
import json, sys
from whisperfast.cli import app
try:
    app({args!r}, prog_name="whisperfast")
except SystemExit as e:
    code = e.code
else:
    code = 0
print("\\n" + json.dumps({{"exit": code, "modules": sorted(sys.modules)}}))
"""


def modules_after(code: str) -> tuple[set, str]:
    """Run `code` in a fresh interpreter; its last stdout line is JSON with "modules"."""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    *out, last = p.stdout.rstrip("\n").split("\n")
    result = json.loads(last)
    assert result.get("exit", 0) == 0, p.stdout + p.stderr
    return set(result["modules"]), "\n".join(out)


def cli_modules(*args: str) -> tuple[set, str]:
    return modules_after(RUN_CLI.format(args=list(args)))


def test_importing_the_cli_imports_no_library_dependency():
    modules, _ = modules_after("import json, sys, whisperfast.cli; print(json.dumps({'modules': sorted(sys.modules)}))")
    assert not modules & {*HEAVY, "mlx.core", "numpy", "tiktoken", "soundfile", "whisperfast.pipeline", "rich"}


def test_help_imports_neither_mlx_nor_mlx_whisper():
    modules, out = cli_modules("--help")
    assert "transcribe" in out and "info" in out
    assert not modules & {*HEAVY, "mlx.core", "numpy", "whisperfast.pipeline"}


def test_info_imports_mlx_core_after_the_blas_preload_and_nothing_heavy():
    modules, out = cli_modules("info", "--json")
    assert json.loads(out)["mlx"]
    assert "mlx.core" in modules and "whisperfast._blas" in modules
    assert not modules & {*HEAVY, "numpy", "whisperfast.pipeline"}


def test_models_imports_no_mlx_whisper():
    modules, out = cli_modules("models", "--json")
    assert "tiny.en" in {m["name"] for m in json.loads(out)}
    # huggingface_hub's cache scanner lists cached hub models; its network client is not needed
    assert not modules & {"mlx_whisper.whisper", "mlx_whisper.timing", "scipy.signal", "numba", "huggingface_hub.hf_api"}


def test_the_library_api_is_imported_on_first_use():
    modules, _ = modules_after(
        "import json, sys, whisperfast\n"
        "assert 'whisperfast.pipeline' not in sys.modules\n"
        "from whisperfast import TranscribeOptions, load, transcribe\n"
        "import whisperfast.pipeline as p\n"
        "assert (load, transcribe, TranscribeOptions) == (p.load, p.transcribe, p.TranscribeOptions)\n"
        "assert 'load' in dir(whisperfast)\n"
        "try:\n"
        "    whisperfast.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
        "print(json.dumps({'modules': sorted(sys.modules)}))")
    assert "whisperfast.pipeline" in modules


def test_16khz_audio_is_read_without_scipy_signal():
    modules, _ = modules_after(
        "import json, sys\n"
        "from whisperfast.audio import load_audio\n"
        f"assert load_audio({str(SAMPLES / 'jfk.wav')!r}).size > 0\n"
        "print(json.dumps({'modules': sorted(sys.modules)}))")
    assert "scipy.signal" not in modules


def test_a_transcription_without_word_timestamps_imports_neither_numba_nor_scipy_signal_nor_the_hub():
    modules, out = cli_modules("transcribe", str(SAMPLES / "jfk.wav"), "-q")
    assert "fellow Americans" in out
    assert "mlx_whisper.decoding" in modules  # it did transcribe with mlx-whisper's modules
    assert not modules & {"mlx_whisper.transcribe", "mlx_whisper.timing", "scipy.signal", "numba", "huggingface_hub"}


def test_word_timestamps_import_neither_numba_nor_scipy_signal():
    # mlx_whisper.timing imports both (~3 s on 2 cores) and numba compiles its DTW in every
    # process (~2 s): decode/words.py is its alignment on numpy
    for mode in ([], ["--batch-size", "2"]):
        modules, out = cli_modules("transcribe", str(SAMPLES / "jfk.wav"), "--word-timestamps", "--json", "-q", *mode)
        words = [w for s in json.loads(out)["segments"] for w in s["words"]]
        assert [w["word"].strip() for w in words[:3]] == ["And", "so", "my"], words[:3]
        assert not modules & {"mlx_whisper.timing", "scipy.signal", "numba"}, mode


def test_a_quiet_fast_transcription_prints_without_rich():
    modules, out = cli_modules("transcribe", str(SAMPLES / "jfk.wav"), "--fast", "--json", "-q")
    assert "fellow Americans" in json.loads(out)["text"]
    assert "whisperfast.decode.engine" in modules  # the fast engine ran
    assert not {m for m in modules if m == "rich" or m.startswith("rich.")}


def test_mlx_whisper_stays_whole_for_a_caller_who_imports_it_after_whisperfast():
    modules, out = modules_after(
        "import json, sys, whisperfast.pipeline\n"
        "import mlx_whisper\n"
        "from mlx_whisper.whisper import Whisper\n"
        "assert Whisper is whisperfast.pipeline.Whisper\n"
        "assert 'numba' not in sys.modules\n"
        "print(mlx_whisper.__version__, callable(mlx_whisper.transcribe))\n"
        "from mlx_whisper import transcribe, load_models\n"
        "assert callable(transcribe) and callable(load_models.load_model)\n"
        "print(json.dumps({'modules': sorted(sys.modules)}))")
    assert out == "0.4.3 True"
    assert {"mlx_whisper.transcribe", "numba", "huggingface_hub"} <= modules  # __init__ ran on first use
