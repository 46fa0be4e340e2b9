"""``--ray``: one batch spread over the machines of a Ray cluster.

The driver (the ``amt-transcribe`` process) plans the jobs as a local run does,
puts the weights once in Ray's object store and submits one task per file; each
worker process builds the network from them once and keeps it for the tasks it
runs.  Every node must see the inputs and the output folders at the same paths
(a shared filesystem: NFS, Lustre, a mounted bucket) and have the same version
of amt-transcribe installed; both are checked on every node before any audio is
read.

Outputs are published by the same atomic writer as a local run, so a worker that
dies leaves no partial file.  The driver retries a task whose worker or node was
lost (``RETRIES`` times); the retry may replace files its lost attempt already
published (each published file is whole), so every output ends up written once.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import replace

from .errors import TranscribeError

RETRIES = 3
INSTALL_HINT = "--ray needs Ray: pip install 'amt-transcribe[cluster]' (or pip install ray)"
SHARED_FILESYSTEM = ("--ray needs the inputs and outputs on a filesystem every node sees, "
                     "at the same paths")


def import_ray():
    """The ``ray`` module, or ``TranscribeError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise TranscribeError(INSTALL_HINT) from None
    return ray


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` as Ray resolves it (``None``: ``RAY_ADDRESS``, else the
    cluster last started on this machine, else a new local one).  True if this call started
    Ray (then the caller shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS")
    unreachable = _unreachable(target) if target else None
    if unreachable:  # Ray itself would retry for minutes, printing its own log lines
        raise TranscribeError(f"cannot reach the Ray cluster at {target} ({unreachable}); "
                              "is Ray running there (ray start --head)?")
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise TranscribeError(f"cannot join the Ray cluster at {target or 'a local cluster'} "
                              f"({str(error).strip().splitlines()[0]}); a cluster that "
                              "requires a token also needs RAY_AUTH_MODE=token here") from None
    return True


def _unreachable(address: str) -> str | None:
    """Why nothing answers at a ``HOST:PORT`` (or ``ray://HOST:PORT``) address, in 5 s;
    None when something does, or for ``auto``/``local``."""
    import re
    import socket
    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]]+?)\]?:(\d+)", address)
    if not match:
        return None
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=5).close()
    except OSError as error:
        return error.strerror or str(error) or type(error).__name__
    return None


def _probe_node(cwd: str, folders: list[str], sources: list[str]) -> tuple[str, str | None]:
    """On one node: the amt-transcribe version there, and why the batch cannot run there
    (``None``: it can)."""
    from pathlib import Path
    from .files import check_writable, existing_folder
    from .version import __version__
    try:
        os.chdir(cwd)
    except OSError as error:
        return __version__, f"the driver's folder {cwd} is not there ({error.strerror})"
    tried = set()  # the folders where the outputs' folders are to be made
    for folder in map(Path, folders):
        where = existing_folder(folder)
        if where in tried:
            continue
        tried.add(where)
        try:
            check_writable(folder)
        except TranscribeError as error:
            return __version__, str(error)
    missing = [source for source in sources if not os.path.exists(source)]
    if missing:
        others = f" (nor {len(missing) - 1} other inputs)" if len(missing) > 1 else ""
        return __version__, f"{missing[0]}: not there{others}"
    return __version__, None


def check_nodes(jobs, version: str) -> int:
    """Check on every live node that ``jobs``' inputs are there, their output folders are
    writable and amt-transcribe ``version`` is installed; the number of nodes.

    ``TranscribeError`` naming the first node that fails, before any audio is read.
    """
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    folders = sorted({str(job.output.parent) for job in jobs})
    sources = [str(job.source) for job in jobs]
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe_node)
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    replies = {node["NodeManagerAddress"]: probe.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
    ).remote(os.getcwd(), folders, sources) for node in nodes}
    for address, reply in replies.items():
        try:
            theirs, problem = ray.get(reply, timeout=300)
        except ray.exceptions.RayError as error:
            reason = str(error).strip().splitlines()[-1][:160]
            raise TranscribeError(f"Ray node {address} cannot run amt-transcribe ({reason}); "
                                  f"install amt-transcribe {version} on every node") from None
        if theirs != version:
            raise TranscribeError(f"Ray node {address} has amt-transcribe {theirs}, this "
                                  f"machine {version}; install one version on every node")
        if problem:
            raise TranscribeError(f"Ray node {address}: {problem}; {SHARED_FILESYSTEM}")
    return len(nodes)


# Per worker process: networks built from the weights in the object store, by checksum.
_MODELS: dict = {}


def _transcribe_task(weights, device: str, threads: int, cwd: str, job, settings):
    """One file on a worker: ``batch.run_job`` with the network built once per process."""
    from .batch import run_job
    from .inference import set_threads
    from .weights import load_model
    os.chdir(cwd)  # relative paths mean what they meant to the driver
    set_threads(threads)
    loaded = None
    if weights is not None:
        key = (weights.card.get("sha256"), device)
        if key not in _MODELS:
            try:
                _MODELS[key] = load_model(weights, device)
            except TranscribeError as error:  # e.g. --device cuda on a node without one
                job.status, job.message = "failed", f"{job.source}: {error}"
                return job, []
        loaded = _MODELS[key]
    return job, run_job(job, loaded, settings)


def _settle(ray, reference, job, attempts: dict, reporter) -> bool:
    """Record on ``job`` the outcome of its task ``reference``; True when the task must be
    tried again (its worker or node was lost, fewer than ``RETRIES`` times so far)."""
    from .batch import record_outcome
    try:
        done, warnings = ray.get(reference)
    except ray.exceptions.RayTaskError as error:  # our code raised: a bug
        job.status = "failed"
        job.message = (f"{job.source}: unexpected error on a Ray worker: "
                       f"{str(error).strip().splitlines()[-1]} (please report this bug)")
    except ray.exceptions.RayError as error:  # the worker or its node was lost
        attempts[id(job)] = attempts.get(id(job), 0) + 1
        if attempts[id(job)] <= RETRIES:
            reporter.warn(f"{job.source}: Ray worker lost ({type(error).__name__}); "
                          f"retrying ({attempts[id(job)]} of {RETRIES})")
            return True
        job.status = "failed"
        job.message = f"{job.source}: Ray worker lost {RETRIES + 1} times ({type(error).__name__})"
    else:
        record_outcome(job, done, warnings, reporter)
    return False


def run_on_ray(pending, started_here: bool, weights, device: str, threads: int,
               in_flight: int | None, settings, reporter) -> None:
    """Transcribe ``pending`` (``batch.Job``) with ``weights`` (a ``weights.WeightsFile``
    read once, or None for saved posteriorgrams alone) on the cluster joined by
    ``connect``, recording
    each outcome on its job and reporting it as it finishes, as ``batch.run_serial`` does;
    Ray is shut down at the end if ``connect`` started it (``started_here``).

    Each task takes ``threads`` CPUs (and a GPU when ``device`` is ``cuda``); at most
    ``in_flight`` tasks are submitted at once (``None``: twice what the cluster's CPUs
    run at once, so it never idles and the driver never tracks ten thousand tasks).
    """
    ray = import_ray()
    from .progress import plural
    from .version import __version__
    try:
        nodes = check_nodes(pending, __version__)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if device.startswith("cuda") and not gpus:  # its tasks would wait for ever
            raise TranscribeError("--device cuda: no node of the Ray cluster has a GPU")
        reporter.note(f"Ray cluster: {plural(nodes, 'node')}, "
                      f"{int(resources.get('CPU', 0))} CPUs" + (f", {gpus} GPUs" if gpus else ""))
        in_flight = in_flight or max(1, 2 * int(resources.get("CPU", 1)) // threads)
        model_ref = ray.put(weights) if weights is not None else None
        task = ray.remote(num_cpus=threads, num_gpus=1 if device.startswith("cuda") else 0,
                          max_retries=0)(_transcribe_task)
        cwd = os.getcwd()
        # Files are claimed by the driver as their tasks are submitted, as a local run
        # claims them: runs on the same outputs share them (batch.take).
        from .claims import clear
        from .batch import start_no_more_if_stuck, take, wait_for_others
        queue, running, attempts, made_for, held = deque(pending), {}, {}, {}, []

        def submit(job, retry: bool) -> None:
            if not retry:
                made = take(job, settings, reporter, held)
                if made is None:
                    return
                made_for[id(job)] = made
            # A retry may replace what its lost attempt published: those files are ours.
            job_settings = replace(settings, overwrite=True) if retry else settings
            running[task.remote(model_ref, device, threads, cwd, job, job_settings)] = job

        def release(job) -> None:
            clear(job, made_for.pop(id(job), []))

        try:
            while queue or running or held:
                while queue and len(running) < in_flight:
                    submit(queue.popleft(), False)
                if not running:  # what other runs hold, once this one has done the rest
                    if held:
                        queue.extend(wait_for_others(held, settings, reporter))
                    continue
                ready, _ = ray.wait(list(running), num_returns=1)
                for reference in ready:
                    job = running.pop(reference)
                    if _settle(ray, reference, job, attempts, reporter):
                        submit(job, True)
                    else:
                        release(job)
                        reporter.finish_file(job)
                        start_no_more_if_stuck(job, queue, held)
        except KeyboardInterrupt:
            # Ray raises KeyboardInterrupt inside each running task: its temporary
            # files are removed on the way out, as in a local run.
            # Only tasks still running: cancelling one that has just finished trips a
            # fatal check inside Ray 2.60 (task_manager.cc, "not pending") now and then.
            _, unfinished = ray.wait(list(running), num_returns=len(running), timeout=0)
            for reference in unfinished:
                ray.cancel(reference)
            ray.wait(unfinished, num_returns=len(unfinished), timeout=30)
            for job in running.values():
                release(job)
            raise
    finally:
        if started_here:
            ray.shutdown()
