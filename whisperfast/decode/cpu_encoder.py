"""The fast engine's encoder blocks on the CPU in one C call (kernels/cpu_rows.c), MLX's bits.

decode/encoder.py's `cpu_forward` runs mlx-whisper's encoder blocks as MLX ops shared out
across the CPU streams; an attention layer there copies its heads' operands, hands them to the
streams and joins their pieces (~9 ms of tiny.en's ~46 ms attention layer on 2 cores,
benchmarks/cpu/profile.md §14). `NativeEncoder` makes the same products with the same BLAS
calls and the same elementwise ops (cpu_simd.c's softmax, GELU and layer norms) over the two
threads of the library's team, in one call (several windows two at a time, one a thread):
the blocks' output bit for bit (tests/test_cpu_encoder.py checks it against stock's encoder).

`NativeCross` makes the decoder's cross-attention keys and values from the encoder's output in
the same way, once a window, as the engine's encoding does (decode/engine.py): they live here,
with the encoding they follow, not with the step that reads them."""

from __future__ import annotations

import ctypes
import threading
from typing import Optional

import mlx.core as mx
from mlx_whisper.whisper import AudioEncoder, TextDecoder

from ..kernels import cpu_simd, ops
from ..kernels.layers import cpu_streams, piece_bounds
from ..kernels.cpu_simd import CpuSimd
from .attention import WhisperAttention
from .cpu_step import LAYER, SIZES, SPLIT_MIN, cross_chain_matches, global_sgemm, layers_unsupported


def unsupported(encoder: AudioEncoder) -> str:
    """Why NativeEncoder cannot run this encoder's blocks, or an empty string."""
    blocks = encoder.blocks
    if not all(isinstance(b.attn, WhisperAttention) and b.attn.sdpa is ops.fused_scaled_dot_product_attention
               for b in blocks):
        return "an attention other than the fused one"
    return layers_unsupported([m for b in blocks for m in (b.attn.query, b.attn.key, b.attn.value, b.attn.out,
                                                           b.mlp1, b.mlp2)],
                              [n for b in blocks for n in (b.attn_ln, b.mlp_ln)])


class NativeEncoder:
    """An encoder's residual blocks, x (n_audio, n_audio_ctx, n_state) float32 after the
    positional embedding -> the last block's output, in one C call: one audio on both threads
    of the team, several two at a time, one a thread (~7 % sooner on two cores: cpu_rows.c's
    Pair), with the same bits."""

    def __init__(self, kernels: CpuSimd, encoder: AudioEncoder):
        self.kernels, self.encoder = kernels, encoder
        self.owner = encoder  # the module it reads (_kept)
        self.reason = unsupported(encoder)
        self._tables = self._scratch = self._sgemm = self._sgemm_bf16 = None
        self.bf16_calls = 0
        self._lock = threading.Lock()  # the scratch is shared: a second thread's call would grow it under the first

    def __call__(self, x: mx.array, bf16: bool = False) -> Optional[mx.array]:
        """The blocks' output, or None where MLX's ops are to run (`reason`). bf16: their products
        in bfloat16 on AMX tiles (kernels/cpu_amx.c) where the CPU has them, not stock's bits
        (batched mode's, which does not keep them anyway); `bf16_calls` counts the calls that did."""
        if self.reason or x.dtype != mx.float32 or x.ndim != 3:
            return None
        with self._lock:
            return self._blocks(x, bf16)

    @property
    def bf16_ready(self) -> bool:
        """Whether a bf16 call would run on AMX tiles (the CPU and OS have them)."""
        with self._lock:
            if self._tables is None:
                self._build()
            return self._sgemm_bf16 is not None

    def _blocks(self, x: mx.array, bf16: bool) -> mx.array:
        import numpy as np

        if self._tables is None:
            self._build()
        lib, (n_audio, n) = self.kernels.lib, x.shape[:2]
        sizes = self._sizes | {"n_ctx": n}
        dims = (ctypes.c_long * len(SIZES))(*(sizes[k] for k in SIZES))
        need = lib.wf_encoder_scratch(dims, n, n_audio)
        if self._scratch is None or self._scratch.size < need:  # kept: a window's is ~45 MB for tiny.en
            self._scratch = np.empty(need, np.float32)
        out = np.array(x, np.float32)  # a copy of its own: the call works in place
        lib.wf_encoder_blocks(_products(self, bf16), self._tables, dims, self._scale, self._eps, out.ctypes.data, n_audio, n,
                              SPLIT_MIN, self._scratch.ctypes.data)
        return mx.array(out)

    def _build(self):
        """The blocks' tables (cpu_decoder.h's layer layout; no cross-attention, no caches)."""
        import numpy as np

        host = cpu_simd._host  # the weights' own memory
        rows, keep = [], []
        for b in self.encoder.blocks:
            a = b.attn
            named = {"ln1_w": b.attn_ln.weight, "ln1_b": b.attn_ln.bias, "wq": a.query.weight, "bq": a.query.bias,
                     "wk": a.key.weight, "wv": a.value.weight, "bv": a.value.bias, "wo": a.out.weight,
                     "bo": a.out.bias, "ln3_w": b.mlp_ln.weight, "ln3_b": b.mlp_ln.bias, "w1": b.mlp1.weight,
                     "b1": b.mlp1.bias, "w2": b.mlp2.weight, "b2": b.mlp2.bias}
            arrays = {k: np.ascontiguousarray(host(v)) for k, v in named.items()}
            keep.extend(arrays.values())
            rows.extend(arrays[name].ctypes.data if name in arrays else None for name in LAYER)
        first = self.encoder.blocks[0]
        self._keep = keep
        self._sizes = dict.fromkeys(SIZES, 0) | dict(
            n_layer=len(self.encoder.blocks), n_state=first.attn.query.weight.shape[0], n_head=first.attn.n_head,
            n_mlp=first.mlp1.weight.shape[0], threads=self.kernels.threads)
        self._scale, self._eps = first.attn.qk_scale, first.attn_ln.eps
        self._sgemm, self._sgemm_bf16 = global_sgemm(), self.kernels.bf16_sgemm()
        self._tables = (ctypes.c_void_p * len(rows))(*rows)  # last: it marks the build done


