"""``exposure scan --engine ray`` as a user runs it: real processes, a real ``ray start`` cluster, a real
S3-compatible server, real worker deaths, and a record of every connection made.

* the session's cluster (``ray_cluster``: ``ray start --head`` on 127.0.0.1 with token authentication,
  run under ``strace -f -e trace=connect,bind`` when strace is installed) and S3 server (``s3_server``:
  moto's server on 127.0.0.1 with signature checks) come from conftest.py / tests/clusters.py;
* every scan is a separate ``python -m exposure_cli`` process, so stdout, stderr and exit codes are the
  real ones.

Ray's cold start is slow on a small machine: the tests are few and each checks a lot.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from clusters import PLUGINS, beyond_loopback, net_calls, strace_prefix
from conftest import exposure_cmd, photo_like, subprocess_env, write_image
from exposure_cli.report.writers import read_report

pytestmark = pytest.mark.ray

TIMEOUT = 420  # seconds for one scan process; Ray starts slowly on 2 busy cores
FAST = ["--model", "baseline", "--no-regions"]


def _env(cluster=None, home: Path | None = None, **extra: str) -> dict[str, str]:
    """A user's shell for a scan: this checkout importable, no credentials or Ray settings inherited."""
    env = {k: v for k, v in subprocess_env().items()
           if not k.startswith(("AWS_", "RAY_")) or k == "RAY_TMPDIR"}  # the machine's temp dir for Ray stays
    if cluster is not None:
        env = cluster.driver_env(env)
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(home)
    env.update(extra)
    return env


def _scan(args: list[str], env: dict[str, str], prefix: list[str] | None = None,
          timeout: float = TIMEOUT, log: Path | None = None) -> subprocess.CompletedProcess:
    start = time.monotonic()
    res = subprocess.run([*(prefix or []), *exposure_cmd("scan", *args)], env=env, capture_output=True,
                         text=True, timeout=timeout, cwd=str(Path(__file__).resolve().parents[1]))
    if log is not None:  # for a look afterwards (pytest --basetemp=DIR keeps it)
        took = time.monotonic() - start
        log.write_text(f"$ exposure scan {' '.join(args)}\nexit {res.returncode} after {took:.1f} s\n"
                       f"--- stderr\n{res.stderr}")
    return res


#: Starts of a private instance per scan. Ray gives a new node's raylet a fixed 30 s to register with its GCS
#: (ray/_private/node.py, not configurable); at load 20-30 on this 2-core machine a start missed it ("The
#: current node timed out during startup"). Only that failure is retried; any other fails the test at once.
STARTUP_TRIES = 3


def _private_scan(args_for, env: dict[str, str], prefix_for, log_for) -> tuple[subprocess.CompletedProcess, int]:
    """A private-instance scan, started again when only Ray's fixed start-up limit was missed.

    ``args_for(i)``, ``prefix_for(i)`` and ``log_for(i)`` give try `i` its own output folder, trace and log,
    so that what a failed try did (its connections, its packets) is checked too. Returns the last result
    and the number of tries."""
    for i in range(STARTUP_TRIES):
        res = _scan(args_for(i), env, prefix_for(i), log=log_for(i))
        if res.returncode == 0 or "timed out during startup" not in " ".join(res.stderr.split()):  # wrapped
            break
    return res, i + 1


def _traffic_tests_required() -> bool:
    """``.ci/run`` sets EXPOSURE_REQUIRE_TRAFFIC_TESTS=1 when it runs as root (as CI does): there, a missing
    strace or a refused network namespace fails the no-traffic tests instead of skipping them."""
    return os.environ.get("EXPOSURE_REQUIRE_TRAFFIC_TESTS", "").strip() not in ("", "0")


def _unavailable(reason: str) -> None:
    """Skip a traffic test whose tool this machine lacks, with the reason — or fail it where it must run."""
    if _traffic_tests_required():
        pytest.fail(f"{reason}; EXPOSURE_REQUIRE_TRAFFIC_TESTS is set, so this test must run here")
    pytest.skip(reason)


