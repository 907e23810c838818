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


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory) -> Path:
    from tests.support.tiny_sam import save_tiny_sam

    return save_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pth")


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
