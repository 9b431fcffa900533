"""Run independent jobs serially or on Dask, with the same results either way.

:func:`map_jobs` applies a module-level function to a list of jobs and returns the results in
job order. With ``workers <= 1`` and no ``scheduler`` it loops in this process; with
``workers > 1`` it starts a local Dask cluster (one single-threaded worker process per job
slot); with ``scheduler`` (``tcp://host:8786``) it submits to an existing distributed cluster.

Results never depend on the scheduling: every job carries its own seed (per scan, per split)
and workers run one job at a time in their own process, so torch's global RNG and thread pool
are never shared between two running jobs. ``dask.distributed`` is imported only on the
parallel path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any


class ParallelError(RuntimeError):
    """The Dask path cannot run (package missing, scheduler unreachable)."""


def progress_bar(total: int, desc: str, quiet: bool = False):
    """A tqdm bar on stderr when it is a terminal (never with ``quiet``); it clears itself, so
    an error after it is still the one line on the screen."""
    from tqdm import tqdm

    disable = True if quiet else None  # None: only on a terminal
    return tqdm(total=total, desc=desc, file=sys.stderr, disable=disable, leave=False)


def map_jobs(
    func: Callable[..., Any],
    jobs: Sequence[Any],
    *,
    shared: Any = None,
    workers: int = 1,
    scheduler: str | None = None,
    desc: str = "jobs",
    quiet: bool = False,
) -> list[Any]:
    """``[func(job, shared) for job in jobs]``, serially or on Dask; results in job order.

    ``func`` must be importable by name (a module-level function) for the Dask path;
    ``shared`` (e.g. the data set) is sent to every worker once. An exception raised by a job
    is re-raised here with its own type and message.
    """
    jobs = list(jobs)
    if workers < 1:
        raise ParallelError(f"--workers must be at least 1, got {workers}")
    with progress_bar(len(jobs), desc, quiet) as bar:
        if workers == 1 and scheduler is None:
            out = []
            for job in jobs:
                out.append(func(job, shared))
                bar.update(1)
            return out
        with _client(workers, scheduler) as client:
            from distributed import as_completed

            shared_f = client.scatter(shared, broadcast=True) if shared is not None else None
            futures = client.map(func, jobs, [shared_f] * len(jobs), pure=False)
            for _ in as_completed(futures):
                bar.update(1)
            return client.gather(futures)


#: Seconds to reach a Dask scheduler before giving up (a silent listener never answers).
CONNECT_TIMEOUT_S = 10.0


def _connect(client_type: Any, address: str, timeout: float) -> Any:
    """A Client on ``address``, or :class:`TimeoutError` after ``timeout`` seconds.

    ``Client(address, timeout=...)`` can wait forever for the handshake of a listener that is
    not a Dask scheduler (a silent socket, an HTTP server); the connection is therefore made in
    a daemon thread and abandoned after the deadline.
    """
    import threading

    box: dict[str, Any] = {}

    def connect() -> None:
        try:
            box["client"] = client_type(address, timeout=f"{timeout:g}s")
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=connect, name="dask-connect", daemon=True)
    worker.start()
    worker.join(timeout + 5.0)
    if worker.is_alive():
        raise TimeoutError(f"no Dask scheduler answered within {timeout:g} s (is it one?)")
    if "error" in box:
        raise box["error"]
    return box["client"]


class _client:
    """Context manager: a Client on a new LocalCluster or on ``scheduler``."""

    def __init__(self, workers: int, scheduler: str | None):
        self.workers, self.scheduler = workers, scheduler
        self.cluster = self.client = None

    def __enter__(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ParallelError(
                "the parallel path needs dask.distributed: pip install 'distributed'"
            ) from None
        try:
            if self.scheduler is not None:
                self.client = _connect(Client, self.scheduler, CONNECT_TIMEOUT_S)
            else:
                self.cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
                self.client = Client(self.cluster)
        except (OSError, TimeoutError, ValueError) as exc:
            where = self.scheduler or f"a local cluster of {self.workers} workers"
            self.__exit__(None, None, None)
            raise ParallelError(f"cannot connect to {where}: {exc}") from None
        return self.client

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
