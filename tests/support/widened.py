"""The check that an RGB backbone widened to the concat fusion's 5 inputs starts as the RGB one."""

from __future__ import annotations

import torch
from torch import nn


def assert_priors_start_ignored(
    three: nn.Module, five: nn.Module, key: str, source: torch.Tensor
) -> None:
    """``three`` (3 input channels) and ``five`` (5), eval-mode backbones returning lists of
    features, were loaded from the same RGB weight file whose first convolution ``key`` is
    ``source``: ``five``'s kernels are the file's for the image channels and zero for the two
    prior channels, so on an image plus priors it computes what ``three`` computes on the
    image."""
    weight = five.state_dict()[key]
    assert weight.shape == (source.shape[0], 5, *source.shape[2:])
    assert torch.equal(weight[:, :3], source)
    assert torch.equal(weight[:, 3:], torch.zeros_like(weight[:, 3:]))
    x, priors = torch.randn(1, 3, 64, 64), torch.randn(1, 2, 64, 64)
    with torch.no_grad():
        for a, b in zip(five(torch.cat([x, priors], dim=1)), three(x), strict=True):
            torch.testing.assert_close(a, b)