def _photos(root: Path, n: int, broken: int = 0) -> list[str]:
    names = []
    for i in range(n):
        write_image(root / f"p{i:03d}.jpg", photo_like(90, 120, seed=i, gain=0.3 + (i % 7) * 0.4))
        names.append(f"p{i:03d}.jpg")
    for i in range(broken):
        (root / f"broken{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        names.append(f"broken{i}.jpg")
    return names


# ------------------------------------------------------------------------ 1. private instance, no traffic


@pytest.mark.timeout(1200)
def test_private_instance_beside_a_cluster_joins_nothing_and_stays_on_loopback(ray_cluster, tmp_path):
    """No --ray-address: a private instance, even with a cluster running, RAY_ADDRESS pointing at it and its
    address in the Ray temp dir; and every connection and listening socket of every process it starts
    (driver, GCS, raylet, dashboard, agents, workers) is on loopback: Ray's cloud-metadata probes end on the
    dead loopback proxy. Nothing is written to ~/.ray (Ray would otherwise create ~/.ray/auth_token,
    turning on token auth for later `ray start`s)."""
    photos = tmp_path / "photos"
    names = _photos(photos, 6, broken=1)
    home = tmp_path / "home"
    traces = [tmp_path / f"scan{i}.strace" for i in range(STARTUP_TRIES)]
    traced = strace_prefix(traces[0]) is not None
    # Both ways ray.init() without address="local" finds a running cluster and joins it (then failing with
    # "num_cpus and num_gpus must not be provided"): RAY_ADDRESS, and the file `ray start` leaves in the
    # default Ray temp dir, $RAY_TMPDIR/ray/ray_current_cluster (/tmp/ray/… by default). The session's
    # cluster wrote it into its own --temp-dir; the user's default one gets the same content here.
    address_file = Path(ray_cluster.temp_dir) / "ray_current_cluster"
    assert address_file.read_text() == ray_cluster.address
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's unix sockets go below it
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text(address_file.read_text())
        env = _env(home=home, RAY_ADDRESS=ray_cluster.address, RAY_TMPDIR=str(ray_tmp))
        res, tries = _private_scan(lambda i: [str(photos), "--engine", "ray", "--out", str(tmp_path / f"out{i}"),
                                              *FAST, "-q"],
                                   env, lambda i: strace_prefix(traces[i]), lambda i: tmp_path / f"scan{i}.log")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert res.returncode == 0, res.stderr[-3000:]
    df, _ = read_report(tmp_path / f"out{tries - 1}")
    assert sorted(df["path"]) == sorted(names) and (df["status"] == "ok").sum() == 6
    assert not (home / ".ray").exists()
    if not traced:  # the private instance worked beside the cluster; what it connected to needs strace
        _unavailable("strace is not installed (apt-get install strace; .ci/run does)")

    assert any(c.family == "AF_INET" and c.call == "listen" for c in net_calls(traces[tries - 1])), \
        "strace recorded no Ray server"
    for trace in traces[:tries]:  # a try that missed Ray's start-up limit made no stray connection either
        assert beyond_loopback(trace) == [], trace.name
        assert not [c.line for c in net_calls(trace) if c.call == "connect" and c.port == ray_cluster.port], \
            "the private instance talked to the cluster"


TRAP = Path(__file__).resolve().parent / "netns_trap.py"


def _netns_trap(workdir: Path) -> list[str]:
    """``unshare --net --mount … tests/netns_trap.py``: a command prefix that runs a command where only
    loopback works and every packet toward anything else is caught; skips (or, where required, fails)
    with the reason when the machine does not allow network namespaces."""
    unshare = shutil.which("unshare")
    if unshare is None:
        _unavailable("unshare (util-linux) is not installed")
    cmd = [unshare, "--net", "--mount", *([] if os.geteuid() == 0 else ["--map-root-user"]),
           sys.executable, str(TRAP), "--workdir", str(workdir)]
    probe = subprocess.run([*cmd, "--probe"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        _unavailable(f"no network namespace with a packet trap here: {(probe.stderr or probe.stdout).strip()[-500:]}")
    return cmd


@pytest.mark.timeout(1200)
def test_private_instance_in_a_network_namespace_sends_no_packet_beyond_loopback(tmp_path):
    """The same scan in a network namespace of its own (``unshare --net``) in which every route except
    loopback leads into a TUN device read by tests/netns_trap.py, and DNS goes there too: the private
    instance scans every photo, and not one packet of any of its processes (driver, GCS, raylet, dashboard
    with its usage-stats module, agents, workers) tried to leave loopback. The trap is checked first: a
    UDP datagram (IPv4 and IPv6) and a name lookup sent from the namespace are caught. Needs no strace."""
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'exposure-cli[ray]')")
    prefix = _netns_trap(tmp_path / "trap")
    records = [tmp_path / f"trap{i}.json" for i in range(STARTUP_TRIES)]
    photos = tmp_path / "photos"
    names = _photos(photos, 6, broken=1)
    # a user's proxy and a cluster address in the environment change nothing: no cluster is joined, and Ray's
    # own processes get the dead loopback proxy; the workers get the user's proxy back (they read the photos)
    env = _env(home=tmp_path / "home", RAY_ADDRESS="127.0.0.1:6379", https_proxy="http://192.0.2.80:3128")
    res, tries = _private_scan(lambda i: [str(photos), "--engine", "ray", "--out", str(tmp_path / f"out{i}"),
                                          *FAST, "-q"],
                               env, lambda i: [*prefix, "--record", str(records[i]), "--"],
                               lambda i: tmp_path / f"scan{i}.log")
    assert res.returncode == 0, res.stderr[-3000:]
    df, _ = read_report(tmp_path / f"out{tries - 1}")
    assert sorted(df["path"]) == sorted(names) and (df["status"] == "ok").sum() == 6
    for record in records[:tries]:  # a try that missed Ray's start-up limit sent nothing out either
        trapped = json.loads(record.read_text())
        assert all(trapped["controls"].values()), trapped["controls"]  # the trap catches what it should
        assert trapped["packets"] == [], trapped["packets"]


# ------------------------------------------------------------------------ 2. stdout, worker deaths, helpers


@pytest.mark.timeout(1200)
def test_stdout_is_the_report_only_when_a_worker_dies_and_helpers_are_removed(ray_cluster, tmp_path):
    """--out - --format csv on a cluster, a worker SIGKILLed mid-run: Ray retries its batch on a restarted
    worker, the scan completes (exit 0), stdout holds exactly one CSV row per photo (Ray's "(raylet) …
    worker died" lines go to stderr), the progress bar and the summary give the same speed, and Ray Data's
    helper actors are gone from the cluster afterwards."""
    import pandas as pd

    photos = tmp_path / "photos"
    names = _photos(photos, 60)
    env = _env(ray_cluster)
    cmd = exposure_cmd("scan", str(photos), "--engine", "ray", "--ray-address", ray_cluster.address,
                       "--out", "-", "--format", "csv", "--batch-size", "2", "--concurrency", "1")
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                                cwd=str(Path(__file__).resolve().parents[1]))
        lines, killed = [], []
        assert proc.stdout is not None
        for line in proc.stdout:  # rows stream out as the cluster finishes them
            lines.append(line)
            if len(lines) >= 5 and not killed:
                for worker in ray_cluster.workers("ScanWorker"):
                    worker.kill()  # SIGKILL, mid-run
                    killed.append(worker.pid)
        proc.wait(timeout=TIMEOUT)
    stderr = err_path.read_text()
    assert killed, "no ScanWorker process was found to kill"
    assert proc.returncode == 0, stderr[-3000:]
    text = "".join(lines)
    assert "raylet" not in text and "\x1b[" not in text
    df = pd.read_csv(io.StringIO(text))
    assert len(df) == 60 and sorted(df["path"]) == sorted(names)  # nothing lost, nothing twice
    assert (df["status"] == "ok").all()
    assert re.search(r"worker died|retries remaining|actor is temporarily unavailable", stderr, re.I), stderr[-2000:]
    # one speed figure: the bar ends on the summary's photos per second (Rich's moving average said 3.9
    # img/s here while the summary said 0.7)
    bar = re.findall(r"60/60\s+([\d.]+) img/s", stderr)
    summary = re.findall(r"60 \(([\d.]+) img/s", stderr)
    assert bar and summary and bar[-1] == summary[-1], (bar, summary)

    # Ray Data's helper actors (_StatsActor, ActorLocationTracker, _AutoscalingCoordinatorActor) were created
    # by this scan and are removed at its end: no process of theirs stays on the cluster.
    helpers = ("_StatsActor", "ActorLocationTracker", "_AutoscalingCoordinatorActor")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(ray_cluster.workers(h) for h in helpers):
        time.sleep(1)
    assert not [h for h in helpers if ray_cluster.workers(h)]


@pytest.mark.timeout(1200)
def test_a_batch_whose_worker_keeps_dying_fails_the_scan_after_the_retries(ray_cluster, tmp_path):
    """A photo that kills its worker every time (tests/plugins/exposure_rules_crash): the batch is retried
    (EXPOSURE_RAY_MAX_TASK_RETRIES, 1 here to keep the test short; the default is MAX_TASK_RETRIES = 3), the
    worker dies once more, and the scan stops with exit 1 and "the Ray job failed" instead of hanging (Ray
    Data's default retries forever); the rows finished before are in a valid report."""
    photos = tmp_path / "photos"
    _photos(photos, 4)
    write_image(photos / "poison.jpg", photo_like(90, 120, seed=99))
    site = tmp_path / "site"  # what `pip install` of a plugin package leaves: a dist-info with the entry point
    info = site / "exposure_rules_crash-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exposure_rules_crash\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[exposure_cli.rules]\ncrash = exposure_rules_crash:CrashRuleSet\n")
    env = _env(ray_cluster, EXPOSURE_RAY_MAX_TASK_RETRIES="1")
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(site), str(PLUGINS)])
    deaths = ray_cluster.root / "crash.log"
    deaths.unlink(missing_ok=True)
    out = tmp_path / "out"
    res = _scan([str(photos), "--engine", "ray", "--ray-address", ray_cluster.address, "--out", str(out),
                 "--rules", "crash", "--batch-size", "1", "--concurrency", "1", *FAST, "-q"], env,
                log=tmp_path / "scan.log")
    assert res.returncode == 1, res.stderr[-3000:]
    message = " ".join(res.stderr.split())
    assert "the Ray job failed: a worker died 2 times running the same batch" in message
    assert "--resume" in message
    assert len(deaths.read_text().split()) == 2  # the first try and one retry, each on a fresh worker
    df, _ = read_report(out)
    assert "poison.jpg" not in set(df["path"]) and df["path"].is_unique


