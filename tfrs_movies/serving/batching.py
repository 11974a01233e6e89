"""Requests that arrive together, answered by one batched model call.

A worker computes on its event loop, one handler at a time. Under load, several requests are
read in the same turn of the loop (they arrived while the worker was computing); the
new-person handlers among them each :meth:`RequestBatcher.submit` their person, and one call of
:meth:`~tfrs_movies.recommend.Recommender.recommend_for_ratings_many` answers them all in the
next turn. That call costs much less than one call per person: the fold-in's Newton steps read
the whole catalogue once per step for the batch, and TensorFlow's per-call and per-op costs
are paid once (measured on ml-100k, one thread: 2.9 ms a person alone, 1.8 in twos, 1.1 in
fours). A request that arrives alone waits for no one: its batch is itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class RequestBatcher(Generic[Item, Result]):
    """Runs the items submitted during one turn of the event loop as batched calls.

    Items are grouped by a key (the parameters a batched call shares, such as ``k``), in
    batches of at most ``max_batch``. If a batched call raises, each of its items is run alone,
    so that a bad item fails only its own request.

    Args:
        run_many: ``(key, items) -> results``, one result per item, in order.
        run_one: ``(key, item) -> result``; may raise the item's own error.
        max_batch: the most items per call of ``run_many`` (a positive int).

    Raises:
        ValueError: max_batch < 1.
    """

    def __init__(
        self,
        run_many: Callable[[Hashable, list[Item]], list[Result]],
        run_one: Callable[[Hashable, Item], Result],
        max_batch: int = 16,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._run_many, self._run_one, self.max_batch = run_many, run_one, max_batch
        # Per event loop (an app is normally served by one; tests may drive it from several
        # threads, each with its own): the items waiting for the loop's next batch, by key.
        self._pending: dict[asyncio.AbstractEventLoop, dict[Hashable, list]] = {}
        self.batch_sizes: list[int] = []  # of every run_many call (tests and benchmarks read it)

    async def submit(self, key: Hashable, item: Item) -> Result:
        """The item's result, computed with the other items submitted in this turn of the
        loop; raises what its computation raised."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            # The loop's first item since its last batch. call_soon runs after every callback
            # already queued for this turn: the handlers of the requests read together submit
            # before the batch runs.
            pending = self._pending[loop] = {}
            loop.call_soon(self._run_pending, loop)
        pending.setdefault(key, []).append((item, future))
        return await future

    def _run_pending(self, loop: asyncio.AbstractEventLoop) -> None:
        for key, entries in self._pending.pop(loop).items():
            for first in range(0, len(entries), self.max_batch):
                self._answer(key, entries[first : first + self.max_batch])

    def _answer(self, key: Hashable, entries: list[tuple[Item, asyncio.Future]]) -> None:
        # A request whose client went away has a cancelled future: nothing to compute for it.
        entries = [(item, future) for item, future in entries if not future.done()]
        if not entries:
            return
        try:
            results = self._run_many(key, [item for item, _ in entries])
            self.batch_sizes.append(len(entries))
        except Exception:  # noqa: BLE001 - each item then gets its own result or error
            for item, future in entries:
                try:
                    future.set_result(self._run_one(key, item))
                except Exception as error:  # noqa: BLE001 - the request's own error
                    future.set_exception(error)
            return
        for (_, future), result in zip(entries, results, strict=True):
            future.set_result(result)
