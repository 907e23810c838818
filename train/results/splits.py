"""The splits a result covers: checked against a store's, and grouped as a task reports them."""

from __future__ import annotations

from precompute.store import SamaugStore
from precompute.types import SettingError
from train.tasks import Task
from train.training.config import TrainConfig


def check_splits(store: SamaugStore, splits: list[str] | tuple[str, ...] | None) -> None:
    """SettingError naming the store's splits when one of ``splits`` is not among them."""
    available = store.splits()
    unknown = [s for s in splits or [] if s not in available]
    if unknown:
        listed = ", ".join(f"{s} ({n} images)" for s, n in available.items()) or "none"
        raise SettingError(
            f"--split {unknown[0]!r}: {store.location} has no complete images in that split; "
            f"its splits: {listed}"
        )


def test_splits(store, config: TrainConfig) -> list[str]:
    """Every split the run did not train or validate on."""
    used = {config.train_split, config.val_split}
    return [s for s in store.splits() if s not in used]


def split_groups(task: Task, splits: list[str]) -> dict[str, list[str]]:
    """The groups of splits a task reports: each split, and for tasks that pool splits
    (GlaS) all of them together as "all" when there are several."""
    groups = {split: [split] for split in splits}
    if task.pool_splits and len(splits) > 1:
        groups["all"] = list(splits)  # the GlaS "testA + testB" column
    return groups
