"""The paper's Fig. 2 for one stored image: raw image | seg prior | boundary prior | augmented
| ground truth (where the image has a label).

Drawn with numpy and Pillow. The seg prior is shown with a perceptual colour ramp scaled to
its own maximum (printed in the panel's title); the augmented input is the trainer's own
``add`` fusion (``train.fusion``: green += seg prior, blue += boundary prior) clipped to
[0, 1] for display; the ground truth shows each object in a colour of its own on black.
Titles are set in Pillow's scalable default font at a size that follows the image's width,
so they read at any size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

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


def _text_width(text: str, size: int) -> float:
    return ImageFont.load_default(size=size).getlength(text)


def label_panel(label: np.ndarray) -> np.ndarray:
    """HxW instance labels (0 background) -> HxWx3 uint8: black background, every object a
    bright colour of its own (hues spread by the golden ratio, so neighbours differ)."""
    import colorsys

    ids = np.unique(label[label > 0])
    palette = np.zeros((int(ids.max()) + 1 if ids.size else 1, 3), np.uint8)
    for k, value in enumerate(ids):
        rgb = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.75, 1.0)
        palette[value] = np.round(np.array(rgb) * 255)
    return palette[np.asarray(label, np.int64)]


def save_figure(panels: list[tuple[str, np.ndarray]], path: str | Path, gap: int = 8) -> Path:
    height, width = panels[0][1].shape[:2]
    size = max(10, min(48, width // 18))  # readable whatever the image's size
    names = [name for name, _ in panels]
    while size > 10 and max(_text_width(n, size) for n in names) > width - 4:
        size -= 1  # the longest title fits its panel
    font = ImageFont.load_default(size=size)
    title = size + size // 2
    canvas = Image.new("RGB", (len(panels) * (width + gap) - gap, height + title), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (name, pixels) in enumerate(panels):
        x = k * (width + gap)
        canvas.paste(Image.fromarray(pixels), (x, title))
        while len(name) > 1 and _text_width(name, size) > width - 4:
            name = name[:-2] + "…"  # a title still too long for a tiny panel is cut
        draw.text((x + 2, size // 4), name, fill="black", font=font)
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
    if store.has(image_id, "label"):
        label = store.read(image_id, "label")
        panels.append(
            (f"ground truth ({len(np.unique(label[label > 0]))} objects)", label_panel(label))
        )
    return save_figure(panels, out)