# ------------------------------------------------------------------------ 3. S3-compatible storage


@pytest.mark.timeout(2400)
def test_s3_compatible_storage_with_both_engines(ray_cluster, s3_server, tmp_path):
    """A moto S3 server on loopback with signature checks; the cluster's workers have no credentials of
    their own. Both engines read it through AWS_ENDPOINT_URL_S3 and through endpoint_override in the URI,
    with the same rows; a user who may list but not read gets all-error rows and a non-zero exit; no
    secret appears in stdout, stderr or any file written; no driver connects beyond loopback (the AWS SDK
    would ask the instance-metadata service for a region without AWS_EC2_METADATA_DISABLED)."""
    s3 = s3_server.client("scanner")
    s3.create_bucket(Bucket="photos")
    local_photos = tmp_path / "photos"
    names = _photos(local_photos, 5, broken=1)
    for name in names:
        s3.upload_file(str(local_photos / name), "photos", f"shoot/{name}")
    s3.put_object(Bucket="photos", Key="shoot/notes.txt", Body=b"not a photo")
    secrets_ = [s3_server.keys[u][1] for u in ("scanner", "lister")]
    home = tmp_path / "home"
    runs: dict[str, subprocess.CompletedProcess] = {}

    traces: list[Path] = []

    def scan(label: str, uri: str, user: str, engine: str, endpoint_in_env: bool = True):
        env = _env(ray_cluster, home=home, **s3_server.env(user, endpoint_in_env))
        args = [uri, "--out", str(tmp_path / label), *FAST, "-q"]
        if engine == "ray":
            args += ["--engine", "ray", "--ray-address", ray_cluster.address]
        trace = tmp_path / f"{label}.strace"  # the driver's connections (the workers': the cluster's trace)
        prefix = strace_prefix(trace)
        if prefix is not None:
            traces.append(trace)
        runs[label] = _scan(args, env, prefix, log=tmp_path / f"{label}.log")
        return runs[label]

    uri = "s3://photos/shoot"
    for label, engine in (("local", "local"), ("ray", "ray")):
        res = scan(label, uri, "scanner", engine)
        assert res.returncode == 0, res.stderr[-3000:]
    a, meta = read_report(tmp_path / "local")
    b, _ = read_report(tmp_path / "ray")
    assert sorted(a["path"]) == sorted(names) and (a["status"] == "ok").sum() == 5
    assert list(a["path"]) == list(b["path"]) and list(a["status"]) == list(b["status"])
    assert list(a["size_bytes"]) == list(b["size_bytes"])
    np.testing.assert_allclose(a["mean_residual"].astype(float), b["mean_residual"].astype(float), equal_nan=True)
    assert meta["roots"] == [uri]

    # the endpoint in the URI instead of the environment (pyarrow's endpoint_override / scheme)
    host = s3_server.endpoint.split("//", 1)[1]
    res = scan("uri", f"s3://photos/shoot?endpoint_override={host}&scheme=http", "scanner", "ray",
               endpoint_in_env=False)
    assert res.returncode == 0, res.stderr[-3000:]
    c, _ = read_report(tmp_path / "uri")
    assert list(c["path"]) == list(a["path"]) and (c["status"] == "ok").sum() == 5

    # may list, may not read: every row is an error, and that is not a success (exit 4), on both engines
    for label, engine in (("denied-local", "local"), ("denied-ray", "ray")):
        res = scan(label, uri, "lister", engine)
        assert res.returncode == 4, res.stderr[-3000:]
        assert "every file scanned failed" in res.stderr
        df, _ = read_report(tmp_path / label)
        assert sorted(df["path"]) == sorted(names) and (df["status"] == "error").all()  # listed, then denied
        assert df["error"].str.contains("ACCESS_DENIED").all()

    # no instance-metadata lookups (169.254.169.254) by the AWS SDK: AWS_EC2_METADATA_DISABLED with an endpoint
    if not traces and _traffic_tests_required():
        pytest.fail("strace is not installed; EXPOSURE_REQUIRE_TRAFFIC_TESTS is set, so the drivers must be traced")
    for trace in traces:
        assert beyond_loopback(trace) == [], trace.name
    for label, res in runs.items():
        for secret in secrets_:
            assert secret not in res.stdout and secret not in res.stderr, label
        for path in (tmp_path / label).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(secret.encode() in data for secret in secrets_), path
    # nor in anything the cluster wrote: Ray's session logs (raylet, GCS, runtime-env agent, the workers' and
    # the drivers' logs) hold the jobs' runtime environments only in memory
    logs = [p for root in (Path(ray_cluster.temp_dir), ray_cluster.root) for p in root.rglob("*") if p.is_file()]
    assert any(p.name.startswith("runtime_env_agent") for p in logs), "no Ray session logs found"
    for path in logs:
        data = path.read_bytes()
        assert not any(secret.encode() in data for secret in secrets_), path


