"""glibc's malloc keeps the blocks MLX frees on the CPU (whisperfast/_malloc.py): a block the
size of an encoder's attention scores, freed and made again, reuses its pages instead of
mapping new ones; `WHISPERFAST_MALLOC=0` leaves glibc's defaults, which map them anew."""

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's mallopt: Linux with glibc only")

# A fresh interpreter (the setting is made at import): an MLX CPU array of 40 MB, over glibc's
# largest default mmap threshold (32 MiB), made, written and freed ten times; the page faults
# of each, and of the last nine in 4 KiB pages of the block.
PROBE = """
import json, resource, whisperfast
from whisperfast import _malloc
import mlx.core as mx
mx.set_default_device(mx.cpu)
n = 10_000_000
faults = []
for i in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = mx.full((n,), float(i))
    mx.eval(a)
    assert a[n - 1].item() == i
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"note": _malloc.describe(), "faults": faults, "blocks": sum(faults[1:]) / (4 * n / 4096)}))
"""


def probe(**env: str) -> dict:
    e = {k: v for k, v in os.environ.items() if k != "WHISPERFAST_MALLOC"} | env
    out = subprocess.run([sys.executable, "-c", PROBE], env=e, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_blocks_are_reused_not_mapped_again():
    kept, default = probe(), probe(WHISPERFAST_MALLOC="0")
    assert kept["note"].startswith("glibc keeps freed blocks"), kept
    assert default["note"] == "glibc's defaults (WHISPERFAST_MALLOC=0)", default
    # by default every remade block is a new mapping, whose pages fault in again (fewer faults
    # where the kernel backs it with huge pages); the kept heap's pages are the last block's
    assert all(f > 0 for f in default["faults"][1:]), default
    assert kept["blocks"] < 1 and sum(kept["faults"][1:]) * 4 < sum(default["faults"][1:]), (kept, default)
