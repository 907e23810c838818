"""The ``superpixel`` masker: scikit-image over-segmentations at several scales, no SAM.

An offline baseline for machines without SAM weights, and an ablation: does SAMAug's gain
come from SAM, or from any over-segmentation? It has the SAM masker's interface
(``generate(image) -> MaskSet``, ``provenance()``), so the priors and the store treat both
the same.

Every region at every scale is one mask, ordered by scale (as given in the settings) and
then by label, so the masks of one scale partition the image. A region's score says how
stable it is across scales. With label maps L_1..L_S (S >= 2 scales) and R_k the regions
of scale k, region r of scale k gets

    score(r) = 1 / (S - 1) * sum_{j != k} max_{r' in R_j} IoU(r, r')

in [0, 1]; it is 1 exactly when every other scale has a region identical to r. All IoUs
between two scales come at once from the contingency table of their two label maps
(``np.bincount`` on combined labels): intersections are its cells, areas its margins.

This module imports numpy, scipy and scikit-image only (no torch).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib.metadata import version

import numpy as np
from scipy import ndimage
from skimage.segmentation import felzenszwalb, slic

from precompute import checks
from precompute.types import MaskSet, SettingError

METHODS = ("felzenszwalb", "slic")

# felzenszwalb: its ``scale`` (higher = larger regions); slic: ``n_segments`` (lower = larger).
DEFAULT_SCALES = {"felzenszwalb": (100.0, 300.0, 1000.0), "slic": (400.0, 150.0, 50.0)}


@dataclass(frozen=True)
class SuperpixelSettings:
    """How the superpixel masker over-segments an image.

    method: "felzenszwalb" or "slic".
    scales: one over-segmentation per value, at least two finite numbers > 0 (stability
        needs another scale to compare with; whole numbers for slic); None = the method's
        defaults: felzenszwalb ``scale`` (100, 300, 1000) or SLIC ``n_segments`` (400, 150,
        50). Stored as a tuple of floats.
    sigma: felzenszwalb's Gaussian pre-smoothing width in pixels, >= 0 (SLIC runs
        unsmoothed).
    min_size_fraction: in [0, 1), felzenszwalb's ``min_size`` as a fraction of the image
        area, so that the number of regions (and masks) does not grow with the resolution:
        ``min_size = max(1, round(min_size_fraction * H * W))`` (131 px at 512x512).
    compactness: SLIC's colour/space trade-off, > 0 (higher = more square superpixels).
    min_area: a whole number >= 0; regions with fewer pixels are left out of the MaskSet
        (after scoring, so a region's score does not depend on it). 0 keeps every region;
        any other value may leave pixels that no mask of a scale covers.

    A value of the wrong type or out of range is a SettingError naming the setting.
    """

    method: str = "felzenszwalb"
    scales: tuple[float, ...] | None = None
    sigma: float = 0.8
    min_size_fraction: float = 5e-4
    compactness: float = 10.0
    min_area: int = 0

    def __post_init__(self) -> None:
        checks.choice("superpixel setting method", self.method, METHODS)
        # Resolve the defaults here so that the recorded settings say which scales ran;
        # the CLI hands in JSON lists, hence the tuple.
        scales = DEFAULT_SCALES[self.method] if self.scales is None else self.scales
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Iterable):
            raise SettingError(
                f"superpixel setting scales must be a list of numbers, not {self.scales!r}"
            )
        scales = tuple(checks.number("superpixel setting scales", s, positive=True) for s in scales)
        if len(scales) < 2:
            raise SettingError(
                f"superpixel setting scales must hold at least two numbers, not {self.scales!r}"
            )
        if self.method == "slic" and any(s != int(s) for s in scales):
            raise SettingError(
                "superpixel setting scales must be whole numbers for slic (its n_segments), "
                f"not {scales}"
            )
        fraction = checks.fraction("superpixel setting min_size_fraction", self.min_size_fraction)
        if fraction == 1:
            raise SettingError("superpixel setting min_size_fraction must be below 1, not 1")
        checked = {
            "scales": scales,
            "sigma": checks.number("superpixel setting sigma", self.sigma, minimum=0),
            "min_size_fraction": fraction,
            "compactness": checks.number(
                "superpixel setting compactness", self.compactness, positive=True
            ),
            "min_area": checks.integer("superpixel setting min_area", self.min_area, minimum=0),
        }
        for setting, value in checked.items():
            object.__setattr__(self, setting, value)


def sequential_labels(labels: np.ndarray) -> np.ndarray:
    """HxW non-negative int labels -> HxW int64 labels 0..K-1, keeping their order."""
    labels = np.asarray(labels)
    present = np.bincount(labels.ravel()) > 0
    lookup = np.cumsum(present) - 1
    return lookup[labels]


def cross_scale_scores(label_maps: list[np.ndarray]) -> list[np.ndarray]:
    """The stability score of every region of every scale (see the module docstring).

    label_maps: S >= 2 HxW int label maps, each labelled 0..K_s-1 with every label present.
    Returns: S arrays, (K_s,) float64 in [0, 1], indexed by label.
    """
    if len(label_maps) < 2:
        raise ValueError(f"need at least two label maps, got {len(label_maps)}")
    flat = [np.asarray(m).ravel().astype(np.int64) for m in label_maps]
    counts = [int(f.max()) + 1 for f in flat]
    best_sum = [np.zeros(k) for k in counts]
    for a in range(len(flat)):
        for b in range(a + 1, len(flat)):
            ka, kb = counts[a], counts[b]
            joint = np.bincount(flat[a] * kb + flat[b], minlength=ka * kb).reshape(ka, kb)
            area_a = joint.sum(axis=1)
            area_b = joint.sum(axis=0)
            # Every label is present, so each union is at least the region's own area > 0.
            iou = joint / (area_a[:, None] + area_b[None, :] - joint)
            best_sum[a] += iou.max(axis=1)
            best_sum[b] += iou.max(axis=0)
    return [s / (len(flat) - 1) for s in best_sum]


class SuperpixelMasker:
    """Masks from multi-scale superpixels; see the module docstring for the score."""

    def __init__(self, settings: SuperpixelSettings) -> None:
        self.settings = settings

    def label_maps(self, image: np.ndarray) -> list[np.ndarray]:
        """HxWx3 uint8 RGB -> one HxW int64 label map per scale, labels 0..K_s-1."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be HxWx3 uint8, got {image.shape} {image.dtype}")
        s = self.settings
        h, w = image.shape[:2]
        maps = []
        for scale in s.scales:
            if s.method == "felzenszwalb":
                min_size = max(1, round(s.min_size_fraction * h * w))
                labels = felzenszwalb(image, scale=scale, sigma=s.sigma, min_size=min_size)
            else:
                labels = slic(
                    image, n_segments=int(scale), compactness=s.compactness, start_label=0
                )
            maps.append(sequential_labels(labels))
        return maps

    def generate(self, image: np.ndarray) -> MaskSet:
        """HxWx3 uint8 RGB -> MaskSet: one mask per region per scale, by scale then label.

        stability_score: the cross-scale score. predicted_iou: the same value (there is no
        separate quality estimate). box: XYXY inclusive. point: the region's centroid, XY.
        """
        maps = self.label_maps(image)
        scores = cross_scale_scores(maps)
        h, w = image.shape[:2]
        pixel = np.arange(h * w)
        rows, cols = np.divmod(pixel, w)
        per_scale: list[dict[str, np.ndarray]] = []
        for labels, score in zip(maps, scores, strict=True):
            flat = labels.ravel()
            k = len(score)
            area = np.bincount(flat, minlength=k)
            centroid = np.stack(
                [np.bincount(flat, cols, k) / area, np.bincount(flat, rows, k) / area], axis=1
            )
            # find_objects skips label 0, hence the shift; every label is present.
            box = np.array(
                [
                    (sx.start, sy.start, sx.stop - 1, sy.stop - 1)
                    for sy, sx in ndimage.find_objects(labels + 1)
                ],
                np.int32,
            ).reshape(k, 4)
            per_scale.append(
                {
                    "keep": area >= self.settings.min_area,
                    "stability_score": score.astype(np.float32),
                    "box": box,
                    "point": centroid.astype(np.float32),
                    "area": area.astype(np.int64),
                }
            )
        # One scatter per scale into the final array: the masks are most of the memory, so
        # they are neither built per scale and concatenated nor copied to drop regions.
        n = sum(int(p["keep"].sum()) for p in per_scale)
        masks = np.zeros((n, h * w), bool)
        offset = 0
        for labels, p in zip(maps, per_scale, strict=True):
            index = np.cumsum(p["keep"]) - 1 + offset
            flat = labels.ravel()
            kept = p["keep"][flat]
            masks[index[flat[kept]], pixel[kept]] = True
            offset += int(p["keep"].sum())

        def joined(name: str) -> np.ndarray:
            return np.concatenate([p[name][p["keep"]] for p in per_scale])

        score = joined("stability_score")
        return MaskSet(
            masks=masks.reshape(n, h, w),
            stability_score=score,
            predicted_iou=score.copy(),
            box=joined("box"),
            point=joined("point"),
            area=joined("area"),
        )

    def provenance(self) -> dict:
        """What the store records: kind, every setting, and the scikit-image version."""
        return {
            "kind": "superpixel",
            "settings": asdict(self.settings),
            "scikit_image": version("scikit-image"),
        }
