"""``samaug reproduce TABLE``: train and evaluate a paper grid run by run, then its table.

For every model of the grid (``grids.py``), every arm (``raw``, the compute-matched
``raw_x2`` and ``joint``) and every seed 0..N-1, one run directory
``OUT/runs/<model>-<arm>-<seed>`` is trained (``train.training.loop.train``, the dataset's
protocol and recipe; ``--epochs`` and ``--samples-per-epoch`` cut them short: a smoke run,
which the table marks) and evaluated on the grid's test splits
(``train.results.evaluation``: raw / samaug / ensemble / select). Then the table
(``paper_table.build_table``) goes to ``OUT/<table>.md`` and ``OUT/<table>.csv`` and the
per-image differences to ``OUT/<table>.png``.

Resumable run by run: a run directory resumes where it stopped
(``train.training.checkpoint``), a finished run trains no further epoch, and a run already
evaluated on what it holds now (the same optimizer steps and best epoch, recorded as
``metrics.json``'s "reproduce") is not evaluated again. Everything is checked before the
first run starts: the settings, the store (its dataset must be the grid's, and it must hold
at least one of the grid's test splits), each run's training config, every model built with
its options (once, on the CPU, without weights) and the pretrained weights it reads.

Model options: ``KEY=VALUE`` for every model of the grid, ``MODEL.KEY=VALUE`` for one
(``swin_unet.embed_dim=48``); the latter wins.

Pretrained weights, as ``samaug train`` takes them (``train.models.backbones.pretrained_for``):
Swin-UNet starts from ImageNet Swin-T, PraNet from ImageNet Res2Net-50 and HSNet from
PVTv2-B2 as their papers train them, read from ``weights_dir`` (``PAPER_WEIGHTS``; ``make
weights`` fetches Swin-T and PVTv2-B2) unless ``pretrained`` names another file for a model,
or ``none`` for a random start (``{"*": "none"}``: every model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from precompute import checks
from precompute.devices import check_device
from precompute.store import SamaugStore, StoreAccess, access_of
from precompute.types import SettingError
from samaug.reproduce.grids import ARMS, Grid, get_grid
from samaug.reproduce.paper_table import build_table, store_settings
from samaug.reproduce.plots import write_figure
from samaug.reproduce.render import write_table
from samaug.reproduce.runs import load_runs
from train.choices import DEFAULT_CERTAINTY
from train.inference.predictor import PredictSettings
from train.models.backbones import pretrained_for
from train.results.evaluation import prepare_evaluation, score_run
from train.strategies import check_certainty
from train.training.checkpoint import read_json, update_metrics
from train.training.config import TrainConfig
from train.training.loop import train

# Seeds per run and bootstrap resamples: far beyond a table's needs (3 seeds, 10,000
# resamples), small enough that listing them takes no memory to speak of.
MAX_SEEDS = 1000
MAX_BOOT = 1_000_000
# TrainConfig fields reproduce sets itself (the grid's, and its own options').
OWN_FIELDS = (
    "store",
    "model",
    "mode",
    "steps_per_batch",
    "out",
    "seed",
    "epochs",
    "samples_per_epoch",
    "workers",
    "device",
    "model_kwargs",
)


@dataclass(frozen=True)
class ReproduceSettings:
    """What ``reproduce`` runs (module doc).

    table: a grid name (monuseg, glas, polyp). store: its store and how it is reached (a
      ``StoreAccess``: fsspec options, cache; a bare location is made one).
    out: the folder of the runs (``runs/``) and the table files. seeds: seeds 0..seeds-1.
    epochs: every run's epochs (None: its recipe's). samples_per_epoch: every run's training
      items per epoch (None: the protocol's). device, workers: as ``samaug train``'s.
    weights_dir: where ``PAPER_WEIGHTS`` are. pretrained: {model: path or "none"}, or
      {"*": "none"} for every model, overriding them. model_kwargs: extra options, for
      every model ("base_channels") or one ("swin_unet.embed_dim").
    train_options: other ``TrainConfig`` fields for every run (e.g. {"batch_size": 16});
      the grid's own (store, model, mode, out, seed) and the ones above cannot be given.
    certainty: how ``select`` chooses (default the released code's). n_boot: bootstrap
      resamples of the statistics.
    """

    table: str
    store: StoreAccess | str
    out: str = "reproduce"
    seeds: int = 3
    epochs: int | None = None
    samples_per_epoch: int | None = None
    device: str = "auto"
    workers: int = 2
    weights_dir: str = "checkpoints"
    pretrained: dict = field(default_factory=dict)
    model_kwargs: dict = field(default_factory=dict)
    train_options: dict = field(default_factory=dict)
    certainty: str = DEFAULT_CERTAINTY
    n_boot: int = 10000

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", access_of(self.store))
        grid = get_grid(self.table)
        checks.integer("--seeds", self.seeds, minimum=1, maximum=MAX_SEEDS)
        if self.epochs is not None:
            checks.integer("--epochs", self.epochs, minimum=1)
        if self.samples_per_epoch is not None:
            checks.integer("--samples-per-epoch", self.samples_per_epoch, minimum=1)
        checks.integer("--workers", self.workers, minimum=0)
        checks.integer("--n-boot", self.n_boot, minimum=1, maximum=MAX_BOOT)
        check_device(self.device)
        check_certainty(self.certainty)
        for model in self.pretrained:
            if model not in grid.models and model != "*":
                raise SettingError(
                    f"--pretrained {model}=...: {model} is not a model of the {grid.name} "
                    f"table ({', '.join(grid.models)})"
                )
        for key in self.model_kwargs:
            model = key.partition(".")[0] if "." in key else None
            if model is not None and model not in grid.models:
                raise SettingError(
                    f"--model-option {key}: {model} is not a model of the {grid.name} table "
                    f"({', '.join(grid.models)})"
                )
        known = {f.name for f in fields(TrainConfig)} - set(OWN_FIELDS)
        for key in self.train_options:
            if key not in known:
                raise SettingError(
                    f"--train-option {key}: not a training setting reproduce lets you set; "
                    f"valid: {', '.join(sorted(known))}"
                )
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise SettingError(f"--out {self.out} is a file; give a folder")

    @property
    def grid(self) -> Grid:
        return get_grid(self.table)

    def run_dir(self, model: str, arm: str, seed: int) -> Path:
        return Path(self.out) / "runs" / f"{model}-{arm}-{seed}"

    def options_for(self, model: str) -> dict:
        """The model options of ``model``'s runs: those for every model, then its own."""
        common = {k: v for k, v in self.model_kwargs.items() if "." not in k}
        own = {
            k.partition(".")[2]: v
            for k, v in self.model_kwargs.items()
            if k.partition(".")[0] == model and "." in k
        }
        return {**common, **own}


def weights_for(settings: ReproduceSettings, model: str) -> str | None:
    """The pretrained file a model's runs start from, or None (module doc)."""
    given = settings.pretrained.get(model, settings.pretrained.get("*"))
    try:
        return pretrained_for(model, given, settings.weights_dir)
    except SettingError as err:
        raise SettingError(str(err).replace("--pretrained ", f"--pretrained {model}=")) from err


def plan_runs(settings: ReproduceSettings) -> list[TrainConfig]:
    """Every run of the grid, in order (model, arm, seed), as checked training configs.

    SettingError before anything runs: a setting no run can use, a model its options cannot
    build, or a pretrained file that is not there (naming it, ``make weights``, and
    ``--pretrained MODEL=PATH|none``)."""
    grid = settings.grid
    configs = []
    for model in grid.models:
        kwargs = settings.options_for(model)
        weights = weights_for(settings, model)
        if weights is not None:
            kwargs["pretrained"] = weights
        for arm in grid.arms:
            for seed in range(settings.seeds):
                config = TrainConfig(
                    **settings.train_options,
                    store=settings.store.location,
                    model=model,
                    mode=ARMS[arm].mode,
                    steps_per_batch=ARMS[arm].steps_per_batch,
                    out=str(settings.run_dir(model, arm, seed)),
                    epochs=settings.epochs,
                    samples_per_epoch=settings.samples_per_epoch,
                    seed=seed,
                    workers=settings.workers,
                    device=settings.device,
                    model_kwargs=kwargs,
                )
                config.check_files()
                configs.append(config)
        check_builds(configs[-1].resolve(grid.dataset))
    return configs


def check_builds(config: TrainConfig) -> None:
    """Build ``config``'s model with its options once, on the CPU (no weights read): an
    option it cannot be built with (a width its heads do not divide) is a SettingError
    naming the model, before the first run trains for hours."""
    import torch

    from train.fusion import FusionSettings, in_channels
    from train.models import create_model
    from train.tasks import get_task

    options = {k: v for k, v in config.model_kwargs.items() if k != "pretrained"}
    channels = in_channels(FusionSettings(config.fusion, config.seg_scale))
    with torch.no_grad():
        try:
            create_model(
                config.model,
                in_channels=channels,
                num_classes=get_task(config.task).num_outputs,
                **options,
            )
        except SettingError as err:
            raise SettingError(f"{config.model}: {err} (--model-option)") from err


def test_splits_of(settings: ReproduceSettings, store: SamaugStore) -> list[str]:
    """The grid's test splits the store (opened from ``settings.store``) holds; SettingError
    for a store of another dataset or one with none of them."""
    grid = settings.grid
    dataset = store.attrs["dataset"]["name"]
    if dataset != grid.dataset:
        raise SettingError(
            f"{store.location} is a {dataset!r} store; the {grid.name} table trains on a "
            f"{grid.dataset!r} store (samaug priors {grid.dataset} ...)"
        )
    splits = [s for s in grid.splits if s in store.splits()]
    if not splits:
        held = ", ".join(store.splits()) or "none"
        raise SettingError(
            f"{store.location} holds none of the {grid.name} test splits "
            f"({', '.join(grid.splits)}); its splits: {held}"
        )
    return splits


def reproduce(
    settings: ReproduceSettings,
    log: Callable[[str], None] = print,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Train and evaluate every run of the grid that is not done yet, then write the table,
    its CSV and the figure (module doc). Returns {"runs": [run directories], "trained": n,
    "evaluated": n, "markdown": path, "csv": path, "figure": path}."""
    store = settings.store.open()
    splits = test_splits_of(settings, store)
    configs = plan_runs(settings)
    # Every run reads the store opened here: a URL's root metadata is not fetched again.
    access = store.access
    predict = PredictSettings(certainty=settings.certainty)
    trained = evaluated = 0
    for number, config in enumerate(configs, start=1):
        name = f"[{number}/{len(configs)}] {Path(config.out).name}"
        before = _finished_steps(Path(config.out))
        summary = train(
            config,
            log=lambda line, name=name: log(f"{name}: {line}"),
            progress=progress,
            access=access,
        )
        trained += summary["steps"] != before
        record = {
            "steps": summary["steps"],
            "best_epoch": summary["best_epoch"],
            "certainty": settings.certainty,
            "splits": splits,
        }
        if _evaluated_record(Path(config.out)) != record:
            log(f"{name}: evaluating on {', '.join(splits)}")
            job = prepare_evaluation(config.out, access, splits, predict, device=settings.device)
            score_run(job, progress=progress)
            update_metrics(config.out, {"reproduce": record})
            evaluated += 1
        else:
            log(f"{name}: trained and evaluated already")
    grid = settings.grid
    run_dirs = [config.out for config in configs]
    table = build_table(
        grid, load_runs(run_dirs, grid), n_boot=settings.n_boot, store=store_settings(store)
    )
    paths = write_table(table, settings.out)
    figure = write_figure(table, Path(settings.out) / f"{grid.name}.png")
    return {
        "runs": run_dirs,
        "trained": trained,
        "evaluated": evaluated,
        "markdown": str(paths["markdown"]),
        "csv": str(paths["csv"]),
        "figure": str(figure),
    }


def _metrics(run_dir: Path) -> dict:
    path = run_dir / "metrics.json"
    metrics = read_json(path) if path.is_file() else {}
    return metrics if isinstance(metrics, dict) else {}


def _finished_steps(run_dir: Path) -> int | None:
    """The optimizer steps of a finished run (its metrics.json "train"), else None."""
    finished = _metrics(run_dir).get("train")
    return finished.get("steps") if isinstance(finished, dict) else None


def _evaluated_record(run_dir: Path) -> dict | None:
    """What the run was last evaluated on by ``reproduce`` (None if it has no test results)."""
    metrics = _metrics(run_dir)
    if "test" not in metrics or not (run_dir / "test_per_image.csv").is_file():
        return None
    return metrics.get("reproduce")
