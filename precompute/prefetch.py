"""Iterators produced ahead on a background thread: the stages of a pipeline.

``prefetch(items, depth)`` runs the iterator ``items`` on a thread at most ``depth`` items
ahead of whoever consumes it, so that the producer's work (reading files, resizing, an image
encoder on a GPU) overlaps the consumer's. The queue between them is bounded: a slow consumer
holds the producer back instead of letting finished items pile up in memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """``items`` in order, produced on a daemon thread at most ``depth`` (>= 1) ahead.

    An exception the producer raises is raised to the consumer where the item would have
    come. Leaving the loop early (or closing the iterator) stops the producer at its next
    item.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                slots.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            put(_Raised(error))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="samaug-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            value = slots.get()
            if value is _DONE:
                return
            if isinstance(value, _Raised):
                raise value.error
            yield value
    finally:
        stop.set()
