"""Output formats, rendered from hand-built reports (no scanning): text, JSON, SARIF.

SARIF validation: every log is checked against a structural schema written here from
the SARIF 2.1.0 spec and GitHub's code-scanning requirements (required properties,
enumerations, ``startLine >= 1``, ``byteOffset >= 0``, rule indexes).  When the published
OASIS schema is available offline (``$SAFELOAD_SARIF_SCHEMA``, or a ``sarif-schema-2.1.0.json``
shipped by an installed package) the log is validated against it as well.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sysconfig
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeload._format import (
    display_path,
    get_renderer,
    is_failure,
    placed,
    rule_text,
    sarif,
    summarize,
    text,
)
from safeload._format import json as json_format
from safeload._report import RULES, Finding, GlobalVerdict, Location, ScanReport, Verdict

# --------------------------------------------------------------------------- SARIF validation

_MESSAGE = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "minLength": 1}}}
_LOCATION = {
    "type": "object",
    "required": ["physicalLocation"],
    "properties": {
        "physicalLocation": {
            "type": "object",
            "required": ["artifactLocation"],
            "properties": {
                "artifactLocation": {
                    "type": "object",
                    "required": ["uri"],
                    "properties": {
                        "uri": {"type": "string", "minLength": 1, "pattern": r"^[^\\]*$"},
                        "uriBaseId": {"type": "string"},
                        "index": {"type": "integer", "minimum": 0},
                    },
                },
                "region": {
                    "type": "object",
                    "required": ["startLine"],
                    "properties": {
                        "startLine": {"type": "integer", "minimum": 1},
                        "byteOffset": {"type": "integer", "minimum": 0},
                    },
                },
            },
        }
    },
}
STRUCTURAL_SARIF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["$schema", "version", "runs"],
    "properties": {
        "$schema": {"const": "https://json.schemastore.org/sarif-2.1.0.json"},
        "version": {"const": "2.1.0"},
        "runs": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "required": ["tool", "results"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name", "informationUri", "version", "rules"],
                                "properties": {
                                    "name": {"const": "safeload"},
                                    "informationUri": {"type": "string", "pattern": "^https://"},
                                    "rules": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id", "shortDescription", "fullDescription", "help",
                                                         "defaultConfiguration"],
                                            "properties": {
                                                "id": {"type": "string", "minLength": 1},
                                                "shortDescription": _MESSAGE,
                                                "fullDescription": _MESSAGE,
                                                "help": _MESSAGE,
                                                "defaultConfiguration": {
                                                    "type": "object",
                                                    "required": ["level"],
                                                    "properties": {"level": {"enum": ["error", "warning", "note"]}},
                                                },
                                                "properties": {
                                                    "type": "object",
                                                    "properties": {
                                                        "tags": {"type": "array", "items": {"type": "string"}},
                                                        "security-severity": {"type": "string",
                                                                              "pattern": r"^\d+(\.\d+)?$"},
                                                    },
                                                },
                                            },
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["ruleId", "ruleIndex", "level", "message", "locations",
                                         "partialFingerprints"],
                            "properties": {
                                "ruleId": {"type": "string"},
                                "ruleIndex": {"type": "integer", "minimum": 0},
                                "level": {"enum": ["error", "warning", "note"]},
                                "message": _MESSAGE,
                                "locations": {"type": "array", "minItems": 1, "maxItems": 10, "items": _LOCATION},
                                "partialFingerprints": {"type": "object", "additionalProperties": {"type": "string"}},
                                "properties": {"type": "object"},
                            },
                        },
                    },
                },
            },
        },
    },
}


@functools.cache
def published_sarif_schema() -> dict[str, Any] | None:
    """The OASIS SARIF 2.1.0 schema, if this machine has a copy (nothing is downloaded)."""
    candidates = []
    if os.environ.get("SAFELOAD_SARIF_SCHEMA"):
        candidates.append(Path(os.environ["SAFELOAD_SARIF_SCHEMA"]))
    candidates.append(Path(__file__).parent / "data" / "sarif-schema-2.1.0.json")
    for key in ("purelib", "platlib"):
        candidates.extend(sorted(Path(sysconfig.get_paths()[key]).rglob("sarif-schema-2.1.0*.json")))
    for path in candidates:
        if path.is_file():
            schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return schema
    return None


def assert_valid_sarif(doc: dict[str, Any]) -> None:
    """Structural + cross-reference checks, and the published schema when available."""
    jsonschema.validate(doc, STRUCTURAL_SARIF_SCHEMA)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids)), "one rule per finding kind"
    assert set(ids) == {res["ruleId"] for res in run["results"]}, "exactly the rules used"
    artifacts = run.get("artifacts", [])
    for res in run["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
        loc = res["locations"][0]["physicalLocation"]["artifactLocation"]
        if "index" in loc:
            assert artifacts[loc["index"]]["location"]["uri"] == loc["uri"]
        if "uriBaseId" in loc:
            assert loc["uriBaseId"] == "%SRCROOT%" and not loc["uri"].startswith("/")
        else:
            assert loc["uri"].startswith("file:///")
    schema = published_sarif_schema()
    if schema is not None:
        cls = jsonschema.validators.validator_for(schema)
        cls(schema, format_checker=cls.FORMAT_CHECKER).validate(doc)


# --------------------------------------------------------------------------- sample reports

ROOT = os.path.abspath("project-root")
EXEC_CODE = "from builtins import exec\n_var0 = exec('print(1)')\nresult = _var0"


def _report(name: str, verdict: str, findings: tuple[Finding, ...] = (), fmt: str = "pickle",
            globs: tuple[GlobalVerdict, ...] = (), root: str = ROOT) -> ScanReport:
    return ScanReport(os.path.join(root, *name.split("/")), fmt, verdict, findings, globs, 123, "ab" * 32)


SAFE = _report("models/ok.joblib", Verdict.SAFE, fmt="joblib",
               globs=(GlobalVerdict("numpy.dtype", True, "call", (10, 40)),))
UNSAFE = _report("models/evil model.pkl", Verdict.UNSAFE, (
    Finding("disallowed-global", "high", "global builtins.exec is not in the allowlist", ("builtins.exec",),
            Location(27), EXEC_CODE),
    Finding("call-non-global", "high", "REDUCE on a computed value", (), Location(60), EXEC_CODE),
    Finding("fickling", "info", "fickling UnsafeImports: `from builtins import exec` is suspicious"),
), globs=(GlobalVerdict("builtins.exec", False, None, (27,)),))
SKOPS = _report("models/m.skops", Verdict.UNSAFE, (
    Finding("skops-untrusted", "high", "skops schema names mypkg.models.Custom, which is not in the allowlist",
            ("mypkg.models.Custom",), Location(None, "schema.json")),
), fmt="skops")
TORCH = _report("ckpt/model.pt", Verdict.ERROR, (
    Finding("limit-memo", "medium", "memo index 4000000000 is out of range", (), Location(12, "archive/data.pkl")),
    Finding("stack-underflow", "medium", "stack underflow", (), Location(30, "archive/data.pkl")),
), fmt="torch-zip")
NPZ = _report("arrays.npz", Verdict.UNSUPPORTED, (
    Finding("unsupported", "info", "npz container: its pickles look clean, but safeload.load does not load it"),
), fmt="npz")
NOT_MODEL = _report("notes.json", Verdict.NOT_A_MODEL, (
    Finding("not-a-model", "info", "not a pickle, joblib, skops, zip or numpy file"),
), fmt="unknown")
OUTSIDE = _report("elsewhere/evil.pkl", Verdict.UNSAFE, (
    Finding("ext", "high", "EXT opcode", (), Location(5)),
), root=os.path.abspath("other-root"))
ALL = [SAFE, UNSAFE, SKOPS, TORCH, NPZ, NOT_MODEL, OUTSIDE]


# --------------------------------------------------------------------------- shared helpers


def test_display_path() -> None:
    assert display_path(os.path.join(ROOT, "a", "b.pkl"), ROOT) == "a/b.pkl"
    assert display_path(os.path.join(ROOT, "a", "..", "c.pkl"), ROOT) == "c.pkl"
    outside = display_path(os.path.abspath("x.pkl"), ROOT)
    assert os.path.isabs(outside) and "\\" not in outside


_PARTS = st.lists(st.sampled_from(["a", "b", "..", ".", "", "m.pkl", "sub dir", "é"]), max_size=5)


def _inside(path: str, root: str) -> bool:
    """Under ``root``: the commonpath of two abspaths (what SARIF asked before ``placed``), the oracle."""
    abs_path, abs_root = os.path.abspath(path), os.path.abspath(root)
    try:
        return os.path.commonpath([abs_path, abs_root]) == abs_root
    except ValueError:
        return False


@settings(max_examples=300, deadline=None)
@given(path=_PARTS, root=_PARTS, absolute_path=st.booleans(), absolute_root=st.booleans())
def test_placed_is_display_path_and_is_inside(path: list[str], root: list[str], absolute_path: bool,
                                             absolute_root: bool) -> None:
    """SARIF's one-``abspath`` ``placed`` against ``display_path`` and ``_inside``."""
    p = ("/" if absolute_path else "") + "/".join(path) or "."
    r = ("/" if absolute_root else "") + "/".join(root) or "."
    assert placed(p, r) == (display_path(p, r), _inside(p, r))


