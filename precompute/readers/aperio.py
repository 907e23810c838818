"""MoNuSeg's annotations: Aperio ImageScope XML polygons -> an instance label map.

Each ``<Region>`` polygon (``<Vertex X= Y=>``, x right, y down, in pixels) is one instance,
numbered in document order. Vertices may be non-integer and outside the image: the polygon
is rasterised exactly (``skimage.draw.polygon``: pixel centres inside it) and cut at the
image border. Where polygons overlap, the LATER region in the document wins. Regions fully
covered by later ones get no label, and the rest are renumbered 1..N keeping document
order, so the label map has no gaps.

Regions left out, each with a warning naming the file and the region IDs (MoNuSeg's own
files have none of them):

- fewer than 3 vertices (not a polygon);
- a vertex farther outside the image than the image's own width (x) or height (y): a
  corrupt coordinate (e.g. 1e300) that would otherwise draw a wedge across the image;
- no pixel centre inside the image (entirely outside it, or too small).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from skimage.draw import polygon as draw_polygon

from precompute.types import InputError

FEW_VERTICES = "fewer than 3 vertices"
FAR_OUTSIDE = "a vertex farther outside the image than its own size"
NO_PIXEL = "no pixel inside the image"


def read_aperio_polygons(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """Every ``<Region>`` of an Aperio ImageScope XML in document order, as (its Id
    attribute, a (K, 2) float64 array of XY vertices: x right, y down, pixels).

    Raises InputError naming the file for unreadable XML, a vertex without a numeric X/Y,
    or a non-finite one.
    """
    path = Path(path)
    try:
        document = ET.parse(path)
    except (ET.ParseError, OSError) as err:
        raise InputError(f"{path}: cannot read annotation XML ({err})") from err
    polygons = []
    for region in document.getroot().iter("Region"):
        try:
            xy = [(float(v.attrib["X"]), float(v.attrib["Y"])) for v in region.iter("Vertex")]
        except (KeyError, ValueError) as err:
            raise InputError(
                f"{path}: Region Id={region.get('Id')} has a vertex without a numeric X/Y ({err})"
            ) from err
        vertices = np.array(xy, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(vertices).all():
            raise InputError(f"{path}: Region Id={region.get('Id')} has a non-finite vertex")
        polygons.append((str(region.get("Id")), vertices))
    return polygons


def rasterise_polygons(
    polygons: list[np.ndarray], shape: tuple[int, int]
) -> tuple[np.ndarray, dict[str, list[int]]]:
    """HxW int32 instance labels from XY polygons by the rules in the module doc.

    Returns the label map (0 = background, 1..N) and, for each reason a polygon was left
    out (FEW_VERTICES, FAR_OUTSIDE, NO_PIXEL), the indices of those polygons.
    """
    height, width = shape
    label = np.zeros(shape, np.int32)
    left_out: dict[str, list[int]] = {FEW_VERTICES: [], FAR_OUTSIDE: [], NO_PIXEL: []}
    number = 0
    for index, vertices in enumerate(polygons):
        x, y = vertices[:, 0], vertices[:, 1]
        if len(vertices) < 3:
            left_out[FEW_VERTICES].append(index)
            continue
        if (
            (x < -width).any()
            or (x > 2 * width).any()
            or (y < -height).any()
            or (y > 2 * height).any()
        ):
            left_out[FAR_OUTSIDE].append(index)
            continue
        rows, cols = draw_polygon(y, x, shape)
        if len(rows) == 0:
            left_out[NO_PIXEL].append(index)
            continue
        number += 1
        label[rows, cols] = number
    visible = np.unique(label)
    visible = visible[visible > 0]
    renumber = np.zeros(number + 1, np.int32)
    renumber[visible] = np.arange(1, len(visible) + 1, dtype=np.int32)
    return renumber[label], {reason: found for reason, found in left_out.items() if found}


def read_aperio_label(path: str | Path, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """The HxW int32 instance label map of the image (of ``shape``) that the XML at ``path``
    annotates, and one warning per reason regions were left out, naming the file, the
    reason and the region IDs."""
    regions = read_aperio_polygons(path)
    label, left_out = rasterise_polygons([vertices for _, vertices in regions], shape)
    warnings = []
    for reason, indices in left_out.items():
        ids = ", ".join(regions[i][0] for i in indices[:10])
        more = f" and {len(indices) - 10} more" if len(indices) > 10 else ""
        warnings.append(
            f"{path}: {len(indices)} region(s) left out, {reason} "
            f"({shape[1]}x{shape[0]} image): Id={ids}{more}"
        )
    return label, warnings
