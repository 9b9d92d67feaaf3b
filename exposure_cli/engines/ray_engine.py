"""The Ray engine: the scan's unit of work on a Ray cluster through Ray Data.

Shape of a run (``exposure scan … --engine ray``):

1. The driver (this process) does what the local engine does before any photo is touched: discovery
   (local folders, or ``s3://``/``gs://`` prefixes through :mod:`exposure_cli.engines.uris`), resume
   bookkeeping, the report metadata. Only the inputs still to do are sent to the cluster.
2. ``ray.data.from_items(inputs).map_batches(ScanWorker, compute=ActorPoolStrategy(size=N))``: each
   actor builds the analyzer once (on its GPU when it has one), then for every batch of inputs decodes
   them in a thread pool (:func:`exposure_cli.processing.decode_item`, reading object storage directly on
   the worker) and runs :class:`exposure_cli.processing.BatchProcessor` — the very code the local engine
   runs — returning one finished row per input (failures included).
3. The driver streams the rows back (``iter_batches``) into the same journal the local engine fills,
   and the same ``finalize`` writes the report. So the report's file name, columns, types, sort order,
   metadata, crash safety, ``--resume`` and de-duplication are the local engine's by construction;
   ``docs/SCALE.md`` explains why rows come back to the driver rather than ``write_parquet`` parts.

Overlays and maps are written by the workers straight into ``--out``, so on a multi-node cluster that
folder must be on storage every node mounts (the report itself is written by the driver only).

Ray is imported only when this engine runs; see :func:`exposure_cli.engines.require_ray`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import socket
import warnings
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..discovery import InputFile
from ..errors import ScanError
from ..processing import BatchProcessor, Decoded, ScanOptions, decode_item, settle
from ..report.writers import row_to_json
from . import ray_driver_on_loopback, require_ray
from .ray_env import auth_hint, forwarded_env, private_spawn_env, scoped_env, user_proxy_env
from .uris import RemoteInput

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ sizing


@dataclass(frozen=True)
class WorkerPlan:
    """How many actors, and what each asks the Ray scheduler for.

    Attributes:
        actors: Size of the actor pool (model copies).
        cpus_per_actor: Logical CPUs reserved per actor; fractional on purpose (see :func:`plan_workers`).
        gpus_per_actor: GPUs per actor (0: CPU inference; 0.5: two actors share a GPU).
        torch_threads: Intra-op threads per actor, so actors on one node do not oversubscribe it.
        decode_threads: Decode threads per actor.
    """

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    torch_threads: int
    decode_threads: int


def plan_workers(cluster_cpus: float, cluster_gpus: float, concurrency: int = 0,
                 num_gpus_per_worker: float | None = None, decode_workers: int = 0) -> WorkerPlan:
    """Size the actor pool for a cluster.

    * GPUs: by default one per actor when the cluster has any, none otherwise.
    * Actors: by default one per GPU share, else one per 2 CPUs.
    * CPUs: each actor reserves a *fraction* of a CPU such that all actors together leave at least a
      quarter of the cluster (up to one CPU) free. An actor asking for a whole CPU on a 2-CPU machine
      starves Ray Data's own tasks and the job hangs without an error, so the reservation is kept
      small; it is a scheduling hint, not a limit (the actor uses ``torch_threads`` threads).

    Raises:
        ScanError: The request can never be scheduled (more GPUs than the cluster has).
    """
    if num_gpus_per_worker is None:
        gpus = 1.0 if cluster_gpus >= 1 else 0.0
    else:
        gpus = float(num_gpus_per_worker)
    if gpus < 0:
        raise ScanError("--num-gpus-per-worker must be 0 or more")
    if gpus > 0 and cluster_gpus < gpus:
        raise ScanError(f"each worker asks for {gpus:g} GPU(s) but the Ray cluster has {cluster_gpus:g}; "
                        "use --num-gpus-per-worker 0 for CPU workers")
    if concurrency and concurrency < 0:
        raise ScanError("--concurrency must be 1 or more")
    if concurrency:
        actors = int(concurrency)
    elif gpus > 0:
        actors = max(1, int(math.floor(cluster_gpus / gpus + 1e-9)))
    else:
        actors = max(1, int(cluster_cpus // 2))
    if gpus > 0 and actors * gpus > cluster_gpus + 1e-9:
        raise ScanError(f"{actors} workers × {gpus:g} GPU(s) need {actors * gpus:g} GPUs; the Ray cluster has "
                        f"{cluster_gpus:g} (lower --concurrency or --num-gpus-per-worker)")
    reserve = min(1.0, cluster_cpus / 4)
    cpus = min(1.0, max(0.01, (cluster_cpus - reserve) / actors))
    cpus = math.floor(cpus * 100) / 100
    # Half an actor's CPUs for torch, like the local engine (ScanOptions.torch_threads): the actor decodes
    # and finishes rows in threads of its own, and OpenMP threads spinning against them cost ~4× on 2 cores.
    threads = max(1, int(cluster_cpus // actors) // 2)
    return WorkerPlan(actors=actors, cpus_per_actor=cpus, gpus_per_actor=gpus, torch_threads=threads,
                      decode_threads=decode_workers or max(2, int(cluster_cpus // actors)))


# ------------------------------------------------------------------------------------------ worker


def _item_record(item: InputFile) -> str:
    """An input as a JSON string (one Arrow string column; no type guessing on mixed None/str)."""
    rec: dict[str, Any] = {"path": str(item.path), "key": item.key, "root": str(item.root),
                           "problem": item.problem, "path_bytes": item.path_bytes}
    if isinstance(item, RemoteInput):
        rec.update(filesystem_uri=item.filesystem_uri, fs_path=item.fs_path, size=item.size, mtime=item.mtime)
    return json.dumps(rec)


def _item_from_record(text: str) -> InputFile:
    rec = json.loads(text)
    common = dict(path=Path(rec["path"]), key=rec["key"], root=Path(rec["root"]), problem=rec["problem"],
                  path_bytes=rec.get("path_bytes"))
    if "filesystem_uri" in rec:
        return RemoteInput(**common, filesystem_uri=rec["filesystem_uri"], fs_path=rec["fs_path"],
                           size=rec["size"], mtime=rec["mtime"])
    return InputFile(**common)


@dataclass
class WorkerSpec:
    """Everything an actor needs to rebuild the driver's :class:`BatchProcessor` (sent once per actor)."""

    options: ScanOptions
    rule_sets: list[Any] = field(default_factory=list)
    out_dir: str | None = None
    expected_analyzer: tuple[str, str, str] = ("", "", "")  # name, version, weights sha256
    torch_threads: int = 1
    decode_threads: int = 2
    #: Environment for the worker process: the driver's object-storage settings and credentials, and for a
    #: private instance the user's proxy settings ("" unsets). Not Ray's runtime_env: Ray's runtime-env agent
    #: writes every runtime environment it creates, env_vars and their values included, to
    #: runtime_env_agent.log on each node. Never in a repr.
    env: dict[str, str] = field(default_factory=dict, repr=False)


