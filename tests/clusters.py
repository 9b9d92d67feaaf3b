"""Real servers for the scale-out tests: a ``ray start`` cluster on loopback, an S3-compatible server (moto),
and a reader for ``strace`` logs of network system calls.

Nothing here is a mock: the cluster is Ray's own ``ray start --head --block`` in a child process, the
S3 server is moto's standalone server speaking the S3 HTTP API with real signature checks, and the
traffic checks read what the kernel was asked to do (``connect``/``bind``) by every process of the tree.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).resolve().parent / "plugins"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f} s")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """A child that outlives pytest (killed, crashed) would keep a cluster running on a shared machine."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


#: Runs argv[1:] after asking the kernel for SIGTERM when the parent dies (survives execve).
_EXEC_WITH_PDEATHSIG = ("import ctypes, os, signal, sys; ctypes.CDLL('libc.so.6').prctl(1, signal.SIGTERM); "
                        "os.execv(sys.argv[1], sys.argv[1:])")


# ------------------------------------------------------------------------------------------ strace


def strace_prefix(trace: Path) -> list[str] | None:
    """``strace`` recording every connect/bind of a process tree into `trace`, or None when unavailable."""
    exe = shutil.which("strace")
    if exe is None:
        return None
    base = [exe, "-f", "-qq", "-e", "trace=connect,bind,listen", "-o", str(trace)]
    # seccomp-bpf stops only at the traced calls (the rest of the program runs at full speed)
    probe = subprocess.run([exe, "--seccomp-bpf", "-f", "-qq", "-e", "trace=connect", "-o", os.devnull, "true"],
                           capture_output=True)
    return [base[0], "--seccomp-bpf", *base[1:]] if probe.returncode == 0 else base


_CALL = re.compile(r"^(\d+)\s+(connect|bind)\((\d+), \{sa_family=(\w+)(.*?)\}")
_LISTEN = re.compile(r"^(\d+)\s+listen\((\d+),")
_V4 = re.compile(r'inet_addr\("([^"]+)"\)')
_V6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")


@dataclass
class NetCall:
    call: str  # connect, bind, or listen (with the address of the bind before it on that socket)
    family: str  # AF_INET, AF_INET6, AF_UNIX…
    address: str | None
    port: int | None
    line: str

    @property
    def loopback(self) -> bool:
        if self.family not in ("AF_INET", "AF_INET6"):
            return True  # unix sockets, netlink (the kernel), AF_UNSPEC (dissolving an association)
        ip = ipaddress.ip_address(self.address)
        ip = getattr(ip, "ipv4_mapped", None) or ip
        return ip.is_loopback


def net_calls(trace: Path) -> list[NetCall]:
    """Every connect/bind/listen recorded in an ``strace -f`` log (all processes of the tree), in order.

    A ``listen`` is reported with the address its socket was bound to (the last bind of that process and
    descriptor), so that "what accepts connections, where" can be checked.
    """
    calls: list[NetCall] = []
    bound: dict[tuple[str, str], NetCall] = {}
    for line in trace.read_text(errors="replace").splitlines():
        m = _CALL.search(line)
        if m:
            pid, call, fd, family, rest = m.groups()
            addr = _V4.search(rest) or _V6.search(rest)
            port = _PORT.search(rest)
            c = NetCall(call, family, addr.group(1) if addr else None, int(port.group(1)) if port else None,
                        line.strip())
            calls.append(c)
            if call == "bind":
                bound[(pid, fd)] = c
            continue
        m = _LISTEN.search(line)
        if m and (m.group(1), m.group(2)) in bound:
            b = bound[(m.group(1), m.group(2))]
            calls.append(NetCall("listen", b.family, b.address, b.port, line.strip()))
    return calls


def beyond_loopback(trace: Path, calls: tuple[str, ...] = ("connect", "listen")) -> list[str]:
    """The recorded connects that reach beyond loopback and listening sockets bound beyond it.

    (A bare ``bind`` without ``listen`` — Ray's raylet trying whether a worker port is free, an outgoing
    socket getting its port — accepts nothing and is not counted.)
    """
    return [c.line for c in net_calls(trace) if c.call in calls and not c.loopback]


# ------------------------------------------------------------------------------------------ Ray


