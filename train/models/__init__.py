"""Segmentation models, chosen by name through the registry.

Importing this package registers every model; build one with
``create_model(name, in_channels=..., num_classes=...)``.
"""

from . import pnet, pranet, swin_unet, unet  # noqa: F401  (imported to register the models)
from .registry import create_model, list_models, parameter_count, register_model

__all__ = ["create_model", "list_models", "parameter_count", "register_model"]
