import sys
from pathlib import Path

import pytest

# Test helpers (tiny_sam, http_server) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Generator settings that let a random tiny SAM keep many masks (see tests/tiny_sam.py).
TINY_SAM_SETTINGS = {
    "points_per_side": 8,
    "pred_iou_thresh": -1.0,
    "stability_score_thresh": 0.0,
    "box_nms_thresh": 1.0,
}


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory) -> Path:
    from tiny_sam import save_tiny_sam

    return save_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pth")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the real data subsets are not here ({SHARED_DATA})")
    return SHARED_DATA
