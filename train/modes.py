"""The training modes: what a run trains on and what its model can serve.

======  ===================  ============================  ==========  ===========
mode    inputs trained on    strategies served             default     priors
======  ===================  ============================  ==========  ===========
raw     the image            raw                           raw         not needed
samaug  image + priors       samaug                        samaug      needed
joint   both, every batch    raw, samaug, ensemble, select  select      needed
======  ===================  ============================  ==========  ===========

A raw model has never seen priors, a samaug model never an image without them; a joint
model learnt both (the released SAMAug code), so it serves every strategy and by default the
released test rule, ``select``. ``joint_update`` says how a joint run turns the two inputs
into optimizer steps (``Mode.step_inputs``): "step" (the released code: one step on the raw
input's loss, then one on the augmented input's) or "mean" (one step on the mean of the two).
"""

from __future__ import annotations

from dataclasses import dataclass

from precompute.registry import Registry
from precompute.types import SettingError
from train.choices import JOINT_UPDATES, STRATEGIES


@dataclass(frozen=True)
class Mode:
    """One row of the module table. ``trains_on``: the inputs a batch is trained on (False:
    raw, True: augmented), raw first."""

    name: str
    trains_on: tuple[bool, ...]
    serves: tuple[str, ...]
    default_strategy: str

    @property
    def needs_priors(self) -> bool:
        """Whether the model was trained on priors, so they are needed to serve it."""
        return True in self.trains_on

    def step_inputs(self, joint_update: str = "step") -> tuple[tuple[bool, ...], ...]:
        """The inputs each optimizer step of one batch (at one scale) averages the loss of:
        one step per input with "step", one step on the mean with "mean"."""
        if joint_update not in JOINT_UPDATES:
            raise SettingError(
                f"--joint-update {joint_update!r}: valid: {', '.join(JOINT_UPDATES)}"
            )
        if joint_update == "mean":
            return (self.trains_on,)
        return tuple((augmented,) for augmented in self.trains_on)

    def strategy(self, asked: str | None = None) -> str:
        """``asked`` (or the default) if the model can serve it, else a SettingError naming
        the strategies it serves."""
        chosen = asked or self.default_strategy
        if chosen not in self.serves:
            raise SettingError(
                f"--strategy {chosen}: a model trained with --mode {self.name} serves only "
                f"{', '.join(self.serves)}"
            )
        return chosen


MODES: Registry[Mode] = Registry("training mode", option="--mode")
for _mode in (
    Mode("raw", trains_on=(False,), serves=("raw",), default_strategy="raw"),
    Mode("samaug", trains_on=(True,), serves=("samaug",), default_strategy="samaug"),
    Mode("joint", trains_on=(False, True), serves=STRATEGIES, default_strategy="select"),
):
    MODES.add(_mode.name, _mode)


def get_mode(name: str) -> Mode:
    """The training mode called ``name`` (SettingError listing the modes otherwise)."""
    return MODES.get(name)
