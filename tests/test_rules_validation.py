"""Rule-file validation, error by error: every refusal of ``parse_rule_text``/``load_rule_file`` with its whole
text (file, line, field, column and message), and what an accepted file reads as.

The expected texts are the schema's messages (docs/RULES.md); the line numbers are counted in the bodies
below (line 1 is the first line of each body). ``tools/mutation.py rules-validation`` runs these tests
against mutants of ``ruleset._build``, ``_thresholds``, ``_grades``, ``_policy``, ``_Lines`` and the loaders.
"""

from __future__ import annotations

import pytest

from exposure_cli.rules import RuleError, expr, load_rule_file, parse_rule_text
from exposure_cli.rules.ruleset import DEFAULT_GRADES, MAX_DEFINES, MAX_RULE_ENTRIES, MAX_RULE_FILE_BYTES

ROW = '[[rows]]\nscore = 1\nwhen = "true"\n'
DED = '[[deductions]]\nwhen = "true"\npoints = 1\n'
NAME_HELP = "1-64 ASCII letters, digits, '-' and '_', starting with a letter or digit"


def error_of(text: str) -> str:
    with pytest.raises(RuleError) as info:
        parse_rule_text(text, file="r.toml")
    error = info.value
    assert error.file == "r.toml"
    return str(error)


