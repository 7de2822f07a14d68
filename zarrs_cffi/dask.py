"""Turn our pipeline on for the workers of a dask.distributed cluster.

zarr picks a codec pipeline from ``zarr.config`` when an array is *opened*, in the process
that opens it. Arrays opened on the client and shipped to workers inside a task graph
(``dask.array.from_zarr``, ``Array.to_zarr``) keep the pipeline they were opened with, but
an array opened *inside* a task on a worker (``map_blocks``, ``delayed``, ``client.submit``)
uses the worker's own ``zarr.config``, which is zarr's default pipeline unless
``ZARR_CODEC_PIPELINE__PATH`` was set in the workers' environment. :func:`enable` fixes
that in one call with a :class:`distributed.WorkerPlugin`, which the scheduler also runs on
every worker that joins later.

This module needs ``distributed`` (``pip install distributed``); the rest of the package
does not. It changes nothing in the client's own process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from distributed import WorkerPlugin
except ImportError as exc:  # pragma: no cover - exercised only without distributed
    raise ImportError(
        "zarrs_cffi.dask needs dask.distributed; install it with `pip install distributed` "
        "(or `pip install 'dask[distributed]'`)"
    ) from exc

from .stats import PipelineStats

if TYPE_CHECKING:
    from collections.abc import Mapping

    from distributed import Client, Worker

__all__ = ["PLUGIN_NAME", "ZarrsPipelinePlugin", "disable", "enable", "reset_worker_stats", "worker_stats"]

PIPELINE_PATH = "zarrs_cffi.ZarrsCodecPipeline"
PLUGIN_NAME = "zarrs-cffi-pipeline"


class ZarrsPipelinePlugin(WorkerPlugin):
    """A worker plugin that selects :class:`zarrs_cffi.ZarrsCodecPipeline` in ``zarr.config``.

    ``setup`` (run on each worker when the plugin is registered, and on every worker that
    joins afterwards) sets ``codec_pipeline.path`` and the extra ``config`` keys;
    ``teardown`` (on :func:`disable` or when the worker closes) restores what was there.
    Arrays a worker opened before ``setup`` keep the pipeline they were opened with.

    Parameters
    ----------
    config
        More ``zarr.config`` keys to set on the workers, dotted, e.g.
        ``{"threading.max_workers": 1, "codec_pipeline.strict": True}``.
    """

    name = PLUGIN_NAME
    # Registering again replaces the plugin (teardown, then setup with the new config).
    idempotent = False

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = {"codec_pipeline.path": PIPELINE_PATH, **(config or {})}
        self._applied: Any = None

    def setup(self, worker: Worker) -> None:
        """Set ``zarr.config`` to select the pipeline. The worker imported this package to
        unpickle the plugin, and importing it registers the pipeline with zarr."""
        import zarr

        # donfig's ConfigSet records what it replaced, so teardown can undo exactly this.
        self._applied = zarr.config.set(self.config)

    def teardown(self, worker: Worker) -> None:
        """Restore the ``zarr.config`` values ``setup`` replaced."""
        applied, self._applied = self._applied, None
        if applied is not None:
            applied.__exit__(None, None, None)


def enable(client: Client, config: Mapping[str, Any] | None = None) -> None:
    """Use :class:`zarrs_cffi.ZarrsCodecPipeline` for arrays opened on ``client``'s workers.

    Applies to every current worker and to every worker that joins later, until
    :func:`disable`. Calling it again replaces the config. The client's own process is not
    changed: set ``zarr.config`` there as usual.

    Parameters
    ----------
    client
        A synchronous :class:`distributed.Client`.
    config
        More ``zarr.config`` keys to set on the workers (see :class:`ZarrsPipelinePlugin`).

    Examples
    --------
    >>> from distributed import Client
    >>> import zarrs_cffi.dask
    >>> client = Client()  # doctest: +SKIP
    >>> zarrs_cffi.dask.enable(client, {"threading.max_workers": 2})  # doctest: +SKIP
    """
    client.register_plugin(ZarrsPipelinePlugin(config), name=PLUGIN_NAME)


def _registered(dask_scheduler: Any) -> bool:
    return PLUGIN_NAME in dask_scheduler.worker_plugins


def disable(client: Client) -> None:
    """Undo :func:`enable`: each worker gets back the ``zarr.config`` it had before.

    Does nothing if the plugin is not registered.

    Parameters
    ----------
    client
        The client :func:`enable` was called with.
    """
    if client.run_on_scheduler(_registered):  # type: ignore[no-untyped-call]
        client.unregister_worker_plugin(PLUGIN_NAME)  # type: ignore[no-untyped-call]


def _stats_state() -> dict[str, Any]:
    # PipelineStats holds a mappingproxy, which neither pickle nor cloudpickle handles
    # (distributed's own pickler happens to): send plain values.
    from dataclasses import fields

    from .stats import stats

    s = stats()
    return {**{f.name: getattr(s, f.name) for f in fields(s)}, "fallback_reasons": dict(s.fallback_reasons)}


def worker_stats(client: Client) -> dict[str, PipelineStats]:
    """Each worker's :func:`zarrs_cffi.stats`, by worker address.

    Parameters
    ----------
    client
        A synchronous :class:`distributed.Client`.

    Returns
    -------
    dict of str to PipelineStats
        One snapshot per worker.
    """
    from types import MappingProxyType

    states: dict[str, dict[str, Any]] = client.run(_stats_state)
    return {
        address: PipelineStats(**{**state, "fallback_reasons": MappingProxyType(state["fallback_reasons"])})
        for address, state in states.items()
    }


def _reset() -> None:
    from .stats import reset_stats

    reset_stats()


def reset_worker_stats(client: Client) -> None:
    """Set every worker's counters back to zero (:func:`zarrs_cffi.reset_stats` on each).

    Parameters
    ----------
    client
        A synchronous :class:`distributed.Client`.
    """
    client.run(_reset)