def test_failure_and_summary() -> None:
    assert [is_failure(r) for r in ALL] == [False, True, True, True, True, False, True]
    assert summarize(ALL) == {"files": 7, "safe": 1, "unsafe": 3, "error": 1, "unsupported": 1, "not_a_model": 1,
                              "no_code": 0, "not_judged": 0, "findings": 6, "failed": 5}
    # The CLI's decision wins over the verdict's (a named non-model fails; a baselined finding passes).
    assert is_failure(dataclasses.replace(NOT_MODEL, failed=True))
    assert not is_failure(dataclasses.replace(UNSAFE, failed=False))
    assert is_failure(_report("k.h5", Verdict.NOT_JUDGED, fmt="hdf5"))


def test_rule_text_covers_unknown_ids() -> None:
    assert rule_text("disallowed-global") == RULES["disallowed-global"]
    short, help_text = rule_text("some-future-rule")
    assert short and help_text


def test_get_renderer() -> None:
    assert get_renderer("text") is text.render
    assert get_renderer("json") is json_format.render
    assert get_renderer("sarif") is sarif.render
    with pytest.raises(ValueError, match="unknown output format"):
        get_renderer("xml")


# --------------------------------------------------------------------------- text


def test_text_table_and_details() -> None:
    out = text.render(ALL, ROOT)
    lines = out.splitlines()
    assert lines[0].split() == ["FILE", "FORMAT", "VERDICT", "FINDINGS"]
    row = next(line for line in lines if line.startswith("models/evil model.pkl"))
    assert row.split()[-3:] == ["pickle", "unsafe", "2"]  # info notes are not counted
    assert "models/ok.joblib:" not in out  # safe files have no details
    assert "[high] disallowed-global at byte 27: global builtins.exec is not in the allowlist" in out
    assert "[high] skops-untrusted at member schema.json:" in out
    assert "[medium] limit-memo at member archive/data.pkl, byte 12:" in out
    assert "fickling UnsafeImports" not in out  # informational notes need --explain
    assert "[info] unsupported: npz container" in out  # ...unless they are all a file has
    # builtins.exec runs code: no hint to allow it, ever; the file is called malicious instead.
    assert "--allow builtins.exec" not in out and "allow=['builtins.exec']" not in out
    assert "Do not load this file: builtins.exec would let it run code" in out
    assert "safeload scan --allow mypkg.models.Custom models/m.skops" in out
    assert "safeload.load('models/m.skops', allow=['mypkg.models.Custom'])" in out
    assert "decompiled" not in out
    assert lines[-1] == "7 files scanned: 1 safe, 3 unsafe, 1 error, 1 unsupported, 1 not a model. 5 failing."


