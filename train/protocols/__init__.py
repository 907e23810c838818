"""Training and test protocols: how a run's data is shaped and which recipe trains on it.

A *protocol* fixes what a run sees: patches or whole resized images, the input's
normalisation, how priors are prepared, the data augmentation, the loss and how a test image
is predicted. A *recipe* (``train.protocols.recipes``) fixes the optimiser and its schedule.
Every value either sets is a ``TrainConfig`` field (``None`` there means "the protocol's" or
"the recipe's") except the fixed ones of ``Protocol``, which ``TrainConfig.to_dict`` records
beside the fields as ``protocol_settings``, so each run's ``config.json`` spells out all of
them. Each protocol is an object of its own class (``train.protocols.protocol``) that carries
its behaviour: its training data, its training sizes and its test-time prediction.

==========  =====================================================================  ===========
protocol    what it is                                                             source
==========  =====================================================================  ===========
patches     random 256 x 256 patches (flips, 90-degree rotations, scale, colour    this
            jitter), image in [0, 1], priors as stored; the task's loss; test by   project's
            overlapping windows. Every task (glands, nuclei, binary).              own
            (``patch_protocol``)
polyp       whole images resized to 352 x 352, ImageNet normalisation, the seg     PraNet and
            prior clipped to [0, 1] (as the released prior images hold it) and     the released
            both priors added after normalisation; no augmentation; multi-scale    SAMAug polyp
            training at 0.75 / 1 / 1.25 of 352 rounded to multiples of 32          script
            (bilinear, align_corners=True); PraNet's structure loss summed over
            the deep-supervision maps; test: the image resized to 352, the model's
            summed output upsampled to the image's size (bilinear,
            align_corners=False), sigmoid, per-image min-max normalisation.
            Binary task only. (``polyp_protocol``)
==========  =====================================================================  ===========

Datasets choose their protocol in the table of datasets (``precompute.readers.DATASETS``): the
polyp stores (``kvasir``, ``polyp``) the ``polyp`` protocol, every other the ``patches`` one.
"""

from __future__ import annotations

from precompute.registry import Registry
from train.protocols.patch_protocol import PatchProtocol
from train.protocols.polyp_protocol import ResizeProtocol
from train.protocols.protocol import Protocol, check_scales
from train.protocols.recipes import RECIPES, Recipe, get_recipe

PROTOCOLS: Registry[Protocol] = Registry("protocol")
for _protocol in (
    PatchProtocol(
        name="patches",
        source="this project's own",
        input="patches",
        normalize="unit",
        clip_seg_prior=False,
        augment=True,
        test="windows",
        tasks=("glands", "nuclei", "binary"),
        patch_size=256,
        scales=(1.0,),
        loss="task",
        recipe="patches",
        val_fraction=0.1,
    ),
    ResizeProtocol(
        name="polyp",
        source="PraNet and SAMAug's released polyp script",
        input="resize",
        normalize="imagenet",
        clip_seg_prior=True,
        augment=False,
        test="resize",
        tasks=("binary",),
        patch_size=352,
        scales=(0.75, 1.0, 1.25),
        loss="structure",
        recipe="pranet",
        val_fraction=0.0,
    ),
):
    PROTOCOLS.add(_protocol.name, _protocol)

DEFAULT_PROTOCOL = "patches"


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (SettingError listing the names otherwise)."""
    return PROTOCOLS.get(name)


def protocol_for_dataset(dataset: str) -> str:
    """The protocol a dataset reader's stores train under by default: its entry's in the
    table of datasets (``precompute.readers.DATASETS``), else DEFAULT_PROTOCOL."""
    from precompute.readers import DATASETS

    return DATASETS.get(dataset).protocol if dataset in DATASETS else DEFAULT_PROTOCOL


__all__ = [
    "DEFAULT_PROTOCOL",
    "PROTOCOLS",
    "RECIPES",
    "Protocol",
    "Recipe",
    "check_scales",
    "get_protocol",
    "get_recipe",
    "protocol_for_dataset",
]
