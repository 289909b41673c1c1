"""`radiod audit LOG…`: the command line (options, exit codes, one-line errors)."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from radiod.audit.auditor import audit_paths
from radiod.audit.model import parse_ts
from radiod.audit.reader import LogReadError
from radiod.audit.render import render_human, render_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `radiod audit` options: LOG…, --json, --since, --until."""
    parser.add_argument(
        "logs", nargs="+", metavar="LOG", help="JSON log file, plain or .gz; '-' for stdin"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report")
    parser.add_argument(
        "--since", type=_cli_time, metavar="TIME", help="ignore lines before this ISO-8601 time"
    )
    parser.add_argument(
        "--until", type=_cli_time, metavar="TIME", help="ignore lines from this ISO-8601 time on"
    )


def run(args: argparse.Namespace, stdout: TextIO) -> int:
    """Audit `args.logs`; 0 clean, 1 when a split session was found, 2 unreadable input."""
    since, until = args.since, args.until
    if since is not None and until is not None and until <= since:
        print("radiod audit: error: --until must be later than --since", file=sys.stderr)
        return 2
    try:
        report = audit_paths(args.logs, since=since, until=until)
    except LogReadError as exc:
        print(f"radiod audit: error: {exc}", file=sys.stderr)
        return 2
    stdout.write(render_json(report) if args.json else render_human(report))
    return report.exit_code


def _cli_time(text: str) -> int:
    us = parse_ts(text)
    if us is None:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}")
    return us
