"""The engine switch without a running Ray: the missing-extra message, worker sizing, URI inputs.

Nothing here starts Ray (the integration tests are in test_engine_ray*.py behind the ``ray`` marker), so
these run everywhere, with or without the extra.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import photo_like, write_image
from exposure_cli.cli import app
from exposure_cli.discovery import discover
from exposure_cli.engines import RAY_INSTALL_HINT
from exposure_cli.engines.uris import RemoteInput, discover_uris, is_uri
from exposure_cli.pipeline import ScanError, scan
from exposure_cli.report.writers import read_report

runner = CliRunner()
FAST = ["--model", "baseline", "--no-regions", "-q"]


@pytest.fixture
def no_ray(monkeypatch):
    """Make ``import ray`` fail as it does when the extra is not installed."""
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)


def test_cli_without_the_extra_fails_at_once_naming_it(no_ray, photo_dir, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["scan", str(photo_dir), "--out", str(out), "--engine", "ray", *FAST],
                        catch_exceptions=False)
    assert res.exit_code == 2
    assert RAY_INSTALL_HINT in " ".join(res.output.split())  # rich may wrap the message
    assert not out.exists()  # nothing was scanned, no silent fallback to the local engine


def test_library_without_the_extra_raises_scan_error(no_ray, photo_dir, tmp_path):
    with pytest.raises(ScanError, match=r"pip install 'exposure-cli\[ray\]'"):
        scan([photo_dir], out=tmp_path / "out", model="baseline", engine="ray")
    assert not (tmp_path / "out").exists()


def test_ray_options_need_the_ray_engine(photo_dir, tmp_path):
    res = runner.invoke(app, ["scan", str(photo_dir), "--out", str(tmp_path / "o"), "--concurrency", "2", *FAST])
    assert res.exit_code == 2 and "--engine ray" in res.output
    res = runner.invoke(app, ["scan", str(photo_dir), "--engine", "spark", *FAST])
    assert res.exit_code == 2


def test_importing_the_cli_and_pipeline_does_not_import_ray():
    code = ("import sys, exposure_cli.cli, exposure_cli.pipeline, exposure_cli.engines, exposure_cli.engines.uris; "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent).returncode == 0


# ------------------------------------------------------------------------------------ worker sizing


def test_plan_on_two_cpus_leaves_cpu_for_ray_data():
    from exposure_cli.engines.ray_engine import plan_workers

    one = plan_workers(2, 0)
    assert (one.actors, one.gpus_per_actor) == (1, 0.0)
    two = plan_workers(2, 0, concurrency=2)
    assert two.actors == 2 and two.actors * two.cpus_per_actor <= 1.5  # half a CPU stays free
    many = plan_workers(2, 0, concurrency=16)
    assert many.actors * many.cpus_per_actor <= 1.5 and many.cpus_per_actor > 0
    assert two.torch_threads == 1 and one.torch_threads == 1  # half an actor's CPUs, like the local engine


def test_plan_uses_gpus_when_present():
    from exposure_cli.engines.ray_engine import plan_workers

    gpu = plan_workers(64, 4)
    assert (gpu.actors, gpu.gpus_per_actor) == (4, 1.0) and gpu.torch_threads == 8 and gpu.decode_threads == 16
    shared = plan_workers(64, 4, num_gpus_per_worker=0.5)
    assert (shared.actors, shared.gpus_per_actor) == (8, 0.5)
    cpu_only = plan_workers(64, 4, num_gpus_per_worker=0)
    assert cpu_only.gpus_per_actor == 0 and cpu_only.actors == 32
    with pytest.raises(ScanError, match="has 0"):
        plan_workers(8, 0, num_gpus_per_worker=1)
    with pytest.raises(ScanError, match="lower --concurrency"):
        plan_workers(8, 2, concurrency=3)


# ------------------------------------------------------------------------------------ URI inputs


def test_is_uri():
    assert is_uri("s3://bucket/photos") and is_uri("gs://b/k.jpg") and is_uri("file:///tmp/x")
    assert not is_uri("/tmp/x") and not is_uri("photos/a.jpg") and not is_uri("C:\\photos")


def test_file_uri_listing_matches_local_discovery(photo_dir):
    write_image(photo_dir / ".hidden" / "h.jpg", photo_like(seed=5))
    (photo_dir / "notes.txt").write_text("not a photo")
    local = list(discover([photo_dir]))
    remote = list(discover_uris([photo_dir.as_uri()]))
    assert [r.key for r in remote] == sorted(f.key for f in local)
    assert all(isinstance(r, RemoteInput) for r in remote)
    sizes = {r.key: r.size for r in remote}
    assert sizes["empty.png"] == 0 and sizes["trip/well.jpg"] == (photo_dir / "trip" / "well.jpg").stat().st_size
    only = discover_uris([photo_dir.as_uri()], include=["trip/*"], exclude=["*dark*"])
    assert [r.key for r in only] == ["trip/bright.jpg", "trip/well.jpg"]


def test_uri_problems_become_inputs_and_bad_mixes_are_refused(photo_dir, tmp_path):
    missing = list(discover_uris([(tmp_path / "nope.jpg").as_uri()]))
    assert len(missing) == 1 and missing[0].problem == "file not found"
    with pytest.raises(ValueError, match="cannot mix"):
        list(discover_uris([str(photo_dir), photo_dir.as_uri()]))
    with pytest.raises(ValueError, match="cannot open"):
        list(discover_uris(["nosuchscheme://x/y"]))


def _cells(column) -> list:
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in column]


def test_local_engine_reads_uris_with_the_same_rows(photo_dir, tmp_path):
    by_path = scan([photo_dir], out=tmp_path / "a", model="baseline", regions=False)
    by_uri = scan([photo_dir.as_uri()], out=tmp_path / "b", model="baseline", regions=False)
    assert (by_path.ok, by_path.errors) == (by_uri.ok, by_uri.errors) == (4, 2)
    a, _ = read_report(tmp_path / "a")
    b, meta = read_report(tmp_path / "b")
    assert list(a["path"]) == list(b["path"])
    for col in ("status", "error", "size_bytes", "mtime", "width", "format"):
        assert _cells(a[col]) == _cells(b[col]), col
    np.testing.assert_allclose(a["mean_residual"].astype(float), b["mean_residual"].astype(float), equal_nan=True)
    assert meta["roots"] == [photo_dir.as_uri()]


def test_rows_coming_back_are_grouped_into_few_journal_appends(monkeypatch):
    from exposure_cli.engines import ray_engine

    monkeypatch.setattr(ray_engine, "FLUSH_ROWS", 5)
    monkeypatch.setattr(ray_engine, "FLUSH_SECONDS", 3600.0)
    batches = [[{"path": f"{b}-{i}"} for i in range(2)] for b in range(6)]  # 12 rows in batches of 2
    groups = list(ray_engine._coalesce(iter(batches)))
    assert [len(g) for g in groups] == [6, 6]  # flushed once 5 were reached, remainder at the end
    assert [r["path"] for g in groups for r in g] == [r["path"] for b in batches for r in b]
    monkeypatch.setattr(ray_engine, "FLUSH_SECONDS", 0.0)  # slow arrivals: every batch goes at once
    assert [len(g) for g in ray_engine._coalesce(iter(batches))] == [2] * 6


# ------------------------------------------------------------------------------------ Ray's environment


def test_private_instance_environment_joins_nothing_and_writes_no_token_file():
    from exposure_cli.engines.ray_env import DEAD_PROXY, LOOPBACK_HOSTS, private_spawn_env

    env = private_spawn_env({"RAY_ADDRESS": "10.0.0.5:6379", "HTTP_PROXY": "http://corp:3128"})
    assert env["RAY_ADDRESS"] is None  # unset while the instance starts: never joins a cluster
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env["http_proxy"] == env["HTTPS_PROXY"] == DEAD_PROXY and env["NO_PROXY"] == LOOPBACK_HOSTS
    token = env["RAY_AUTH_TOKEN"]  # a throw-away token instead of a new ~/.ray/auth_token
    assert len(token) == 64 and token != private_spawn_env({})["RAY_AUTH_TOKEN"]
    # the user's own token settings win; token auth switched off stays off
    assert "RAY_AUTH_TOKEN" not in private_spawn_env({"RAY_AUTH_TOKEN_PATH": "/secrets/token"})
    assert "RAY_AUTH_TOKEN" not in private_spawn_env({"RAY_AUTH_MODE": "disabled"})


def test_scoped_env_sets_unsets_and_restores():
    from exposure_cli.engines.ray_env import scoped_env

    environ = {"KEEP": "1", "GONE": "2"}
    with scoped_env({"GONE": None, "NEW": "3", "KEEP": "4"}, environ):
        assert environ == {"KEEP": "4", "NEW": "3"}
    assert environ == {"KEEP": "1", "GONE": "2"}
    with pytest.raises(RuntimeError):
        with scoped_env({"NEW": "x"}, environ):
            raise RuntimeError
    assert environ == {"KEEP": "1", "GONE": "2"}


def test_credentials_travel_only_with_remote_inputs():
    from exposure_cli.engines.ray_env import forwarded_env, user_proxy_env

    environ = {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_ENDPOINT_URL_S3": "http://m:9000",
               "GOOGLE_APPLICATION_CREDENTIALS": "/k.json", "HOME": "/root", "PATH": "/bin"}
    assert forwarded_env(["s3://b/p"], environ) == {k: v for k, v in environ.items() if k not in ("HOME", "PATH")}
    assert forwarded_env(["file:///data/photos"], environ) == {}
    assert forwarded_env(["/data/photos"], environ) == {}
    proxies = user_proxy_env({"https_proxy": "http://corp:3128"})
    assert proxies["https_proxy"] == "http://corp:3128" and proxies["http_proxy"] == ""  # "" = no proxy


def test_worker_env_goes_in_the_spec_unprinted_and_is_applied_in_the_worker():
    """Credentials reach the workers in their constructor arguments (not Ray's runtime_env, which Ray's
    runtime-env agent logs in full on every node), never in a repr, and are set in the worker process."""
    from exposure_cli.engines.ray_engine import WorkerSpec, apply_worker_env
    from exposure_cli.processing import ScanOptions

    spec = WorkerSpec(options=ScanOptions(), env={"AWS_SECRET_ACCESS_KEY": "s3cr3t", "https_proxy": ""})
    assert "s3cr3t" not in repr(spec) and "s3cr3t" not in str(spec)
    environ = {"https_proxy": "http://127.0.0.1:9", "HOME": "/root"}  # a private instance's worker: dead proxy
    apply_worker_env(spec.env, environ)
    assert environ == {"AWS_SECRET_ACCESS_KEY": "s3cr3t", "HOME": "/root"}  # "" unsets


def test_custom_s3_endpoint_turns_off_instance_metadata_lookups():
    from exposure_cli.engines.ray_env import storage_env, uses_custom_s3_endpoint

    uri = "s3://photos/shoot?endpoint_override=127.0.0.1:9000&scheme=http"
    assert uses_custom_s3_endpoint([uri], {}) and not uses_custom_s3_endpoint(["s3://photos/shoot"], {})
    assert uses_custom_s3_endpoint(["s3://photos"], {"AWS_ENDPOINT_URL_S3": "http://m:9000"})
    assert not uses_custom_s3_endpoint(["gs://photos"], {"AWS_ENDPOINT_URL": "http://m:9000"})
    environ: dict[str, str] = {}
    storage_env([uri], environ)
    assert environ == {"AWS_EC2_METADATA_DISABLED": "true"}
    environ = {"AWS_EC2_METADATA_DISABLED": "false"}  # the user's choice stands
    storage_env([uri], environ)
    assert environ == {"AWS_EC2_METADATA_DISABLED": "false"}
    environ = {}
    storage_env(["s3://photos/shoot"], environ)  # real AWS: instance roles are a credential source
    assert environ == {}


def test_loopback_cluster_addresses():
    from exposure_cli.engines import ray_driver_on_loopback
    from exposure_cli.engines.ray_env import is_loopback_address

    for address in ("127.0.0.1:6379", "localhost:6379", "[::1]:6379", "127.0.0.2:1", "::1"):
        assert is_loopback_address(address), address
    for address in ("10.0.0.5:6379", "head:6379", "auto", "local", "ray://127.0.0.1:10001", "", None):
        assert not is_loopback_address(address), address
    assert ray_driver_on_loopback(None) and ray_driver_on_loopback("127.0.0.1:6379")
    assert not ray_driver_on_loopback("auto") and not ray_driver_on_loopback("10.0.0.5:6379")


def test_auth_hint_names_ray_auth_mode(tmp_path):
    from exposure_cli.engines.ray_env import auth_hint

    assert "set RAY_AUTH_MODE=token" in auth_hint({}, home=tmp_path) and "copy the cluster's token" in auth_hint({}, home=tmp_path)
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("x")
    assert f"{tmp_path / '.ray' / 'auth_token'} exists here" in auth_hint({}, home=tmp_path)
    assert "is the cluster's" in auth_hint({"RAY_AUTH_MODE": "token"}, home=tmp_path)


def test_max_task_retries_from_the_environment(monkeypatch):
    from exposure_cli.engines.ray_engine import MAX_TASK_RETRIES, max_task_retries

    monkeypatch.delenv("EXPOSURE_RAY_MAX_TASK_RETRIES", raising=False)
    assert max_task_retries() == MAX_TASK_RETRIES == 3
    monkeypatch.setenv("EXPOSURE_RAY_MAX_TASK_RETRIES", "-1")
    assert max_task_retries() == -1
    monkeypatch.setenv("EXPOSURE_RAY_MAX_TASK_RETRIES", "many")
    with pytest.raises(ScanError, match="whole number"):
        max_task_retries()


# ------------------------------------------------------------------------------------ stdout for the report


def test_stdout_carries_only_the_report_whatever_else_prints(tmp_path):
    """A real process whose stdout is a pipe: Python prints, raw writes to fd 1 and a child process's output
    during the block all go to stderr; the report reaches stdout, and fd 1 is back afterwards."""
    script = tmp_path / "noisy.py"
    script.write_text(
        "import os, subprocess, sys\n"
        "from exposure_cli.commands.stdio import stdout_for_report\n"
        "with stdout_for_report() as report:\n"
        "    print('(raylet) a worker died')\n"
        "    os.write(1, b'native noise\\n')\n"
        "    subprocess.run(['echo', 'child noise'])\n"
        "    report.write('path,status\\n')\n"
        "    report.write('a.jpg,ok\\n')\n"
        "print('after the block')\n"
    )
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert res.returncode == 0, res.stderr
    assert res.stdout == "path,status\na.jpg,ok\nafter the block\n"
    for noise in ("(raylet) a worker died", "native noise", "child noise"):
        assert noise in res.stderr


def _closed_loopback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ray_address_endpoints():
    from exposure_cli.engines.ray_env import address_endpoint

    assert address_endpoint("10.0.0.5:6380") == ("10.0.0.5", 6380)
    assert address_endpoint("head.example") == ("head.example", 6379)
    assert address_endpoint("ray://head.example") == ("head.example", 10001)
    assert address_endpoint("ray://head.example:20001") == ("head.example", 20001)
    assert address_endpoint("[::1]:6379") == ("::1", 6379)
    assert address_endpoint("auto") is None and address_endpoint("local") is None
    with pytest.raises(ValueError, match="not a Ray address"):
        address_endpoint("head:port")


def test_reachability_check_tells_a_dead_address_from_a_listening_one():
    import socket

    from exposure_cli.engines.ray_env import check_reachable

    with pytest.raises(ConnectionError, match=r"nothing accepts connections at 127\.0\.0\.1:\d+"):
        check_reachable(f"127.0.0.1:{_closed_loopback_port()}", timeout_s=2)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}", timeout_s=2)  # no error
    check_reachable("auto")  # names no endpoint: left to Ray


def test_a_dead_ray_address_fails_in_seconds_with_nothing_written(photo_dir, tmp_path):
    """Ray's own connection retries to a dead GCS last minutes (and ignore SIGTERM); the scan must stop at
    once, naming the address, before writing anything."""
    import time

    pytest.importorskip("ray")
    address = f"127.0.0.1:{_closed_loopback_port()}"
    out = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(ScanError, match=rf"cannot reach the Ray cluster at {address}: nothing accepts"):
        scan([photo_dir], out=out, model="baseline", engine="ray", ray_address=address, regions=False)
    assert time.monotonic() - started < 60  # Ray's retries took > 7 minutes here
    assert not out.exists()  # refused before the output folder was touched
    res = runner.invoke(app, ["scan", str(photo_dir), "--out", str(out), "--engine", "ray", "--ray-address",
                              address, *FAST])
    assert res.exit_code == 2 and not out.exists()
    text = " ".join(res.output.split())
    assert "--ray-address" in text and "nothing accepts connections" in text
