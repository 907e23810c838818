"""Adding a dataset, a masker or a model is one registration each: the table of datasets
is what training and the command line read."""

from precompute.readers import DATASETS
from samaug.commands.priors_commands import DATASET_HELP
from train.protocols import DEFAULT_PROTOCOL, get_protocol, protocol_for_dataset
from train.tasks import TASKS, task_for_dataset


def test_every_dataset_trains_a_task_its_protocol_can_train_and_is_in_the_help():
    assert DATASETS.names() == ["folder", "glas", "kvasir", "monuseg", "polyp"]
    for name, entry in DATASETS.items():
        assert entry.task in TASKS
        assert entry.task in get_protocol(entry.protocol).tasks
        assert (task_for_dataset(name), protocol_for_dataset(name)) == (entry.task, entry.protocol)
        assert f"{name}: {entry.help}" in DATASET_HELP
    assert [protocol_for_dataset(n) for n in ("glas", "kvasir", "polyp", "folder")] == [
        "patches",
        "polyp",
        "polyp",
        "patches",
    ]
    assert protocol_for_dataset("a store's own name") == DEFAULT_PROTOCOL
