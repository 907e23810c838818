"""The per-image work of the precompute job, one image or a stream of them.

``process_image`` reads one image, makes its masks and priors and writes its group: the
plain function the pipeline is built from (tested without Dask or threads).
``attempt_images`` does the same for a list of images as a pipeline of stages, each image
its own outcome (an ``ImageResult``, or a ``Failure`` recorded without stopping the others):
reading runs ahead on a thread, the masker's ``stream`` (where it has one: SAM encodes the
next image while the masks of this one are post-processed) makes masks and priors, and
writing runs behind on a thread. On a CPU with one thread per worker the stages take turns;
on a GPU the device never waits for the disk.
"""

from __future__ import annotations

import queue
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from precompute import store
from precompute.pipeline.workers import made_on, masker, masker_loads, reader, worker_name
from precompute.prefetch import prefetch
from precompute.priors import compute_priors
from precompute.types import ImageRef, Masked, Record, SamaugError

if TYPE_CHECKING:
    from precompute.pipeline import PriorsConfig


@dataclass
class ImageResult:
    image_id: str
    split: str
    mask_count: int
    seconds: dict[str, float]
    worker: str
    masker_loads: int
    warnings: list[str] = field(default_factory=list)  # from the reader, each naming its file


@dataclass
class Failure:
    """An image that could not be done.

    message: one line naming the file and the reason. user_error: the input is at fault (a
    SamaugError: fix the file); otherwise something else failed (memory, a GPU, a bug) and
    a rerun may succeed. traceback: the formatted traceback, for the log.
    """

    image_id: str
    message: str
    user_error: bool = True
    traceback: str = ""

    def __str__(self) -> str:
        return self.message


def failure(ref: ImageRef, err: BaseException) -> Failure:
    """The Failure of ``ref`` for ``err``: a SamaugError's own message (it names the file),
    else the image's path, the error's type and its first line."""
    trace = "".join(traceback.format_exception(err))
    if isinstance(err, SamaugError):
        return Failure(ref.image_id, str(err), user_error=True, traceback=trace)
    lines = [line for line in str(err).splitlines() if line.strip()]
    detail = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return Failure(ref.image_id, f"{ref.image_path}: {detail}", user_error=False, traceback=trace)


def masked_stream(image_masker, items: Iterable[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
    """(key, Masked or the exception raised) for each (key, image): the masker's own
    ``stream`` where it has one, else ``generate`` and ``compute_priors`` image by image."""
    if hasattr(image_masker, "stream"):
        yield from image_masker.stream(items)
        return
    for key, image in items:
        try:
            start = time.perf_counter()
            masks = image_masker.generate(image)
            middle = time.perf_counter()
            seg, boundary = compute_priors(masks.masks, masks.stability_score, masks.box)
            seconds = {"mask": middle - start, "priors": time.perf_counter() - middle}
            yield key, Masked(masks, seg, boundary, seconds)
        except Exception as err:  # this image's outcome, the others go on
            yield key, err


def write_masked(
    ref: ImageRef, record: Record, masked: Masked, read_s: float, config: PriorsConfig
) -> ImageResult:
    """Write one image's group (marker last) and say what was done."""
    seconds = {"read": read_s, **masked.seconds}
    start = time.perf_counter()
    store.write_image(
        config.store,
        ref.image_id,
        ref.split,
        record.image,
        record.label,
        masked.masks,
        masked.seg_prior,
        masked.boundary_prior,
        record.source,
        seconds,
        storage_options=config.storage_options,
        made_on=made_on(config),
    )
    seconds["write"] = time.perf_counter() - start
    stages = ("read", "encoder", "decoder", "postprocess", "mask", "priors", "write")
    seconds["total"] = sum(seconds.get(stage, 0.0) for stage in stages)
    return ImageResult(
        image_id=ref.image_id,
        split=ref.split,
        mask_count=len(masked.masks),
        seconds=seconds,
        worker=worker_name(),
        masker_loads=masker_loads(),
        warnings=list(record.warnings),
    )


def process_image(ref: ImageRef, config: PriorsConfig) -> ImageResult:
    """Read one image, generate masks, derive priors, write its group (marker last).

    Raises InputError for an unreadable image or annotation; nothing is written then.
    """
    start = time.perf_counter()
    record = reader(config).load(ref)
    read_s = time.perf_counter() - start
    ((_, masked),) = masked_stream(masker(config), [(ref, record.image)])
    if isinstance(masked, Exception):
        raise masked
    return write_masked(ref, record, masked, read_s, config)


def attempt_image(ref: ImageRef, config: PriorsConfig) -> ImageResult | Failure:
    """``process_image``, with any failure of this image returned as a Failure instead of
    raised, so that the other images go on."""
    try:
        return process_image(ref, config)
    except Exception as err:  # recorded and reported in the run's summary, not lost
        return failure(ref, err)


def _read_each(refs: list[ImageRef], config: PriorsConfig):
    """(ref, Record or the exception, seconds) for each ref, in order."""
    image_reader = reader(config)
    for ref in refs:
        start = time.perf_counter()
        try:
            record = image_reader.load(ref)
        except Exception as err:  # this image's Failure, the others go on
            yield ref, err, 0.0
            continue
        yield ref, record, time.perf_counter() - start


def attempt_images(refs: list[ImageRef], config: PriorsConfig) -> Iterator[ImageResult | Failure]:
    """``attempt_image`` for every ref, as a pipeline (see the module docstring): each
    image's outcome as soon as it is written (or has failed), not in refs' order."""
    unread: queue.SimpleQueue = queue.SimpleQueue()

    def readable():
        for ref, record, read_s in prefetch(_read_each(refs, config), depth=2):
            if isinstance(record, Exception):
                unread.put(failure(ref, record))
                continue
            yield (ref, record, read_s), record.image

    def failed_reads():
        while not unread.empty():
            yield unread.get()

    pending: deque = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="samaug-writer") as writer:
        for (ref, record, read_s), masked in masked_stream(masker(config), readable()):
            yield from failed_reads()
            if isinstance(masked, Exception):
                yield failure(ref, masked)
                continue
            pending.append((ref, writer.submit(write_masked, ref, record, masked, read_s, config)))
            while len(pending) > 1:  # one write in flight behind the masker
                yield _written(*pending.popleft())
        while pending:
            yield _written(*pending.popleft())
    yield from failed_reads()


def _written(ref: ImageRef, future) -> ImageResult | Failure:
    try:
        return future.result()
    except Exception as err:  # the write failed: this image's Failure
        return failure(ref, err)


def attempt_chunk(refs: list[ImageRef], config: PriorsConfig) -> list[ImageResult | Failure]:
    """``attempt_images`` to the end, as a list: the task a Dask worker runs."""
    return list(attempt_images(refs, config))
