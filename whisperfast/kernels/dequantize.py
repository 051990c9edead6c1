"""Quantized layers back to float ones, where the backend's quantized matmul is the slow path.

MLX's CPU `quantized_matmul` is a scalar loop: for a 1500-row product (tiny's encoder,
(1500×384)·(384×1536)) it took 870 ms against 22 ms for OpenBLAS on the dequantized weights,
and a one-row product 0.6 against 0.23 ms (benchmarks/quant/). The float layers hold
`mx.dequantize`'s weights, which are the quantized model's own values, in its compute dtype:
the model is the same, but products sum in BLAS's order, not quantized_matmul's, so results
agree to rounding, not bit for bit. Memory is the float model's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import mlx.core as mx
import mlx.nn as nn

from .rewrite import map_modules


@dataclass(frozen=True)
class Quantized:
    """The affine quantized layer a float weight was dequantized from (dequantized, below):
    its packed values (uint32 words), scales, biases, group size and bits, as MLX holds them."""

    weight: mx.array
    scales: mx.array
    biases: Optional[mx.array]
    group_size: int
    bits: int
    mode: str = "affine"


def dequantized(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of `model` whose QuantizedLinear and QuantizedEmbedding layers are Linear and
    Embedding layers over the dequantized weights (evaluated here, once); other modules are
    copied and their arrays shared; `model` is untouched. Returns (copy, layers replaced)."""
    made = []

    def visit(m: nn.Module, path: str):
        if not isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
            return None
        w = mx.dequantize(m.weight, m.scales, m.get("biases"), group_size=m.group_size, bits=m.bits,
                          mode=getattr(m, "mode", "affine"), dtype=m.scales.dtype)
        # built without __init__, whose random initial weights would draw from MLX's generator
        cls = nn.Linear if isinstance(m, nn.QuantizedLinear) else nn.Embedding
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.weight = w
        # where it came from, for the CPU's chains (kernels/cpu_simd.py: pack), which can read
        # its 8-bit values instead of w's float32 ones; an attribute, not one of the module's arrays
        new.quantized = Quantized(m.weight, m.scales, m.get("biases"), m.group_size, m.bits, getattr(m, "mode", "affine"))
        if "bias" in m:
            new.bias = m.bias
        made.append(w)
        return new

    new = map_modules(model, visit)
    mx.eval(made)
    return new, len(made)
