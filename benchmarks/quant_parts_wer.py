"""Which layers' width a quantized model's accuracy hangs on (issue 17): WER on the 600 s clip
(quant_wer_long.py's, whole samples) of a float model whose Linear and Embedding weights are
quantized and dequantized back per part, MLX's affine mode: the encoder's layers, the
decoder's, and the vocabulary (the token embedding, which projects every logit), each at its
own bits, all at one group size. The same values `--quantize` would give those layers, with
float matmuls (as quant_wer_long.py's --simulate).

Usage: python benchmarks/quant_parts_wer.py MODEL ENCODER,DECODER,VOCABULARY,GROUP ... [--from float32]
e.g.   python benchmarks/quant_parts_wer.py tiny.en 4,4,4,64 4,4,8,64
`--from`: the dtype the weights are quantized in (default float16, the embedded bundles'
stored dtype, as models._quantized does). Prints one JSON line per spec."""

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import whisperfast  # noqa: E402,F401  (BLAS preload before mlx)

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_map_with_path  # noqa: E402

from quant_wer_long import clip  # noqa: E402
from tests.text import error_rate  # noqa: E402
from whisperfast.pipeline import TranscribeOptions, load, transcribe  # noqa: E402


def requantized(whisper, encoder: int, decoder: int, vocabulary: int, group: int, dtype) -> None:
    def swap(path, m):
        if isinstance(m, (nn.Linear, nn.Embedding)) and m.weight.ndim == 2:
            bits = vocabulary if isinstance(m, nn.Embedding) else encoder if path.startswith("encoder") else decoder
            if m.weight.shape[-1] % group == 0:
                w = m.weight.astype(dtype)
                m.weight = mx.dequantize(*mx.quantize(w, group, bits), group, bits).astype(m.weight.dtype)
        return m

    whisper.update_modules(tree_map_with_path(swap, whisper.leaf_modules(), is_leaf=nn.Module.is_module))
    mx.eval(whisper.parameters())


def main() -> None:
    args = sys.argv[1:]
    dtype = mx.float16
    if "--from" in args:
        i = args.index("--from")
        dtype, args = getattr(mx, args[i + 1]), args[:i] + args[i + 2:]
    audio, ref, desc = clip(600.0, True)
    n = desc["reference_words"]
    name = args[0]
    for spec in args[1:]:
        encoder, decoder, vocabulary, group = (int(x) for x in spec.split(","))
        model = load(name, dtype=mx.float32)
        requantized(model.whisper, encoder, decoder, vocabulary, group, dtype)
        t0 = time.perf_counter()
        t = transcribe(model, audio, TranscribeOptions(language="en"))
        edits = round(error_rate(ref, t.text) * n)
        print(json.dumps({"model": name, "encoder": encoder, "decoder": decoder, "vocabulary": vocabulary, "group": group,
                          "quantized_from": str(dtype).removeprefix("mlx.core."), "wer": round(100 * edits / n, 2),
                          "edits": edits, "words": n, "sampled_windows": t.sampled_windows,
                          "seconds": round(time.perf_counter() - t0)}), flush=True)


if __name__ == "__main__":
    main()