def _products(native, bf16: bool) -> Optional[int]:
    """The sgemm a NativeEncoder's or NativeCross's call hands its C: the bfloat16 one where
    `bf16` and the CPU has AMX tiles (counted in its bf16_calls), else the global cblas_sgemm."""
    if bf16 and native._sgemm_bf16 is not None:
        native.bf16_calls += 1
        return native._sgemm_bf16
    return native._sgemm


def native_encoder(encoder: AudioEncoder) -> Optional[NativeEncoder]:
    """The encoder's NativeEncoder where the CPU's C runs and it covers the encoder, else None."""
    return _kept(encoder, "_whisperfast_blocks", NativeEncoder)


def _kept(module, key: str, make):
    """make(kernels, module), made once and kept on the module under `key`, where the CPU's C
    runs (float32 kernels, WHISPERFAST_CPU_STEP not 0) and it has no `reason` to stand aside,
    else None."""
    from ..config import config

    if mx.default_device() != mx.cpu or not config().cpu_step:
        return None
    native = module.__dict__.get(key, False)
    # a module copied with its __dict__ (a rewrite's copy) carries the original's: made again
    if native is False or (native is not None and native.owner is not module):
        kernels = cpu_simd.chosen(mx.float32)
        native = module.__dict__[key] = make(kernels, module) if kernels is not None else None
    return native if native is not None and not native.reason else None


