"""The model registry: the only switch between segmentation models.

A model class registers itself under a name with ``@register_model("name")``; the trainer
builds it with ``create_model(name, in_channels=..., num_classes=..., **kwargs)``, where the
keyword arguments are the class's own, read from its constructor's signature
(``model_options``): ``base_channels``, the width, for every model, then ``depth``,
``dropout``, ``window_size``, ... Every registered class takes ``in_channels`` and
``num_classes`` and maps a ``(B, in_channels, H, W)`` float tensor to
``(B, num_classes, H, W)`` raw logits for any H, W. A class may say which input side it is
built for with a ``default_patch_size`` attribute (``preferred_patch_size``).

Every option is bounded before anything is allocated (options come from the command line
and from bundles received from others): a whole-number option by ``OPTION_BOUNDS`` (a class
narrows or adds its own with an ``option_bounds`` attribute; a list option, e.g. Swin-UNet's
``depths``, element by element), and the model as a whole by its parameter count, measured
on the meta device (``model_skeleton``: shapes only, no memory) against
``precompute.limits.max_parameters()`` (``SAMAUG_MAX_PARAMETERS``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch
from torch import nn

from precompute import checks
from precompute.limits import max_parameters
from precompute.registry import Registry
from precompute.types import SettingError

# The models by name (``precompute.registry``): the one switch between models.
MODELS: Registry[type[nn.Module]] = Registry("model")

register_model = MODELS.register  # class decorator: ``@register_model("unet")``
list_models = MODELS.names  # the registered names, sorted
check_model_name = MODELS.check  # ``name`` if registered, else SettingError naming the valid ones


# The largest value of each whole-number option, for every model that takes it; a model class
# adds or narrows bounds with an ``option_bounds`` attribute of the same form.
OPTION_BOUNDS = {"base_channels": 1024, "depth": 8}
# Input channels (image and priors) and output channels a model may be built with.
MAX_CHANNELS = 64
# What a constructor raises for values it cannot build with (a meta build included).
BUILD_ERRORS = (ValueError, ZeroDivisionError, RuntimeError, NotImplementedError, OverflowError)


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


def option_bounds(name: str) -> dict[str, int]:
    """The largest value of each bounded whole-number option of model ``name``."""
    return {**OPTION_BOUNDS, **getattr(MODELS.get(name), "option_bounds", {})}


def check_model_options(name: str, options: Mapping[str, object]) -> None:
    """SettingError (before any model is built) for an option ``name``'s model does not take,
    naming its options, or a value not of its default's kind: a bool for a bool, a whole
    number >= 1 for a positive whole number (widths, depths, sizes) and at most its bound
    (``option_bounds``), a finite number for a float, a string for a string, a list for a
    sequence (of whole numbers within the bound, where the option has one)."""
    valid = model_options(name)
    bounds = option_bounds(name)
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
            checks.integer(
                where, value, minimum=1 if default >= 1 else None, maximum=bounds.get(key)
            )
        elif isinstance(default, float):
            checks.number(where, value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise SettingError(f"{where} must be a string, not {value!r}")
        elif isinstance(default, (tuple, list)):
            if not isinstance(value, (tuple, list)):
                raise SettingError(f"{where} must be a list like {list(default)}, not {value!r}")
            if key in bounds:
                if not 1 <= len(value) <= bounds[key]:
                    raise SettingError(
                        f"{where} must list 1 to {bounds[key]} values, not {len(value)}"
                    )
                for item in value:
                    checks.integer(where, item, minimum=1, maximum=bounds[key])


def model_skeleton(name: str, *, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    """Model ``name`` built on the meta device: every parameter's and buffer's shape and
    dtype, no memory taken, no weight file read (``pretrained`` is left out). SettingError
    for an option out of bounds (``check_model_options``), channels outside 1..MAX_CHANNELS,
    values the model cannot be built with, or more parameters than ``max_parameters()``."""
    check_model_options(name, kwargs)
    checks.integer("in_channels", in_channels, minimum=1, maximum=MAX_CHANNELS)
    checks.integer("num_classes", num_classes, minimum=1, maximum=MAX_CHANNELS)
    shaped = {key: value for key, value in kwargs.items() if key != "pretrained"}
    try:
        with torch.device("meta"):
            model = MODELS.get(name)(in_channels=in_channels, num_classes=num_classes, **shaped)
    except BUILD_ERRORS as err:
        raise SettingError(f"model {name} cannot be built with options {kwargs}: {err}") from err
    count, limit = parameter_count(model), max_parameters()
    if count > limit:
        raise SettingError(
            f"model {name} with options {kwargs} has {count:,} parameters, more than the limit "
            f"of {limit:,} (set SAMAUG_MAX_PARAMETERS to build larger models)"
        )
    return model


def create_model(name: str, *, in_channels: int = 3, num_classes: int, **kwargs) -> nn.Module:
    """Build the model registered as ``name``.

    Arguments:
      name: a name from ``list_models()``.
      in_channels: channels of the input tensor (image channels plus SAM prior channels).
      num_classes: channels of the output logits.
      kwargs: the model class's own settings (``model_options``; see its docstring).

    Returns a freshly initialised ``nn.Module`` mapping ``(B, in_channels, H, W)`` float to
    ``(B, num_classes, H, W)`` raw logits (no softmax/sigmoid). An unknown name or option, a
    value out of bounds or the model cannot be built with, or a model over the parameter
    limit (``model_skeleton``, checked before anything is allocated) is a SettingError.
    """
    model_skeleton(name, in_channels=in_channels, num_classes=num_classes, **kwargs)
    try:
        return MODELS.get(name)(in_channels=in_channels, num_classes=num_classes, **kwargs)
    except BUILD_ERRORS as err:  # a value the model can't use
        raise SettingError(f"model {name} cannot be built with options {kwargs}: {err}") from err


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
