"""The local engine: the scan's unit of work on threads in this process.

Three stages overlap: a decode pool (OpenCV releases the GIL; it also resizes each photo to the model's
working size), the model on the calling thread (only the batched network), and a finishing pool (each
map's guided upsampling, regions, statistics, rules, overlays, maps). Queues are bounded: at most ``window``
decodes in flight, at most a few batches waiting to be finished.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Iterator, Sequence

from ..discovery import InputFile
from ..processing import Batcher, BatchProcessor, Decoded, ScanOptions, decode_item, default_workers, done_future

def run_local(todo: Sequence[InputFile], options: ScanOptions,
               processor: BatchProcessor) -> Iterator[list[dict[str, Any]]]:
    """The local engine: yields finished rows (files on disk) batch by batch, in submission order.

    Three stages overlap: a decode pool (OpenCV releases the GIL), the model on this thread, and a
    finishing pool (regions, statistics, rules, overlays, maps). Queues are bounded: at most `window`
    decodes in flight, at most a few batches waiting to be finished.
    """
    workers = options.workers or default_workers()
    working = processor.analyzer.working_long_side
    batcher = Batcher(options.batch_size, working, analyzer=processor.analyzer)
    window = max(2 * workers, 2 * options.batch_size)
    pending: deque[list[Future]] = deque()
    max_pending = 3

    def ready() -> Iterator[list[dict[str, Any]]]:
        while pending and all(f.done() for f in pending[0]):
            yield [f.result() for f in pending.popleft()]

    with DecodePool(workers, thread_name_prefix="decode") as decode_pool, \
            ThreadPoolExecutor(workers, thread_name_prefix="finish") as finish_pool:
        queue: deque[tuple[InputFile, Future]] = deque()
        it = iter(todo)
        exhausted = False
        try:
            while True:
                while not exhausted and len(queue) < window:
                    try:
                        item = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    queue.append((item, decode_pool.submit(_decode_and_prepare, item, options, working, processor)))
                if not queue:
                    break
                item, fut = queue.popleft()
                try:
                    decoded = fut.result(timeout=options.file_timeout)
                except FutureTimeout:
                    if not fut.cancel():
                        decode_pool.abandoned = True
                    decoded = Decoded(item, error=f"decoding took longer than {options.file_timeout:g} s; skipped")
                if decoded.image is None:
                    pending.append([done_future(processor.error_rows([decoded])[0])])
                else:
                    batch = batcher.add(decoded)
                    if batch:
                        pending.append(processor.submit(batch, finish_pool))
                yield from ready()
                while len(pending) > max_pending:  # bound the finishing backlog
                    yield [f.result() for f in pending.popleft()]
            for batch in batcher.drain():
                pending.append(processor.submit(batch, finish_pool))
            while pending:
                yield [f.result() for f in pending.popleft()]
        except BaseException:
            for _, f in queue:
                f.cancel()
            for futures in pending:
                for f in futures:
                    f.cancel()
            raise


def _decode_and_prepare(item: InputFile, options: ScanOptions, working: int, processor: BatchProcessor) -> Decoded:
    """A decode thread's work: the photo, then the analyzer's per-photo preparation (the resize to the
    working size), so that the model thread only runs the model."""
    return processor.prepare(decode_item(item, options, working))


class DecodePool:
    """The decode threads: a small executor whose workers are *daemon* threads.

    A thread cannot be killed, and a decoder can get stuck for good (a FIFO, a hung network mount, a codec
    bug). The scan abandons such a decode after ``--file-timeout``; this pool then neither waits for it when
    the scan ends (``abandoned``) nor holds the interpreter at exit — ``ThreadPoolExecutor`` joins its
    workers at exit, so a library caller's program would hang there. Decoding only reads, so a daemon
    thread stopped at exit loses nothing.
    """

    def __init__(self, workers: int, thread_name_prefix: str = "decode") -> None:
        import queue

        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._closed = False
        self.abandoned = False
        self._threads = [threading.Thread(target=self._work, name=f"{thread_name_prefix}_{i}", daemon=True)
                         for i in range(max(1, int(workers)))]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._closed:
            raise RuntimeError("cannot submit to a decode pool after shutdown")
        future: Future = Future()
        self._queue.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller through the future, like ThreadPoolExecutor
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        import queue

        self._closed = True
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for t in self._threads:
                t.join()

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, *exc_info: Any) -> bool:
        self.shutdown(wait=not self.abandoned, cancel_futures=True)
        return False


__all__ = ["DecodePool", "run_local"]