@pytest.mark.parametrize("text, expected", [
    # top level
    ('name = "x"\nzzz = 1\n' + ROW, "r.toml:2, zzz: unknown key 'zzz'"),
    ('name = "x"\ndescripton = "y"\n' + ROW,
     "r.toml:2, descripton: unknown key 'descripton' (did you mean 'description', 'deductions', 'define'?)"),
    ('description = "d"\n' + ROW,
     f"r.toml, name: 'name' is required: {NAME_HELP} (it becomes the column suffix score_<name>)"),
    ('description = "d"\nname = "bad name!"\n' + ROW,
     f"r.toml:2, name: 'name' is required: {NAME_HELP} (it becomes the column suffix score_<name>)"),
    ('name = 5\n' + ROW, f"r.toml:1, name: 'name' is required: {NAME_HELP} (it becomes the column suffix score_<name>)"),
    ('name = "x"\ndescription = 5\n' + ROW, "r.toml:2, description: 'description' must be text"),
    ('name = "x"\nschema = 2\n' + ROW, "r.toml:2, schema: unsupported schema 2; this version reads schema = 1"),
    ('name = "x"\nschema = "1"\n' + ROW, "r.toml:2, schema: unsupported schema '1'; this version reads schema = 1"),
    # thresholds
    ('name = "x"\nthresholds = 5\n' + ROW,
     "r.toml:2, thresholds: 'thresholds' must be a table: [thresholds] over = 0.1 …"),
    ('name = "x"\n[[thresholds]]\nover = 0.1\n' + ROW,
     "r.toml:2, thresholds: 'thresholds' must be a table: [thresholds] over = 0.1 …"),
    ('name = "x"\n[thresholds]\novr = 0.1\n' + ROW, "r.toml:3, thresholds.ovr: unknown threshold 'ovr' (did you mean 'over'?)"),
    ('name = "x"\n[thresholds]\nundr = 0.1\n' + ROW,
     "r.toml:3, thresholds.undr: unknown threshold 'undr' (did you mean 'under'?)"),
    ('name = "x"\n[define]\nover = "1"\n[thresholds]\nover = 10\n' + ROW,
     "r.toml:5, thresholds.over: a pixel threshold is a residual size in (0, 1] (0.1 ≈ 25 grey levels), "
     "not a percentage"),
    ('name = "x"\n[thresholds]\nover = 0.2\nsevre = 0.5\n' + ROW,
     "r.toml:4, thresholds.sevre: unknown threshold 'sevre' (did you mean 'severe'?)"),
    ('name = "x"\n[thresholds]\nover = 0.2\nunder = 0\n' + ROW,
     "r.toml:4, thresholds.under: a pixel threshold is a residual size in (0, 1] (0.1 ≈ 25 grey levels), "
     "not a percentage"),
    ('name = "x"\n[thresholds]\nsevere = 1.0001\n' + ROW,
     "r.toml:3, thresholds.severe: a pixel threshold is a residual size in (0, 1] (0.1 ≈ 25 grey levels), "
     "not a percentage"),
    ('name = "x"\n[thresholds]\nover = true\n' + ROW,
     "r.toml:3, thresholds.over: a pixel threshold is a residual size in (0, 1] (0.1 ≈ 25 grey levels), "
     "not a percentage"),
    ('name = "x"\n[thresholds]\nover = "0.1"\n' + ROW,
     "r.toml:3, thresholds.over: a pixel threshold is a residual size in (0, 1] (0.1 ≈ 25 grey levels), "
     "not a percentage"),
    # the missing-region policy, at the top and in a row
    ('name = "x"\non_missing_region = "use_globl"\n' + ROW,
     "r.toml:2, on_missing_region: on_missing_region must be one of skip, fail, use_global, use_face, "
     "use_person, use_subject, use_background, use_sky, not 'use_globl' "
     "(did you mean 'use_global', 'use_person', 'use_subject'?)"),
    ('name = "x"\n[[rows]]\nscore = 1\nwhen = "true"\non_missing_region = 3\n',
     "r.toml:5, rows[0].on_missing_region: on_missing_region must be one of skip, fail, use_global, use_face, "
     "use_person, use_subject, use_background, use_sky, not 3"),
    # grades
    ('name = "x"\n[grades]\nA = 90\nB = "seventy"\n' + ROW, "r.toml:4, grades.B: each grade is label = minimum score"),
    ('name = "x"\n[[grades]]\nmin = 90\nlabel = "A"\n[[grades]]\nmin = 70\n' + ROW,
     "r.toml:5, grades[1]: each [[grades]] entry needs min = <score> and label = \"…\""),
    ('name = "x"\n[[grades]]\nmin = "90"\nlabel = "A"\n' + ROW,
     "r.toml:2, grades[0]: each [[grades]] entry needs min = <score> and label = \"…\""),
    ('name = "x"\n[[grades]]\nmin = 90\nlabel = 1\n' + ROW,
     "r.toml:2, grades[0]: each [[grades]] entry needs min = <score> and label = \"…\""),
    ('name = "x"\ngrades = [1]\n' + ROW, "r.toml, grades[0]: each [[grades]] entry needs min = <score> and label = \"…\""),
    ('name = "x"\ngrades = 5\n' + ROW, "r.toml:2, grades: 'grades' must be a table (label = minimum score)"),
    ('name = "x"\n[grades]\n' + ROW, "r.toml:2, grades: 'grades' must name at least one grade"),
    # define
    ('name = "x"\ndefine = 5\n' + ROW, "r.toml, define: 'define' must be a table of name = \"expression\""),
    ('name = "x"\n[define]\nok = "1"\nface = "1"\n' + ROW,
     "r.toml:4, define.face: 'face' cannot be defined: use a plain name that is not a region, function or keyword"),
    ('name = "x"\n[define]\nexists = "1"\n' + ROW,
     "r.toml:3, define.exists: 'exists' cannot be defined: use a plain name that is not a region, function or keyword"),
    ('name = "x"\n[define]\nimage = "1"\n' + ROW,
     "r.toml:3, define.image: 'image' cannot be defined: use a plain name that is not a region, function or keyword"),
    ('name = "x"\n[define]\nexif = "1"\n' + ROW,
     "r.toml:3, define.exif: 'exif' cannot be defined: use a plain name that is not a region, function or keyword"),
    ('name = "x"\n[[define]]\na = "1"\n' + ROW, "r.toml:2, define: 'define' must be a table of name = \"expression\""),
    ('name = "x"\n[define]\nnot = "1"\n' + ROW,
     "r.toml:3, define.not: 'not' cannot be defined: use a plain name that is not a region, function or keyword"),
    ('name = "x"\n[define]\n9lives = "1"\n' + ROW,
     "r.toml:3, define.9lives: '9lives' cannot be defined: use a plain name that is not a region, function or keyword"),
    ('name = "x"\n[define]\nd = 5\n' + ROW, "r.toml:3, define.d: a definition must be an expression in quotes"),
    ('name = "x"\n[define]\nd = "1 +"\n' + ROW, "r.toml:3, define.d, column 4: expression ends too early"),
    ('name = "x"\n[define]\nok = "2"\nd = "face + ok"\n' + ROW,
     "r.toml:4, define.d, column 1: 'face' is a region, not a number: use a metric such as 'face.bad_pct' or "
     "exists(face)"),
    # rows or deductions
    ('name = "x"\n', "r.toml, deductions: a rule set needs either [[rows]] (a score table) or [[deductions]] "
                     "(start at 100, subtract), not neither"),
    ('name = "x"\n' + DED + ROW, "r.toml:5, rows: a rule set needs either [[rows]] (a score table) or "
                                 "[[deductions]] (start at 100, subtract), not both"),
    ('name = "x"\nrows = 5\n', "r.toml:2, rows: 'rows' must be a non-empty list of tables ([[rows]])"),
    ('name = "x"\nrows = []\n', "r.toml:2, rows: 'rows' must be a non-empty list of tables ([[rows]])"),
    ('name = "x"\ndeductions = [{when = "true", points = 1}, 2]\n',
     "r.toml:2, deductions: 'deductions' must be a non-empty list of tables ([[deductions]])"),
    # written as one table ([rows]) or a plain value (rows = 5): the error names that header or key, not
    # another table's line or none
    ('name = "x"\n[define]\nd = "1"\n[rows]\nscore = 1\nwhen = "true"\n',
     "r.toml:4, rows: 'rows' must be a non-empty list of tables ([[rows]])"),
    ('name = "x"\n[define]\nd = "1"\n[deductions]\npoints = 1\nwhen = "true"\n',
     "r.toml:4, deductions: 'deductions' must be a non-empty list of tables ([[deductions]])"),
    ('name = "x"\ndescription = "d"\ndeductions = 5\n[define]\nd = "1"\n',
     "r.toml:3, deductions: 'deductions' must be a non-empty list of tables ([[deductions]])"),
    # neither: no line, even when a key of another table is called rows
    ('name = "x"\n[define]\nrows = "1"\n', "r.toml, deductions: a rule set needs either [[rows]] (a score table) "
                                            "or [[deductions]] (start at 100, subtract), not neither"),
    ('name = "x"\n' + DED + '[rows]\nscore = 1\nwhen = "true"\n',
     "r.toml:5, rows: a rule set needs either [[rows]] (a score table) or [[deductions]] (start at 100, subtract), "
     "not both"),
    ('name = "x"\n' + DED + '[define]\nd = "1"\n[rows]\nscore = 1\n',
     "r.toml:7, rows: a rule set needs either [[rows]] (a score table) or [[deductions]] (start at 100, subtract), "
     "not both"),
    ('name = "x"\ndescription = "d"\nrows = 5\n' + DED,
     "r.toml:3, rows: a rule set needs either [[rows]] (a score table) or [[deductions]] (start at 100, subtract), "
     "not both"),
    ('name = "x"\n[define]\nd = "1"\n[deductions]\npoints = 1\n' + ROW,
     "r.toml:6, rows: a rule set needs either [[rows]] (a score table) or [[deductions]] (start at 100, subtract), "
     "not both"),
    # one entry
    ('name = "x"\n' + ROW + '[[rows]]\nscore = 1\nwhn = "true"\n',
     "r.toml:7, rows[1].whn: unknown key 'whn' (did you mean 'when'?)"),
    ('name = "x"\n' + DED + '[[deductions]]\npionts = 2\n',
     "r.toml:6, deductions[1].pionts: unknown key 'pionts' (did you mean 'points'?)"),
    ('name = "x"\n[[rows]]\nscore = 1\n',
     "r.toml:2, rows[0].when: 'when' is required: a condition in quotes, e.g. when = \"global.bad_pct < 5\""),
    ('name = "x"\n[[rows]]\nscore = 1\nwhen = true\n',
     "r.toml:4, rows[0].when: 'when' is required: a condition in quotes, e.g. when = \"global.bad_pct < 5\""),
    ('name = "x"\n[[rows]]\nscore = 1\n"when" = "global.over_pct >"\n',
     "r.toml:4, rows[0].when, column 18: expression ends too early"),
    ('name = "x"\n[[rows]]\nwhen = "global.over_pct"\nscore = 1\n',
     "r.toml:3, rows[0].when, column 1: expected a condition (true/false), but the expression is a number"),
    ('name = "x"\n[[rows]]\nscore = 1\nwhen = "true"\nlabel = 2\n', "r.toml:5, rows[0].label: 'label' must be text"),
    ('name = "x"\n[[rows]]\nwhen = "true"\n', "r.toml:2, rows[0].score: 'score' is required: a number from 0 to 100"),
    ('name = "x"\n[[rows]]\nwhen = "true"\n[[rows]]\nscore = 1\nwhen = "true"\n',
     "r.toml:2, rows[0].score: 'score' is required: a number from 0 to 100"),  # not the next row's score
    ('name = "x"\n[[rows]]\nwhen = "true"\nscore = -1\n',
     "r.toml:4, rows[0].score: 'score' is required: a number from 0 to 100"),
    ('name = "x"\n[[rows]]\nwhen = "true"\nscore = 100.5\n',
     "r.toml:4, rows[0].score: 'score' is required: a number from 0 to 100"),
    ('name = "x"\n[[rows]]\nwhen = "true"\nscore = true\n',
     "r.toml:4, rows[0].score: 'score' is required: a number from 0 to 100"),
    ('name = "x"\n[[rows]]\nwhen = "true"\nscore = nan\n',
     "r.toml:4, rows[0].score: 'score' is required: a number from 0 to 100"),
    ('name = "x"\n[[deductions]]\nwhen = "true"\n',
     "r.toml:2, deductions[0].points: 'points' is required: a number or a numeric expression in quotes"),
    ('name = "x"\n[[deductions]]\nwhen = "true"\npoints = [1]\n',
     "r.toml:4, deductions[0].points: 'points' is required: a number or a numeric expression in quotes"),
    ('name = "x"\n[[deductions]]\nwhen = "true"\npoints = "exists(face)"\n',
     "r.toml:4, deductions[0].points, column 1: expected a number, but the expression is a condition"),
    ('name = "x"\n[[deductions]]\nwhen = "true"\npoints = "2 *"\n',
     "r.toml:4, deductions[0].points, column 4: expression ends too early"),
    # otherwise
    ('name = "x"\notherwise = 5\n' + DED, "r.toml:2, otherwise: 'otherwise' belongs to score tables ([[rows]])"),
    ('name = "x"\n' + ROW + '[otherwise]\nscore = 5\nlable = "rest"\n',
     "r.toml:5, otherwise.lable: unknown key 'lable' (did you mean 'label'?)"),
    ('name = "x"\notherwise = "low"\n' + ROW,
     "r.toml:2, otherwise: 'otherwise' must be a score from 0 to 100 or {score = …, label = …}"),
    ('name = "x"\notherwise = 100.5\n' + ROW,
     "r.toml:2, otherwise: 'otherwise' must be a score from 0 to 100 or {score = …, label = …}"),
    ('name = "x"\n' + ROW + '[otherwise]\nscor = 5\n', "r.toml:5, otherwise.scor: unknown key 'scor' (did you mean 'score'?)"),
    ('name = "x"\nrows = [{score = 1, when = "true"}]\n' + DED,
     "r.toml:2, rows: a rule set needs either [[rows]] (a score table) or [[deductions]] (start at 100, subtract), "
     "not both"),
    ('name = "x"\n' + ROW + '[otherwise]\nscore = -1\n',
     "r.toml:5, otherwise: 'otherwise' must be a score from 0 to 100 or {score = …, label = …}"),
    # start and floor
    ('name = "x"\nstart = 90\n' + ROW, "r.toml:2, start: 'start' belongs to deduction rule sets ([[deductions]])"),
    ('name = "x"\nfloor = 10\n' + ROW, "r.toml:2, floor: 'floor' belongs to deduction rule sets ([[deductions]])"),
    ('name = "x"\nstart = 100.5\n' + DED, "r.toml:2, start: 'start' must be a number from 0 to 100"),
    ('name = "x"\nfloor = -1\n' + DED, "r.toml:2, floor: 'floor' must be a number from 0 to 100"),
    ('name = "x"\nfloor = "5"\n' + DED, "r.toml:2, floor: 'floor' must be a number from 0 to 100"),
    ('name = "x"\nstart = 50\nfloor = 60\n' + DED, "r.toml:3, floor: 'floor' must not exceed 'start'"),
])
def test_each_refusal_names_its_line_field_and_reason(text, expected):
    assert error_of(text) == expected


