"""Segmentation metrics for GlaS (glands), MoNuSeg (nuclei) and the polyp benchmarks.

Every metric function takes ``(gt, pred)`` numpy arrays of the same HxW shape and returns
plain Python floats (``glas_parts`` returns one image's GlasParts, which ``glas_pooled``
turns into a test part's scores). A shape mismatch, a wrong dtype or an out-of-range value
raises ValueError.

Instance metrics (``aji``, ``aji_plus``, ``pq``/``pq_parts``, ``pixel_f1``,
``glas_object_f1``, ``glas_object_dice``, ``glas_object_hausdorff``) take label maps: any
integer dtype (or bool, read as one object), 0 = background, every other value one object.
Ids may be non-contiguous and above 255; they are relabelled internally to 1..N keeping their
order, never cast to uint8 (the Python ports of the GlaS code cast to uint8, which silently
merges id 256 into the background). Overlaps come from one contingency table of
(gt id, pred id) pixel counts, so no metric loops over pairs of full-frame masks.

Sources followed, including their tie-breaks (ties go to the smaller id):

- ``aji``: Kumar et al. 2017, the MoNuSeg MATLAB/Python code: each gt object takes the pred
  object of largest IoU with it (strict ``>`` over ascending ids); a pred may be taken by
  several gt objects and is then counted in several unions; pred objects taken by no gt
  object and gt objects overlapping no pred object are added to the union.
- ``aji_plus``: hover_net ``get_fast_aji_plus``: one-to-one pairing maximising the summed IoU
  (Munkres), pairs of zero IoU dropped, the unpaired areas of both sides added to the
  union. The assignment runs per connected component of the overlap graph, which gives the
  same optimum as one global assignment; only a tie between two equally good pairings with
  different pixel counts could be broken differently.
- ``pq``/``pq_parts``: hover_net ``get_fast_pq`` with ``match_iou=0.5``: pairs with IoU > 0.5
  (unique by construction), ``dq = TP / (TP + FP/2 + FN/2)``, ``sq`` = mean IoU of the pairs,
  ``pq = dq * sq``. hover_net divides ``sq`` by ``TP + 1e-6``; here it is exact.
- ``glas_object_f1``, ``glas_object_dice``, ``glas_object_hausdorff``: the GlaS 2015 MATLAB code
  (Sirinukunwattana, ``F1score.m``, ``ObjectDice.m``, ``ObjectHausdorff.m``). F1: each pred
  object is matched to the gt object it overlaps most and is a true positive when the overlap
  covers *more than* 50% of that gt object's area; two disjoint pred objects cannot both
  cover more than half of one gt object, so each gt object is matched at most once;
  ``FN = #gt - TP``. Dice/Hausdorff: each object of either side is matched to the object of
  the other side it overlaps most, weighted by its share of its side's foreground area, and
  the two sides are averaged. An object overlapping nothing scores Dice 0; for Hausdorff it
  is matched to the object of the other side at the smallest *Hausdorff* distance (the
  official code, not the smallest point-to-point distance). Hausdorff distances are exact
  Euclidean distances between all pixels of the two objects (distance transforms on the
  pair's bounding box), like the official ``knnsearch`` over pixel coordinates.
- ``glas_parts``/``glas_pooled``: the challenge's scores of a whole test part (its
  evaluation page and Sirinukunwattana et al. 2017 define them over the sets of all
  objects of all images): F1 from TP, FP and FN summed over the images; object Dice and
  Hausdorff with each object weighted by its share of the foreground area of the whole
  part, not of its image. Over one image they equal the three per-image functions.
- ``pixel_f1``: Dice of the binarised foregrounds (hover_net ``get_dice_1``).
- ``polyp_scores``: the PraNet evaluation (``main.m``/``Fmeasure_calu.m``, also used by
  Polyp-PVT): the gt is binarised at > 128, the prediction min-max normalised
  (``mapminmax``); ``mean_dice``/``mean_iou`` average Dice/IoU of ``pred >= k/255`` over the
  256 thresholds k = 0..255, with the same 8-bit quantisation as PySODMetrics' dynamic
  curves. ``s_measure``, ``mean_e_measure``/``max_e_measure`` (over the same 256 thresholds),
  ``weighted_f`` and ``mae`` are PySODMetrics' ``Smeasure``, ``Emeasure``,
  ``WeightedFmeasure`` and ``MAE`` on the uint8 prediction and the 0/255 gt. ``dice`` is the
  Dice of the *un-normalised* probability ``>= 0.5``: the mask the model would output.

Edge cases (each is tested):

==============================  ====================================  ==============
case                            F1, Dice, AJI, AJI+, PQ, polyp Dice    Hausdorff
==============================  ====================================  ==============
gt and pred both empty          1.0                                   0.0
only one of them empty          0.0                                   inf
==============================  ====================================  ==============

For ``mean_dice``/``mean_iou`` the rule applies per threshold; threshold 0 marks every pixel,
so an empty gt scores at most 255/256 there, as in PraNet.

What the official code does there: GlaS F1/Dice return 1 and 0 as above and ObjectHausdorff
returns 0 when both are empty; with one side empty it fails (it indexes an empty candidate
list), and inf is what its ``Hausdorff`` helper returns against an empty set. Kumar's AJI and
hover_net's AJI/AJI+ give 0/0 = NaN and hover_net's PQ raises ZeroDivisionError when both are
empty; with one side empty they give 0 as here. The GlaS F1 with no true positive is 0/0 =
NaN in MATLAB and 0.0 here (as the Python ports). PraNet sets Dice and IoU to 0 at a
threshold whenever TP = 0, including when gt and binarised prediction are both empty; here
that one case scores 1.0, every other case is identical.
"""

from train.metrics.glas import (
    GlasParts,
    glas_object_dice,
    glas_object_f1,
    glas_object_hausdorff,
    glas_parts,
    glas_pooled,
)
from train.metrics.nuclei import aji, aji_plus, pixel_f1, pq, pq_parts
from train.metrics.polyp import polyp_scores

__all__ = [
    "aji",
    "aji_plus",
    "glas_object_dice",
    "glas_object_f1",
    "glas_object_hausdorff",
    "glas_parts",
    "glas_pooled",
    "GlasParts",
    "pixel_f1",
    "polyp_scores",
    "pq",
    "pq_parts",
]
