"""One batch in flight: the database write of batch N overlaps the poll and decode of N+1.

The writer is a single thread so batches commit in poll order; an error in it is raised in
the polling thread at the next hand-over, and ``drain`` lets a rebalance wait until the stored
offsets are current.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

Job = Callable[[], Any]


class Writer:
    def __init__(self, name: str = "fusion-writer") -> None:
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                self._jobs.task_done()
                return
            try:
                if self._error is None:  # after a failure, refuse work until it is seen
                    job()
            except BaseException as exc:
                self._error = exc
            finally:
                self._jobs.task_done()

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def check(self) -> None:
        """Re-raise a failure of the last job now, not at the next submit: an idle stream
        would otherwise keep a failed worker looking alive."""
        self._raise_pending()

    def submit(self, job: Job) -> None:
        """Queue ``job``; blocks while the previous one is still waiting to start."""
        self._raise_pending()
        self._jobs.put(job)

    def drain(self) -> None:
        """Wait until every submitted job has finished; re-raise a failure."""
        self._jobs.join()
        self._raise_pending()

    def close(self) -> None:
        """Finish queued work and stop the thread; later ``drain`` calls return at once."""
        if self._thread.is_alive():
            self._jobs.join()
            self._jobs.put(None)
            self._thread.join(timeout=30)
        self._raise_pending()