def test_text_no_allow_hint_for_containers_load_cannot_open() -> None:
    """Allowing a name cannot make load() open a torch checkpoint, a tar or a zip: no hint there (nor in pre-commit)."""
    finding = Finding("disallowed-global", "high", "global mypkg.Net is not in the allowlist", ("mypkg.Net",),
                      Location(3, "archive/data.pkl"))
    for fmt in ("torch-zip", "torch-legacy", "tar+gzip", "zip"):
        out = text.render([_report("m.bin", Verdict.UNSAFE, (finding,), fmt=fmt)], ROOT)
        assert "--allow" not in out and "allow=[" not in out, fmt
    assert "--allow mypkg.Net" in text.render([_report("m.pkl", Verdict.UNSAFE, (finding,))], ROOT)


def test_text_explain() -> None:
    out = text.render([SAFE, UNSAFE], ROOT, explain=True)
    assert out.count("decompiled (fickling, never executed):") == 1  # shared by both findings, shown once
    assert "    _var0 = exec('print(1)')" in out
    assert "fickling UnsafeImports" in out
    assert "REFUSED  builtins.exec" in out
    assert "allowed  numpy.dtype (call)" in out


def test_text_no_hint_for_names_that_are_not_names() -> None:
    junk = _report("README", Verdict.UNSAFE, (
        Finding("disallowed-global", "high", "global mport os.print(1) is not in the allowlist",
                ("mport os.print(1)",), Location(0)),))
    assert "--allow" not in text.render([junk], ROOT)


