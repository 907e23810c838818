"""The model registry: the only switch between segmentation models.

A model class registers itself under a name with ``@register_model("name")``; the trainer
builds it with ``create_model(name, in_channels=..., num_classes=..., **kwargs)``, where the
keyword arguments are the class's own (``base_channels`` for the U-Nets, ``embed_dim`` for
Swin-UNet, ...). Every registered class takes ``in_channels`` and ``num_classes`` and maps a
``(B, in_channels, H, W)`` float tensor to ``(B, num_classes, H, W)`` raw logits for any H, W.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

from precompute.types import SettingError

M = TypeVar("M", bound=type[nn.Module])

_MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: make ``create_model(name, ...)`` build the decorated class."""

    def add(cls: M) -> M:
        if name in _MODELS:
            raise ValueError(
                f"model name {name!r} is taken by {_MODELS[name].__qualname__}; "
                f"pick another name for {cls.__qualname__}"
            )
        _MODELS[name] = cls
        return cls

    return add


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODELS)


def create_model(name: str, *, in_channels: int = 3, num_classes: int, **kwargs) -> nn.Module:
    """Build the model registered as ``name``.

    Arguments:
      name: a name from ``list_models()``.
      in_channels: channels of the input tensor (image channels plus SAM prior channels).
      num_classes: channels of the output logits.
      kwargs: the model class's own settings (see its docstring).

    Returns a freshly initialised ``nn.Module`` mapping ``(B, in_channels, H, W)`` float to
    ``(B, num_classes, H, W)`` raw logits (no softmax/sigmoid).
    """
    if name not in _MODELS:
        raise SettingError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return _MODELS[name](in_channels=in_channels, num_classes=num_classes, **kwargs)


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
