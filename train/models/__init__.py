"""Segmentation models, chosen by name through the registry.

Importing this package registers every model; build one with
``create_model(name, in_channels=..., num_classes=...)``.
"""

from train.models.factory import (
    MAX_CHANNELS,
    MODELS,
    check_model_name,
    check_model_options,
    create_model,
    list_models,
    model_options,
    model_skeleton,
    parameter_count,
    preferred_patch_size,
    register_model,
)

from . import hsnet, pnet, pranet, swin_unet, unet  # noqa: F401  (imported to register the models)

__all__ = [
    "MAX_CHANNELS",
    "MODELS",
    "check_model_name",
    "check_model_options",
    "create_model",
    "list_models",
    "model_options",
    "model_skeleton",
    "parameter_count",
    "preferred_patch_size",
    "register_model",
]
