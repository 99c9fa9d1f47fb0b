"""SIGINT and SIGTERM during a batch: stop at once with :class:`~.errors.Interrupted`, so the rows done are saved.

Python turns SIGINT into KeyboardInterrupt but lets SIGTERM (``kill``, ``docker stop``, a job
scheduler) end the process on the spot, losing whatever was not written. Inside
:func:`stop_on_signals` both raise :class:`~.errors.Interrupted` in the main thread; a second
signal while the caller saves what it has is ignored. Outside the main thread (where Python
cannot install handlers) it does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from .errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum, frame):
        if received:
            return  # already stopping: let the rows be saved
        received.append(signum)
        raise Interrupted(signum, signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
