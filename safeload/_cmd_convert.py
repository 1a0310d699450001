"""``safeload convert SRC DST``: the command-line face of ``safeload.convert``.

Exit codes follow the rest of the CLI: 0 converted and verified, 1 refused
(unsafe source, or skops cannot represent / faithfully reproduce the model),
2 usage or I/O problem.  Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

__all__ = ["register", "run"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

_DESCRIPTION = """\
Convert a pickle or joblib model into a skops file.

The source is judged statically first (nothing in an unsafe file runs), then
loaded with safeload, written with skops, loaded back and compared with the
original (parameters, fitted attributes and outputs on a probe input).  Nothing
is written unless every check passes.
"""


def register(subparsers: Any) -> None:
    """Add the ``convert`` subcommand to the CLI's subparsers (``args.func(args)`` runs it)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "convert",
        help="convert a pickle/joblib model to a verified skops file",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", help="pickle or joblib model file (any format safeload loads)")
    parser.add_argument("dst", metavar="DST", help="skops file to write")
    parser.add_argument("--force", "-f", action="store_true", help="replace DST if it exists")
    parser.add_argument(
        "--allow",
        metavar="NAME",
        action="append",
        default=[],
        help="also allow this exact global (module.qualname); repeatable; only for files you trust",
    )
    parser.add_argument("--config", metavar="FILE",
                        help="read the policy from this configuration file (default: $SAFELOAD_CONFIG or the "
                             "nearest safeload.toml / pyproject.toml [tool.safeload])")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the conversion described by ``args``; returns the exit code."""
    from safeload._config import ConfigError, load_config
    from safeload._convert import (
        ConversionError,
        DestinationError,
        RoundTripError,
        SourceError,
        UnrepresentableError,
        convert,
    )
    from safeload._errors import SafeloadError

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    allow: list[str] = list(getattr(args, "allow", None) or [])
    try:
        config = getattr(args, "config", None)
        policy = load_config(config) if config else None
        result = convert(args.src, args.dst, force=bool(getattr(args, "force", False)), allow=allow, policy=policy)
    except (SourceError, DestinationError, ConfigError) as exc:
        return _fail(err, EXIT_USAGE, exc)
    except (UnrepresentableError, RoundTripError) as exc:
        return _fail(err, EXIT_REFUSED, exc, "not converted")
    except ConversionError as exc:  # pragma: no cover - every subclass is handled above
        return _fail(err, EXIT_REFUSED, exc)
    except SafeloadError as exc:
        return _fail(err, EXIT_REFUSED, exc, "refused")
    except ValueError as exc:  # e.g. a malformed --allow name
        return _fail(err, EXIT_USAGE, exc)
    except OSError as exc:
        return _fail(err, EXIT_USAGE, exc)
    except KeyboardInterrupt:
        return _fail(err, EXIT_USAGE, "interrupted")
    verified = ", ".join(
        part for part, ok in (("parameters", result.checked_params),
                              (f"outputs of {', '.join(result.probe_methods)}", result.checked_predictions)) if ok
    ) or "structure only (no probe input fits this object)"
    print(f"converted {result.src} ({result.source_format}) -> {result.dst}", file=out)
    print(f"model: {result.estimator_type}; verified: {verified}", file=out)
    print(f"skops types in the file ({len(result.skops_types)}):", file=out)
    for name in result.skops_types:
        print(f"  {name}", file=out)
    if result.untrusted_types:
        print("plain skops.io.load needs these reviewed and passed as trusted=[...]:", file=out)
        for name in result.untrusted_types:
            print(f"  {name}", file=out)
    return EXIT_OK


def _fail(err: TextIO, code: int, exc: BaseException | str, prefix: str = "error") -> int:
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    print(f"safeload convert: {prefix}: {text}", file=err)
    return code


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m safeload._cmd_convert SRC DST [...]``), mainly for tests."""
    parser = argparse.ArgumentParser(prog="safeload")
    register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["convert", *(sys.argv[1:] if argv is None else argv)])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