@dataclass
class RayCluster:
    """A one-node ``ray start --head`` cluster on 127.0.0.1 with token authentication, as a user starts it.

    It is started with :func:`exposure_cli.engines.ray_env.ray_system_env` (statistics off, no egress),
    without any ``AWS_*`` credentials of its own (a scan must bring them), with this checkout and
    ``tests/plugins`` on the workers' import path, and — when strace is installed — under
    ``strace -f -e trace=connect,bind`` so that every connection any of its processes attempts is on
    record (:attr:`trace`).
    """

    root: Path
    num_cpus: int = 2
    address: str = ""
    port: int = 0
    token_path: Path | None = None
    trace: Path | None = None
    log: Path | None = None
    temp_dir: str = ""  # Ray's --temp-dir: the session's logs and sockets (removed by stop())
    proc: subprocess.Popen | None = None
    processes: list = field(default_factory=list)

    def driver_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """What a driver needs to join: token auth on, the token's file, loopback node address."""
        env = dict(os.environ if base is None else base)
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path),
                   RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")
        env.pop("RAY_AUTH_TOKEN", None)
        env.pop("RAY_ADDRESS", None)
        return env

    def start(self, timeout: float = 300) -> "RayCluster":
        from exposure_cli.engines.ray_env import ray_system_env

        self.root.mkdir(parents=True, exist_ok=True)
        self.token_path = self.root / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        self.log = self.root / "ray-start.log"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_"))}
        env.update(ray_system_env())
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path),
                   RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", OMP_NUM_THREADS="1",
                   RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # a test cluster has nothing to drain on SIGTERM
                   EXPOSURE_CRASH_LOG=str(self.root / "crash.log"),  # tests/plugins/exposure_rules_crash
                   PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(PLUGINS)]))
        # a short temp dir: Ray's unix sockets live under it (108-byte path limit)
        temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
        self.temp_dir = temp_dir
        cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
               "--node-ip-address=127.0.0.1", f"--port={self.port}", f"--num-cpus={self.num_cpus}", "--num-gpus=0",
               "--include-dashboard=false", f"--dashboard-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}",
               f"--temp-dir={temp_dir}", "--disable-usage-stats", "--object-store-memory=300000000"]
        # `ray start --block` stops its cluster on SIGTERM; have the kernel send it one if its parent (pytest,
        # or strace in between) dies, so a killed test run never leaves a cluster behind on a shared machine.
        cmd = [sys.executable, "-c", _EXEC_WITH_PDEATHSIG, *cmd]
        self.trace = self.root / "ray-start.strace"
        prefix = strace_prefix(self.trace)
        if prefix is None:
            self.trace = None
        else:
            cmd = prefix + cmd
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        try:
            while "Ray runtime started" not in self.log.read_text(errors="replace"):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray start failed or timed out:\n{self.log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.5)
        except BaseException:
            self.stop()  # a cluster that failed to come up must not outlive the session
            raise
        return self

    def ray_start_process(self):
        import psutil

        try:
            top = psutil.Process(self.proc.pid)
            tree = [top, *top.children(recursive=True)]
        except psutil.Error:
            return None
        for p in tree:
            try:
                if "start" in p.cmdline() and any(a.endswith("ray") for a in p.cmdline()[:3]):
                    return p
            except psutil.Error:
                continue
        return None

    def descendants(self) -> list:
        import psutil

        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []

    def stop(self) -> None:
        """SIGTERM to ``ray start --block`` (it stops every process it started), then end any straggler
        of this tree by its pid. Never ``ray stop``: that ends every Ray on the machine."""
        import psutil

        if self.proc is None:
            return
        tree = self.descendants()
        head = self.ray_start_process()
        try:
            if head is not None:
                head.terminate()
            elif self.proc.poll() is None:
                self.proc.terminate()
        except psutil.Error:
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        gone, alive = psutil.wait_procs(tree, timeout=20)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.proc = None

    def workers(self, title: str) -> list:
        """Live worker processes of this cluster whose title contains `title` (e.g. ``ScanWorker``)."""
        import psutil

        found = []
        for p in self.descendants():
            try:
                if title in " ".join(p.cmdline()):
                    found.append(p)
            except psutil.Error:
                continue
        return found


# ------------------------------------------------------------------------------------------ S3


@dataclass
class S3Server:
    """moto's standalone S3 server on 127.0.0.1 with authentication on: requests must be signed with an
    access key created through its IAM API (wrong or missing credentials are refused, as on AWS)."""

    root: Path
    prefix: str = "photos/shoot"  # bucket/prefix the tests scan
    port: int = 0
    trace: Path | None = None
    proc: subprocess.Popen | None = None
    keys: dict = field(default_factory=dict)  # user → (access key id, secret)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> "S3Server":
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        # the first 6 requests (two users, their keys and policies) are let through; every later one is checked
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "6"
        cmd = [sys.executable, "-c", _EXEC_WITH_PDEATHSIG, sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
               "-p", str(self.port)]
        self.trace = self.root / "moto.strace"  # the test server must not reach out either
        prefix = strace_prefix(self.trace)
        if prefix is None:
            self.trace = None
        else:
            cmd = prefix + cmd
        with open(self.root / "moto.log", "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)
        try:
            wait_for_port(self.port, self.proc, timeout)
            self._create_users()
        except BaseException:
            self.stop()  # a server that failed to come up must not outlive the session
            raise
        return self

    def _create_users(self) -> None:
        import boto3

        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        # "lister" may list the prefix but read nothing in it. (AWS answers HeadObject on the prefix itself
        # — which pyarrow asks first — with 404 to anyone allowed to list; moto answers 403 unless that one
        # key is readable, so the lister gets exactly that key.)
        policies = {
            "scanner": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}],
            "lister": [{"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "*"},
                       {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{self.prefix}"}],
        }
        for user in policies:
            iam.create_user(UserName=user)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            self.keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        for user, statements in policies.items():
            doc = {"Version": "2012-10-17", "Statement": statements}
            iam.put_user_policy(UserName=user, PolicyName="access", PolicyDocument=json.dumps(doc))

    def client(self, user: str = "scanner"):
        import boto3

        key, secret = self.keys[user]
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key, aws_secret_access_key=secret)

    def env(self, user: str = "scanner", endpoint_in_env: bool = True) -> dict[str, str]:
        """The ``AWS_*`` settings a user exports for this server (no region: none is needed)."""
        key, secret = self.keys[user]
        env = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
        if endpoint_in_env:
            env["AWS_ENDPOINT_URL_S3"] = self.endpoint
        return env

    def stop(self) -> None:
        """SIGTERM to the server (under strace: to its process, then strace ends with it)."""
        import psutil

        if self.proc is None:
            return
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        for p in tree or [psutil.Process(self.proc.pid)]:
            try:
                p.terminate()
            except psutil.Error:
                pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        _gone, alive = psutil.wait_procs(tree, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        self.proc = None
