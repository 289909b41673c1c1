"""`radiod audit`: find split sessions, untagged lines and orphans in radiod's JSON logs.

One job a module, in the order a log passes through them:
- `model`: event kinds, timestamps, and the report's values (the `--json` schema);
- `reader`: the streaming byte-level prefilter and parser → a frozen `ReadLog`;
- `replay`: one handler per event kind → channel intervals → an `AuditReport`;
- `render`: the human report, one function per section, and the JSON document;
- `auditor`: the library entry points (`LogAuditor`, `audit_lines`, `audit_paths`);
- `cli`: the `radiod audit` options and exit codes.
"""

from radiod.audit.auditor import LogAuditor, audit_lines, audit_paths
from radiod.audit.cli import add_arguments, run
from radiod.audit.model import (
    AuditReport,
    EventsWithoutAudio,
    LineNote,
    LiveOnlySplit,
    Location,
    SessionWithoutAudio,
    SharedSession,
    SplitIncident,
    Summary,
    format_ts,
    parse_ts,
)
from radiod.audit.reader import LogReadError
from radiod.audit.render import render_human, render_json

__all__ = [
    "AuditReport",
    "EventsWithoutAudio",
    "LineNote",
    "LiveOnlySplit",
    "Location",
    "LogAuditor",
    "LogReadError",
    "SessionWithoutAudio",
    "SharedSession",
    "SplitIncident",
    "Summary",
    "add_arguments",
    "audit_lines",
    "audit_paths",
    "format_ts",
    "parse_ts",
    "render_human",
    "render_json",
    "run",
]
