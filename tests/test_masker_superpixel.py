import numpy as np
import pytest
from skimage.measure import regionprops

from precompute.maskers.superpixel import (
    SuperpixelMasker,
    SuperpixelSettings,
    cross_scale_scores,
    sequential_labels,
)
from precompute.types import SettingError
from samaug.demo.synthetic import tissue_image

# Scales small enough for a 64x64 image to give several regions at each one.
SETTINGS = {
    "felzenszwalb": SuperpixelSettings(scales=(20, 100, 400), min_size_fraction=2e-3),
    "slic": SuperpixelSettings(method="slic", scales=(60, 25, 8)),
}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return tissue_image(64, 64, objects=6, seed=3, radius=(6, 18))[0]


def reference_scores(label_maps: list[np.ndarray]) -> list[np.ndarray]:
    """The score formula transcribed directly: per region, per other scale, per region there."""
    masks = [[m == r for r in range(m.max() + 1)] for m in label_maps]
    out = []
    for k, regions in enumerate(masks):
        scores = []
        for r in regions:
            best = []
            for j, others in enumerate(masks):
                if j == k:
                    continue
                best.append(max((r & o).sum() / (r | o).sum() for o in others))
            scores.append(np.mean(best))
        out.append(np.array(scores))
    return out


def split_by_scale(masks: np.ndarray, label_maps: list[np.ndarray]) -> list[np.ndarray]:
    bounds = np.cumsum([0] + [m.max() + 1 for m in label_maps])
    return [masks[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_output_shapes_dtypes_and_score_range(image, method):
    out = SuperpixelMasker(SETTINGS[method]).generate(image)
    n = len(out)
    assert n > 3 * 3  # several regions at each of the three scales
    assert out.masks.shape == (n, 64, 64) and out.masks.dtype == bool
    assert out.stability_score.shape == (n,) and out.stability_score.dtype == np.float32
    assert out.predicted_iou.dtype == np.float32
    assert out.box.shape == (n, 4) and out.box.dtype == np.int32
    assert out.point.shape == (n, 2) and out.point.dtype == np.float32
    assert out.area.shape == (n,) and out.area.dtype == np.int64
    assert np.all((out.stability_score >= 0) & (out.stability_score <= 1))
    np.testing.assert_array_equal(out.predicted_iou, out.stability_score)
    np.testing.assert_array_equal(out.area, out.masks.sum(axis=(1, 2)))


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_masks_of_each_scale_partition_the_image_in_label_order(image, method):
    masker = SuperpixelMasker(SETTINGS[method])
    maps = masker.label_maps(image)
    out = masker.generate(image)
    assert len(out) == sum(m.max() + 1 for m in maps)
    for labels, masks in zip(maps, split_by_scale(out.masks, maps), strict=True):
        np.testing.assert_array_equal(masks.sum(axis=0), 1)
        np.testing.assert_array_equal(masks, labels[None] == np.arange(len(masks))[:, None, None])


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_scores_equal_the_per_region_loop(image, method):
    masker = SuperpixelMasker(SETTINGS[method])
    expected = np.concatenate(reference_scores(masker.label_maps(image)))
    out = masker.generate(image)
    np.testing.assert_allclose(out.stability_score, expected, rtol=1e-6, atol=0)
    assert 0 < expected.min() and expected.max() <= 1  # a mix, not all ones


def test_cross_scale_scores_equal_the_loop_on_arbitrary_label_maps():
    rng = np.random.default_rng(0)
    # Blocky random partitions of different granularity (labels need not be contiguous).
    maps = [
        sequential_labels(np.kron(rng.integers(0, k, (24 // c, 24 // c)), np.ones((c, c), int)))
        for k, c in ((9, 2), (5, 3), (3, 4), (2, 6))
    ]
    got = cross_scale_scores(maps)
    for g, e in zip(got, reference_scores(maps), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=0)


def test_a_region_identical_at_every_scale_scores_one():
    image = np.full((48, 48, 3), 200, np.uint8)
    image[10:30, 15:40] = (40, 20, 90)
    # Unsmoothed: blurring would put rings of intermediate colour along the square's edge,
    # and how those split differs between scales.
    settings = SuperpixelSettings(scales=(50, 300, 1000, 3000), sigma=0.0)
    out = SuperpixelMasker(settings).generate(image)
    assert len(out) == 2 * 4  # square and background at each scale
    np.testing.assert_array_equal(out.stability_score, 1.0)
    square = out.area == 20 * 25
    assert square.sum() == 4
    np.testing.assert_array_equal(out.box[square], [[15, 10, 39, 29]] * 4)


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_boxes_areas_and_centroids_match_regionprops(image, method):
    masker = SuperpixelMasker(SETTINGS[method])
    maps = masker.label_maps(image)
    out = masker.generate(image)
    box, point, area = [], [], []
    for labels in maps:
        for p in regionprops(labels + 1):  # regionprops skips label 0; sorted by label
            r0, c0, r1, c1 = p.bbox
            box.append((c0, r0, c1 - 1, r1 - 1))
            point.append(p.centroid[::-1])
            area.append(p.area)
    np.testing.assert_array_equal(out.box, box)
    np.testing.assert_array_equal(out.area, area)
    np.testing.assert_allclose(out.point, point, rtol=1e-6)


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_deterministic(image, method):
    a = SuperpixelMasker(SETTINGS[method]).generate(image)
    b = SuperpixelMasker(SETTINGS[method]).generate(image.copy())
    np.testing.assert_array_equal(a.masks, b.masks)
    for name, values in a.per_mask().items():
        np.testing.assert_array_equal(values, b.per_mask()[name])


def test_min_area_drops_small_regions_and_keeps_the_other_scores(image):
    full = SuperpixelMasker(SETTINGS["slic"]).generate(image)
    cut = int(np.median(full.area))
    kept = SuperpixelMasker(SuperpixelSettings(method="slic", scales=(60, 25, 8), min_area=cut))
    out = kept.generate(image)
    keep = full.area >= cut
    assert 0 < len(out) < len(full)
    np.testing.assert_array_equal(out.masks, full.masks[keep])
    np.testing.assert_array_equal(out.stability_score, full.stability_score[keep])


def test_settings_resolve_defaults_and_refuse_bad_values():
    assert SuperpixelSettings().scales == (100.0, 300.0, 1000.0)
    assert SuperpixelSettings(method="slic").scales == (400.0, 150.0, 50.0)
    assert SuperpixelSettings(scales=[1, 2]).scales == (1.0, 2.0)  # JSON lists from the CLI
    for bad in (
        {"method": "watershed"},
        {"scales": (100,)},
        {"scales": (100, -1)},
        {"scales": (100, float("inf"))},
        {"scales": "big"},
        {"scales": 7},
        {"method": "slic", "scales": (10.5, 3)},
        {"min_size_fraction": 1.5},
        {"min_size_fraction": 1},
        {"sigma": "wide"},  # a TypeError once, not a one-line error
        {"sigma": float("nan")},
        {"sigma": -1},
        {"compactness": 0},
        {"compactness": float("inf")},
        {"min_area": 1.5},
        {"min_area": -1},
        {"min_area": True},
    ):
        setting = next(iter(bad)) if len(bad) == 1 else "scales"
        with pytest.raises(SettingError, match=f"superpixel setting {setting} must"):
            SuperpixelSettings(**bad)


def test_provenance_records_every_setting():
    settings = SuperpixelSettings(method="slic", compactness=5.0)
    prov = SuperpixelMasker(settings).provenance()
    assert prov["kind"] == "superpixel"
    assert prov["settings"] == {
        "method": "slic",
        "scales": (400.0, 150.0, 50.0),
        "sigma": 0.8,
        "min_size_fraction": 5e-4,
        "compactness": 5.0,
        "min_area": 0,
    }
    assert prov["scikit_image"].count(".") >= 1


def test_refuses_a_non_rgb_image():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        SuperpixelMasker(SuperpixelSettings()).generate(np.zeros((8, 8), np.uint8))
