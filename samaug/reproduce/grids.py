"""The paper's three experiment grids as data: what ``samaug reproduce TABLE`` trains and shows.

A grid names the dataset of the store it reads, the models (registry names of
``train.models``), the *arms* every model is trained in (``ARMS``: a training mode of
``train.modes`` and the optimizer steps each batch takes), the table's rows as (arm,
test-time strategy) pairs with the baseline first, the test splits, the metrics of the table
(their direction and how the paper prints them) and the *main* metric, the one the paired
statistics and the figure are about.

=======  ======  ===============  ===================================================
arm      mode    steps per batch  what it is
=======  ======  ===============  ===================================================
raw      raw     1                the paper's baseline: the image alone, as trained by
                                  the released code's recipe
raw_x2   raw     2                the compute-matched baseline: the image alone, with a
                                  joint run's optimizer steps (two per batch: the same
                                  batches, the same schedule, twice the updates)
joint    joint   2 (raw, then     the paper's SAMAug training (the released code)
                 augmented)
=======  ======  ===============  ===================================================

A joint run takes two optimizer steps per batch, the released baseline one, so the paper's
comparison (joint against ``raw``) partly measures extra updates; ``raw_x2`` is the fair
one: the same number of updates on the same batches, only the input differs. Its two steps
per batch (rather than twice the epochs) keep the data seen and the schedule's length the
joint run's.

=========  =============================================  ===========================  ==========
table      models                                         test splits                  main
=========  =============================================  ===========================  ==========
monuseg    unet, pnet, attention_unet, swin_unet          test                         aji
glas       unet                                           testA, testB (columns)       object_dice
polyp      pranet                                         the five PraNet test sets    mean_dice
=========  =============================================  ===========================  ==========

Rows, per model: the baseline, a ``raw``-trained model tested on raw images
(``raw``/``raw``), the compute-matched baseline (``raw_x2``/``raw``), then the
``joint``-trained model (the paper's combined loss on raw and augmented inputs) under each
test-time strategy: ``raw``, ``samaug``, ``ensemble``, ``select`` (``train.strategies``). A
``raw``-trained model tested with priors would see an input it was never trained on, so
those rows are not part of the grid. Every row is compared with the baseline (the paper's
comparison), and the joint rows with the compute-matched baseline too (the fair one).

Test splits are the store's split names: MoNuSeg's 14-image test set ``test``, GlaS
``testA`` and ``testB`` (the "all" group ``samaug eval`` adds for GlaS is not a column of the
paper's table), and PraNet's five ``TestDataset`` folders, named by the polyp reader after
the folder.

Metrics and precision follow the released README (github.com/yizhezhang2000/SAMAug): MoNuSeg
AJI and pixel F-score in percent with two decimals, polyp meanDic / meanIoU / S-measure in
percent with one decimal. GlaS object F1 and object Dice are shown as fractions with three
decimals and object Hausdorff in pixels with two (our choice: the README prints no GlaS
table).

Main metric of GlaS: object Dice rather than object F1. The statistics pair *per-image*
scores, and one image's F1 takes few distinct values (a handful of glands), so many pairs
tie or differ by exactly zero, which the signed-rank test drops; object Dice is continuous.
Object Hausdorff is infinite for an image where one side is empty (``train.metrics``),
which would leave images out of a test on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from precompute.registry import Registry


@dataclass(frozen=True)
class Arm:
    """A kind of run a grid trains (module table): its name (the runs' folder names and the
    table's "Trained" column), its training mode and the optimizer steps each batch takes."""

    name: str
    mode: str
    steps_per_batch: int = 1


ARMS: Registry[Arm] = Registry("arm")
for _arm in (Arm("raw", "raw"), Arm("raw_x2", "raw", steps_per_batch=2), Arm("joint", "joint")):
    ARMS.add(_arm.name, _arm)


def arm_of(mode: str, steps_per_batch: int = 1) -> str:
    """The arm a run of ``mode`` taking ``steps_per_batch`` is (a name of ``ARMS``, or
    ``<mode>_x<steps>`` for none of them)."""
    for name, arm in ARMS.items():
        if (arm.mode, arm.steps_per_batch) == (mode, steps_per_batch):
            return name
    return f"{mode}_x{steps_per_batch}"


BASELINE = ("raw", "raw")  # (arm, test-time strategy) every other row is compared to
MATCHED = ("raw_x2", "raw")  # the compute-matched baseline the joint rows are compared to
MODEL_LABELS = {
    "unet": "U-Net",
    "pnet": "P-Net",
    "attention_unet": "Attention U-Net",
    "swin_unet": "Swin-UNet",
    "pranet": "PraNet",
}


@dataclass(frozen=True)
class Metric:
    """One column of a table.

    name: the metric's key in ``metrics.json`` and its column in ``test_per_image.csv``.
    label: the paper's column header. higher_is_better: its direction.
    scale, decimals, unit: how the Markdown table prints it (value * scale, that many
    decimals, in ``unit``: "%" for percent, "px" for pixels, "" for a fraction); CSV files
    always hold the unscaled value in full precision.
    """

    name: str
    label: str
    higher_is_better: bool = True
    scale: float = 1.0
    decimals: int = 3
    unit: str = ""

    def show(self, value: float) -> str:
        """``value`` as the table prints it."""
        return f"{value * self.scale:.{self.decimals}f}"


@dataclass(frozen=True)
class Grid:
    """One of the paper's tables (module doc).

    split_axis: "rows" (one block of rows per test split, the polyp layout) or "columns"
    (one group of metric columns per split, the GlaS layout).
    """

    name: str
    title: str
    dataset: str
    models: tuple[str, ...]
    arms: tuple[str, ...]
    rows: tuple[tuple[str, str], ...]
    splits: tuple[str, ...]
    split_axis: str
    metrics: tuple[Metric, ...]
    main_metric: str

    def __post_init__(self) -> None:
        assert self.rows[0] == BASELINE, "the baseline row comes first"
        assert {arm for arm, _ in self.rows} <= set(self.arms) <= set(ARMS)
        assert self.split_axis in ("rows", "columns")
        assert self.main_metric in {m.name for m in self.metrics}

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)

    @property
    def main(self) -> Metric:
        return self.metric(self.main_metric)

    def references(self, row: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        """The rows ``row`` is compared with: the baseline (the paper's comparison) for every
        other row, and the compute-matched baseline too for a joint row (the fair one)."""
        if row == BASELINE:
            return ()
        fair = MATCHED in self.rows and ARMS[row[0]].mode == "joint"
        return (BASELINE, MATCHED) if fair else (BASELINE,)

    @property
    def strategies(self) -> tuple[str, ...]:
        """The test-time strategies the rows use, in row order."""
        return tuple(dict.fromkeys(strategy for _, strategy in self.rows))


JOINT_ROWS = (
    BASELINE,
    MATCHED,
    *(("joint", s) for s in ("raw", "samaug", "ensemble", "select")),
)

GRIDS: Registry[Grid] = Registry("paper table", option="TABLE")
for _grid in (
    Grid(
        name="monuseg",
        title="MoNuSeg (nuclei)",
        dataset="monuseg",
        models=("unet", "pnet", "attention_unet", "swin_unet"),
        arms=("raw", "raw_x2", "joint"),
        rows=JOINT_ROWS,
        splits=("test",),
        split_axis="rows",
        metrics=(
            Metric("aji", "AJI", scale=100, decimals=2, unit="%"),
            Metric("pixel_f1", "Pixel F-score", scale=100, decimals=2, unit="%"),
        ),
        main_metric="aji",
    ),
    Grid(
        name="glas",
        title="GlaS (glands)",
        dataset="glas",
        models=("unet",),
        arms=("raw", "raw_x2", "joint"),
        rows=JOINT_ROWS,
        splits=("testA", "testB"),
        split_axis="columns",
        metrics=(
            Metric("object_f1", "Object F1"),
            Metric("object_dice", "Object Dice"),
            Metric(
                "object_hausdorff",
                "Object Hausdorff",
                higher_is_better=False,
                decimals=2,
                unit="px",
            ),
        ),
        main_metric="object_dice",
    ),
    Grid(
        name="polyp",
        title="Polyps (PraNet test sets)",
        dataset="polyp",
        models=("pranet",),
        arms=("raw", "raw_x2", "joint"),
        rows=JOINT_ROWS,
        splits=("CVC-ClinicDB", "CVC-300", "CVC-ColonDB", "ETIS-LaribPolypDB", "Kvasir"),
        split_axis="rows",
        metrics=(
            Metric("mean_dice", "meanDic", scale=100, decimals=1, unit="%"),
            Metric("mean_iou", "meanIoU", scale=100, decimals=1, unit="%"),
            Metric("s_measure", "Sm", scale=100, decimals=1, unit="%"),
        ),
        main_metric="mean_dice",
    ),
):
    GRIDS.add(_grid.name, _grid)


def get_grid(name: str) -> Grid:
    """The grid called ``name`` (SettingError listing the valid names otherwise)."""
    return GRIDS.get(name)
