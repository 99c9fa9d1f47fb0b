"""``brainage predict --dask SCHEDULER``: the cases of a batch as tasks on a ``dask.distributed`` cluster.

Each worker loads the model package once (:class:`PredictorPlugin`, a worker plugin, which also sets
torch to one thread: run one worker per core, or one per GPU). Every case is one task; at most
``in_flight`` tasks are submitted at a time (by default twice the workers' threads, re-read as
workers join), and each row comes back as soon as its case finishes, to be saved by the caller.
A case's own failure (corrupt file, failed QC) is a row with ``error`` as in the single-process
run; a worker that dies has its cases run again elsewhere by the scheduler (up to
``distributed.scheduler.allowed-failures`` deaths), and a task that raised is retried
``retries`` times; a case that still could not run gets a 'not run' row, which ``--resume`` runs again.

Dask is an optional extra (``pip install '.[cluster]'``): import this module only on the Dask path;
without Dask, importing it raises an ImportError that says how to install it.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Callable, Iterator

from .batch_resume import NOT_RUN, case_row, content_sha256

PLUGIN_NAME = "brainage-predictor"
#: Re-read the cluster's thread count (workers join and leave) at most this often.
WINDOW_REFRESH_S = 5.0


try:
    import distributed
except ImportError as exc:  # the optional extra is not installed
    raise ImportError(
        "--dask needs Dask, an optional extra: pip install '.[cluster]' (in the SlicerBrainAge source folder), "
        "or pip install 'dask[distributed]' dask-jobqueue"
    ) from exc


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


def predict_case(source: str, path: str, age: float | None) -> dict:
    """One case on a Dask worker: its row (``source`` as given, hash of the bytes taken before reading)."""
    worker = distributed.get_worker()
    predictor = worker.plugins[PLUGIN_NAME].predictor
    if predictor is None:
        raise RuntimeError(f"the model package was not loaded on Dask worker {worker.address}; see that worker's log")
    sha256 = content_sha256(path)
    result = predictor.predict_many([path], [age], batch_size=1)[0]
    return case_row(result.to_row(), sha256, source)


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
    in_flight: int | None = None,
    retries: int = 2,
) -> None:
    """Run ``jobs`` (index, path as given, age) on workers that :func:`load_on_workers` prepared.

    ``on_row(index, row)`` is called in this thread as each case ends, in the order they end.
    """
    todo: Iterator[tuple[int, str, float | None]] = iter(jobs)
    running: dict = {}  # future -> (index, source)
    done = distributed.as_completed()
    window, checked = 0, 0.0

    def refresh_window() -> int:
        threads = sum(client.nthreads().values())
        return in_flight or max(4, 2 * threads)

    def top_up() -> None:
        nonlocal window, checked
        if time.monotonic() - checked > WINDOW_REFRESH_S:
            window, checked = refresh_window(), time.monotonic()
        while len(running) < window:
            job = next(todo, None)
            if job is None:
                return
            index, source, age = job
            future = client.submit(
                predict_case, source, os.path.abspath(source), age,
                key=f"brainage-case-{index}-{os.getpid()}-{time.time_ns()}", pure=False, retries=retries,
            )
            running[future] = (index, source)
            done.add(future)

    try:
        top_up()
        for future in done:
            index, source = running.pop(future)
            try:
                row = future.result()
            except Exception as exc:  # noqa: BLE001 - the task itself failed (worker deaths, retries used up)
                row = not_run_row(source, exc)
            future.release()
            on_row(index, row)
            top_up()
    finally:
        if running:  # interrupted: leave nothing running on a shared cluster
            client.cancel(list(running))
