"""The model registry: the only switch between segmentation models.

A model class registers itself under a name with ``@register_model("name")``; the trainer
builds it with ``create_model(name, in_channels=..., num_classes=..., **kwargs)``, where the
keyword arguments are the class's own, read from its constructor's signature
(``model_options``): ``base_channels``, the width, for every model, then ``depth``,
``dropout``, ``window_size``, ... Every registered class takes ``in_channels`` and
``num_classes`` and maps a ``(B, in_channels, H, W)`` float tensor to
``(B, num_classes, H, W)`` raw logits for any H, W. A class may say which input side it is
built for with a ``default_patch_size`` attribute (``preferred_patch_size``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from torch import nn

from precompute import checks
from precompute.registry import Registry
from precompute.types import SettingError

# The models by name (``precompute.registry``): the one switch between models.
MODELS: Registry[type[nn.Module]] = Registry("model")

register_model = MODELS.register  # class decorator: ``@register_model("unet")``
list_models = MODELS.names  # the registered names, sorted
check_model_name = MODELS.check  # ``name`` if registered, else SettingError naming the valid ones


def model_options(name: str) -> dict[str, object]:
    """The options ``create_model(name, ...)`` takes, with their defaults: the keyword
    parameters of the class's constructor other than ``in_channels`` and ``num_classes``."""
    parameters = inspect.signature(MODELS.get(name)).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {
        p.name: p.default
        for p in parameters
        if p.kind in kinds and p.name not in ("in_channels", "num_classes")
    }


def preferred_patch_size(name: str) -> int | None:
    """The input side model ``name`` is built for, its class's ``default_patch_size`` (e.g.
    Swin-UNet's 224, where its windows tile every stage), or None if it takes any size well.
    ``TrainConfig.resolve`` takes it as the patch (or resize) side when none is given."""
    return getattr(MODELS.get(name), "default_patch_size", None)


def check_model_options(name: str, options: Mapping[str, object]) -> None:
    """SettingError (before any model is built) for an option ``name``'s model does not take,
    naming its options, or a value not of its default's kind: a bool for a bool, a whole
    number >= 1 for a positive whole number (widths, depths, sizes), a finite number for a
    float, a string for a string, a list for a sequence."""
    valid = model_options(name)
    for key, value in options.items():
        where = f"--model-option {key}"
        if key not in valid:
            listed = ", ".join(f"{k} (default {v!r})" for k, v in valid.items())
            raise SettingError(f"{where}: model {name} has no such option; its options: {listed}")
        default = valid[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise SettingError(f"{where} must be true or false, not {value!r}")
        elif isinstance(default, int):
            checks.integer(where, value, minimum=1 if default >= 1 else None)
        elif isinstance(default, float):
            checks.number(where, value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise SettingError(f"{where} must be a string, not {value!r}")
        elif isinstance(default, (tuple, list)) and not isinstance(value, (tuple, list)):
            raise SettingError(f"{where} must be a list like {list(default)}, not {value!r}")


def create_model(name: str, *, in_channels: int = 3, num_classes: int, **kwargs) -> nn.Module:
    """Build the model registered as ``name``.

    Arguments:
      name: a name from ``list_models()``.
      in_channels: channels of the input tensor (image channels plus SAM prior channels).
      num_classes: channels of the output logits.
      kwargs: the model class's own settings (``model_options``; see its docstring).

    Returns a freshly initialised ``nn.Module`` mapping ``(B, in_channels, H, W)`` float to
    ``(B, num_classes, H, W)`` raw logits (no softmax/sigmoid). An unknown name or option, or
    a value the model cannot be built with, is a SettingError.
    """
    check_model_options(name, kwargs)
    try:
        return MODELS.get(name)(in_channels=in_channels, num_classes=num_classes, **kwargs)
    except (ValueError, ZeroDivisionError, RuntimeError) as err:  # a value the model can't use
        raise SettingError(f"model {name} cannot be built with options {kwargs}: {err}") from err


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
