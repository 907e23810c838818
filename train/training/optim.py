"""The optimizer steps of a run: how many one batch takes (``UpdatePlan``), the optimiser and
its learning-rate schedule counted in optimizer steps (``build_optimization``), one step
(``Optimization.step``), and the steps of one batch (``train_batch``, on a model whose
logit maps ``OutputMaps`` lists, so a deep-supervised model's loss is summed over them).

A batch takes, at every training scale (``Protocol.training_sizes``; one scale unless the
protocol trains multi-scale), one optimizer step per entry of ``UpdatePlan.inputs``:

==========================  ===========================================================
mode (joint_update)         optimizer steps per batch and scale
==========================  ===========================================================
raw                         1: the loss on the raw input
samaug                      1: the loss on the augmented input (image + priors)
joint (step, the default)   2: the loss on the raw input, backward, step; then the loss
                            on the augmented input, backward, step (the released code)
joint (mean)                1: the mean of the two losses (half the steps of "step")
==========================  ===========================================================

So a joint run of the polyp protocol (3 scales) takes 6 optimizer steps per batch. Every
schedule is a function of the optimizer step (``LambdaLR`` stepped after each of them):
"cosine" warms up over ``warmup_epochs`` epochs' worth of steps and reaches zero at the last
step of the run; "multistep" multiplies by ``lr_gamma`` from the first step of each epoch in
``lr_milestones`` (0-based epoch indices: the released ``MultiStepLR(milestones=[20])``,
stepped after each of the epochs numbered from 1, lowers the rate from its 21st epoch,
index 20); "compound" is PraNet's ``adjust_lr``: before epoch ``e`` (numbered from 1) the
rate is multiplied by ``lr_gamma ** (e // lr_milestones[0])``, so the factor of epoch ``e`` is
``lr_gamma ** sum(k // lr_milestones[0] for k in 1..e)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from train.fusion import FusionSettings, in_channels, model_input
from train.losses import make_loss
from train.models import create_model
from train.modes import get_mode
from train.protocols import Protocol
from train.protocols.polyp_protocol import rescale_batch
from train.tasks import Task
from train.training.config import TrainConfig
from train.training.run_setup import Processes

# The tensors of a training batch that go to the device (the others: image IDs, windows).
FED = ("image", "seg_prior", "boundary_prior", "target")


@dataclass(frozen=True)
class UpdatePlan:
    """The optimizer steps of one batch (module table).

    sizes: per training scale, the square side the batch is rescaled to (None: as loaded).
    inputs: per optimizer step at one scale, the inputs whose losses it averages.
    """

    sizes: tuple[int | None, ...]
    inputs: tuple[tuple[bool, ...], ...]

    @property
    def steps_per_batch(self) -> int:
        return len(self.sizes) * len(self.inputs)


def update_plan(config: TrainConfig, protocol: Protocol) -> UpdatePlan:
    """The plan of a resolved config (``TrainConfig.resolve``) under its ``protocol``: the
    protocol's training sizes, the mode's inputs per step (``train.modes``), all taken
    ``steps_per_batch`` times."""
    inputs = get_mode(config.mode).step_inputs(config.joint_update) * config.steps_per_batch
    return UpdatePlan(tuple(protocol.training_sizes(config)), inputs)


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def lr_schedule(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning-rate factor of each optimizer step (0-based) of a resolved config whose
    epochs take ``steps_per_epoch`` optimizer steps each (module doc)."""
    total = steps_per_epoch * config.epochs
    if config.lr_schedule == "cosine":
        warmup = max(1, min(config.warmup_epochs * steps_per_epoch, total // 2))
        return lambda step: lr_factor(step, warmup, total)
    milestones, gamma = tuple(config.lr_milestones), config.lr_gamma
    if config.lr_schedule == "compound":  # PraNet's adjust_lr, at every epoch from the first
        every = milestones[0] if milestones else total + 1
        return lambda step: gamma ** sum(e // every for e in range(1, step // steps_per_epoch + 2))
    return lambda step: gamma ** sum(step // steps_per_epoch >= m for m in milestones)


@dataclass
class Optimization:
    """The optimiser, its schedule, the AMP gradient scaler and the gradient clamp of a run;
    ``step(loss)`` is one optimizer step."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    grad_clip: float = 0.0

    def step(self, loss: torch.Tensor) -> None:
        """Backward ``loss``, clamp every gradient element to [-grad_clip, grad_clip] (when
        set, on the unscaled gradients: PraNet's ``clip_gradient``), step the optimiser and
        the schedule."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            for group in self.optimizer.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        param.grad.clamp_(-self.grad_clip, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

    def parts(self) -> dict:
        """The states a checkpoint saves, by name."""
        return {"optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler}


def build_optimization(
    config: TrainConfig, model: torch.nn.Module, steps_per_epoch: int, fp16_scaling: bool
) -> Optimization:
    """The optimiser of a resolved config ("adamw" or "adam", its lr and weight decay), its
    schedule over ``steps_per_epoch`` optimizer steps an epoch, a gradient scaler (active
    only with ``fp16_scaling``) and the gradient clamp."""
    kind = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[config.optimizer]
    optimizer = kind(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(config, steps_per_epoch))
    scaler = torch.amp.GradScaler("cuda", enabled=fp16_scaling)
    return Optimization(optimizer, scheduler, scaler, config.grad_clip)


class OutputMaps(torch.nn.Module):
    """A model's logit maps as a list: a deep-supervised model's ``forward_all`` (PraNet's
    four maps), any other model's one ``forward``. The loss is summed over them; wrapping
    before DistributedDataParallel keeps its gradient synchronisation on the maps used."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if getattr(self.model, "deep_supervision", False):
            return list(self.model.forward_all(x))
        return [self.model(x)]


def train_batch(
    net: torch.nn.Module,
    batch: dict,
    plan: UpdatePlan,
    loss_fn,
    fusion: FusionSettings,
    optimization: Optimization,
    autocast: dict,
) -> list[float]:
    """The optimizer steps of one batch (``train.training.optim``): at each of ``plan.sizes``, one
    step per entry of ``plan.inputs`` (for a joint run, the raw input's step first). Returns
    each step's loss."""
    device = autocast["device_type"]
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k in FED}
    losses = []
    for size in plan.sizes:
        scaled = rescale_batch(batch, size)
        for inputs in plan.inputs:
            with torch.autocast(**autocast):
                loss = sum(
                    loss_fn(net(model_input(scaled, fusion, augmented, device)), scaled["target"])
                    for augmented in inputs
                ) / len(inputs)
            optimization.step(loss)
            losses.append(loss.item())
    return losses


@dataclass
class Trainer:
    """Everything that takes a run's optimizer steps: the model (``model``; ``net`` its
    logit maps, wrapped for DistributedDataParallel where there are several processes), the
    plan of a batch, the loss, the fusion of priors, the optimisation and the autocast
    settings. ``parts``: the states a checkpoint saves; ``pretrained``: what the model's
    pretrained weights loaded (None: none)."""

    model: torch.nn.Module
    net: torch.nn.Module
    plan: UpdatePlan
    loss_fn: Callable
    fusion: FusionSettings
    optimization: Optimization
    autocast: dict
    pretrained: str | None

    @property
    def in_channels(self) -> int:
        return in_channels(self.fusion)

    @property
    def parts(self) -> dict:
        return {"model": self.model, **self.optimization.parts()}

    def train_batch(self, batch: dict) -> list[float]:
        """The optimizer steps of one batch (``train_batch``); each step's loss."""
        return train_batch(
            self.net, batch, self.plan, self.loss_fn, self.fusion, self.optimization, self.autocast
        )


def build_trainer(
    config: TrainConfig, task: Task, protocol: Protocol, batches: int, procs: Processes
) -> Trainer:
    """The trainer of a resolved config whose epochs have ``batches`` batches: the model
    built (and its pretrained weights loaded) on the process's device, AMP on CUDA (bf16
    where the device has it, else fp16 with gradient scaling)."""
    device = procs.device
    fusion = FusionSettings(config.fusion, config.seg_scale)
    model = create_model(
        config.model,
        in_channels=in_channels(fusion),
        num_classes=task.num_outputs,
        **config.model_kwargs,
    ).to(device)
    report = getattr(model, "pretrained_report", None)
    plan = update_plan(config, protocol)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    optimization = build_optimization(
        config, model, batches * plan.steps_per_batch, use_amp and amp_dtype == torch.float16
    )
    net = OutputMaps(model)
    if procs.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net)
    return Trainer(
        model,
        net,
        plan,
        make_loss(config.loss, task.loss),
        fusion,
        optimization,
        {"device_type": device.type, "dtype": amp_dtype, "enabled": use_amp},
        None if report is None else report.summary(),
    )
