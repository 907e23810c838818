"""Training curves that leave the tool: ``progress.png`` and TensorBoard events.

``write_progress_png`` draws a run's ``log.csv`` (one row per epoch; columns ``epoch, step,
lr, train_loss, val_dice, seconds``) as two panels: the training loss per epoch above, the
validation Dice per epoch below with the best epoch starred. An empty or "nan" ``val_dice``
(an epoch without validation) is left out; an absent column is drawn as an empty panel
saying so. Epochs are counted from 1, as the command line prints them (``log.csv``
counts from 0). A run resumed from an older checkpoint may log an epoch twice; its last
row is the one drawn.

``RunLogger`` writes TensorBoard events under ``<run_dir>/tensorboard``. Steps are optimizer
steps, so the curves of a resumed run continue those of the run it resumes; events the
interrupted run wrote after the resumed checkpoint are purged (TensorBoard hides them).

matplotlib and TensorBoard are imported only when used.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from precompute.checks import integer
from precompute.files import atomic_save
from precompute.types import InputError, SettingError

# How the libraries report progress (they never print): progress(what, done, total), e.g.
# ("epoch 3/100", 12, 40) after a training step or ("testA", 5, 80) after an image. The
# command line draws it (samaug.commands.bars.Bars); None reports nothing.
Progress = Callable[[str, int, int], None]

PLOTTED = ("train_loss", "val_dice")
FIGURE_INCHES = (8.0, 6.0)
FIGURE_DPI = 100  # progress.png is 800 x 600 pixels
LOSS_COLOUR = "#1f77b4"
DICE_COLOUR = "#ff7f0e"
BEST_COLOUR = "#d62728"
TENSORBOARD_DIR = "tensorboard"
GRID_GAP = 4  # white pixels between the panels of a validation grid


def read_log(log_csv: str | Path) -> dict[str, np.ndarray]:
    """The plotted columns of ``log.csv``, one float64 value per epoch in epoch order.

    Returns {"epoch": (E,), "train_loss": (E,), "val_dice": (E,)}; a missing value or
    column is NaN. Without an ``epoch`` column the rows are epochs 1, 2, ...
    InputError naming the file (and line) when it cannot be read or a value is not a number.
    """
    path = Path(log_csv)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: cannot read the training log ({err})") from err
    if not any(name in columns for name in PLOTTED):
        raise InputError(f"{path}: no {' or '.join(PLOTTED)} column to plot (has {columns})")
    by_epoch: dict[float, dict[str, float]] = {}
    for number, row in enumerate(rows):
        values = {
            name: _number(row.get(name), path, number + 2, name) for name in ("epoch", *PLOTTED)
        }
        epoch = values.pop("epoch") if "epoch" in columns else float(number + 1)
        if math.isnan(epoch):
            raise InputError(f"{path}, line {number + 2}: the epoch is missing")
        by_epoch[epoch] = values  # a repeated epoch: the later row wins
    epochs = sorted(by_epoch)
    table = {"epoch": np.array(epochs, np.float64)}
    for name in PLOTTED:
        table[name] = np.array([by_epoch[e][name] for e in epochs], np.float64)
    return table


def write_progress_png(log_csv: str | Path, out_png: str | Path) -> Path:
    """Draw ``log_csv`` (module doc) to ``out_png``, an 800 x 600 RGBA PNG, atomically."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    table = read_log(log_csv)
    epochs = table["epoch"]  # counted from 1, as log.csv and the command line count them
    figure = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI, layout="constrained")
    loss_axes, dice_axes = figure.subplots(2, 1, sharex=True)
    for axes, name, colour, title in (
        (loss_axes, "train_loss", LOSS_COLOUR, "training loss"),
        (dice_axes, "val_dice", DICE_COLOUR, "validation Dice"),
    ):
        values = table[name]
        logged = np.isfinite(values)
        axes.set_ylabel(title)
        axes.grid(alpha=0.3)
        if not logged.any():
            axes.text(0.5, 0.5, f"no {title} logged", ha="center", transform=axes.transAxes)
            continue
        axes.plot(epochs[logged], values[logged], color=colour, marker="o", linewidth=2)
    dice = table["val_dice"]
    if np.isfinite(dice).any():
        best = int(np.nanargmax(dice))
        label = f"best {dice[best]:.4f} at epoch {epochs[best]:g}"
        dice_axes.plot(epochs[best], dice[best], "*", markersize=16, color=BEST_COLOUR, label=label)
        dice_axes.legend(loc="lower right")
    dice_axes.set_xlabel("epoch")
    dice_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    out_png = Path(out_png)
    atomic_save(out_png, lambda f: figure.savefig(f, format="png"))
    return out_png


