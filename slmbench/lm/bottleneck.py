"""Bottleneck adapters (Houlsby et al., 2019, "Parameter-Efficient Transfer Learning for NLP").

An adapter is a down-projection to a small bottleneck, a non-linearity and an up-projection, added
to its input (a residual): ``h + up(act(down(h)))``. One goes on the output of each transformer
block's attention and one on the output of its feed-forward network, before the block's own
residual connection; everything else stays frozen. The up-projection starts at zero, so an adapted
model computes exactly what the base model does until training moves it.

Hand-written because the maintained ``adapters`` library (1.3) requires transformers 4.x. The
sub-layer outputs are found by name in each block: the attention module's output projection
(``o_proj``, ``out_proj``, ``c_proj``, ``dense``, ``wo``) and the feed-forward module's
(``down_proj``, ``fc2``, ``c_proj``, ``dense_4h_to_h``, ``w2``, ``wo``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ATTENTION_MODULES = ("self_attn", "attention", "attn", "self_attention")
FEED_FORWARD_MODULES = ("mlp", "feed_forward", "ffn")
ATTENTION_OUTPUTS = ("o_proj", "out_proj", "c_proj", "dense", "wo")
FEED_FORWARD_OUTPUTS = ("down_proj", "fc2", "c_proj", "dense_4h_to_h", "w2", "wo")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


class BottleneckAdapter(nn.Module):
    """``h + up(act(down(h)))`` with ``up`` initialised to zero (identity at the start)."""

    def __init__(self, hidden_size: int, bottleneck: int, activation: str = "gelu") -> None:
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck)
        self.activation = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, hidden_size)
        nn.init.normal_(self.down.weight, std=hidden_size**-0.5)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        update = self.up(self.activation(self.down(hidden.to(self.down.weight.dtype))))
        return hidden + update.to(hidden.dtype)


class AdaptedOutput(nn.Module):
    """A frozen output projection followed by its adapter."""

    def __init__(self, projection: nn.Module, adapter: BottleneckAdapter) -> None:
        super().__init__()
        self.projection = projection
        self.adapter = adapter

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.projection(hidden))


def _child(module: nn.Module, names: tuple[str, ...]) -> tuple[str, nn.Module] | None:
    for name in names:
        child = getattr(module, name, None)
        if isinstance(child, nn.Module):
            return name, child
    return None


def _output_projection(module: nn.Module, names: tuple[str, ...]) -> tuple[str, nn.Linear] | None:
    found = _child(module, names)
    if found is None:
        return None
    name, child = found
    return (name, child) if isinstance(child, nn.Linear) else None


def add_bottleneck_adapters(model: nn.Module, bottleneck: int = 64, activation: str = "gelu") -> list[str]:
    """Freeze ``model`` and put an adapter after every block's attention and feed-forward output.

    Returns the names of the adapted projections; raises ValueError when no block is recognised.
    """
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    targets: list[tuple[str, nn.Module, str, nn.Linear]] = []
    for block_name, block in model.named_modules():
        attention, feed_forward = _child(block, ATTENTION_MODULES), _child(block, FEED_FORWARD_MODULES)
        if attention is None or feed_forward is None:
            continue
        for (sub_name, sub), outputs in ((attention, ATTENTION_OUTPUTS), (feed_forward, FEED_FORWARD_OUTPUTS)):
            projection = _output_projection(sub, outputs)
            if projection is None:
                raise ValueError(f"no output projection ({', '.join(outputs)}) found in {block_name}.{sub_name}")
            projection_name, projection_module = projection
            targets.append((f"{block_name}.{sub_name}", sub, projection_name, projection_module))
    if not targets:
        raise ValueError(f"no transformer block with attention and feed-forward modules found in {type(model).__name__}")
    adapted = []
    for parent_name, parent, name, output in targets:
        adapter = BottleneckAdapter(output.out_features, bottleneck, activation).to(output.weight.device)
        setattr(parent, name, AdaptedOutput(output, adapter))
        adapted.append(f"{parent_name}.{name}")
    return adapted


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' weights only, keyed by their names in ``model``."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if ".adapter." in name}


def save_adapters(model: nn.Module, path: Any, metadata: dict[str, str]) -> None:
    """The adapters' weights as safetensors (``metadata``: bottleneck, activation...), never the base model."""
    from safetensors.torch import save_file

    save_file(adapter_state_dict(model), str(path), metadata=metadata)


def load_adapters(model: nn.Module, path: Any) -> None:
    """Load weights saved by ``save_adapters`` into a model adapted with the same settings."""
    from safetensors.torch import load_file

    missing = model.load_state_dict(load_file(str(path)), strict=False)
    if missing.unexpected_keys:
        raise ValueError(f"adapter weights without a place in the model: {missing.unexpected_keys[:5]}")