class NativeCross:
    """Every decoder layer's cross-attention keys and values for audio features xa (n_audio,
    n_audio_ctx, n_state) float32 in one C call (cpu_rows.c: wf_cross_kv): the BLAS calls of
    WhisperAttention.cross_kv, its products cut where its CPU streams cut them, then its scale
    and its heads-first layout, bit for bit (tests/test_cpu_encoder.py). MLX's ops wrote each
    product in its streams' pieces, joined them and laid them out heads-first again (4 audios
    of tiny.en: 123 ms against the call's 104, benchmarks/cpu/session31/)."""

    def __init__(self, kernels: CpuSimd, decoder: TextDecoder):
        self.kernels, self.decoder = kernels, decoder
        self.owner = decoder  # the module it reads (_kept)
        blocks = decoder.blocks
        self.reason = "a cross-attention other than whisperfast's" \
            if not all(isinstance(b.cross_attn, WhisperAttention) for b in blocks) else \
            layers_unsupported([m for b in blocks for m in (b.cross_attn.key, b.cross_attn.value)], [])
        self._tables = self._scratch = None
        self._chains: dict = {}  # n_audio -> whether the decode step's scores sum as chains (cross_chain_matches)
        self._packed = None  # (the keys it made last, each layer's keys as wf_pack_heads lays them out)
        # Whether to pack the keys it makes: on while a decode step takes them (take_packed), off
        # once some went untaken (beams, best-of samples and MLX's step read the keys as made)
        self.packs = True
        self.bf16_calls = 0
        self._lock = threading.Lock()

    def chains(self, n_audio: int) -> bool:
        """cross_chain_matches for this decoder over n_audio keys, found once (~18 ms)."""
        with self._lock:
            return self._chains_locked(n_audio)

    def _chains_locked(self, n_audio: int) -> bool:
        if n_audio not in self._chains:
            first = self.decoder.blocks[0].cross_attn
            self._chains[n_audio] = cross_chain_matches(self.kernels, first.n_head, n_audio,
                                                        first.key.weight.shape[0] // first.n_head)
        return self._chains[n_audio]

    def take_packed(self, keys: list) -> Optional[list]:
        """Each layer's cross keys as wf_pack_heads lays them out (for the decode step's chains),
        where `keys` are the keys the last call made and packed, else None (and the next call
        packs). Handed over, not kept here: the caller holds them as long as it reads them, and
        their memory goes back to the heap with the caller's (kept, each batch's ~9 MB a layer
        came from fresh pages)."""
        with self._lock:
            made = self._packed
            if made is None or len(keys) != len(made[0]) or not all(a is b for a, b in zip(keys, made[0])):
                self.packs = True
                return None
            self._packed = None
            return made[1]

    def __call__(self, xa: mx.array, bf16: bool = False) -> Optional[list]:
        """[(keys, values)] a layer, each (n_audio, n_head, n_audio_ctx, head_dim), or None where
        MLX's ops are to run (`reason`, or features other than float32 rows). bf16: the products
        in bfloat16 on AMX tiles where the CPU has them (a greedy batch's: decode/flat.py's
        _ready), not stock's bits; `bf16_calls` counts the calls that did."""
        import numpy as np

        if self.reason or xa.dtype != mx.float32 or xa.ndim != 3:
            return None
        B, S, D = xa.shape
        x = np.ascontiguousarray(cpu_simd._host(xa))
        with self._lock:  # one call at a time: the tables, the scratch and the packed keys are shared
            if self._tables is None:
                self._build()
            if D != self._sizes["n_state"]:
                return None
            H, n = self._sizes["n_head"], self._sizes["n_layer"]
            hd = D // H
            out = [mx.zeros((B, H, S, hd), mx.float32) for _ in range(2 * n)]
            mx.eval(out)  # their own memory, which the call fills (nothing else holds these arrays yet)
            ptrs = [cpu_simd._buffer(a).ctypes.data for a in out]
            if self._packed is not None:  # the last keys packed went untaken
                self.packs, self._packed = False, None
            panel = self.kernels.lib.wf_panel_size()
            panels = [np.empty(B * H * -(-S // panel) * panel * hd, np.float32) for _ in range(n)] \
                if self.packs and self._chains_locked(S) else None
            if self._scratch is None or self._scratch.size < 2 * B * S * D:  # kept: the largest batch's two products
                self._scratch = np.empty(2 * B * S * D, np.float32)
            # the products cut as WhisperAttention._linear cuts them on the CPU streams
            cut = piece_bounds(D) if S >= 1500 and len(cpu_streams()) > 1 else [0, D]
            bounds = np.array(cut, np.int64)
            dims = (ctypes.c_long * len(SIZES))(*(self._sizes[k] for k in SIZES))
            if self.kernels.lib.wf_cross_kv(_products(self, bf16), self._tables, dims, self._scale, x.ctypes.data, B, S,
                                            bounds.ctypes.data, len(cut) - 1, self._scratch.ctypes.data,
                                            (ctypes.c_void_p * n)(*ptrs[0::2]), (ctypes.c_void_p * n)(*ptrs[1::2]),
                                            None if panels is None else
                                            (ctypes.c_void_p * n)(*(p.ctypes.data for p in panels))):
                raise RuntimeError("wf_cross_kv declined its bounds")
            made = list(zip(out[0::2], out[1::2]))
            self._packed = None if panels is None else ([k for k, _ in made], panels)
        return made

    def _build(self):
        """The layers' tables (cpu_decoder.h's layout: the cross-attention's key, value and its
        bias; nothing else is read)."""
        import numpy as np

        rows, keep = [], []
        for b in self.decoder.blocks:
            c = b.cross_attn
            named = {"wk": c.key.weight, "wv": c.value.weight, "bv": c.value.bias}
            arrays = {k: np.ascontiguousarray(cpu_simd._host(v)) for k, v in named.items()}
            keep.extend(arrays.values())
            rows.extend(arrays[name].ctypes.data if name in arrays else None for name in LAYER)
        first = self.decoder.blocks[0].cross_attn
        self._keep = keep
        self._sizes = dict.fromkeys(SIZES, 0) | dict(n_layer=len(self.decoder.blocks), n_state=first.key.weight.shape[0],
                                                     n_head=first.n_head, threads=self.kernels.threads)
        self._scale, self._sgemm, self._sgemm_bf16 = first.qk_scale, global_sgemm(), self.kernels.bf16_sgemm()
        self._tables = (ctypes.c_void_p * len(rows))(*rows)


def native_cross(decoder: TextDecoder) -> Optional[NativeCross]:
    """The decoder's NativeCross where the CPU's C runs and it covers the decoder's
    cross-attention, else None."""
    return _kept(decoder, "_whisperfast_cross", NativeCross)
