"""Per-input-channel activation ranges of one linear layer: the inter-channel variance LLM-FP4 exploits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..models.checkpoint import input_device


@torch.no_grad()
def channel_ranges(model: Any, ids: torch.Tensor, module: str, context: int) -> torch.Tensor:
    """max |x| per input channel of `module`'s input over `ids`, run in non-overlapping windows of `context`."""
    try:
        target = model.get_submodule(module)
    except AttributeError:
        raise ValueError(f"the model has no module {module!r} (e.g. model.layers.0.mlp.down_proj)") from None
    if not isinstance(target, torch.nn.Linear):
        raise ValueError(f"{module} is a {type(target).__name__}, not a linear layer")
    peak = torch.zeros(target.in_features)

    def hook(_module: Any, args: tuple) -> None:
        peak.copy_(torch.maximum(peak, args[0].abs().reshape(-1, args[0].shape[-1]).amax(0).float().cpu()))

    handle = target.register_forward_pre_hook(hook)
    try:
        for start in range(0, ids.numel(), context):
            window = ids[start : start + context]
            if window.numel() > 1:
                model(window[None].to(input_device(model)), use_cache=False)
    finally:
        handle.remove()
    return peak


def plot_channel_ranges(peak: torch.Tensor, module: str, out: str | Path) -> None:
    """Bar chart of per-channel max |x| (log scale), channels in order and sorted; PNG written to `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = peak.numpy()
    fig, (by_channel, sorted_ax) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 1]})
    by_channel.bar(range(values.size), values, width=1.0, color="tab:blue")
    by_channel.set(yscale="log", xlabel="input channel", ylabel="max |x| over the text", title=f"{module} input")
    sorted_ax.plot(sorted(values, reverse=True), color="tab:orange")
    sorted_ax.set(
        yscale="log", xlabel="channel rank", title=f"max/min = {values.max() / max(values.min(), 1e-30):.0f}x"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
