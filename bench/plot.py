"""docs/benchmarks.png: examples/s by configuration, ours beside PyTorch and the anchors.

    python bench/plot.py docs/results/compare_h200.json docs/results/scaling_h200x4.json docs/benchmarks.png

Reads the JSON that bench/gpu/compare.py and bench/gpu/scaling.py write; needs matplotlib.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# performance.md's anchors (H200, GPU-resident, batch 1024), drawn in grey
ANCHORS = {"anchor: torch.compile fp16": 244_600, "anchor: PyTorch eager fp16 channels_last": 124_000,
           "anchor: ORT CUDA fp16, prefer_nhwc": 116_000}
TARGETS = {"target fp16 (#6)": 250_000, "target fp32 TF32 (#6)": 80_000}


def main() -> None:
    compare, scaling, out = json.loads(Path(sys.argv[1]).read_text()), json.loads(Path(sys.argv[2]).read_text()), sys.argv[3]
    bars = [(name, v["examples_per_s"], "ours" if name.startswith("ours") else "torch")
            for name, v in compare.items() if "examples_per_s" in v]
    bars += [(name, rate, "anchor") for name, rate in ANCHORS.items()]
    bars.sort(key=lambda bar: bar[1])
    colours = {"ours": "tab:blue", "torch": "tab:orange", "anchor": "tab:gray"}
    figure, (left, right) = plt.subplots(1, 2, figsize=(15, 7), gridspec_kw={"width_ratios": [3, 2]})
    left.barh([b[0] for b in bars], [b[1] for b in bars], color=[colours[b[2]] for b in bars])
    for i, bar in enumerate(bars):
        left.text(bar[1], i, f" {bar[1]:,.0f}", va="center", fontsize=8)
    for label, rate in TARGETS.items():
        left.axvline(rate, linestyle="--", color="tab:red", linewidth=1)
        left.text(rate, len(bars) - 0.5, label, color="tab:red", fontsize=8, rotation=90, va="top", ha="right")
    left.set_xlabel("examples/s, one H200 (resident: inputs on the GPU; host in/out: host arrays)")
    left.tick_params(axis="y", labelsize=8)
    left.set_title("One GPU: ours (blue) beside PyTorch (orange) and performance.md's anchors (grey)", fontsize=10)
    for source, marker in (("host memory", "o"), ("disk", "s")):
        for precision in ("fp32", "fp16"):
            points = [r for r in scaling if r["source"].startswith(source) and r["precision"] == precision]
            if points:
                key = "steady_examples_per_s" if source == "disk" else "examples_per_s"
                right.plot([p["gpus"] for p in points], [p[key] for p in points], marker=marker,
                           label=f"{source}, {precision}" + (" (CLI job, start-up excluded)" if source == "disk" else ""))
    one = next(r["examples_per_s"] for r in scaling if r["source"] == "host memory" and r["precision"] == "fp16" and r["gpus"] == 1)
    right.plot([1, 2, 4], [one, 2 * one, 4 * one], linestyle=":", color="gray", label="linear from 1 GPU, fp16")
    right.set_xticks([1, 2, 4])
    right.set_xlabel("GPUs (H200, one host)")
    right.set_ylabel("examples/s")
    right.legend(fontsize=8)
    right.set_title("Scaling across GPUs", fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