def test_text_empty() -> None:
    assert text.render([], ROOT) == "No model files found.\n"


# --------------------------------------------------------------------------- JSON


def test_json_document() -> None:
    doc = json.loads(json_format.render(ALL, ROOT))
    assert list(doc) == ["version", "tool", "summary", "results"]
    assert doc["version"] == json_format.SCHEMA_VERSION == 1
    assert doc["summary"] == summarize(ALL)
    results = {r["path"]: r for r in doc["results"]}
    evil = results["models/evil model.pkl"]
    assert evil == {
        "path": "models/evil model.pkl", "format": "pickle", "verdict": "unsafe", "safe": False, "failed": True,
        "size": 123, "sha256": "ab" * 32,
        "findings": [  # fickling's advisory note only with --explain
            {"rule": "disallowed-global", "severity": "high", "message": "global builtins.exec is not in the allowlist",
             "names": ["builtins.exec"], "offset": 27, "member": None, "decompiled": EXEC_CODE},
            {"rule": "call-non-global", "severity": "high", "message": "REDUCE on a computed value", "names": [],
             "offset": 60, "member": None, "decompiled": EXEC_CODE},
        ],
        "globals": [{"name": "builtins.exec", "allowed": False, "kind": None, "offsets": [27], "member": None}],
    }
    assert results["models/ok.joblib"]["safe"] is True
    assert results["ckpt/model.pt"]["findings"][0]["member"] == "archive/data.pkl"
    assert any(os.path.isabs(p) for p in results)  # outside the root: absolute


def test_json_is_the_indented_document_with_one_line_per_result() -> None:
    for reports in (ALL, [SAFE], []):
        out = json_format.render(reports, ROOT)
        doc = json.loads(out)
        assert doc == json.loads(json.dumps(json_format.to_document(reports, ROOT), indent=2))
        lines = out.splitlines()
        assert lines[0] == "{" and lines[1] == '  "version": 1,' and lines[-1] == "}"
        at = lines.index('  "results": [') if reports else lines.index('  "results": []')
        rows = lines[at + 1:-2] if reports else []
        assert [json.loads(row.rstrip(",")) for row in rows] == doc["results"]


def test_json_is_ascii_and_stable() -> None:
    weird = _report("modèle\udcff.pkl", Verdict.SAFE)
    out = json_format.render([weird, SAFE], ROOT)
    out.encode("ascii")
    assert out == json_format.render([weird, SAFE], ROOT)


# --------------------------------------------------------------------------- SARIF


def test_sarif_validates() -> None:
    doc = json.loads(sarif.render(ALL, ROOT))
    assert_valid_sarif(doc)


@pytest.mark.parametrize("explain", [False, True])
def test_sarif_text_is_its_document(explain: bool) -> None:
    """Artifacts and results are written a line each by the C encoder, into the indented head."""
    for reports in (ALL, [], [SAFE], [UNSAFE]):
        rendered = sarif.render(reports, ROOT, explain=explain)
        assert json.loads(rendered) == sarif.to_document(reports, ROOT, explain=explain)
        assert "\\u0000" not in rendered


def test_sarif_empty_run_validates() -> None:
    doc = json.loads(sarif.render([], ROOT))
    assert_valid_sarif(doc)
    assert doc["runs"][0]["results"] == [] and doc["runs"][0]["tool"]["driver"]["rules"] == []


