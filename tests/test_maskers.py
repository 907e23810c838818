"""The masker registry: every registered masker builds, generates and describes itself alike."""

import subprocess
import sys
from dataclasses import asdict
from typing import get_args

import pytest

from precompute.downloads import sha256_file
from precompute.maskers import (
    MaskerName,
    RecordedCheckpoint,
    build_masker,
    describe_masker,
    list_maskers,
    make_settings,
    masker_kind,
    masker_provenance,
    portable_provenance,
    recorded_checkpoint,
)
from precompute.types import MaskSet, SettingError
from samaug.demo.synthetic import tissue_image

# Small settings per masker, so that each generates in well under a second.
FAST = {
    "sam": {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0},
    "sam2": {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0},
    "superpixel": {},
}


@pytest.fixture
def checkpoints(request) -> dict:
    """Each masker's tiny checkpoint (the SAM 2 one made only when a test asks for it)."""
    return {
        "sam": request.getfixturevalue("tiny_sam_checkpoint"),
        "sam2": lambda: request.getfixturevalue("tiny_sam2_checkpoint"),
    }


def test_the_command_line_offers_exactly_the_registered_maskers():
    assert list(get_args(MaskerName)) == list_maskers() == ["sam", "sam2", "superpixel"]
    assert sorted(FAST) == list_maskers()


def test_unknown_masker_or_setting_lists_the_valid_ones():
    with pytest.raises(
        SettingError, match="--masker 'sam3': no such masker; valid: sam, sam2, superpixel"
    ):
        masker_kind("sam3")
    with pytest.raises(SettingError, match="unknown sam masker setting.*points_per_sid;.*valid"):
        make_settings("sam", {"points_per_sid": 4})
    with pytest.raises(SettingError, match="the sam masker needs --checkpoint PATH"):
        masker_provenance("sam", None, {})


@pytest.mark.parametrize("name", list_maskers())
def test_every_masker_generates_and_records_every_setting(name, checkpoints):
    made = checkpoints.get(name)
    checkpoint = str(made() if callable(made) else made)
    provenance = masker_provenance(name, checkpoint, FAST[name])
    assert provenance["kind"] == name
    assert provenance["settings"] == asdict(make_settings(name, FAST[name]))
    assert ("checkpoint_sha256" in provenance) == masker_kind(name).needs_checkpoint
    masker = build_masker(name, checkpoint, FAST[name], "cpu")
    assert masker.provenance() == provenance
    image, _ = tissue_image(48, 64, objects=4, seed=0)
    masks = masker.generate(image)
    assert isinstance(masks, MaskSet) and len(masks) > 0
    assert masks.masks.shape[1:] == (48, 64) and masks.masks.dtype == bool


def test_what_a_provenance_means_is_asked_of_its_kind(tiny_sam_checkpoint):
    sam = masker_provenance("sam", str(tiny_sam_checkpoint), FAST["sam"])
    sha256 = sha256_file(tiny_sam_checkpoint)
    assert recorded_checkpoint(sam) == RecordedCheckpoint(str(tiny_sam_checkpoint), sha256)
    architecture = sam["architecture"]
    assert (
        describe_masker(sam)
        == f"SAM {architecture} checkpoint {tiny_sam_checkpoint} (sha256 {sha256})"
    )
    # Another machine must match everything but where the checkpoint lay.
    assert portable_provenance(sam) == {k: v for k, v in sam.items() if k != "checkpoint"}
    assert portable_provenance(sam)["checkpoint_sha256"] == sha256
    superpixel = masker_provenance("superpixel", None, {})
    assert recorded_checkpoint(superpixel) is None and describe_masker(superpixel) == ""
    assert portable_provenance(superpixel) == superpixel
    # A kind this samaug does not know (a store from another version) is described as nothing.
    unknown = {"kind": "sam3", "settings": {}, "checkpoint": "x.pth"}
    assert describe_masker(unknown) == "" and recorded_checkpoint(unknown) is None


def test_importing_the_registry_imports_no_torch():
    code = (
        "import sys, precompute.maskers as m\n"
        "m.make_settings('sam', {'points_per_side': 4})\n"
        "m.make_settings('superpixel', {})\n"
        "print('torch' in sys.modules, 'segment_anything' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
