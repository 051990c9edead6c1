"""The engine that decodes a window, chosen once per decode from the model and the options:

- **stock**: a model as mlx-whisper built it decodes with mlx-whisper's own `decode`
  (beam search, which that lacks, with `StockBeamTask`; batched mode's HeldEnd, which it
  lacks too, with `StockTask`);
- **fast**: a rewritten model decodes with `StaticCacheTask`, which runs the CUDA step where
  it applies and the flat step elsewhere (chosen once, in its `_main_loop`);
- **stock for sampled windows**: where the fast engine cannot round as stock does (a GPU in
  fp16 or bf16: fused kernels keep fp32 scores and sum in their own orders), a window decoded
  at temperature > 0 runs on the stock model over the same weights, from the window's mel.
  Sampling turns any difference in the logits into a different draw, and the fallback is
  where the transcripts parted (issue 12); at temperature 0 a difference matters only at a
  near-tie. On the CPU the fast engine is stock's arithmetic bit for bit, so it decodes every
  window there.
- **stock for decisions near a threshold**: on that same GPU, a window whose average log
  probability or no-speech probability lies within `MARGIN` of the threshold it is judged by
  is decoded again on the stock model, and stock's numbers decide: the fast engine's sums
  differ from stock's in the last digits, which could put a window on the other side.

On the CPU the fast engine makes a window's cross-attention K/V with its encoding (whisper.cpp's
split of the work), and every decode of the window reads them: the fallback's temperatures no
longer make them again, and an English-only model's first prompt, its SOT alone, is then one
decode step (flat.StaticInference).

Shapes: mel (N_FRAMES, n_mels) or (n_audio, N_FRAMES, n_mels); features (n_audio_ctx,
n_audio_state) or (n_audio, n_audio_ctx, n_audio_state)."""

from __future__ import annotations

from collections import Counter
from functools import cached_property
from typing import List, Optional, Union

import mlx.core as mx
from mlx_whisper.decoding import DecodingOptions, DecodingResult
from mlx_whisper.decoding import decode as stock_decode
from mlx_whisper.tokenizer import Tokenizer
from mlx_whisper.tokenizer import get_tokenizer as stock_tokenizer
from mlx_whisper.whisper import Whisper

from .. import tokenizer as fast_tokenizer
from .attention import supports_static_cache
from .encoder import encode
from .flat import cross_kv
from .language import detect_language
from .task import StaticCacheTask, StockBeamTask, StockTask
from .words import Aligner

Result = Union[DecodingResult, List[DecodingResult]]

# How far the fast engine's average log probability or no-speech probability may be from a
# threshold before the decision is left to it. On a GPU in fp16 they differ from stock's by
# rounding: within 1e-3 where the tokens are the same (benchmarks/h200-decode/
# fallback_probe.jsonl). The margin is wide of that, and windows this close to a threshold are few.
MARGIN = 0.05


