"""Dynamic micro-batching: concurrent ``predict`` requests to one model share one call.

A request's inputs join a queue; a collector takes every waiting request (up to
``max_batch`` inputs) and runs the model once on all of them, in the model's own worker
thread; requests arriving meanwhile queue up for the next call. Under load (the previous call
held more than one request) the first request of a batch also waits up to ``max_wait_ms``
for company; an idle server answers a lone request at once, so micro-batching costs a single
client no latency. Inputs of different lengths go through
the Predictor's padded path (``lengths=``), so a batched input gets the same output as
alone, to float rounding (tested). When the batched call raises a ``ValueError`` (one
request's input the model refuses), every request of the batch is run alone, so the
error reaches only the request that caused it.

Defaults (:class:`~lstmkit.serve.config.BatchConfig`): batches of up to 32 inputs, the first
request waiting at most 5 ms under load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from lstmkit.serve.config import BatchConfig

PredictFn = Callable[[list[Any]], list[dict[str, Any]]]


@dataclass
class _Pending:
    inputs: list[Any]
    future: asyncio.Future


class MicroBatcher:
    """Batch concurrent calls of ``fn`` (a Predictor's ``predict``) run on ``executor``.

    ``await batcher.predict(inputs)`` returns ``fn(inputs)``'s outputs, computed together
    with the inputs of other requests that arrived within ``config.max_wait_ms``.
    ``batch_sizes`` records the number of inputs of every call made (for tests and stats).
    """

    def __init__(self, fn: PredictFn, config: BatchConfig, executor: Executor) -> None:
        self.fn, self.config, self.executor = fn, config, executor
        self.batch_sizes: list[int] = []
        self._last_requests = 0  # requests in the previous batched call: > 1 means load
        self._queue: asyncio.Queue[_Pending] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None

    async def predict(self, inputs: list[Any]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        if not self.config.enabled:
            return await self._run(inputs)
        if self._loop is not loop:  # a new event loop (a test client, a restarted server)
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._collect())
        future = loop.create_future()
        self._queue.put_nowait(_Pending(inputs, future))
        return await future

    async def _run(self, inputs: list[Any]) -> list[dict[str, Any]]:
        self.batch_sizes.append(len(inputs))
        loop = asyncio.get_running_loop()
        outputs = await loop.run_in_executor(self.executor, self.fn, inputs)
        if len(outputs) != len(inputs):
            raise RuntimeError(f"{len(outputs)} outputs for {len(inputs)} inputs")
        return outputs

    async def _collect(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            size = len(batch[0].inputs)
            wait = self.config.max_wait_ms / 1000 if self._last_requests > 1 else 0.0
            deadline = time.monotonic() + wait
            while size < self.config.max_batch:
                if queue.empty():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                else:
                    item = queue.get_nowait()
                batch.append(item)
                size += len(item.inputs)
            self._last_requests = len(batch)
            await self._answer([p for p in batch if not p.future.done()])

    async def _answer(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        try:
            outputs = await self._run([x for p in batch for x in p.inputs])
        except (ValueError, TypeError) as e:
            if len(batch) == 1:
                _settle(batch[0].future, error=e)
                return
            for pending in batch:  # find whose input the model refused
                try:
                    _settle(pending.future, await self._run(pending.inputs))
                except Exception as alone:  # noqa: BLE001 (handed to the request's handler)
                    _settle(pending.future, error=alone)
            return
        except Exception as e:  # noqa: BLE001 (a bug: every request of the batch gets it)
            for pending in batch:
                _settle(pending.future, error=e)
            return
        start = 0
        for pending in batch:
            n = len(pending.inputs)
            _settle(pending.future, outputs[start : start + n])
            start += n


def _settle(future: asyncio.Future, result: Any = None, error: BaseException | None = None):
    if future.done():  # the request timed out or its client left
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
