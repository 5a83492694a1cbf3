"""Command line: parsing and dispatch only; each command group lives in its own module.

``daemon``: check, run, sim, demo. ``rules``: rules test/explain, replay, samples.
``desk``: tickets, silence, report, oncall. The work itself is done by library modules
(``monitord.daemon.runner``, ``monitord.tools.*``); these modules read options and print.

Exit status: 0 fine, 2 configuration problem (nothing started), 1 anything else.
Logging goes to stderr as text or JSON lines (``--log-format``); pymodbus's own
loggers stay at CRITICAL (WARNING with ``--log-level debug``) so they never print frames.
"""

from __future__ import annotations

import argparse
import sys

from monitord import __version__
from monitord.core.errors import ConfigError, MonitordError
from monitord.core.logs import FORMATS, LEVELS, setup_logging
from monitord.tools.cli import daemon, desk, rules


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="monitord", description="Equipment monitoring and alerting for buildings"
    )
    p.add_argument("--version", action="version", version=f"monitord {__version__}")
    p.add_argument("--log-level", choices=LEVELS, default="info", help="least severe log level shown (info)")
    p.add_argument(
        "-v", "--verbose", dest="log_level", action="store_const", const="debug", help="--log-level debug"
    )
    p.add_argument(
        "--log-format", choices=FORMATS, default="text", help="text lines, or one JSON object per line (text)"
    )
    sub = p.add_subparsers(dest="command", required=True)
    daemon.add_parsers(sub)
    rules.add_parsers(sub)
    desk.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        code: int = args.fn(args)
        return code
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    except MonitordError as exc:
        print(f"monitord: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