class Engine:
    """How one model decodes. `model` runs every window; `stock` (the model as built, sharing
    its weights), where given, runs the sampled windows of a fast model on a GPU in a narrow
    dtype. `sampled_on_stock` overrides that choice (tests force it on the CPU). `aligner`:
    the word timestamps' pass over a window (words.Aligner), made at its first use."""

    def __init__(self, model: Whisper, stock: Optional[Whisper] = None, sampled_on_stock: Optional[bool] = None):
        self.model, self.fast = model, supports_static_cache(model)
        if sampled_on_stock is None:
            narrow = float_dtype(model) in (mx.float16, mx.bfloat16)
            sampled_on_stock = narrow and mx.default_device() == mx.gpu
        self.stock = stock if self.fast and sampled_on_stock else None
        self._stock_features = None  # (mel, the stock encoder's features of it): one window's, across temperatures
        # On the CPU the fast engine makes a window's cross K/V with its encoding, as whisper.cpp
        # does: once for every decode of the window (each temperature's), where a decode made
        # them in its prompt each time (tiny.en: 8 products of 1500 rows, ~25 ms)
        self.cross_at_encode = self.fast and mx.default_device() == mx.cpu
        self._cross = None  # (features, their cross K/V): the last window's
        # decodes by where they ran: "fast", "stock", "stock (sampled)", "stock (near a threshold)"
        self.decodes = Counter()

    @cached_property
    def aligner(self) -> Aligner:
        return Aligner(self.model)

    @property
    def name(self) -> str:
        return "fast" if self.fast else "stock"

    @property
    def get_tokenizer(self):
        """get_tokenizer as this engine's decodes build theirs (`tokenizer_for`)."""
        return tokenizer_for(self.model)

    def encode(self, mel: mx.array) -> mx.array:
        """mel (N_FRAMES, n_mels) in the decode dtype -> features (n_audio_ctx, n_audio_state)."""
        features = mx.squeeze(encode(self.model, mel[None]), 0)  # not [0]: see decode/rules.py's greedy_update
        cross = cross_kv(self.model.decoder, features[None]) if self.cross_at_encode else None
        self._cross = None if cross is None else (features, cross)
        if cross is not None:
            mx.eval(features, cross)
        return features

    def detect_language(self, features: mx.array, tokenizer: Tokenizer):
        """(language token, {code: probability}) for one window's features."""
        tokens, probs = detect_language(self.model, features[None], tokenizer)
        return tokens[0], probs[0]

    def decode(self, features: mx.array, options: DecodingOptions, mel: Optional[mx.array] = None,
               thresholds: tuple = ()) -> Result:
        """One window's features, or a batch's, decoded under `options`. `mel`, the window's
        own, lets the window run on the stock model where the module's docstring says;
        `thresholds` ((logprob_threshold, no_speech_threshold), None for one not used) are what
        the caller will judge the result by."""
        if self.stock is not None and mel is not None and options.temperature > 0:
            self.decodes["stock (sampled)"] += 1
            return self._on_stock(mel, options)
        self.decodes[self.name] += 1
        cross = self._cross[1] if self._cross is not None and self._cross[0] is features else None
        result = decode_with(self.model, features, options, self.fast, cross)
        if self.stock is not None and mel is not None and thresholds and _near(result, *thresholds):
            self.decodes["stock (near a threshold)"] += 1
            return self._on_stock(mel, options)
        return result

    def _on_stock(self, mel: mx.array, options: DecodingOptions) -> DecodingResult:
        """The window decoded on the stock model as the stock lane decodes it: mlx-whisper's
        task (`StockTask`, on this engine's tokenizer), or with beams `StockBeamTask`."""
        task = StockBeamTask if options.beam_size is not None else StockTask
        return task(self.stock, options).run(self._stock_encoded(mel)[None])[0]

    def _stock_encoded(self, mel: mx.array) -> mx.array:
        if self._stock_features is None or self._stock_features[0] is not mel:
            self._stock_features = (mel, self.stock.encoder(mel[None])[0])
        return self._stock_features[1]


def float_dtype(model: Whisper) -> mx.Dtype:
    """The dtype the decoder computes in: its embedding's, or for a quantized embedding (packed
    uint32 words) its scales'."""
    embedding = model.decoder.token_embedding
    return getattr(embedding, "scales", embedding.weight).dtype


def _near(result: DecodingResult, logprob_threshold: Optional[float], no_speech_threshold: Optional[float]) -> bool:
    return any(t is not None and abs(x - t) < MARGIN
               for x, t in ((result.avg_logprob, logprob_threshold), (result.no_speech_prob, no_speech_threshold)))


def decode_with(model: Whisper, features: mx.array, options: DecodingOptions, fast: bool, cross=None,
                must_reach=None, bf16: bool = False) -> Result:
    """`cross`: the fast engine's cross K/V of these features, made already (flat.cross_kv);
    `must_reach`: batched mode's rule on where a row may end (rules.HeldEnd), an int an audio;
    `bf16`: batched mode's, a greedy batch's cross K/V in bfloat16 products on the CPU where it
    has AMX tiles (flat.StaticInference)."""
    if not fast and options.beam_size is None and (must_reach is None or options.without_timestamps):
        return stock_decode(model, features, options)  # (HeldEnd is a rule on timestamps: task._hold_ends)
    if single := features.ndim == 2:
        features = features[None]
    if fast:
        task = StaticCacheTask(model, options, cross, must_reach, bf16)
    else:
        task = (StockBeamTask if options.beam_size is not None else StockTask)(model, options, must_reach)
    result = task.run(features)
    return result[0] if single else result


def tokenizer_for(model: Whisper):
    """mlx-whisper's `get_tokenizer`, as a decode of `model` builds its tokenizer: whisperfast's
    (the same ids, cheaper to build: ..tokenizer) where the fast engine decodes, mlx-whisper's
    own for a stock model, so that a stock lane pays what stock pays."""
    return fast_tokenizer.get_tokenizer if supports_static_cache(model) else stock_tokenizer


def decode_window(model: Whisper, features: mx.array, options: DecodingOptions, must_reach=None,
                  bf16: bool = False) -> Result:
    """Decode one window's features (n_audio_ctx, n_audio_state), or a batch's, on the engine
    the model has (fast where it is rewritten, else stock), every window alike. `must_reach`
    and `bf16`: batched mode's (rules.HeldEnd's, an int an audio; a greedy batch's cross K/V in
    bfloat16 on the CPU's AMX tiles)."""
    return decode_with(model, features, options, supports_static_cache(model), must_reach=must_reach, bf16=bf16)
