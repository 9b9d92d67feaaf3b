"""Security: outputs cannot escape --out, scans do not wander out of their roots, nothing is unpickled or
eval'ed, tampered weights are refused, rule files are parsed (never executed) and the HTML report escapes
every string it embeds. Fuzzing of the rule language is here too (hypothesis; atheris in
test_security_atheris.py). See docs/RELIABILITY.md.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import jpeg_with_exif, long_mode, photo_like, write_image
from exposure_cli.cli import app
from exposure_cli.pipeline import ScanError, output_path, scan
from exposure_cli.report.writers import read_report

PACKAGE = Path(__file__).resolve().parents[1] / "exposure_cli"
runner = CliRunner()


# ------------------------------------------------------------------------------------- output paths


@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "/etc/passwd", "//etc/passwd",
                                 "a/../../../../../../tmp/x", "../..", "../../.."])
def test_output_path_refuses_keys_that_escape(tmp_path, key):
    with pytest.raises(ScanError, match="refusing to write outside"):
        output_path(tmp_path / "out", "overlays", key, ".jpg")


def test_output_path_keeps_ordinary_keys_inside(tmp_path):
    target = output_path(tmp_path / "out", "maps", "a/b c/ü.jpg", ".npy")
    assert target == (tmp_path / "out").resolve() / "maps" / "a" / "b c" / "ü.jpg.npy"


def _two_photos(root: Path) -> Path:
    write_image(root / "trip" / "a.jpg", photo_like(40, 50, seed=1))
    write_image(root / "b.jpg", photo_like(40, 50, seed=2))
    return root


@pytest.mark.parametrize("planted", ["overlays", "overlays/trip", "maps"])
def test_symlinks_planted_in_the_output_folder_are_not_followed(tmp_path, planted):
    photos = _two_photos(tmp_path / "photos")
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.mkdir()
    (out / planted).parent.mkdir(parents=True, exist_ok=True)
    (out / planted).symlink_to(victim, target_is_directory=True)
    result = scan([photos], out=out, model="baseline", regions=False, overlays=True, maps=True)
    assert list(victim.iterdir()) == [], "nothing may be written through a planted symlink"
    df, _ = read_report(result.report_path)
    assert len(df) == 2 and (df["status"] == "ok").all()  # the photos keep their statistics
    refused = df[df["error"].notna()]
    assert len(refused) >= 1 and refused["error"].str.contains("not written: refusing to write outside").all()


def test_scan_does_not_follow_symlinks_out_of_its_roots(tmp_path):
    photos = _two_photos(tmp_path / "photos")
    outside = tmp_path / "outside"
    write_image(outside / "secret.jpg", photo_like(40, 50, seed=3))
    write_image(outside / "deep" / "secret2.jpg", photo_like(40, 50, seed=4))
    (photos / "link.jpg").symlink_to(outside / "secret.jpg")
    (photos / "linked_dir").symlink_to(outside, target_is_directory=True)
    (photos / "inside_link.jpg").symlink_to(photos / "b.jpg")  # inside the roots: fine
    result = scan([photos], out=tmp_path / "out", model="baseline", regions=False, overlays=True)
    by = read_report(result.report_path)[0].set_index("path")
    assert sorted(by.index) == ["b.jpg", "inside_link.jpg", "link.jpg", "trip/a.jpg"]
    assert by.loc["link.jpg", "status"] == "error" and "outside the scanned folders" in by.loc["link.jpg", "error"]
    assert by.loc["link.jpg", "width"] != by.loc["link.jpg", "width"]  # NaN: it was never decoded
    assert by.loc["inside_link.jpg", "status"] == "ok"
    # Asked to follow: the outside photos are scanned, and their outputs still land inside --out.
    followed = scan([photos], out=tmp_path / "out2", model="baseline", regions=False, overlays=True,
                    follow_symlinks=True)
    fb = read_report(followed.report_path)[0].set_index("path")
    assert fb.loc["link.jpg", "status"] == "ok" and fb.loc["linked_dir/deep/secret2.jpg", "status"] == "ok"
    out2 = (tmp_path / "out2").resolve()
    for rel in fb["overlay_path"].dropna():
        assert out2 in (out2 / rel).resolve().parents
    assert sorted(p.name for p in outside.rglob("*")) == ["deep", "secret.jpg", "secret2.jpg"]


def test_output_folder_inside_the_scanned_tree_through_a_symlink_is_not_scanned(tmp_path):
    photos = _two_photos(tmp_path / "photos")
    out = tmp_path / "out"
    (photos / "audit").symlink_to(out, target_is_directory=True)
    scan([photos], out=out, model="baseline", regions=False, overlays=True)
    again = scan([photos], out=out, model="baseline", regions=False, overlays=True, follow_symlinks=True,
                 resume=True)
    assert again.total == 2  # its own overlays, reached through the link, are not inputs


def test_output_folder_equal_to_a_scanned_folder_is_refused(tmp_path):
    photos = _two_photos(tmp_path / "photos")
    before = sorted(p.relative_to(photos) for p in photos.rglob("*"))
    with pytest.raises(ScanError, match="is the scanned folder"):
        scan([photos], out=photos, model="baseline", regions=False, overlays=True)
    # Before the check, overlays landed among the photos and the next --resume scanned them as photos.
    assert sorted(p.relative_to(photos) for p in photos.rglob("*")) == before


# ------------------------------------------------------------------------------- no pickle, no eval


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield node, owner, name


def _kw(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value
    return None


def test_package_never_unpickles_evals_or_execs():
    unsafe_modules = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle", "_pickle"}
    problems = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        rel = path.relative_to(PACKAGE.parent)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                problems += [f"{rel}: import {a.name}" for a in node.names if a.name.split(".")[0] in unsafe_modules]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in unsafe_modules:
                problems.append(f"{rel}: from {node.module} import ...")
        for node, owner, name in _calls(tree):
            where = f"{rel}:{node.lineno}"
            if isinstance(node.func, ast.Name) and name in ("eval", "exec", "compile", "__import__"):
                problems.append(f"{where}: {name}()")
            if owner == "torch" and name == "load":
                flag = _kw(node, "weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            if owner in ("np", "numpy") and name == "load":
                flag = _kw(node, "allow_pickle")
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    problems.append(f"{where}: np.load without allow_pickle=False")
            if name in ("read_pickle", "to_pickle", "load_pickle") or (owner == "yaml" and name == "load"):
                problems.append(f"{where}: {owner}.{name}")
            if owner == "subprocess" or name in ("system", "popen"):
                shell = _kw(node, "shell")
                if name in ("system", "popen") or (isinstance(shell, ast.Constant) and shell.value):
                    problems.append(f"{where}: shell command {owner}.{name}")
    assert problems == []


def test_the_static_check_catches_what_it_claims_to(tmp_path):
    # Guard against a check that cannot fail: run the same walk on known-bad code.
    bad = ast.parse("import pickle\ntorch.load(f)\nnp.load(p)\neval('1')\ntorch.load(f, weights_only=True)\n")
    found = [name for _, owner, name in _calls(bad)]
    assert found.count("load") == 3 and "eval" in found
    flags = [_kw(n, "weights_only") for n, owner, name in _calls(bad) if owner == "torch"]
    assert flags[0] is None and flags[1].value is True


# ------------------------------------------------------------------------------------------ weights


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from exposure_cli.weights import save_weights
    from exposure_cli.models import create_model, model_config

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    save_weights(create_model("eat_iea_test"), folder,
                 {"architecture": "eat_iea_test", "config": model_config("eat_iea_test")})
    return folder


def _copy_weights(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_shipped_weights_are_safetensors_matching_their_card():
    from exposure_cli.weights import WEIGHTS_FILE, shipped_weights_dir, verify_weights

    folder = shipped_weights_dir()
    if folder is None:
        pytest.skip("no weights shipped with this checkout")
    loaded = verify_weights(folder / WEIGHTS_FILE)  # raises on a checksum mismatch
    data = (folder / WEIGHTS_FILE).read_bytes()
    header_len = int.from_bytes(data[:8], "little")  # safetensors: u64 length, then a JSON header
    header = json.loads(data[8 : 8 + header_len])
    assert header and all("dtype" in v for k, v in header.items() if k != "__metadata__")
    assert len(loaded.sha256) == 64


def test_tampered_weights_are_refused(tiny_weights, tmp_path):
    from exposure_cli.analyzers import create_analyzer
    from exposure_cli.weights import WEIGHTS_FILE, WeightsError

    folder = _copy_weights(tiny_weights, tmp_path / "w")
    data = bytearray((folder / WEIGHTS_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the middle of a tensor
    (folder / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        create_analyzer("eat", weights=str(folder), device="cpu")


def test_a_pickle_disguised_as_weights_is_never_unpickled(tiny_weights, tmp_path):
    """Even with a card that matches its checksum, a pickle payload is not executed: safetensors only."""
    import hashlib
    import pickle  # noqa: S403 - builds the hostile payload; the package itself never imports pickle

    from exposure_cli.weights import CARD_FILE, WEIGHTS_FILE, load_model

    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    folder = _copy_weights(tiny_weights, tmp_path / "w")
    blob = pickle.dumps({"state_dict": Payload()})
    (folder / WEIGHTS_FILE).write_bytes(blob)
    card = json.loads((folder / CARD_FILE).read_text())
    card["sha256"] = hashlib.sha256(blob).hexdigest()  # an attacker who controls both files
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(Exception) as info:
        load_model(folder / WEIGHTS_FILE)
    assert not sentinel.exists(), "the pickle payload ran"
    assert "pickle" not in type(info.value).__module__


def test_cli_with_tampered_weights_fails_cleanly(tiny_weights, tmp_path):
    from exposure_cli.weights import WEIGHTS_FILE

    folder = _copy_weights(tiny_weights, tmp_path / "w")
    with open(folder / WEIGHTS_FILE, "ab") as fh:
        fh.write(b"\x00")
    write_image(tmp_path / "p" / "a.jpg", photo_like(30, 40))
    res = runner.invoke(app, ["scan", str(tmp_path / "p"), "--out", str(tmp_path / "o"), "--model", "eat",
                              "--weights", str(folder), "--device", "cpu", "-q"])
    # a usage error with a message, not a crash: exit code 2, no exception other than the exit, no traceback
    assert res.exit_code == 2, (res.exit_code, res.exception)
    assert isinstance(res.exception, SystemExit) and res.exception.code == 2
    assert "checksum mismatch" in " ".join(str(res.output).split())
    assert "Traceback" not in res.output
    assert not (tmp_path / "o" / "report.parquet").exists()


# ----------------------------------------------------------------------------- rule language fuzzing

rules = pytest.importorskip("exposure_cli.rules")
from exposure_cli.rules import expr as rule_expr  # noqa: E402
from exposure_cli.rules import score_row  # noqa: E402
from exposure_cli.rules.expr import RuleError  # noqa: E402
from exposure_cli.rules.ruleset import parse_rule_text  # noqa: E402

FUZZ = 3000 if long_mode() else 200
VOCAB = ["global.bad_pct", "person.bad_pct", "face.over_pct", "background.under_pct", "sky.severe_bad_pct",
         "image.width", "exif.iso", "global", "x", "true", "false", "and", "or", "not", "exists", "known", "abs",
         "min", "max", "face", "__import__", "os", "open", "lambda", "__class__", "0", "1", "2.5", "1e308",
         "1e999", "20%", ".5", "-0", "nan", "inf", "1_000", "0x10", "+", "-", "*", "/", "<", "<=", ">", ">=",
         "==", "!=", "(", ")", ",", ".", "%", "!", "=", "&", "|", "**", "[", "]", "'", '"', ";", "\\", "\n",
         "\x00", "é", "😀", " "]
INJECTIONS = [
    "__import__('os').system('touch {s}')",
    "open('{s}', 'w')",
    "().__class__.__bases__[0].__subclasses__()",
    "exec(\"open('{s}','w')\")",
    "eval('1')",
    "global.bad_pct.__class__",
    "lambda: open('{s}', 'w')",
    "[x for x in ()]",
    "f'{{open(\"{s}\", \"w\")}}'",
    "global.bad_pct if True else 0",
]
HOSTILE_ROW_VALUES = [0.0, 100.0, -1.0, 1e308, -1e308, math.inf, -math.inf, math.nan, None]


def _names():
    from exposure_cli.rules.metrics import metric_types
    from exposure_cli.stats import REGIONS

    return rule_expr.Names(metrics=metric_types(), defines={}, regions=REGIONS)


def _evaluate_everywhere(node) -> None:
    size = len(HOSTILE_ROW_VALUES)
    values = np.array([np.nan if v is None else v for v in HOSTILE_ROW_VALUES], dtype=float)
    env = rule_expr.Env(lookup=lambda name: values, defines={}, present=lambda region: np.arange(size) % 2 == 0,
                        size=size)
    with np.errstate(all="ignore"):
        out = np.asarray(rule_expr.evaluate(node, env))
    assert out.shape in ((size,), ())


def _expression_only_raises_rule_errors(text: str) -> None:
    try:
        node = rule_expr.parse(text)
        rule_expr.check(node, _names())
    except RuleError as exc:
        assert str(exc)
        return
    _evaluate_everywhere(node)


@settings(max_examples=FUZZ, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=not long_mode())
@given(st.lists(st.sampled_from(VOCAB), max_size=40), st.sampled_from([" ", ""]))
def test_fuzzed_expressions_raise_only_validation_errors(tokens, sep):
    _expression_only_raises_rule_errors(sep.join(tokens))


@settings(max_examples=FUZZ, deadline=None, derandomize=not long_mode())
@given(st.text(alphabet=string.printable + "éß😀\x00", max_size=120))
def test_fuzzed_raw_text_raises_only_validation_errors(text):
    _expression_only_raises_rule_errors(text)


TOKENS = "more than 256 tokens"
LENGTH = "characters long; at most 2000"
DEPTH = "nested deeper than 60 levels"


@pytest.mark.parametrize(("text", "outcome"), [
    # over a limit: rejected with the message of the limit it broke
    ("+".join(["1"] * 600), TOKENS),               # long flat chain within the length cap
    (" or ".join(["true"] * 300), LENGTH),
    ("<".join(["1"] * 600), TOKENS),
    ("global.bad_pct >= " + "+".join(["1"] * 900), TOKENS),
    ("(" * 1000 + "1" + ")" * 1000, LENGTH),
    ("-" * 1999 + "1", TOKENS),
    ("not " * 490 + "true", TOKENS),
    ("1" * 5000, LENGTH),
    ("min(" + ",".join(["1"] * 900) + ")", TOKENS),
    ("(" * 61 + "1" + ")" * 61, DEPTH),
    ("-" * 61 + "1", DEPTH),
    ("1" * 400, "is out of range"),
    # just inside every limit: evaluated, to the value arithmetic says
    ("+".join(["1"] * 128), 128.0),                # 255 tokens
    ("(" * 59 + "1" + ")" * 59, 1.0),
    ("-" * 58 + "1", 1.0),
    ("-" * 59 + "1", -1.0),
    ("not " * 59 + "true", False),
    ("min(" + ",".join(["2"] * 120) + ", 1)", 1.0),
    ("1e308 * 10", math.inf),
    ("1 / 0", math.inf),
    ("0 / 0 == 0 / 0", False),                     # NaN equals nothing
    ("global.bad_pct - 3 - 2", 0.0),              # left-associative: (5 − 3) − 2
], ids=lambda v: f"{v[:12]}…{len(v)}" if isinstance(v, str) else repr(v))
def test_pathological_expressions_are_rejected_or_evaluated_exactly(text, outcome):
    if isinstance(outcome, str):
        with pytest.raises(RuleError, match=re.escape(outcome)):
            rule_expr.check(rule_expr.parse(text), _names())
        return
    node = rule_expr.parse(text)
    rule_expr.check(node, _names())
    env = rule_expr.Env(lookup=lambda name: np.full(2, 5.0), defines={}, present=lambda region: np.ones(2, bool),
                        size=2)
    assert np.asarray(rule_expr.evaluate(node, env)).tolist() == [outcome, outcome]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_code_in_a_rule_file_is_never_run(tmp_path, payload):
    sentinel = tmp_path / "pwned"
    source = payload.format(s=sentinel)
    for field, value in (("when", source), ("points", source), ("label", source)):
        doc = {"when": "global.bad_pct >= 1", "points": "1", "label": "x", field: value}
        text = ('name = "evil"\nstart = 100\n[[deductions]]\n'
                + "".join(f"{k} = {json.dumps(v)}\n" for k, v in doc.items()))
        try:
            rule_set = parse_rule_text(text, file="evil.toml")
        except RuleError as exc:
            assert "evil.toml" in str(exc)
        else:  # only a label (plain text) may carry it; scoring must treat it as text
            assert field == "label"
            row = {"bad_pct": 5.0, "status": "ok"}
            from exposure_cli.stats import Thresholds

            scored = score_row([rule_set], row, Thresholds())
            assert scored["score_evil"] == 99.0
        assert not sentinel.exists()


def _toml_value():
    scalar = st.one_of(st.lists(st.sampled_from(VOCAB), max_size=12).map(" ".join),
                       st.sampled_from(["global.bad_pct >= 5", "min(50, global.bad_pct)", "x and", "true"]),
                       st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.booleans())
    return st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.sampled_from(["when", "points", "score",
                                                                                         "label", "A", "x"]),
                                                                        inner, max_size=3)), max_leaves=6)


def _to_toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == math.inf else "-inf" if value == -math.inf else repr(value))
    if isinstance(value, (int,)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_to_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_to_toml(v)}" for k, v in value.items()) + "}"


@settings(max_examples=FUZZ, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=not long_mode())
@given(st.dictionaries(st.sampled_from(["name", "description", "start", "floor", "schema", "on_missing_region",
                                        "grades", "define", "deductions", "rows", "otherwise", "thresholds",
                                        "import", "__class__"]),
                       _toml_value(), max_size=6),
       st.sampled_from(["", 'name = "n"\n', 'name = "n"\nstart = 100\n']))
def test_fuzzed_rule_files_raise_only_validation_errors(doc, prefix):
    text = prefix + "".join(f"{json.dumps(k)} = {_to_toml(v)}\n" for k, v in doc.items() if not (prefix and k == "name"))
    try:
        rule_set = parse_rule_text(text, file="fuzz.toml")
    except RuleError as exc:
        assert str(exc)
        return
    from exposure_cli.stats import Thresholds

    for value in HOSTILE_ROW_VALUES:
        row = {"status": "ok", "bad_pct": value, "over_pct": value, "person_bad_pct": value}
        with np.errstate(all="ignore"):
            scored = score_row([rule_set], row, Thresholds())
        score = scored[f"score_{rule_set.name}"]
        assert score != score or 0 <= score <= 100


CONDITION_VOCAB = ["global.bad_pct", "person.bad_pct", "face.over_pct", "exif.iso", "known(exif.iso)",
                   "exists(face)", "abs(global.mean_residual)", "min(global.bad_pct, 5)", "0", "2", "1e308", "20%",
                   "and", "or", "not", "<", ">=", "==", "+", "-", "*", "/", "(", ")"]
_NUM_ATOMS = st.sampled_from(["global.bad_pct", "person.bad_pct", "face.over_pct", "exif.iso", "global.mean_residual",
                              "sky.severe_bad_pct", "0", "2", "-1", "1e308", "20%", "0.5"])
NUM_EXPR = st.recursive(_NUM_ATOMS, lambda n: st.one_of(
    st.tuples(n, st.sampled_from(["+", "-", "*", "/"]), n).map(" ".join),
    n.map("abs({})".format), st.tuples(n, n).map(lambda t: f"min({t[0]}, {t[1]})"),
    st.tuples(n, n).map(lambda t: f"max({t[0]}, {t[1]})"), n.map("-({})".format)), max_leaves=8)
_BOOL_ATOMS = st.one_of(
    st.tuples(NUM_EXPR, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), NUM_EXPR).map(" ".join),
    st.sampled_from(["exists(face)", "exists(sky)", "known(exif.iso)", "true", "false"]))
BOOL_EXPR = st.recursive(_BOOL_ATOMS, lambda b: st.one_of(
    st.tuples(b, st.sampled_from(["and", "or"]), b).map(" ".join), b.map("not ({})".format)), max_leaves=6)
#: Mostly well-typed expressions (they load and get scored), some token soup (validation errors).
CONDITIONS = st.one_of(BOOL_EXPR, BOOL_EXPR, BOOL_EXPR, st.lists(st.sampled_from(CONDITION_VOCAB), min_size=1,
                                                                 max_size=12).map(" ".join))
POINTS = st.one_of(NUM_EXPR, NUM_EXPR, BOOL_EXPR)


@settings(max_examples=FUZZ, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=not long_mode())
@given(CONDITIONS, POINTS, st.sampled_from(["deductions", "rows"]))
def test_fuzzed_conditions_in_well_formed_rule_files_score_or_fail_validation(when, points, mode):
    """Well-formed files with fuzzed conditions: most load, and those score hostile rows (NaN, ±inf, 1e308)."""
    from hypothesis import event

    from exposure_cli.stats import Thresholds

    body = (f'[[deductions]]\nwhen = {json.dumps(when)}\npoints = {json.dumps(points)}\n'
            if mode == "deductions" else f'[[rows]]\nscore = 70\nwhen = {json.dumps(when)}\n'
            '[otherwise]\nscore = 10\n')
    text = 'name = "f"\n' + ("start = 100\n" if mode == "deductions" else "") + body
    try:
        rule_set = parse_rule_text(text, file="fuzz.toml")
    except RuleError as exc:
        assert "fuzz.toml" in str(exc)
        event("validation error")
        return
    event("loaded and scored")
    for value in HOSTILE_ROW_VALUES:
        row = {"status": "ok", "bad_pct": value, "over_pct": value, "person_bad_pct": value,
               "face_over_pct": value, "exif_iso": value, "mean_residual": value, "sky_severe_bad_pct": value}
        with np.errstate(all="ignore"):
            scored = score_row([rule_set], row, Thresholds())
        score = scored["score_f"]
        assert score != score or 0 <= score <= 100, (text, value, score)
        assert isinstance(scored["reasons_f"], str)


# -------------------------------------------------------------------------------------- HTML report

HOSTILE_TEXT = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "\"'><svg onload=alert(1)>",
                "]]></x>", "{{TITLE}}", "</script><script>alert(2)</script>"]


def test_html_report_escapes_every_string(tmp_path):
    pytest.importorskip("exposure_cli.report.html")
    photos = tmp_path / "photos"
    # File names are user data: markup in a folder and a file name join into "</script>" in the key.
    write_image(photos / "x<" / "script>alert(3)<.jpg", photo_like(30, 40, seed=1))
    write_image(photos / "<img src=x onerror=alert(1)>.jpg", photo_like(30, 40, seed=2))
    jpeg_with_exif(photos / "exif.jpg", photo_like(30, 40, seed=3), make="</script><script>alert(2)</script>")
    (photos / "\"'><svg onload=alert(1)>.png").write_bytes(b"<html>not an image</html>")
    out = tmp_path / "out"
    assert runner.invoke(app, ["scan", str(photos), "--out", str(out), "--model", "baseline", "--no-regions",
                               "-q", "--overlays"], catch_exceptions=False).exit_code == 0
    page = tmp_path / "page.html"
    res = runner.invoke(app, ["report", str(out), "--html", str(page), "--title", HOSTILE_TEXT[0]],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    html = page.read_text(encoding="utf-8")
    # No "<" of the data reaches the page raw (inside the JSON it is \u003c, inside text &lt;).
    for needle in HOSTILE_TEXT[:3] + ["</script><script>alert(2)", "x</script>alert(3)", "<img src=x",
                                       "<svg onload"]:
        assert needle not in html, f"raw {needle!r} in the page"
    # The page has exactly the script elements its template has, whatever the data.
    assert len(re.findall(r"<script\b", html, re.I)) == len(re.findall(r"</script>", html, re.I))
    # And the data is all there, intact, once decoded.
    blobs = re.findall(r"<script[^>]*application/json[^>]*>(.*?)</script>", html, re.S | re.I)
    assert blobs, "the page data is embedded as JSON"
    decoded = json.dumps([json.loads(b) for b in blobs], ensure_ascii=False)
    for name in ["x</script>alert(3)<.jpg", "<img src=x onerror=alert(1)>.jpg", "\"'><svg onload=alert(1)>.png"]:
        assert json.dumps(name, ensure_ascii=False)[1:-1] in decoded, name


def test_tampered_weights_are_a_one_line_usage_error(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from conftest import photo_like, write_image
    from exposure_cli.weights import shipped_weights_dir
    from exposure_cli.cli import app

    shipped = shipped_weights_dir()
    if shipped is None:
        pytest.skip("no shipped weights in this checkout")
    bad = tmp_path / "w"
    shutil.copytree(shipped, bad)
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(data))
    write_image(tmp_path / "p" / "a.jpg", photo_like())
    res = CliRunner().invoke(app, ["scan", str(tmp_path / "p"), "--model", "eat", "--weights", str(bad),
                                   "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2
    assert "checksum mismatch" in res.output and "Traceback" not in res.output
