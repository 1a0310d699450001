"""The shadowing allowance (safeload/_validators/_shadow_data.py) is what the zoo produces."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import gen_shadow_keys  # noqa: E402


def test_shadow_data_is_current(zoo_store: Any) -> None:
    """Regenerating from the zoo gives the checked-in module byte for byte."""
    text = gen_shadow_keys.render(gen_shadow_keys.census(gen_shadow_keys.zoo_objects()))
    assert gen_shadow_keys.DATA.read_text() == text, "stale: run python tools/gen_shadow_keys.py"


def test_census_sees_a_shadowing_key() -> None:
    class Model:
        kind = "a"

        def predict(self) -> None: ...

    m = Model()
    m.kind = "b"  # a real instance that overrides a class constant
    found = gen_shadow_keys.census([{"m": m}])
    assert found == {f"{Model.__module__}.{Model.__qualname__}": {"kind"}}


@pytest.mark.parametrize("key", ["predict", "kind"])
def test_unknown_class_with_shadowing_key_is_refused(key: str) -> None:
    from safeload._errors import UnsafeModelError
    from safeload._validate import validate

    class Model:
        kind = "a"

        def predict(self) -> None: ...

    m = Model()
    m.__dict__[key] = 0
    with pytest.raises(UnsafeModelError) as info:
        validate([m])
    assert info.value.path == f"[0].{key}"