def validation_grid(
    image: np.ndarray,
    seg_prior: np.ndarray,
    boundary_prior: np.ndarray,
    prediction: np.ndarray,
    target: np.ndarray,
) -> np.ndarray:
    """One validation image as five panels side by side, (H, 5W + 4 * GRID_GAP, 3) uint8.

    image: HxWx3 uint8 RGB. seg_prior: HxW float >= 0, on a colour ramp scaled to its own
    maximum (as ``train.results.show``). boundary_prior: HxW in [0, 1], gray.
    prediction, target: HxW; bool or 0/1 integers white on black, larger integer labels
    one colour per label (0 black), floats gray (a probability in [0, 1]).
    """
    from train.drawing import colour_ramp

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, not {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    panels = [
        image,
        colour_ramp(seg_prior.astype(np.float64), float(seg_prior.max())),
        _gray(boundary_prior),
        _map_panel(prediction),
        _map_panel(target),
    ]
    for panel in panels:
        if panel.shape != (height, width, 3):
            raise ValueError(f"every panel must be {height}x{width}, not {panel.shape[:2]}")
    gap = np.full((height, GRID_GAP, 3), 255, np.uint8)
    pieces = [piece for panel in panels for piece in (panel, gap)][:-1]
    return np.concatenate(pieces, axis=1)


class RunLogger:
    """TensorBoard events for one run under ``<run_dir>/tensorboard`` (a no-op if disabled).

    resume_step: the optimizer step of the checkpoint a resumed run starts from. Events an
    earlier run wrote after it are purged, so each step keeps one value: the new run's.
    Call ``scalars`` and ``images`` with the optimizer step; then ``close`` (or use ``with``).
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self._writer = None
        if not enabled:
            return
        purge_step = None if resume_step is None else integer("resume_step", resume_step, 0) + 1
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise SettingError(
                "TensorBoard logging needs the tensorboard package: pip install tensorboard, "
                "or turn TensorBoard logging off"
            ) from err
        self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)

    def scalars(self, step: int, **values: float | None) -> None:
        """One point per value at ``step`` (e.g. loss=..., lr=..., val_dice=...); None and
        NaN (an epoch without validation) are skipped."""
        if self._writer is None:
            return
        for name, value in values.items():
            if value is not None and not math.isnan(value):
                self._writer.add_scalar(name, float(value), global_step=step)

    def images(
        self,
        step: int,
        tag: str,
        image: np.ndarray,
        seg_prior: np.ndarray,
        boundary_prior: np.ndarray,
        prediction: np.ndarray,
        target: np.ndarray,
    ) -> None:
        """One ``validation_grid`` image under ``tag`` (e.g. "val/<image id>") at ``step``."""
        if self._writer is None:
            return
        grid = validation_grid(image, seg_prior, boundary_prior, prediction, target)
        self._writer.add_image(tag, grid, global_step=step, dataformats="HWC")

    def flush(self) -> None:
        """Write what is pending now (the writer otherwise waits up to two minutes, and a
        killed run would lose those events)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Write what is pending and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _number(text: str | None, path: Path, line: int, column: str) -> float:
    if text is None or text.strip().lower() in ("", "nan"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{path}, line {line}: {column} {text!r} is not a number") from None


def _gray(values: np.ndarray) -> np.ndarray:
    level = np.rint(np.clip(values.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    return np.repeat(level[..., None], 3, axis=2)


def _map_panel(values: np.ndarray) -> np.ndarray:
    if np.issubdtype(values.dtype, np.floating):
        return _gray(values)
    labels = values.astype(np.int64)
    if labels.size == 0 or labels.max() <= 1:
        return _gray(labels)
    # Neighbouring labels get unlike colours; every colour is at least 55 (not black).
    colours = (labels[..., None] * np.array([97, 57, 151])) % 200 + 55
    return np.where(labels[..., None] > 0, colours, 0).astype(np.uint8)
