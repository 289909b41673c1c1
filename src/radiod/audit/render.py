"""An `AuditReport` as text: the human report, one function per section, or the JSON document."""

from __future__ import annotations

import orjson

from radiod.audit.model import EXAMPLES, AuditReport, Location, format_ts


def render_json(report: AuditReport) -> str:
    """The `--json` document, indented, with a final newline."""
    return orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"


def render_human(report: AuditReport) -> str:
    """The default report: worst first (splits, untagged, orphans), then the summary."""
    splits = len(report.splits) + len(report.live_only_splits)
    verdict = "clean" if report.clean else f"{splits} split session(s)"
    out = [f"radiod audit: {verdict}"]
    out += _splits(report)
    out += _live_only_splits(report)
    out += _untagged(report)
    out += _orphans(report)
    out += _summary(report)
    return "\n".join(out) + "\n"


def _splits(report: AuditReport) -> list[str]:
    if not report.splits:
        return []
    rows = [["client", "audio session", "events session", "from", "to", "s", "live", "at"]]
    for x in report.splits:
        rows.append(
            [
                x.client_id,
                x.audio_session_id,
                x.events_session_id,
                format_ts(x.start) or "",
                ("open at end" if x.ongoing else format_ts(x.end)) or "",
                f"{x.seconds:.1f}",
                "yes" if x.live_detected else "NO",
                f"audio {_where(x.audio_connect)}, events {_where(x.events_connect)}",
            ]
        )
    return ["", f"SPLIT SESSIONS ({len(report.splits)})", *_table(rows)]


def _live_only_splits(report: AuditReport) -> list[str]:
    if not report.live_only_splits:
        return []
    rows = [["client", "audio session", "events session", "first", "count", "at"]]
    for x in report.live_only_splits:
        rows.append(
            [
                x.client_id or "?",
                x.audio_session_id or "?",
                x.events_session_id or "?",
                format_ts(x.ts) or "",
                str(x.count),
                str(x.at),
            ]
        )
    title = f"LOGGED LIVE BUT NOT RECONSTRUCTED ({len(report.live_only_splits)})"
    return ["", title, *_table(rows)]


def _untagged(report: AuditReport) -> list[str]:
    if not report.untagged_count:
        return []
    missing = ", ".join(f"no {k} {v}" for k, v in sorted(report.untagged_missing.items()))
    groups = list(report.untagged_by_event.items())[:EXAMPLES]
    examples = [
        [str(x.at), _short(x.event or "", 60), "missing " + x.problem]
        for x in report.untagged_examples
    ]
    return [
        "",
        f"UNTAGGED LINES ({report.untagged_count}: {missing})",
        *_table([[f"{n} x", event] for event, n in groups]),
        "  e.g.",
        *_table(examples, indent="    "),
    ]


def _orphans(report: AuditReport) -> list[str]:
    if not report.sessions_without_audio and not report.events_without_audio:
        return []
    out = ["", "ORPHANS"]
    if report.sessions_without_audio:
        out.append(f"  sessions never attached to audio: {len(report.sessions_without_audio)}")
        rows = [
            [
                x.session_id,
                f"client {x.client_id or '?'}",
                f"created {format_ts(x.created)}",
                str(x.at),
                "events attached" if x.events_attached else "no events",
            ]
            for x in report.sessions_without_audio[:EXAMPLES]
        ]
        out += _table(rows, indent="    ")
    if report.events_without_audio:
        out.append(
            f"  event channels on sessions no audio used: {len(report.events_without_audio)}"
        )
        rows = [
            [
                x.session_id,
                f"client {','.join(x.client_ids) or '?'}",
                f"{x.connections} connection(s)",
                f"first {format_ts(x.first_connect)}",
                _where(x.at),
            ]
            for x in report.events_without_audio[:EXAMPLES]
        ]
        out += _table(rows, indent="    ")
    return out


def _summary(report: AuditReport) -> list[str]:
    s = report.summary
    window = f"{format_ts(s.first_ts) or '-'} .. {format_ts(s.last_ts) or '-'}"
    if report.since is not None or report.until is not None:
        window += f"  (window {format_ts(report.since) or '…'} .. {format_ts(report.until) or '…'})"
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(report.skipped_by_reason.items()))
    restarts_logged = f", {s.restarts_logged} logged" if s.restarts_logged else ""
    rows = [
        ["log", window],
        ["lines", str(s.lines)],
        ["sessions created", str(s.sessions)],
        ["clients", str(s.clients)],
        ["listeners (audio)", str(s.listeners)],
        ["event connections", str(s.event_connections)],
        ["restarts", f"{s.restarts} inferred{restarts_logged}"],
        [
            "splits",
            f"{s.splits} found, {s.live_splits} also logged live, "
            f"{s.live_only_splits} only logged live",
        ],
        ["untagged lines", str(s.untagged)],
        [
            "orphans",
            f"{s.sessions_without_audio} sessions without audio, "
            f"{s.events_without_audio} events-only sessions",
        ],
        ["skipped lines", f"{s.skipped_lines}" + (f" ({skipped})" if skipped else "")],
    ]
    out = ["", "SUMMARY", *_table(rows)]
    if report.skipped_examples:
        examples = ", ".join(f"{x.at} {x.problem}" for x in report.skipped_examples)
        out.append(f"  skipped e.g. {examples}")
    return out


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Rows as left-aligned columns two spaces apart, trailing spaces trimmed."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _where(loc: Location | None) -> str:
    return str(loc) if loc is not None else "(before log)"
