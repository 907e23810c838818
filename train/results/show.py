"""The paper's Fig. 2 for one stored image: raw image | seg prior | boundary prior | augmented.

Drawn with numpy and Pillow. The seg prior is shown with a perceptual colour ramp scaled to
its own maximum (printed under the panel); the augmented input is the trainer's own ``add``
fusion (``train.fusion``: green += seg prior, blue += boundary prior) clipped to [0, 1] for
display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from precompute.store import StoreAccess, access_of
from precompute.types import NotInStoreError, SettingError, check_image_id
from train.drawing import colour_ramp
from train.fusion import FusionSettings, fuse


def prior_panels(
    image: np.ndarray, seg: np.ndarray, boundary: np.ndarray
) -> list[tuple[str, np.ndarray]]:
    """The four panels (title, HxWx3 uint8) of an HxWx3 uint8 image and its HxW priors."""
    augmented = fuse(
        torch.from_numpy(np.moveaxis(image, -1, 0) / 255.0),
        torch.from_numpy(np.asarray(seg, np.float64))[None],
        torch.from_numpy(np.asarray(boundary, np.float64))[None],
        FusionSettings("add"),
    )
    augmented = np.moveaxis(augmented.numpy(), 0, -1)
    return [
        ("image", image),
        (f"seg prior (max {float(seg.max()):.2f})", colour_ramp(seg, float(seg.max()))),
        ("boundary prior", np.repeat((boundary * 255).astype(np.uint8)[..., None], 3, axis=2)),
        ("augmented input", (np.clip(augmented, 0, 1) * 255).round().astype(np.uint8)),
    ]


def save_figure(panels: list[tuple[str, np.ndarray]], path: str | Path, gap: int = 8) -> Path:
    height, width = panels[0][1].shape[:2]
    title = 18
    canvas = Image.new("RGB", (len(panels) * (width + gap) - gap, height + title), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (name, pixels) in enumerate(panels):
        x = k * (width + gap)
        canvas.paste(Image.fromarray(pixels), (x, title))
        draw.text((x + 2, 2), name, fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def show(store: StoreAccess | str, image_id: str, out: str | Path) -> Path:
    """Write the figure for ``image_id`` of a store (a location, or a ``StoreAccess``: how
    a store URL is read) to ``out`` (PNG); returns its path.

    An image ID the store does not hold is a NotInStoreError naming some that it does.
    """
    check_image_id(image_id)
    if Path(out).is_dir():
        raise SettingError(f"--out {out} is a folder; give the PNG file to write")
    store = access_of(store).open()
    ids = store.ids()
    if image_id not in ids:
        raise NotInStoreError(
            f"{store.location}: no complete image {image_id!r}; it holds {len(ids)}"
            + (f", e.g. {', '.join(ids[:4])}" if ids else "")
        )
    panels = prior_panels(
        store.read(image_id, "image"),
        store.read(image_id, "seg_prior"),
        store.read(image_id, "boundary_prior"),
    )
    return save_figure(panels, out)
