"""``brainage predict --dask SCHEDULER``: the cases of a batch as tasks on a ``dask.distributed`` cluster.

Each worker loads the model package once (:class:`PredictorPlugin`, a worker plugin, which also sets
torch to one thread: run one worker per core, or one per GPU). Each task is a network batch of cases
(fewer when there are few cases per worker: :func:`chunk_size`), run by ``Predictor.predict_many`` as in
the single-process run; at most ``in_flight`` tasks are submitted at a time (by default twice the
workers' threads, re-read as workers join), and the rows come back as soon as their task finishes,
to be saved by the caller.
A case's own failure (corrupt file, failed QC) is a row with ``error`` as in the single-process
run; a worker that dies has its cases run again elsewhere by the scheduler (up to
``distributed.scheduler.allowed-failures`` deaths), and a task that raised is retried
``retries`` times; a case that still could not run gets a 'not run' row, which ``--resume`` runs again.

Dask is an optional extra (``pip install '.[cluster]'``): import this module only on the Dask path;
without Dask, importing it raises an ImportError that says how to install it.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import Callable, Iterator

from .batch_resume import NOT_RUN, case_row, content_sha256

PLUGIN_NAME = "brainage-predictor"
#: Re-read the cluster's thread count (workers join and leave) at most this often.
WINDOW_REFRESH_S = 5.0


try:
    import dask
    import distributed
except ImportError as exc:  # the optional extra is not installed
    raise ImportError(
        "--dask needs Dask, an optional extra: pip install '.[cluster]' (in the SlicerBrainAge source folder), "
        "or pip install 'dask[distributed]' dask-jobqueue"
    ) from exc


#: Settings for the workers of ``local:N`` (docs/batch.md gives them for other clusters). Dask's nannies set
#: MALLOC_TRIM_THRESHOLD_=65536 for their workers, which turns off glibc's adaptive mmap threshold: every
#: scan-sized array is then a fresh mmap and page-faulted anew, which made the network ~2x slower here.
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


class PredictorPlugin(distributed.WorkerPlugin):
    """Worker plugin: one :class:`~.predict.Predictor` per worker, built when the worker starts (or joins).

    ``settings`` are the Predictor's keyword arguments plus ``package`` (the model folder, which
    every worker must be able to read).
    """

    name = PLUGIN_NAME

    def __init__(self, settings: dict, torch_threads: int = 1) -> None:
        self.settings = settings
        self.torch_threads = torch_threads
        self.predictor = None

    def _load(self) -> None:
        import torch

        from .predict import Predictor

        torch.set_num_threads(self.torch_threads)
        settings = dict(self.settings)
        self.predictor = Predictor(settings.pop("package"), **settings)

    async def setup(self, worker) -> None:
        # in a thread: loading a large package must not stop the worker's heartbeats
        await asyncio.get_running_loop().run_in_executor(None, self._load)


def predict_cases(sources: list[str], paths: list[str], ages: list[float | None], batch_size: int) -> list[dict]:
    """A few cases on a Dask worker, batched as in the single-process run: their rows (``source`` as given,
    the hash of each file taken before it is read)."""
    worker = distributed.get_worker()
    predictor = worker.plugins[PLUGIN_NAME].predictor
    if predictor is None:
        raise RuntimeError(f"the model package was not loaded on Dask worker {worker.address}; see that worker's log")
    hashes = [content_sha256(path) for path in paths]
    results = predictor.predict_many(paths, ages, batch_size=batch_size)
    return [case_row(result.to_row(), sha256, source) for result, sha256, source in zip(results, hashes, sources)]


def chunk_size(n_cases: int, threads: int, batch_size: int) -> int:
    """Cases per task: a network batch, but at least two tasks per worker thread so the last ones balance."""
    return max(1, min(batch_size, math.ceil(n_cases / (2 * max(1, threads)))))


def not_run_row(source: str, exc: BaseException) -> dict:
    why = ("the Dask workers running it died (KilledWorker; e.g. out of memory)"
           if isinstance(exc, distributed.KilledWorker) else "its task failed on the Dask cluster")
    return {"source": source, "error": f"{NOT_RUN}: {why} ({type(exc).__name__}: {exc}); run again with --resume"}


def connect(scheduler: str):
    """A Client for a scheduler address, or for a new LocalCluster of N one-thread workers given 'local:N'.

    Returns (client, cluster or None); the caller closes both.
    """
    if scheduler.startswith("local:"):
        try:
            n_workers = int(scheduler.split(":", 1)[1])
        except ValueError:
            n_workers = 0
        if n_workers < 1:
            raise ValueError(f"--dask {scheduler}: give the number of local workers, e.g. local:4")
        with dask.config.set(WORKER_CONFIG):
            cluster = distributed.LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
            )
        return distributed.Client(cluster), cluster
    return distributed.Client(scheduler), None


def load_on_workers(client, settings: dict, torch_threads: int = 1) -> None:
    """Register :class:`PredictorPlugin`: every worker, now and joining later, loads the model once.

    Raises what a worker raised when it could not load the model.
    """
    client.register_plugin(PredictorPlugin(settings, torch_threads), name=PLUGIN_NAME)


def predict_on_dask(
    client,
    jobs: list[tuple[int, str, float | None]],
    on_row: Callable[[int, dict], None],
    *,
    batch_size: int = 8,
    in_flight: int | None = None,
    retries: int = 2,
) -> None:
    """Run ``jobs`` (index, path as given, age) on workers that :func:`load_on_workers` prepared.

    Each task runs up to ``batch_size`` cases (:func:`chunk_size`); ``on_row(index, row)`` is called in
    this thread for each case as its task ends, tasks in the order they end.
    """
    threads = sum(client.nthreads().values())
    size = chunk_size(len(jobs), threads, batch_size)
    chunks: Iterator[list] = (jobs[i : i + size] for i in range(0, len(jobs), size))
    running: dict = {}  # future -> its jobs
    done = distributed.as_completed()
    window, checked = max(2, 2 * threads), time.monotonic()

    def top_up() -> None:
        nonlocal window, checked
        if time.monotonic() - checked > WINDOW_REFRESH_S:  # workers join and leave
            window, checked = max(2, 2 * sum(client.nthreads().values())), time.monotonic()
        while len(running) < (in_flight or window):
            chunk = next(chunks, None)
            if chunk is None:
                return
            sources = [source for _, source, _ in chunk]
            future = client.submit(
                predict_cases, sources, [os.path.abspath(s) for s in sources], [age for _, _, age in chunk], batch_size,
                key=f"brainage-case-{chunk[0][0]}-{os.getpid()}-{time.time_ns()}", pure=False, retries=retries,
            )
            running[future] = chunk
            done.add(future)

    try:
        top_up()
        for future in done:
            chunk = running.pop(future)
            try:
                rows = future.result()
            except Exception as exc:  # noqa: BLE001 - the task itself failed (worker deaths, retries used up)
                rows = [not_run_row(source, exc) for _, source, _ in chunk]
            future.release()
            for (index, _, _), row in zip(chunk, rows):
                on_row(index, row)
            top_up()
    finally:
        if running:  # interrupted: leave nothing running on a shared cluster
            client.cancel(list(running))
