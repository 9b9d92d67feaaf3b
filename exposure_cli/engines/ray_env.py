"""The environment of a Ray scan: what Ray's own processes, the workers and the driver may see.

Nothing here imports Ray. Three concerns, each with its reason in ``docs/SCALE.md``:

* **No traffic beyond loopback from a private instance.** Ray's usage-statistics module (run by the
  dashboard process, which Ray starts even with ``include_dashboard=False``) probes the cloud metadata
  endpoints — ``169.254.169.254`` (Azure, AWS) and ``metadata.google.internal`` (GCP, after a DNS
  lookup) — *before* it checks that statistics are off; a ``ray start`` cluster then also posts a
  "statistics disabled" report to ``usage-stats.ray.io``. Those calls go through ``requests``, which
  honours proxy variables, so Ray's own processes are started with an HTTP(S) proxy on a closed
  loopback port (:data:`DEAD_PROXY`) and loopback exempt (:data:`LOOPBACK_HOSTS`): the probes fail at
  once on 127.0.0.1 and nothing leaves the machine. The scan workers get the user's own proxy settings
  back with the job (they read the photos), and the driver's environment is restored as soon as Ray has
  started.
* **Credentials travel with the job.** The driver's object-storage settings (``AWS_*``,
  ``GOOGLE_APPLICATION_CREDENTIALS``) are handed to the scan workers with the job — in the workers'
  constructor arguments, set in the worker process before it opens any storage — so workers on a
  cluster started elsewhere read the same bucket with the same credentials and endpoint. Their values
  are never printed, and not put in Ray's ``runtime_env``: Ray's runtime-env agent writes every runtime
  environment, ``env_vars`` values included, to ``runtime_env_agent.log`` on each node.
* **No instance-metadata credential lookups against S3-compatible storage.** With a custom endpoint
  (``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` or ``endpoint_override=`` in the URI) the AWS SDK inside
  pyarrow would still ask ``169.254.169.254`` for a region or credentials; ``AWS_EC2_METADATA_DISABLED``
  is set to ``true`` then, unless the user set it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import socket
from pathlib import Path
from typing import Iterator, Mapping, MutableMapping, Sequence
from urllib.parse import parse_qs, urlsplit

#: A proxy nobody listens on (TCP port 9, "discard", closed on any normal machine): plain-HTTP(S) calls of
#: Ray's own processes that are not for loopback end here with "connection refused", on 127.0.0.1.
DEAD_PROXY = "http://127.0.0.1:9"
#: Exempt from the proxy: Ray's processes talk to each other (and to the dashboard) on loopback.
LOOPBACK_HOSTS = "127.0.0.1,localhost,::1"
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
NO_PROXY_VARS = ("no_proxy", "NO_PROXY")

#: Object-storage settings the scan workers need when the inputs are URIs (prefixes, exact names).
FORWARDED_PREFIXES = ("AWS_",)
FORWARDED_NAMES = ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")

#: Ray's token authentication (Ray ≥ 2.5x): the mode switch and where the token comes from.
AUTH_MODE_VAR = "RAY_AUTH_MODE"
AUTH_TOKEN_VARS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def ray_system_env() -> dict[str, str]:
    """Environment for Ray's own processes (GCS, raylet, dashboard, agents): statistics off, no egress.

    Used for the private instance, and documented (docs/SCALE.md) for ``ray start`` on clusters whose
    owners want the same; the test suite starts its cluster with it.
    """
    env = {"RAY_USAGE_STATS_ENABLED": "0"}
    env.update({name: DEAD_PROXY for name in PROXY_VARS})
    env.update({name: LOOPBACK_HOSTS for name in NO_PROXY_VARS})
    return env


def private_spawn_env(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Overrides (None: unset) while a private instance starts its processes.

    * :func:`ray_system_env` (no egress, no statistics);
    * ``RAY_ADDRESS`` unset: a private instance never joins a cluster found in the environment;
    * a fresh random token in ``RAY_AUTH_TOKEN`` unless the user configured token auth: Ray turns token
      authentication on for every new ``ray.init()`` instance and would otherwise *write*
      ``~/.ray/auth_token`` — which makes every later ``ray start`` on the machine require tokens.
    """
    environ = os.environ if environ is None else environ
    env: dict[str, str | None] = dict(ray_system_env())
    env["RAY_ADDRESS"] = None
    mode = (environ.get(AUTH_MODE_VAR) or "token").lower()
    if mode == "token" and not any(environ.get(v) for v in AUTH_TOKEN_VARS):
        env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    return env


@contextlib.contextmanager
def scoped_env(overrides: Mapping[str, str | None],
               environ: MutableMapping[str, str] | None = None) -> Iterator[None]:
    """Apply `overrides` to the process environment (None: unset), restore every name afterwards."""
    environ = os.environ if environ is None else environ
    saved = {name: environ.get(name) for name in overrides}
    try:
        _set_environ(environ, overrides)
        yield
    finally:
        _set_environ(environ, saved)


def _set_environ(environ: MutableMapping[str, str], values: Mapping[str, str | None]) -> None:
    """Set each name to its value; None unsets it."""
    for name, value in values.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value


