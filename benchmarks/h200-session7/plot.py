"""quant.png from quant_gpu.json: decode ms/token by bits, stock and fused, per model.
    python benchmarks/h200-session7/plot.py"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = Path(__file__).parent
rows = [r for r in json.loads((here / "quant_gpu.json").read_text())["rows"] if "bits" in r]
models = list(dict.fromkeys(r["model"] for r in rows))
fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.6), sharey=True)
for ax, m in zip(axes, models):
    rs = [r for r in rows if r["model"] == m]
    xs = range(len(rs))
    ax.bar([x - 0.2 for x in xs], [r["stock"]["decode_ms_per_token"] for r in rs], 0.4, label="stock (mlx-whisper)")
    ax.bar([x + 0.2 for x in xs], [r["fused"]["decode_ms_per_token"] for r in rs], 0.4, label="fused (--fast)")
    for x, r in zip(xs, rs):
        ax.text(x + 0.2, r["fused"]["decode_ms_per_token"], f'{r["fused"]["decode_ms_per_token"]:.2f}', ha="center",
                va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [str(r["bits"]) for r in rs])
    ax.set_title(m, fontsize=10)
    ax.set_xlabel("weights")
axes[0].set_ylabel("decode ms/token (median of 5)")
axes[0].legend(fontsize=8)
fig.suptitle("H200, fp16, JFK, greedy: quantized decoders on the one-launch kernel", fontsize=10)
fig.tight_layout()
fig.savefig(here / "quant.png", dpi=110)