def apply_worker_env(env: dict[str, str], environ: Any = None) -> None:
    """Set `env` in this (worker) process before anything reads storage; "" unsets a name."""
    environ = os.environ if environ is None else environ
    for name, value in env.items():
        if value == "":
            environ.pop(name, None)
        else:
            environ[name] = value


class ScanWorker:
    """Ray Data callable class: one analyzer per actor, one batch of inputs in, one row per input out."""

    def __init__(self, spec: WorkerSpec) -> None:
        apply_worker_env(spec.env)  # before any filesystem is opened in this process
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from ..analyzers import create_analyzer

        try:
            import torch

            torch.set_num_threads(spec.torch_threads)
        except ImportError:  # pragma: no cover - torch is a hard dependency
            pass
        opts = spec.options
        self.options = opts
        self.analyzer = create_analyzer(opts.model, weights=opts.weights, device=opts.device,
                                        working_long_side=opts.working_long_side, batch_size=opts.batch_size,
                                        **({"runtime": opts.runtime} if getattr(opts, "runtime", None) else {}))
        info = self.analyzer.info
        got = (info.name, info.version, info.weights_sha256 or "")
        if got != tuple(spec.expected_analyzer):
            raise RuntimeError(
                f"worker {socket.gethostname()} loaded analyzer {got}, the driver {tuple(spec.expected_analyzer)}: "
                "install the same exposure-cli version and weights on every node (or pass --weights on shared storage)"
            )
        out_dir = Path(spec.out_dir) if spec.out_dir else None
        self.processor = BatchProcessor(self.analyzer, opts.thresholds, spec.rule_sets, out_dir, opts.overlays,
                                        opts.maps, opts.regions, opts.overlay_style, opts.maps_resolution)
        self.decode_pool = ThreadPoolExecutor(spec.decode_threads, thread_name_prefix="decode")
        self.write_pool = ThreadPoolExecutor(max(1, spec.decode_threads // 2), thread_name_prefix="write")
        # This actor's process lives for the scan: keep Ray's, torch's and the analyzer's objects out of the
        # cyclic collector's full collections, as the local scan does (pipeline.long_lived_objects_frozen).
        gc.freeze()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        """Rows (as JSON text, exactly what the journal stores) for one batch of input records."""
        items = [_item_from_record(str(text)) for text in batch["item"]]
        working = self.analyzer.working_long_side
        futures = [self.decode_pool.submit(decode_item, item, self.options, working) for item in items]
        decoded: list[Decoded] = []
        for item, fut in zip(items, futures):
            try:
                decoded.append(fut.result(timeout=self.options.file_timeout))
            except FutureTimeout:
                fut.cancel()
                decoded.append(Decoded(item, error=f"decoding took longer than {self.options.file_timeout:g} s; skipped"))
        rows, pending = self.processor.process(decoded, self.write_pool)
        rows = settle(rows, pending)  # overlay/map files on disk before their rows are reported
        return {"row": [row_to_json(r) for r in rows]}


# ------------------------------------------------------------------------------------------ driver


def _package_parent() -> str:
    return str(Path(__file__).resolve().parents[2])  # the folder holding the exposure_cli package


def local_instance_kwargs(num_cpus: int | None = None) -> dict[str, Any]:
    """``ray.init`` arguments for a private, quiet, loopback-only local instance.

    ``address="local"``: always a new instance, even when ``RAY_ADDRESS`` is set or a ``ray start``
    cluster runs on this machine (``ray.init()`` without an address would join it). Call
    :func:`exposure_cli.engines.prepare_ray_environment` (``loopback=True``) before importing Ray, and
    start it inside :func:`exposure_cli.engines.ray_env.scoped_env` (``private_spawn_env()``) so that
    Ray's own processes make no connection beyond loopback (see :func:`_private_instance`).
    """
    # Workers of a local instance inherit this environment: make sure they import this very package,
    # also when it runs from a source checkout rather than an installed wheel.
    parent = _package_parent()
    python_path = os.environ.get("PYTHONPATH", "")
    if parent not in python_path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (parent, python_path) if p)
    return dict(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)


def _quiet_ray_data(ray: Any) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the CLI draws its own
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    for name in ("ray", "ray.data"):  # Ray's info chatter would interleave with the CLI's progress bar
        logging.getLogger(name).setLevel(logging.ERROR)


#: Each batch is retried at most this many times when the worker running it dies (killed, crashed, out of
#: memory, its node lost); then the scan stops with "the Ray job failed" and --resume continues it. Ray
#: Data's default is to retry forever, so a photo that killed its worker every time hung the scan.
#: Workers themselves are restarted without limit (Ray Data's default): deaths spread over a long scan
#: — preempted nodes — never stop it, only the same batch dying again and again does.
#: ``EXPOSURE_RAY_MAX_TASK_RETRIES`` overrides it (0: never retry; -1: Ray Data's "forever").
MAX_TASK_RETRIES = 3


def max_task_retries() -> int:
    """:data:`MAX_TASK_RETRIES`, or ``EXPOSURE_RAY_MAX_TASK_RETRIES`` when set."""
    value = os.environ.get("EXPOSURE_RAY_MAX_TASK_RETRIES", "").strip()
    try:
        return int(value) if value else MAX_TASK_RETRIES
    except ValueError:
        raise ScanError(f"EXPOSURE_RAY_MAX_TASK_RETRIES must be a whole number, not {value!r}") from None

#: Ray Data's helper actors (name, namespace): detached and named, created by the first Ray Data job on a
#: cluster and then shared by every later one, each a worker process holding a port. A scan removes the
#: ones it created when no other driver is connected (see :func:`_remove_helpers`).
RAY_DATA_HELPERS = frozenset({
    ("datasets_stats_actor", "_dataset_stats_actor"),  # _StatsActor
    ("ActorLocationTracker", "ActorLocationTracker"),
    ("AutoscalingCoordinator", "AutoscalingCoordinator"),  # _AutoscalingCoordinatorActor
    ("AutoscalingRequester", "AutoscalingRequester"),
    ("DataUsageCollectionActor", "DataUsageCollectionActor"),
    ("dataset_stats_summary_actor", "_dataset_stats_summary_actor"),
})


def helper_actors(ray: Any) -> set[tuple[str, str]]:
    """Ray Data's helper actors alive on the connected cluster, as (name, namespace)."""
    try:
        named = ray.util.list_named_actors(all_namespaces=True)
    except Exception:  # pragma: no cover - an API change; cleaning up is best effort
        return set()
    return {(a["name"], a["namespace"]) for a in named if (a["name"], a["namespace"]) in RAY_DATA_HELPERS}


def _other_drivers(ray: Any) -> int | None:
    """Live driver jobs on the cluster besides this one (None: unknown)."""
    try:
        from ray._private import state

        ours = ray.get_runtime_context().get_job_id()
        return sum(1 for job in state.jobs() if not job.get("IsDead") and job.get("JobID") != ours)
    except Exception:  # pragma: no cover - a private API; when in doubt, leave the helpers alone
        return None


def _remove_helpers(ray: Any, before: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Kill the Ray Data helper actors this scan created on a cluster it joined; returns them.

    Only when no other driver is connected: helpers are shared by every Ray Data job on the cluster, and
    one started while this scan ran uses the same ones. Helpers that existed before the scan are never
    touched. The next Ray Data job creates them again (Ray Data looks them up with ``get_if_exists``).
    """
    created = helper_actors(ray) - before
    if not created:
        return []
    others = _other_drivers(ray)
    if others != 0:
        log.info("leaving Ray Data's helper actors %s: %s other driver(s) connected", sorted(created),
                 "unknown" if others is None else others)
        return []
    removed = []
    for name, namespace in sorted(created):
        try:
            handle = ray.get_actor(name, namespace=namespace)
            # An actor runs one caller's calls in order: once this returns, the calls this driver already sent
            # (Ray Data's last `cancel_request` at the end of the scan) are done and will not be retried
            # against a killed actor ("Task … failed … killed by ray.kill" on stderr).
            with contextlib.suppress(Exception):
                ray.get(handle.__ray_ready__.remote(), timeout=10)
            ray.kill(handle, no_restart=True)
            removed.append((name, namespace))
        except Exception as exc:  # pragma: no cover - gone already, or an API change
            log.info("could not remove Ray Data helper %s/%s: %s", namespace, name, exc)
    return removed


@dataclass
class _Session:
    """How this scan reached Ray (see :func:`_ray_session`)."""

    private: bool = False  # a private instance started for this scan
    joined: bool = False  # joined a cluster at --ray-address (and leaves it at the end)


@contextlib.contextmanager
def _ray_session(ray: Any, options: ScanOptions) -> Iterator[_Session]:
    """Reuse the caller's connection, join the cluster at ``--ray-address``, or start a private instance.

    * **Private instance** (no ``--ray-address``): ``address="local"`` (never a cluster found in
      ``RAY_ADDRESS`` or a running ``ray start``), loopback only, and Ray's own processes started in
      :func:`~exposure_cli.engines.ray_env.private_spawn_env` — no statistics, no connection beyond
      loopback, a throw-away auth token instead of a new ``~/.ray/auth_token``. The driver's own
      environment is restored once they run; stopped at the end.
    * **A cluster** (``--ray-address``): joined, left running at the end, minus the Ray Data helper
      actors this scan created (when no other driver is connected).
    """
    if ray.is_initialized():  # the caller's own connection (a notebook, a test): used as is, left open
        yield _Session()
        return
    if options.ray_address:
        _join(ray, options.ray_address)
        before = helper_actors(ray)
        try:
            yield _Session(joined=True)
        finally:
            try:
                _remove_helpers(ray, before)
            finally:
                ray.shutdown()
        return
    spawn = private_spawn_env()
    # ray.init() sets RAY_AUTH_MODE=token in this process; the token stays until the instance is stopped.
    lasting = {"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE"),
               "RAY_AUTH_TOKEN": spawn.pop("RAY_AUTH_TOKEN", os.environ.get("RAY_AUTH_TOKEN"))}
    with scoped_env(lasting):
        with scoped_env(spawn), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                ray.init(**local_instance_kwargs())
            except Exception as exc:
                raise ScanError(f"cannot start a local Ray instance: {_last_line(exc)}") from exc
        try:
            yield _Session(private=True)
        finally:
            ray.shutdown()


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _join(ray: Any, address: str) -> None:
    """Connect to the cluster at `address`; a failure names Ray's token authentication when it may be why.
    (A dead address was refused in seconds before the scan started: ``engines.check_engine``.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except Exception as exc:
            raise ScanError(f"cannot reach the Ray cluster at {address}: {_last_line(exc)}. {auth_hint()}") from None


def _worker_died(ray: Any, exc: BaseException) -> bool:
    """True when `exc` (or what it wraps) says an actor died or became unreachable."""
    kinds = tuple(getattr(ray.exceptions, name) for name in ("RayActorError", "ActorUnavailableError")
                  if hasattr(ray.exceptions, name))
    seen = 0
    while exc is not None and seen < 10:
        if kinds and isinstance(exc, kinds):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _worker_env(todo: Sequence[InputFile], session: _Session) -> dict[str, str]:
    """The scan workers' :attr:`WorkerSpec.env` (credentials are never logged)."""
    env = user_proxy_env() if session.private else {}
    roots = sorted({item.filesystem_uri for item in todo if isinstance(item, RemoteInput)})
    env.update(forwarded_env(roots))
    return env


#: The driver appends rows to the journal (one fsync each time) in groups of up to this many rows, or
#: whatever arrived within FLUSH_SECONDS: fsync per 8-row batch capped the driver at ~2,000 rows/s here,
#: per 256 rows at ~7,000 (benchmarks/bench_scale.py). A crash loses at most that much finished work.
FLUSH_ROWS = 256
FLUSH_SECONDS = 1.0
#: Upper bound on input blocks (a million inputs → 500 per block; each block is split into batches).
MAX_BLOCKS = 2000


def _coalesce(batches: Iterator[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
    """Group small row batches coming back from the cluster into fewer, larger journal appends."""
    import time

    pending: list[dict[str, Any]] = []
    last = time.monotonic()
    for rows in batches:
        pending.extend(rows)
        now = time.monotonic()
        if len(pending) >= FLUSH_ROWS or now - last >= FLUSH_SECONDS:
            yield pending
            pending, last = [], now
    if pending:
        yield pending


def run_ray(todo: Sequence[InputFile], options: ScanOptions,
            processor: BatchProcessor) -> Iterator[list[dict[str, Any]]]:
    """The Ray engine's loop: yields finished rows, batch by batch, like the local engine's loop.

    Args:
        todo: Inputs still to scan (resume filtering already done by the driver).
        options: Scan options (``ray_address``, ``num_gpus_per_worker``, ``concurrency`` are read here).
        processor: The driver's processor; its settings are rebuilt on every actor.
    """
    if not todo:
        return
    ray = require_ray(loopback=ray_driver_on_loopback(options.ray_address))
    with _ray_session(ray, options) as session:
        _quiet_ray_data(ray)
        resources = ray.cluster_resources()
        plan = plan_workers(resources.get("CPU", 1.0), resources.get("GPU", 0.0), options.concurrency,
                            options.num_gpus_per_worker, options.workers)
        info = processor.analyzer.info
        spec = WorkerSpec(
            options=dataclasses.replace(options), rule_sets=list(processor.rule_sets),
            out_dir=str(processor.out_dir.resolve()) if processor.out_dir is not None else None,
            expected_analyzer=(info.name, info.version, info.weights_sha256 or ""),
            torch_threads=plan.torch_threads, decode_threads=plan.decode_threads,
            env=_worker_env(todo, session),
        )
        log.info("ray engine: %s", plan)
        retries = max_task_retries()
        remote_args: dict[str, Any] = {"max_task_retries": retries}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # Enough blocks that every actor gets work, few enough that scheduling stays cheap.
            blocks = max(plan.actors * 4, min(MAX_BLOCKS, math.ceil(len(todo) / (options.batch_size * 4))))
            blocks = max(1, min(len(todo), blocks))
            ds = ray.data.from_items([{"item": _item_record(item)} for item in todo], override_num_blocks=blocks)
            ds = ds.map_batches(
                ScanWorker,
                fn_constructor_kwargs={"spec": spec},
                batch_size=options.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=plan.actors),
                num_cpus=plan.cpus_per_actor,
                num_gpus=plan.gpus_per_actor or None,
                **remote_args,
            )
        # Iterate outside catch_warnings: this generator is suspended between batches, and the
        # warning filters must not stay swapped while the caller runs.
        batches = ds.iter_batches(batch_size=None, batch_format="numpy")
        try:
            yield from _coalesce(([json.loads(text) for text in batch["row"]] for batch in batches))
        except (KeyboardInterrupt, GeneratorExit, ScanError):
            raise
        except Exception as exc:  # a worker that cannot start, or a batch whose worker kept dying
            cause = _last_line(exc).rstrip(".")
            if _worker_died(ray, exc):
                times = f"{retries + 1} times " if retries >= 0 else ""
                cause = (f"a worker died {times}running the same batch (killed, crashed or out of memory; its "
                         f"log is in the logs folder of the Ray session on its node): {cause}")
            raise ScanError(f"the Ray job failed: {cause}. Rows finished so far are kept; "
                            "fix the cause and re-run with --resume") from exc


__all__ = ["MAX_TASK_RETRIES", "RAY_DATA_HELPERS", "apply_worker_env", "max_task_retries", "ScanWorker", "WorkerPlan", "WorkerSpec", "helper_actors",
           "local_instance_kwargs", "plan_workers", "run_ray"]