# ------------------------------------------------------------------------ 4. token auth


def test_joining_a_token_cluster_without_token_mode_says_how(ray_cluster, tmp_path):
    """The cluster uses token auth; a driver without RAY_AUTH_MODE=token cannot join (Ray reports
    InvalidAuthToken), and the error says what to set."""
    photos = tmp_path / "photos"
    _photos(photos, 1)
    env = _env(home=tmp_path / "home", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               RAY_gcs_server_port_wait_time_s="3")  # Ray's connect retries: 3 s instead of ~20 s
    res = _scan([str(photos), "--engine", "ray", "--ray-address", ray_cluster.address, "--out",
                 str(tmp_path / "out"), *FAST, "-q"], env, timeout=300)
    assert res.returncode == 1
    message = " ".join(res.stderr.split())
    assert f"cannot reach the Ray cluster at {ray_cluster.address}" in message
    assert "RAY_AUTH_MODE=token" in message


# ------------------------------------------------------------------------ 5. the cluster's own traffic (last)


def test_the_cluster_itself_made_no_connection_beyond_loopback(ray_cluster, request):
    """Everything the session's cluster did — start-up (Ray's usage-stats module probes cloud metadata and,
    for a `ray start` cluster, reports "disabled" to usage-stats.ray.io), every job of the session, the S3
    reads of its workers — connected to loopback only: the cluster runs with ray_system_env(). So did the
    session's S3 server."""
    if ray_cluster.trace is None:
        _unavailable("strace is not installed (apt-get install strace; .ci/run does)")
    calls = net_calls(ray_cluster.trace)
    assert any(c.call == "listen" and c.family == "AF_INET" for c in calls)
    assert any(c.call == "connect" and c.family == "AF_INET" for c in calls)
    assert beyond_loopback(ray_cluster.trace) == []
    try:  # and the session's S3 server (started by the S3 test; absent without moto)
        s3_server = request.getfixturevalue("s3_server")
    except pytest.skip.Exception:
        return
    if s3_server.trace is not None:
        assert beyond_loopback(s3_server.trace) == []
