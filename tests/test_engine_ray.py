"""``--engine ray`` on a real Ray cluster, in this process: the same report as ``--engine local``, resume, URIs.

The cluster is the session's ``ray start --head`` on 127.0.0.1 (``ray_cluster`` in conftest.py, token
authentication on); each scan joins it with ``ray_address`` and leaves it, as a user's driver does.
The private instance and the command line are exercised in test_engine_ray_cluster.py. Ray's cold start
is slow here, so the tests are few and each one checks a lot.
"""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import jpeg_with_exif, photo_like, write_image
from exposure_cli.engines import prepare_ray_environment

pytestmark = pytest.mark.ray

prepare_ray_environment(loopback=True)  # before Ray is imported: no phoning home, loopback only
try:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ray
        import ray.data  # noqa: F401
except ImportError:
    pytest.skip("the ray extra is not installed (pip install 'exposure-cli[ray]')", allow_module_level=True)

from exposure_cli.cli import app  # noqa: E402
from exposure_cli.pipeline import scan  # noqa: E402
from exposure_cli.outdir import Journal  # noqa: E402
from exposure_cli.report.writers import read_report  # noqa: E402

runner = CliRunner()


def _rules_args() -> list[str]:
    """``--rules default`` when the rules package can score rows, so rule scores are compared too."""
    try:
        from exposure_cli.rules import load_rule_sets, score_row  # noqa: F401
    except ImportError:
        return []
    return ["--rules", "default"]


@pytest.fixture
def cluster(ray_cluster, monkeypatch):
    """The session's cluster, with this process set up as a driver of it (token auth, loopback)."""
    for name, value in ray_cluster.driver_env({}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Ray read RAY_AUTH_MODE when this module imported it (before the cluster existed); re-read it, as
    # Ray's own token set-up does (a command-line scan has it in its environment from the start)
    ray._raylet.Config.initialize("")
    ray._raylet.AuthenticationTokenLoader.instance().reset_cache()
    yield ray_cluster
    assert not ray.is_initialized()  # every scan left the cluster again


def _assert_same_rows(a, b) -> None:
    assert list(a.columns) == list(b.columns)
    assert list(a["path"]) == list(b["path"])
    for col in a.columns:
        x, y = list(a[col]), list(b[col])
        if col.endswith("hist"):
            assert [None if v is None else list(v) for v in x] == [None if v is None else list(v) for v in y], col
        elif a[col].dtype.kind == "f":
            np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float), rtol=1e-6, atol=1e-9,
                                       equal_nan=True, err_msg=col)
        else:
            norm = lambda vs: [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in vs]  # noqa: E731
            assert norm(x) == norm(y), col


def test_ray_engine_writes_the_local_engines_report(cluster, photo_dir, tmp_path):
    jpeg_with_exif(photo_dir / "trip" / "rotated.jpg", photo_like(200, 300, seed=7), orientation=6, make="Acme")
    rules = _rules_args()
    common = ["--maps", "-q", *rules]  # the default analyzer (EAT when its weights ship)
    local, distributed = tmp_path / "local", tmp_path / "ray"
    res = runner.invoke(app, ["scan", str(photo_dir), "--out", str(local), *common], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["scan", str(photo_dir), "--out", str(distributed), "--engine", "ray",
                              "--ray-address", cluster.address, *common], catch_exceptions=False)
    assert res.exit_code == 0, res.output

    a, meta_a = read_report(local / "report.parquet")
    b, meta_b = read_report(distributed / "report.parquet")
    assert len(b) == 7 and (b["status"] == "error").sum() == 2  # broken files are rows, not crashes
    _assert_same_rows(a, b)
    if rules:
        assert b["score_default"].notna().sum() == 5
    by = b.set_index("path")
    assert (by.loc["trip/rotated.jpg", "width"], by.loc["trip/rotated.jpg", "height"]) == (200, 300)
    # same schema and metadata (only the creation time differs)
    assert pq.read_schema(local / "report.parquet").remove_metadata() == \
        pq.read_schema(distributed / "report.parquet").remove_metadata()
    meta_a.pop("created"), meta_b.pop("created")
    assert meta_a == meta_b
    # the workers wrote the maps, equal to the local ones up to float rounding: the engines may give torch
    # different thread counts, which changes the order of sums inside convolutions
    for path in by.index[by["status"] == "ok"]:
        rel = by.loc[path, "map_path"]
        m_local = np.load(local / rel, allow_pickle=False)
        m_ray = np.load(distributed / rel, allow_pickle=False)
        assert m_local.shape == m_ray.shape and m_local.dtype == m_ray.dtype
        assert np.abs(m_local.astype(np.float32) - m_ray.astype(np.float32)).max() <= 2e-3


def test_ray_engine_resumes_without_redoing_or_duplicating(cluster, photo_dir, tmp_path):
    out = tmp_path / "out"
    first = scan([photo_dir], out=out, model="baseline", regions=False)  # a local scan to continue
    lines_before = len(list(Journal(out).rows()))
    write_image(photo_dir / "trip" / "new.jpg", photo_like(seed=11, gain=0.3))
    second = scan([photo_dir], out=out, model="baseline", regions=False, resume=True, engine="ray",
                  ray_address=cluster.address)
    assert (first.processed, second.processed, second.skipped) == (6, 1, 6)
    assert len(list(Journal(out).rows())) == lines_before + 1  # only the new photo went to the cluster
    retried = scan([photo_dir], out=out, model="baseline", regions=False, resume=True, retry_errors=True,
                   engine="ray", ray_address=cluster.address)
    assert (retried.processed, retried.errors) == (2, 2)
    df, meta = read_report(out)
    assert len(df) == 7 and df["path"].is_unique and meta["analyzer"]["name"] == "baseline"
    assert df.set_index("path").loc["trip/new.jpg", "status"] == "ok"


def test_ray_engine_reads_uris_with_two_workers(cluster, photo_dir, tmp_path):
    local = scan([photo_dir], out=tmp_path / "local", model="baseline", regions=False)
    remote = scan([photo_dir.as_uri()], out=tmp_path / "ray", model="baseline", regions=False, engine="ray",
                  ray_address=cluster.address, concurrency=2, batch_size=2)
    assert (remote.ok, remote.errors) == (local.ok, local.errors) == (4, 2)
    a, _ = read_report(tmp_path / "local")
    b, meta = read_report(tmp_path / "ray")
    _assert_same_rows(a, b)  # size and mtime come from the object listing, equal to stat()
    assert meta["roots"] == [photo_dir.as_uri()]
    assert json.loads((tmp_path / "ray" / ".exposure" / "scan.json").read_text())["roots"] == [photo_dir.as_uri()]
