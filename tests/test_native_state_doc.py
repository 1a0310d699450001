"""docs/native-state.md names every rule of the validator registry (so it cannot go stale)."""

from __future__ import annotations

from pathlib import Path

from safeload._validators import _RULES, SHADOWING_RULE

DOC = Path(__file__).resolve().parent.parent / "docs" / "native-state.md"


def test_every_rule_is_documented() -> None:
    text = DOC.read_text()
    missing = [r.type_name for r in (*_RULES, SHADOWING_RULE) if f"| `{r.type_name}`" not in text]
    assert not missing, f"rules missing from {DOC.name}: {missing}"


def test_doc_names_no_rule_that_does_not_exist() -> None:
    """Every type row of the per-type table is a registry rule (no stale rows)."""
    text = DOC.read_text().split("## Per type", 1)[1].split("##", 1)[0]
    rows = [line.split("`")[1] for line in text.splitlines() if line.startswith("| `")]
    names = {r.type_name for r in _RULES}
    assert rows and set(rows) <= names, sorted(set(rows) - names)