def test_toml_errors_keep_their_line():
    text = 'name = "x"\n[[rows]]\nscore = 1\nwhen = "true\n'
    message = error_of(text)
    assert message.startswith("r.toml:4: not valid TOML: ")
    # tomllib names no line for an error at the very end
    assert error_of('name = "x"\nrows = [') == "r.toml: not valid TOML: Invalid value (at end of document)"


def test_top_level_keys_and_inline_rows_without_a_line_to_point_at():
    # a file without tables: its last line is searched too, before any inline table that has the same key
    text = 'name = "x"\nrows = [{score = 1, when = "true", description = 1}]\ndescription = 5\n'
    assert error_of(text) == "r.toml:3, description: 'description' must be text"
    # a key missing from an inline row has no line of its own
    assert error_of('name = "x"\nrows = [{score = 1}]\n') == (
        "r.toml, rows[0].when: 'when' is required: a condition in quotes, e.g. when = \"global.bad_pct < 5\"")


def test_too_many_defines_and_rows_are_refused_at_their_header(monkeypatch):
    """The limits themselves (4096 names, 1000 entries) are constants; the checks are run at small ones."""
    from exposure_cli.rules import ruleset

    assert (MAX_DEFINES, MAX_RULE_ENTRIES) == (4096, 1000)
    monkeypatch.setattr(ruleset, "MAX_DEFINES", 3)
    monkeypatch.setattr(ruleset, "MAX_RULE_ENTRIES", 4)
    defines = "".join(f'd{i} = "{i}"\n' for i in range(4))
    assert error_of('name = "x"\n[define]\n' + defines + ROW) == "r.toml:2, define: at most 3 [define] names"
    ok = 'name = "x"\n[define]\n' + "".join(f'd{i} = "{i}"\n' for i in range(3)) + ROW
    assert len(parse_rule_text(ok).defines) == 3
    line = 2 + 3 * 4  # the header of the first row past the limit
    assert error_of('name = "x"\n' + ROW * 5) == f"r.toml:{line}, rows: at most 4 [[rows]] in one rule set (this one has 5)"
    assert len(parse_rule_text('name = "x"\n' + ROW * 4).conditions) == 4
    assert error_of('name = "x"\n' + DED * 6) == "r.toml:14, deductions: at most 4 [[deductions]] in one rule set (this one has 6)"


