"""Dynamic batching for the server: concurrent requests merged into one runtime call.

Like Triton's dynamic batcher: requests wait in a queue at most `max_delay` seconds for others to
join them, up to `max_batch` rows per call; the merged call's output is split back per request.
A request larger than `max_batch` runs on its own. A full queue (`max_queue` rows waiting) is
refused at once with `QueueFull` (the server answers 503 with Retry-After) instead of growing.

Each request brings its own inputs (the server draws a request's latents from its own seed before
it is queued), so a request gives the same rows whether it ran alone or inside a batch: the batch
only concatenates rows, and the networks served here treat every row independently.

Only asyncio and the standard library: `run` (feeds -> outputs, blocking) runs on a small thread
pool of `max_inflight` threads; everything else runs on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_DELAY = 0.005  # seconds
DEFAULT_MAX_QUEUE = 4096  # rows waiting, not yet running


class QueueFull(RuntimeError):
    """The batcher's queue holds max_queue rows already: try again later."""


@dataclasses.dataclass
class _Job:
    feeds: dict
    rows: int
    future: asyncio.Future
    arrival: float


@dataclasses.dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    requests: int = 0
    refused: int = 0
    largest: int = 0


class DynamicBatcher:
    """`await batcher.submit({name: array})` -> {output name: array} for those rows.

    run: blocking callable {input name: array (N, ...)} -> {output name: array (N, ...)}.
    """

    def __init__(self, run, *, max_batch: int = DEFAULT_MAX_BATCH,
                 max_delay: float = DEFAULT_MAX_DELAY, max_queue: int = DEFAULT_MAX_QUEUE,
                 max_inflight: int = 1):
        for name, value in (("max_batch", max_batch), ("max_queue", max_queue),
                            ("max_inflight", max_inflight)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(max_delay, bool) or not isinstance(max_delay, (int, float)) or not (
            0 <= max_delay <= 10
        ):
            raise ValueError(f"max_delay must be in [0, 10] seconds, got {max_delay!r}")
        self.run = run
        self.max_batch = max_batch
        self.max_delay = float(max_delay)
        self.max_queue = max_queue
        self.max_inflight = max_inflight
        self.stats = BatchStats()
        self._pending: collections.deque[_Job] = collections.deque()
        self._queued_rows = 0
        self._executor = None
        self._loop = None
        self._task = None
        self._arrived = None
        self._slots = None

    def _start(self):
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use (or a new event loop): fresh primitives
            self._loop = loop
            self._arrived = asyncio.Event()
            self._slots = asyncio.Semaphore(self.max_inflight)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_inflight,
                                                    thread_name_prefix="genzoo-batch")
            self._task = loop.create_task(self._dispatch_forever(), name="genzoo-batcher")

    async def submit(self, feeds: dict) -> dict:
        """Queue one request's rows; its own slice of the merged call's outputs."""
        rows = len(next(iter(feeds.values())))
        self._start()
        if self._queued_rows + rows > self.max_queue:
            self.stats.refused += 1
            raise QueueFull(
                f"the batch queue is full ({self._queued_rows} rows waiting, at most "
                f"{self.max_queue}); retry shortly"
            )
        job = _Job(feeds, rows, self._loop.create_future(), time.monotonic())
        self._pending.append(job)
        self._queued_rows += rows
        self._arrived.set()
        return await job.future

    async def _dispatch_forever(self):
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            await self._slots.acquire()  # while every slot is busy, requests pile up and merge
            deadline = self._pending[0].arrival + self.max_delay
            while self._queued_rows < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = [self._pending.popleft()]
            rows = batch[0].rows
            while self._pending and rows + self._pending[0].rows <= self.max_batch:
                rows += self._pending[0].rows
                batch.append(self._pending.popleft())
            self._queued_rows -= rows
            future = self._loop.run_in_executor(self._executor, self._run_batch, batch)
            future.add_done_callback(lambda done, batch=batch: self._finish(batch, done))

    def _run_batch(self, batch):
        if len(batch) == 1:
            return [self.run(batch[0].feeds)]
        names = batch[0].feeds.keys()
        merged = {name: np.concatenate([job.feeds[name] for job in batch]) for name in names}
        outputs = self.run(merged)
        bounds = np.cumsum([0] + [job.rows for job in batch])
        return [
            {name: value[a:b] for name, value in outputs.items()}
            for a, b in itertools.pairwise(bounds)
        ]

    def _finish(self, batch, done):
        self._slots.release()
        stats = self.stats
        stats.batches += 1
        stats.requests += len(batch)
        rows = sum(job.rows for job in batch)
        stats.rows += rows
        stats.largest = max(stats.largest, rows)
        error = done.exception()
        results = [None] * len(batch) if error else done.result()
        for job, result in zip(batch, results):
            if job.future.done():  # the client went away (cancelled)
                continue
            if error:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

    def close(self):
        if self._task is not None:
            self._task.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
