import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from precompute.priors import boxes_from_masks, compute_priors, reference_priors
from samaug.demo.synthetic import random_masks


@pytest.mark.parametrize(
    "shape,n,seed",
    [((522, 775), 130, 0), ((37, 53), 200, 1), ((1, 9), 5, 2), ((64, 64), 0, 3), ((40, 30), 65, 4)],
)
def test_priors_equal_reference_loop(shape, n, seed):
    masks, scores = random_masks(*shape, n, seed=seed)
    seg, boundary = compute_priors(masks, scores, boxes_from_masks(masks))
    ref_seg, ref_boundary = reference_priors(masks, scores)
    assert seg.dtype == np.float32 and boundary.dtype == np.uint8
    np.testing.assert_array_equal(seg, ref_seg)
    np.testing.assert_array_equal(boundary, ref_boundary)
    if n:
        assert boundary.any() and seg.max() > 0


def test_seg_prior_is_the_sum_of_covering_scores():
    masks = np.zeros((3, 4, 5), bool)
    masks[0, :2] = True
    masks[1, :, :2] = True
    masks[2] = True
    scores = np.array([0.5, 0.25, 0.125], np.float32)
    seg, _ = compute_priors(masks, scores)
    expected = np.full((4, 5), 0.125, np.float32)
    expected[:2] += 0.5
    expected[:, :2] += 0.25
    np.testing.assert_array_equal(seg, expected)


def test_boundary_prior_is_thick_and_ignores_the_image_border():
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 3:8, 4:9] = True  # interior square
    masks[1, :, :3] = True  # flush with three borders
    _, boundary = compute_priors(masks, np.ones(2, np.float32))
    expected = find_boundaries(masks[0], mode="thick") | find_boundaries(masks[1], mode="thick")
    np.testing.assert_array_equal(boundary, expected.astype(np.uint8))
    assert boundary[0, 0] == 0 and boundary[0, 2] == 1 and boundary[0, 3] == 1
    assert boundary[5, 6] == 0  # the square's centre is interior
    assert boundary[3, 4] == 1 and boundary[2, 4] == 1  # thick: inside and outside pixels


def test_boxes_from_masks():
    masks = np.zeros((2, 6, 7), bool)
    masks[0, 1:4, 2:6] = True
    np.testing.assert_array_equal(boxes_from_masks(masks), [[2, 1, 5, 3], [0, 0, 0, 0]])


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="scores must have shape"):
        compute_priors(np.zeros((2, 4, 4), bool), np.zeros(3))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        compute_priors(np.zeros((4, 4), bool), np.zeros(1))