def user_proxy_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The user's own proxy settings ("" where unset) — handed back to scan workers of a private instance,
    which otherwise inherit :data:`DEAD_PROXY` from the raylet that starts them."""
    environ = os.environ if environ is None else environ
    return {name: environ.get(name, "") for name in (*PROXY_VARS, *NO_PROXY_VARS)}


def uses_custom_s3_endpoint(uris: Sequence[str], environ: Mapping[str, str] | None = None) -> bool:
    """True when S3 inputs go to an S3-compatible endpoint (MinIO, Ceph, R2, moto…), not AWS."""
    environ = os.environ if environ is None else environ
    s3 = [u for u in uris if urlsplit(u).scheme.lower() == "s3"]
    if not s3:
        return False
    if environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL"):
        return True
    return any("endpoint_override" in parse_qs(urlsplit(u).query) for u in s3)


def storage_env(uris: Sequence[str], environ: MutableMapping[str, str] | None = None) -> None:
    """Driver-side defaults for object storage, before anything is listed: with a custom S3 endpoint,
    ``AWS_EC2_METADATA_DISABLED=true`` (unless set) — the instance-metadata service has nothing to say
    about an S3-compatible server, and the AWS SDK would otherwise ask it for a region or credentials."""
    environ = os.environ if environ is None else environ
    if uses_custom_s3_endpoint(uris, environ):
        environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def forwarded_env(uris: Sequence[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The object-storage settings to hand to scan workers: only when the inputs are remote URIs.

    Local folders and ``file://`` URIs need none (and get none: nothing secret leaves the driver
    without a reason).
    """
    environ = os.environ if environ is None else environ
    remote = [u for u in uris if "://" in u and urlsplit(u).scheme.lower() != "file"]
    if not remote:
        return {}
    return {name: value for name, value in environ.items()
            if name.startswith(FORWARDED_PREFIXES) or name in FORWARDED_NAMES}


def is_loopback_address(address: str | None) -> bool:
    """True for ``127.0.0.1:6379``, ``localhost:6379``, ``[::1]:6379`` (a cluster on this machine's loopback)."""
    if not address or address.startswith("ray://"):
        return False
    try:
        endpoint = address_endpoint(address)
    except ValueError:
        return False
    if endpoint is None:  # auto, local
        return False
    host = endpoint[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Ports Ray listens on when an address gives none: the GCS of ``ray start --head`` and the Ray Client server.
DEFAULT_GCS_PORT, DEFAULT_CLIENT_PORT = 6379, 10001


def address_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) a driver will connect to for ``--ray-address`` (``host:port``, ``[v6]:port``,
    ``ray://host[:port]``); None for ``auto``/``local``, which name no endpoint."""
    if not address or address in ("auto", "local"):
        return None
    default = DEFAULT_GCS_PORT
    if address.startswith("ray://"):
        address, default = address[len("ray://"):], DEFAULT_CLIENT_PORT
    address = address.split("/", 1)[0]
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif address.count(":") == 1:
        host, port = address.split(":")
    else:
        host, port = address, ""
    try:
        return host, int(port) if port else default
    except ValueError:
        raise ValueError(f"not a Ray address (host:port): {address!r}") from None


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Raise ConnectionError quickly when nothing accepts connections at ``--ray-address``.

    ``ray.init(address=…)`` on a dead address retries its GCS connection for minutes and does not stop on
    SIGTERM meanwhile; one TCP connect answers the common cases (wrong port, cluster not started, host
    down) in at most `timeout_s`. Reachable says nothing about the cluster's health; ``ray.init`` decides that.
    """
    endpoint = address_endpoint(address)
    if endpoint is None:
        return
    host, port = endpoint
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or type(exc).__name__)
        raise ConnectionError(f"nothing accepts connections at {host}:{port} ({reason})") from None


def auth_hint(environ: Mapping[str, str] | None = None, home: Path | None = None) -> str:
    """What to tell a user whose driver could not join a cluster: Ray's token authentication, when the
    driver has not turned it on (an explicit address never picks up ``~/.ray/auth_token`` by itself)."""
    environ = os.environ if environ is None else environ
    if (environ.get(AUTH_MODE_VAR) or "").lower() == "token":
        return ("Token authentication is on (RAY_AUTH_MODE=token): check that the token "
                "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) is the cluster's")
    token_file = (home or Path.home()) / ".ray" / "auth_token"
    where = f"{token_file} exists here" if token_file.exists() else "copy the cluster's token"
    return ("If the cluster uses token authentication (`ray start` turns it on when ~/.ray/auth_token "
            f"exists on the head node), set RAY_AUTH_MODE=token for this command ({where}; or pass "
            "RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH)")


__all__ = ["DEAD_PROXY", "DEFAULT_CLIENT_PORT", "DEFAULT_GCS_PORT", "LOOPBACK_HOSTS", "address_endpoint",
           "auth_hint", "check_reachable", "forwarded_env", "is_loopback_address", "private_spawn_env",
           "ray_system_env", "scoped_env", "storage_env", "user_proxy_env", "uses_custom_s3_endpoint"]
