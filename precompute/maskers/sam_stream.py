"""``SamMasker.stream``: many images through the masker, the encoder working ahead.

A thread takes the images in order, resizes their crops on the CPU (``SamMasker.prepare``)
and runs the image encoder on them ``image_batch`` crops at a time; a bounded queue
(``precompute.prefetch``) hands the encodings to the caller's thread, which decodes the
prompts, post-processes the masks and derives the priors. So the encoder of image k + 1
runs while the masks of image k are post-processed (and, in the pipeline, written). On a
GPU the encoder has its own CUDA stream; the decoder's stream waits for its event, not the
host.

Each image's outcome is its own: an image that cannot be encoded or decoded comes out as
the exception it raised, and the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from precompute.maskers.sam import Encoded, SamMasker, _check_image
from precompute.prefetch import prefetch
from precompute.priors import compute_priors
from precompute.types import Masked, MaskSet


def _groups(masker: SamMasker, items: Iterable[tuple[Any, np.ndarray]]):
    """Lists of (key, image or exception, crops) holding at least ``image_batch`` crops
    (the last may hold fewer)."""
    group, crops = [], 0
    for key, image in items:
        try:
            image = _check_image(image)
            boxes = [box for box, _ in masker.crops(image)]
        except Exception as err:  # this image's outcome, the others go on
            group.append((key, err, []))
            continue
        group.append((key, image, boxes))
        crops += len(boxes)
        if crops >= masker.image_batch:
            yield group
            group, crops = [], 0
    if group:
        yield group


def _encode_group(masker: SamMasker, group, side_stream):
    """One group's crops through the encoder, ``image_batch`` at a time: per image
    (key, image or exception, encodings, seconds, event the encodings are ready at)."""
    prepared, owners = [], []
    for index, (_, image, boxes) in enumerate(group):
        for box in boxes:
            prepared.append(masker.prepare(image, box))
            owners.append(index)
    encoded: list[Encoded] = []
    start = time.perf_counter()
    context = torch.cuda.stream(side_stream) if side_stream is not None else nullcontext()
    try:
        with context:
            for first in range(0, len(prepared), masker.image_batch):
                encoded += masker.encode(prepared[first : first + masker.image_batch])
            event = None
            if side_stream is not None:
                event = torch.cuda.Event()
                event.record(side_stream)
    except Exception as err:  # every image of the batch shares the failure
        return [
            (key, image if isinstance(image, Exception) else err, [], 0.0, None)
            for key, image, _ in group
        ]
    seconds = (time.perf_counter() - start) / max(len(group), 1)
    return [
        (
            key,
            image,
            [e for e, o in zip(encoded, owners, strict=True) if o == index],
            seconds,
            event,
        )
        for index, (key, image, _) in enumerate(group)
    ]


def _encoded(masker: SamMasker, items, threads: int):
    # OpenMP's thread count is per thread: without this the encoder thread would use every
    # core, and on a CPU other GEMM blockings round differently from the reference's.
    torch.set_num_threads(threads)
    side = torch.cuda.Stream(masker.device) if masker.device.type == "cuda" else None
    for group in _groups(masker, items):
        yield from _encode_group(masker, group, side)


def stream(
    masker: SamMasker, items: Iterable[tuple[Any, np.ndarray]]
) -> Iterator[tuple[Any, Masked | Exception]]:
    """(key, Masked or exception) for each (key, HxWx3 uint8 image) of ``items``, in order.

    The Masked's masks are a MaskSet (host post-processing) or a PackedMaskSet (on the
    device); its priors are ``precompute.priors``' either way.
    """
    for key, image, encoded, seconds, event in prefetch(
        _encoded(masker, items, torch.get_num_threads()), depth=1
    ):
        if isinstance(image, Exception):
            yield key, image
            continue
        try:
            if event is not None:
                current = torch.cuda.current_stream(masker.device)
                current.wait_event(event)
                for e in encoded:
                    e.features.record_stream(current)
            yield key, _decoded(masker, image, encoded, seconds)
        except Exception as err:  # this image's outcome, the others go on
            yield key, err


def _decoded(masker: SamMasker, image: np.ndarray, encoded, seconds: float) -> Masked:
    result = masker.decode(image, encoded, seconds)
    if not isinstance(result, MaskSet):
        return result
    start = time.perf_counter()
    seg, boundary = compute_priors(result.masks, result.stability_score, result.box)
    timings = {**masker.last_timings, "priors": time.perf_counter() - start}
    return Masked(result, seg, boundary, timings)
