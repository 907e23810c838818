import os
from pathlib import Path

import pytest

# Under pytest-xdist (`make test` runs one worker per core) every worker, and each process
# its tests start, uses one torch/OpenMP thread: workers that each took every core would
# only fight over them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

# The real data subsets: the folder named by SAMAUG_SHARED_DATA (`make test` sets it to
# ../shared/data); tests that need them skip where it is absent, as on a user's machine.
SHARED_DATA_VARIABLE = "SAMAUG_SHARED_DATA"


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "glas_counts(**counts): images per split of this module's glas_store, e.g. "
        "pytestmark = pytest.mark.glas_counts(train=6, testA=1) (default: train 8, testA 2, "
        "testB 2)",
    )


def _torch_threads(count: int):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (``pytest.mark.usefixtures``): with tiny models
    a second thread only adds synchronisation, very costly on a shared CPU."""
    yield from _torch_threads(1)


@pytest.fixture(scope="module")
def two_torch_threads():
    """Two torch threads for a module's tests (``pytest.mark.usefixtures``): where masks
    are compared with segment_anything's generator, which with one thread upscales them
    with a kernel that rounds differently (``sam_masks.upscale_logits``)."""
    yield from _torch_threads(2)


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory) -> Path:
    from tests.support.tiny_sam import save_tiny_sam

    return save_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pth")


@pytest.fixture(scope="session")
def tiny_sam2_checkpoint(tmp_path_factory) -> Path:
    """A random SAM 2 of the smallest official size (Hiera tiny), built from the sam2
    package's own classes and saved as the official files are: {"model": state dict}."""
    pytest.importorskip("sam2")
    import torch

    from precompute.maskers.sam2_masker import build_sam2_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam2") / "sam2_random_tiny.pt"
    torch.save({"model": build_sam2_model("sam2_hiera_t").state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real data subsets (MoNuSeg, Kvasir-SEG) named by SAMAUG_SHARED_DATA."""
    folder = os.environ.get(SHARED_DATA_VARIABLE)
    if not folder or not Path(folder).is_dir():
        pytest.skip(f"the real data subsets are not here ({SHARED_DATA_VARIABLE}={folder})")
    return Path(folder)


@pytest.fixture
def toy(tmp_path) -> tuple[Path, dict]:
    """``tmp_path/toy.zarr``, the three-image store of ``store_toys.toy_store`` as written
    image by image (not consolidated), and its data by ID. Made anew for each test, which
    may damage it."""
    from tests.support.store_toys import toy_store

    path = tmp_path / "toy.zarr"
    return path, toy_store(path)


@pytest.fixture
def consolidated_toy(tmp_path) -> tuple[Path, dict]:
    """``toy``, consolidated as a finished run leaves a store."""
    from tests.support.store_toys import toy_store

    path = tmp_path / "toy.zarr"
    return path, toy_store(path, consolidated=True)


@pytest.fixture(scope="session")
def glas_stores(tmp_path_factory):
    """``glas_stores(counts)``: the path of a GlaS-like store (``make_glas_store``: 96 x 128
    images, superpixel priors) with ``counts`` images per split, made once a session; tests
    only read it."""
    from tests.support.train_helpers import make_glas_store

    made: dict[tuple, Path] = {}

    def store(counts: dict[str, int]) -> Path:
        key = tuple(sorted(counts.items()))
        if key not in made:
            made[key] = make_glas_store(tmp_path_factory.mktemp("glas"), counts)
        return made[key]

    return store


@pytest.fixture(scope="module")
def glas_store(request, glas_stores) -> Path:
    """This module's GlaS-like store: the counts of its ``glas_counts`` mark, or train 8,
    testA 2, testB 2."""
    mark = request.node.get_closest_marker("glas_counts")
    return glas_stores(mark.kwargs if mark else {"train": 8, "testA": 2, "testB": 2})
