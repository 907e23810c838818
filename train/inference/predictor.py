"""The predictor: one object that turns a whole image into probabilities and strategies.

A ``Predictor`` holds everything a prediction of a trained model depends on: the network,
its task (output channels and activation), how priors are fused into its input, the run's
protocol (how a test image is prepared and predicted: overlapping windows or the resized
image), the window or resize side, the window overlap, test-time augmentation and the
certainty ``select`` compares. Validation, ``samaug eval``, ``samaug predict`` and
``samaug reproduce`` all predict through it:

- ``probabilities(item, augmented)``: one input's ``(1, K, H, W)`` probabilities;
- ``strategies(item, names)``: the test-time strategies' maps (``train.strategies``), from
  only the inputs those strategies need.

Test-time augmentation (``tta="flip"``, nnU-Net's mirroring): the image is predicted four
times, as it is, mirrored left-right, mirrored top-bottom and both, with the priors mirrored
with it (a raw input ignores them); each prediction is mirrored back and the four maps are
averaged, every combination of the mirror axes weighted equally. ``tta="none"``: once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from precompute import checks
from precompute.types import SettingError
from train.choices import DEFAULT_CERTAINTY, DEFAULT_TTA, STRATEGIES, TTAS
from train.fusion import FusionSettings, model_input
from train.protocols import Protocol, get_protocol
from train.strategies import check_certainty, inputs_for, strategy_maps
from train.tasks import Task

# Tensor dims to mirror for each prediction of "flip": items are (C, H, W), so -1 is the
# width (left-right) and -2 the height (top-bottom).
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
INPUTS = ("image", "seg_prior", "boundary_prior")


def check_tta(tta: str) -> str:
    """``tta`` if it names one of ``TTAS`` ("none", "flip"), else a SettingError."""
    return checks.choice("--tta", tta, TTAS)


def mirror(item: dict, dims: tuple[int, ...]) -> dict:
    """A copy of a ``WholeImageDataset`` item with its image and priors mirrored along
    ``dims`` (other keys as they are)."""
    if not dims:
        return item
    return {**item, **{key: item[key].flip(dims) for key in INPUTS}}


class LastMap(nn.Module):
    """A deep-supervised model whose output is its last map alone (PraNet's ``res2``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.forward_all(x)[-1]


@dataclass(frozen=True)
class Strategies:
    """The strategies' ``(1, K, H, W)`` maps of one image, by name, and, where both inputs
    were predicted, whether ``select`` takes the augmented input's map (else None)."""

    probs: dict[str, Tensor]
    took_samaug: bool | None = None


@dataclass(frozen=True)
class PredictSettings:
    """How a model predicts, whatever the model: ``overlap`` of neighbouring windows in
    [0, 1) (patches protocol), ``tta`` ("none" or "flip") and the ``certainty`` ``select``
    compares (``train.strategies.image_certainty``). Checked on construction."""

    overlap: float = 0.5
    tta: str = DEFAULT_TTA
    certainty: str = DEFAULT_CERTAINTY

    def __post_init__(self) -> None:
        check_certainty(self.certainty)
        check_tta(self.tta)
        if checks.number("overlap", self.overlap, minimum=0) >= 1:
            raise SettingError(f"overlap must be in [0, 1), not {self.overlap}")


@dataclass(frozen=True)
class Predictor:
    """A trained model ready to predict whole images (module doc).

    model: ``(B, C, h, w)`` float -> ``(B, K, h, w)`` logits, in eval mode on its device.
    size: the test window side (patches protocol) or the resize side (polyp protocol): the
      run's ``patch_size``. test_maps: a deep-supervised model's test logits are its maps'
      sum (its ``forward``, "sum") or its last map alone ("last"); ``net`` is the network
      the protocols run.
    """

    model: nn.Module
    task: Task
    fusion: FusionSettings
    protocol: Protocol
    size: int
    settings: PredictSettings = PredictSettings()
    test_maps: str = "sum"
    device: torch.device = field(init=False)
    net: nn.Module = field(init=False)

    def __post_init__(self) -> None:
        param = next(self.model.parameters(), None)
        object.__setattr__(self, "device", param.device if param is not None else "cpu")
        last = self.test_maps == "last" and getattr(self.model, "deep_supervision", False)
        object.__setattr__(self, "net", LastMap(self.model) if last else self.model)

    @classmethod
    def of_run(
        cls, model: nn.Module, config, task: Task, settings: PredictSettings = PredictSettings()
    ) -> Predictor:
        """The predictor of a model trained with ``config`` (a resolved ``TrainConfig``):
        its fusion, protocol and patch size."""
        fusion = FusionSettings(config.fusion, config.seg_scale)
        protocol = get_protocol(config.protocol)
        maps = config.test_maps or "sum"
        return cls(model, task, fusion, protocol, config.patch_size, settings, maps)

    @torch.no_grad()
    def probabilities(self, item: dict, augmented: bool) -> Tensor:
        """``(1, task.num_outputs, H, W)`` float32 probabilities in [0, 1] on the model's
        device of one ``WholeImageDataset`` item (``image`` (3, H, W), ``seg_prior`` and
        ``boundary_prior`` (1, H, W) float32), from its augmented input or its raw one, in
        the item's own orientation (averaged over ``FLIPS`` with ``tta="flip"``)."""
        flips = FLIPS if self.settings.tta == "flip" else ((),)
        image_size = tuple(item["image"].shape[-2:])
        total = None
        for dims in flips:
            batch = self.protocol.prepare(mirror(item, dims), self.size)
            x = model_input(batch, self.fusion, augmented, self.device)
            probs = self.protocol.predict(self, x, image_size)
            probs = probs.flip(dims) if dims else probs
            total = probs if total is None else total + probs
        return total / len(flips)

    def strategies(self, item: dict, names: tuple[str, ...] = STRATEGIES) -> Strategies:
        """The maps of the strategies ``names`` (``train.strategies``) for one item, each
        input predicted once, and only the inputs they need."""
        probs = {augmented: self.probabilities(item, augmented) for augmented in inputs_for(names)}
        maps, took = strategy_maps(
            names, probs.get(False), probs.get(True), self.settings.certainty
        )
        return Strategies(maps, None if took is None else bool(took[0]))
