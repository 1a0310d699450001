"""Build script for the optional compiled parts; all metadata lives in pyproject.toml.

* ``safeload._speedups`` (C): counts vocabulary runs for the opcode walker.
* the opcode walker (``safeload._walker``, its simulated values ``_simulated`` and static
  mirrors ``_mirrors``, the hash-cost model ``_hashwork`` and key hashes ``_keyhash``)
  compiled by mypyc (a memory-safe compiler: the generated C keeps Python semantics, bounds
  and type checks) when mypyc is available; 1.6-2.4x faster on
  opcode-dense streams. Both are optional: without a C compiler, or with
  ``SAFELOAD_PURE_PYTHON=1``, the same module runs as plain Python with the same verdicts
  (tests/test_compiled_walker.py holds the two to the same walks). After editing one of
  them, ``pip install -e .`` compiles them again (the test fails otherwise).
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

#: Compiled together (the walker's classes and the mirrors' are native to one another).
COMPILED = ("safeload/_hashwork.py", "safeload/_keyhash.py", "safeload/_simulated.py", "safeload/_mirrors.py", "safeload/_walker.py")

ext_modules: list[Extension] = [Extension("safeload._speedups", ["safeload/_speedups.c"], optional=True)]

if not os.environ.get("SAFELOAD_PURE_PYTHON"):
    try:
        from mypyc.build import mypycify
    except ImportError:  # no mypyc in the build environment: plain Python
        pass
    else:
        try:
            compiled = mypycify(list(COMPILED), opt_level="3", group_name="safeload._walker")
        except Exception as exc:  # noqa: BLE001 - a failed compile must not fail the install
            print(f"safeload: mypyc compilation skipped ({exc})")
        else:
            for ext in compiled:
                ext.optional = True  # a C compiler that fails leaves the pure-Python modules in place
            ext_modules += compiled

setup(ext_modules=ext_modules)