def test_sarif_content() -> None:
    from safeload import __version__

    doc = json.loads(sarif.render(ALL, ROOT))
    assert doc["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json" and doc["version"] == "2.1.0"
    run = doc["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "safeload" and driver["version"] == __version__
    rules = {r["id"]: r for r in driver["rules"]}
    # Safe files and non-models raise no alerts; refused files report every finding (fickling's only with explain).
    assert set(rules) == {"disallowed-global", "call-non-global", "skops-untrusted", "limit-memo",
                          "stack-underflow", "unsupported", "ext"}
    assert rules["disallowed-global"]["shortDescription"]["text"] == RULES["disallowed-global"][0]
    assert rules["disallowed-global"]["fullDescription"]["text"] == RULES["disallowed-global"][1]
    assert rules["disallowed-global"]["defaultConfiguration"]["level"] == "error"
    assert "external/cwe/cwe-502" in rules["disallowed-global"]["properties"]["tags"]
    assert rules["limit-memo"]["defaultConfiguration"]["level"] == "warning"
    results = run["results"]
    assert len(results) == 2 + 1 + 2 + 1 + 1

    def result_for(rule: str) -> dict[str, Any]:
        return next(r for r in results if r["ruleId"] == rule)

    evil = result_for("disallowed-global")
    location = evil["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "models/evil%20model.pkl"
    assert location["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
    assert location["region"] == {"startLine": 1, "byteOffset": 27}
    assert evil["level"] == "error" and "builtins.exec" in evil["message"]["text"]
    assert evil["properties"]["names"] == ["builtins.exec"]
    assert "decompiled" not in evil["properties"]
    skops = result_for("skops-untrusted")
    assert "byteOffset" not in skops["locations"][0]["physicalLocation"]["region"]
    assert "schema.json" in skops["message"]["text"] and skops["properties"]["member"] == "schema.json"
    memo = result_for("limit-memo")
    assert memo["level"] == "warning" and memo["properties"]["member"] == "archive/data.pkl"
    assert memo["locations"][0]["physicalLocation"]["region"]["byteOffset"] == 12
    outside = result_for("ext")["locations"][0]["physicalLocation"]["artifactLocation"]
    assert outside["uri"].startswith("file:///") and "uriBaseId" not in outside
    fingerprints = [r["partialFingerprints"]["safeloadFinding/v1"] for r in results]
    assert len(set(fingerprints)) == len(fingerprints)
    assert json.loads(sarif.render(ALL, ROOT))["runs"][0]["results"] == results  # stable across runs
    artifacts = run["artifacts"]
    assert len(artifacts) == len(ALL) and artifacts[0]["hashes"] == {"sha-256": "ab" * 32}


def test_sarif_explain_adds_decompiled_code() -> None:
    doc = json.loads(sarif.render([UNSAFE], ROOT, explain=True))
    assert_valid_sarif(doc)
    assert doc["runs"][0]["results"][0]["properties"]["decompiled"] == EXEC_CODE
    fickling = [r for r in doc["runs"][0]["results"] if r["ruleId"] == "fickling"]
    assert len(fickling) == 1 and fickling[0]["level"] == "note"


def test_findings_deduplicated_and_deciding_ones_first() -> None:
    note = Finding("fickling", "info", "fickling UnsafeImports: `from builtins import exec` is suspicious")
    high = Finding("disallowed-global", "high", "global builtins.exec is not in the allowlist", ("builtins.exec",),
                   Location(27))
    twice = _report("twice.pkl", Verdict.UNSAFE, (note, note, high, high))
    for explain in (False, True):
        doc = json.loads(json_format.render([twice], ROOT, explain=explain))
        rules = [f["rule"] for f in doc["results"][0]["findings"]]
        assert rules == (["disallowed-global", "fickling"] if explain else ["disallowed-global"])
        results = json.loads(sarif.render([twice], ROOT, explain=explain))["runs"][0]["results"]
        assert [r["ruleId"] for r in results] == rules


_NAMES = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12)


@settings(max_examples=300, deadline=None)
@given(globs=st.lists(st.tuples(_NAMES, st.booleans(), st.none() | st.sampled_from(["call", "new", "value"]) | _NAMES,
                                st.lists(st.integers(0, 2**63), max_size=4).map(tuple), st.none() | _NAMES),
                      max_size=6))
def test_json_globals_are_written_as_the_encoder_writes_them(globs: list[tuple[Any, ...]]) -> None:
    """The JSON renderer writes a result's globals itself (a store's report is mostly globals):
    byte for byte what json's encoder writes for the same dicts, for any name (quotes, control
    characters, lone surrogates, non-BMP text), and the document parses to ``to_document``."""
    report = ScanReport("m.pkl", "pickle", Verdict.SAFE, (), tuple(GlobalVerdict(*g) for g in globs), 3, "ab")
    line = json_format._line(report, ".", False)
    assert line == json_format._RESULT.encode(json_format._result(report, ".", False))
    rendered = json_format.render([report], ".")
    assert json.loads(rendered) == json.loads(json.dumps(json_format.to_document([report], ".")))