def test_oversized_and_unreadable_rule_files(tmp_path):
    big = 'name = "x"\n' + ROW + "#" * MAX_RULE_FILE_BYTES
    with pytest.raises(RuleError) as info:
        parse_rule_text(big, file="r.toml")
    assert str(info.value) == ("r.toml: rule text is longer than 1024 KB; a rule set has at most "
                               f"{MAX_RULE_ENTRIES} rows or deductions")
    path = tmp_path / "big.toml"
    path.write_text(big, encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load_rule_file(path)
    assert str(info.value) == (f"{path}: rule file is larger than 1024 KB; a rule set has at most "
                               f"{MAX_RULE_ENTRIES} rows or deductions")
    # exactly at the limit: read and parsed
    fits = 'name = "x"\n' + ROW
    fits += "#" * (MAX_RULE_FILE_BYTES - len(fits))
    path.write_text(fits, encoding="utf-8")
    assert load_rule_file(path).name == "x"
    assert parse_rule_text(fits).name == "x"
    latin = tmp_path / "latin.toml"
    latin.write_bytes('name = "café"\n'.encode("latin-1"))
    with pytest.raises(RuleError) as info:
        load_rule_file(latin)
    assert str(info.value).startswith(f"{latin}: cannot read rule file: 'utf-8' codec can't decode")
    with pytest.raises(RuleError) as info:
        load_rule_file(tmp_path / "absent.toml")
    assert str(info.value).startswith(f"{tmp_path / 'absent.toml'}: cannot read rule file: [Errno 2]")


def test_origin_and_source_of_loaded_files(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n' + ROW, encoding="utf-8")
    assert load_rule_file(path).origin == f"file {path}"
    assert load_rule_file(path).source == str(path)
    assert load_rule_file(str(path), origin="plugin p").origin == "plugin p"
    rule_set = parse_rule_text('name = "t"\n' + ROW)
    assert (rule_set.origin, rule_set.source) == ("text", "<rules>")
    with pytest.raises(RuleError) as info:
        parse_rule_text('name = "t"\nzzz = 1\n' + ROW)
    assert str(info.value) == "<rules>:2, zzz: unknown key 'zzz'"


def test_what_an_accepted_table_reads_as():
    rule_set = parse_rule_text(
        'name = "tab"\ndescription = "d"\nschema = 1\non_missing_region = "fail"\n'
        '[thresholds]\nover = 1\nunder = 0.05\n'
        '[grades]\nC = 50\nA = 90.5\nB = 70\n'
        '[define]\nspread = "global.p95_residual - global.p05_residual"\n'
        '[[rows]]\nscore = 100\nwhen = "face.bad_pct < 2 and spread < 0.3"\nlabel = "good"\n'
        '[[rows]]\nscore = 0\nwhen = "exists(sky) or known(exif.iso)"\non_missing_region = "use_subject"\n'
        '[otherwise]\nscore = 40\nlabel = "rest"\n')
    assert (rule_set.name, rule_set.description, rule_set.mode) == ("tab", "d", "table")
    assert rule_set.thresholds == {"over": 1.0, "under": 0.05}
    assert all(type(v) is float for v in rule_set.thresholds.values())
    assert rule_set.grades == ((90.5, "A"), (70.0, "B"), (50.0, "C"))
    assert rule_set.on_missing == "fail"
    assert rule_set.define_sources == {"spread": "global.p95_residual - global.p05_residual"}
    assert set(rule_set.defines) == {"spread"}
    first, second = rule_set.conditions
    assert (first.index, first.field, first.when_source, first.label, first.on_missing, first.line, first.score) == (
        0, "rows[0]", "face.bad_pct < 2 and spread < 0.3", "good", "fail", 16, 100.0)
    assert first.regions == ("global", "face")  # through the define; in REGIONS order
    assert first.when == expr.parse(first.when_source)
    assert (second.index, second.field, second.label, second.on_missing, second.line, second.score) == (
        1, "rows[1]", "", "use_subject", 20, 0.0)
    assert second.regions == ()  # exists() reads no metric; exif is no region
    assert (rule_set.otherwise_score, rule_set.otherwise_label) == (40.0, "rest")
    assert (rule_set.start, rule_set.floor) == (100.0, 0.0)
    bare = parse_rule_text('name = "b"\n' + ROW)
    assert (bare.otherwise_score, bare.otherwise_label) == (0.0, "")
    unlabelled = parse_rule_text('name = "b"\n' + ROW + '[otherwise]\nscore = 5\n')
    assert (unlabelled.otherwise_score, unlabelled.otherwise_label) == (5.0, "")
    plain = parse_rule_text('name = "p"\notherwise = 20\n' + ROW)
    assert (plain.otherwise_score, plain.otherwise_label, plain.on_missing, plain.thresholds) == (20.0, "", "skip", {})
    assert plain.grades == DEFAULT_GRADES
    labelled = parse_rule_text('name = "p"\n' + ROW + '[otherwise]\nlabel = "low"\n')
    assert (labelled.otherwise_score, labelled.otherwise_label) == (0.0, "low")
    listed = parse_rule_text('name = "p"\n[[grades]]\nmin = 60\nlabel = "pass"\n[[grades]]\nmin = 95\nlabel = "top"\n' + ROW)
    assert listed.grades == ((95.0, "top"), (60.0, "pass"))
    edges = parse_rule_text('name = "p"\n[[rows]]\nscore = 0\nwhen = "true"\n[otherwise]\nscore = 100\n')
    assert (edges.conditions[0].score, edges.otherwise_score) == (0.0, 100.0)


def test_what_accepted_deductions_read_as():
    rule_set = parse_rule_text(
        'name = "ded"\nstart = 80\nfloor = 80\n'
        '[[deductions]]\nwhen = "sky.over_pct > 5"\npoints = 2.5\n'
        '[[deductions]]\nwhen = "true"\npoints = "background.bad_pct / 2"\nlabel = "bg"\n'
        '[[deductions]]\nwhen = "global.over_pct > 1"\npoints = 7\n')
    assert (rule_set.mode, rule_set.start, rule_set.floor, rule_set.description) == ("deductions", 80.0, 80.0, "")
    first, second, third = rule_set.conditions
    assert (first.field, first.line, first.points_source, first.regions) == ("deductions[0]", 5, "2.5", ("sky",))
    assert (first.points.value, first.score) == (2.5, None)
    assert (second.field, second.line, second.points_source, second.label) == (
        "deductions[1]", 8, "background.bad_pct / 2", "bg")
    assert second.regions == ("background",)  # read by the points, not by the condition
    assert third.points_source == "7" and third.points.value == 7.0
    # the regions a deduction reads: its condition's and its points', through defines
    both = parse_rule_text('name = "b"\n[define]\nskyish = "sky.over_pct * 2"\n'
                           '[[deductions]]\nwhen = "face.bad_pct > 1"\npoints = "skyish"\n')
    assert both.conditions[0].regions == ("face", "sky")
    zero = parse_rule_text('name = "z"\nstart = 0\nfloor = 0\n' + DED)
    assert (zero.start, zero.floor) == (0.0, 0.0)
    top = parse_rule_text('name = "z"\nstart = 100\nfloor = 100\n' + DED)
    assert (top.start, top.floor) == (100.0, 100.0)


def test_lines_are_found_through_comments_quotes_and_inline_tables():
    text = ('# a comment\nname = "x"   # trailing\n'
            '[ define ]  # spaced header\n  "q" = "1 +"\n' + ROW)
    assert error_of(text) == "r.toml:4, define.q, column 4: expression ends too early"
    text = 'name = "x"\n[[rows]]\nscore = 1\nwhen = "true"\n\n[[ rows ]] # second\n  label = 3\nscore = 1\nwhen = "true"\n'
    assert error_of(text) == "r.toml:7, rows[1].label: 'label' must be text"
    # a key that only appears inside an inline table is found on its line
    text = 'name = "x"\nrows = [{score = 1, when = "true"}, {score = 1, when = "true", label = 2}]\n'
    assert error_of(text) == "r.toml:2, rows[1].label: 'label' must be text"
    text = 'name = "x"\nthresholds = {over = 2}\n' + ROW
    assert error_of(text) == ("r.toml:2, thresholds.over: a pixel threshold is a residual size in (0, 1] (0.1 ≈ 25 "
                              "grey levels), not a percentage")


def test_expansion_limits_and_deep_recursion_are_reported_where_the_expression_is(monkeypatch):
    monkeypatch.setattr(expr, "MAX_EXPANDED_NODES", 10)
    text = ('name = "x"\n[define]\nd0 = "global.over_pct"\nd1 = "d0 + d0"\nd2 = "d1 + d1"\nd3 = "d2 + d2"\n'
            + ROW)
    assert error_of(text) == ("r.toml:6, define.d3, column 4: expression is too large with its definitions expanded "
                              "(15 elements, 4 levels deep; at most 10 and 200)")
    text = 'name = "x"\n[define]\nd0 = "global.over_pct"\nd1 = "d0 + d0"\nd2 = "d1 + d1"\n[[rows]]\nscore = 1\nwhen = "d2 + d2 > 1"\n'
    assert error_of(text) == ("r.toml:8, rows[0].when, column 9: expression is too large with its definitions "
                              "expanded (17 elements, 5 levels deep; at most 10 and 200)")

    def too_deep(*args, **kwargs):
        raise RecursionError

    monkeypatch.setattr(expr, "check", too_deep)
    assert error_of('name = "x"\n' + ROW) == "r.toml:4, rows[0].when: expression is nested too deeply (through its definitions)"


def test_a_grade_error_points_into_the_grades_table_not_at_a_define_of_that_name():
    text = 'name = "x"\n[define]\nB = "1"\n[grades]\nA = 90\nB = "seventy"\n' + ROW
    assert error_of(text) == "r.toml:6, grades.B: each grade is label = minimum score"


def test_a_rule_file_is_read_with_a_bound(tmp_path, monkeypatch):
    """At most the size limit + 1 bytes are read, whatever the file's size (a rule path may name a huge or
    endless file)."""
    from exposure_cli.rules import ruleset

    asked = []

    class Endless:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n=-1):
            asked.append(n)
            assert n is not None and n >= 0, "an unbounded read"
            return b"#" * n

    monkeypatch.setattr(ruleset, "open", lambda path, mode: Endless(), raising=False)
    with pytest.raises(RuleError) as info:
        load_rule_file(tmp_path / "endless.toml")
    assert str(info.value).startswith(f"{tmp_path / 'endless.toml'}: rule file is larger than 1024 KB")
    assert asked == [MAX_RULE_FILE_BYTES + 1]


def test_a_rule_set_built_directly_has_the_documented_defaults():
    from exposure_cli.rules.ruleset import TomlRuleSet

    rule_set = TomlRuleSet(name="d", description="", mode="table", conditions=[], thresholds={},
                           grades=DEFAULT_GRADES, defines={}, define_sources={}, on_missing="skip")
    assert (rule_set.otherwise_score, rule_set.otherwise_label, rule_set.start, rule_set.floor) == (0.0, "", 100.0, 0.0)
    assert (rule_set.source, rule_set.origin) == ("", "built-in")


@pytest.mark.parametrize("text, expected", [
    # a define whose name is also a key elsewhere: the line is the define's
    ('name = "x"\n[[rows]]\nscore = 1\nwhen = "true"\nlabel = "a"\n[define]\nlabel = "1 +"\n',
     "r.toml:7, define.label, column 4: expression ends too early"),
    ('name = "x"\n[[rows]]\nscore = 1\nwhen = "true"\nlabel = "a"\n[define]\nlabel = "face"\n',
     "r.toml:7, define.label, column 1: 'face' is a region, not a number: use a metric such as 'face.bad_pct' or "
     "exists(face)"),
    # an unknown key of a row that is also a define's name
    ('name = "x"\n[define]\nwhn = "1"\n[[rows]]\nscore = 1\nwhen = "true"\nwhn = 2\n',
     "r.toml:7, rows[0].whn: unknown key 'whn' (did you mean 'when'?)"),
    # the second row's key, not the first's
    ('name = "x"\n' + ROW + 'label = "ok"\n[[rows]]\nscore = 1\nwhen = "true"\nlabel = 2\n',
     "r.toml:9, rows[1].label: 'label' must be text"),
    ('name = "x"\non_missing_region = "skip"\n' + ROW + 'on_missing_region = "fail"\n[[rows]]\nscore = 1\nwhen = "true"\n'
     'on_missing_region = "bogus"\n',
     "r.toml:10, rows[1].on_missing_region: on_missing_region must be one of skip, fail, use_global, use_face, "
     "use_person, use_subject, use_background, use_sky, not 'bogus'"),
    ('name = "x"\n' + ROW + '[[rows]]\nscore = 101\nwhen = "true"\n',
     "r.toml:6, rows[1].score: 'score' is required: a number from 0 to 100"),
    ('name = "x"\n' + DED + '[[deductions]]\nwhen = "true"\npoints = [1]\n',
     "r.toml:7, deductions[1].points: 'points' is required: a number or a numeric expression in quotes"),
    # a key missing from the first row is not looked up in the second
    ('name = "x"\n[[rows]]\nscore = 1\n[[rows]]\nscore = 1\nwhen = "true"\n',
     "r.toml:2, rows[0].when: 'when' is required: a condition in quotes, e.g. when = \"global.bad_pct < 5\""),
    # rows given as an array over several lines: the line of the key inside it
    ('name = "x"\nrows = [\n  {score = 1, when = "true"},\n  {score = 1, when = "true", label = 2},\n]\n',
     "r.toml:4, rows[1].label: 'label' must be text"),
])
def test_a_key_that_appears_in_several_places_is_found_in_its_own(text, expected):
    assert error_of(text) == expected
