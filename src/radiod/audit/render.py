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
    out += _listener_view(report)
    out += _summary(report)
    return "\n".join(out) + "\n"


def _splits(report: AuditReport) -> list[str]:
    if not report.splits:
        return []
    rows = [["client", "audio session", "events session", "from", "to", "s", "live", "at"]]
    for split in report.splits:
        rows.append(
            [
                split.client_id,
                split.audio_session_id,
                split.events_session_id,
                format_ts(split.start) or "",
                ("open at end" if split.ongoing else format_ts(split.end)) or "",
                f"{split.seconds:.1f}",
                "yes" if split.live_detected else "NO",
                f"audio {_where(split.audio_connect)}, events {_where(split.events_connect)}",
            ]
        )
    return ["", f"SPLIT SESSIONS ({len(report.splits)})", *_table(rows)]


def _live_only_splits(report: AuditReport) -> list[str]:
    if not report.live_only_splits:
        return []
    rows = [["client", "audio session", "events session", "first", "count", "at"]]
    for split in report.live_only_splits:
        rows.append(
            [
                split.client_id or "?",
                split.audio_session_id or "?",
                split.events_session_id or "?",
                format_ts(split.ts) or "",
                str(split.count),
                str(split.at),
            ]
        )
    title = f"LOGGED LIVE BUT NOT RECONSTRUCTED ({len(report.live_only_splits)})"
    return ["", title, *_table(rows)]


def _untagged(report: AuditReport) -> list[str]:
    if not report.untagged_count:
        return []
    missing = ", ".join(f"no {tag} {n}" for tag, n in sorted(report.untagged_missing.items()))
    groups = list(report.untagged_by_event.items())[:EXAMPLES]
    examples = [
        [str(note.at), _short(note.event or "", 60), "missing " + note.problem]
        for note in report.untagged_examples
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
                orphan.session_id,
                f"client {orphan.client_id or '?'}",
                f"created {format_ts(orphan.created)}",
                str(orphan.at),
                "events attached" if orphan.events_attached else "no events",
            ]
            for orphan in report.sessions_without_audio[:EXAMPLES]
        ]
        out += _table(rows, indent="    ")
    if report.events_without_audio:
        out.append(
            f"  event channels on sessions no audio used: {len(report.events_without_audio)}"
        )
        rows = [
            [
                orphan.session_id,
                f"client {','.join(orphan.client_ids) or '?'}",
                f"{orphan.connections} connection(s)",
                f"first {format_ts(orphan.first_connect)}",
                _where(orphan.at),
            ]
            for orphan in report.events_without_audio[:EXAMPLES]
        ]
        out += _table(rows, indent="    ")
    return out


def _listener_view(report: AuditReport) -> list[str]:
    """Per session: what listeners reported beside what the server did; disagreements first."""
    views = report.listener_view
    if not views:
        return []
    disagree = sum(1 for view in views if view.disagreement is not None)
    rows = [["session", "clients", "stalls", "buffering", "restarts", "server saw", "verdict"]]
    for view in views:
        client, server = view.client, view.server
        reasons = ", ".join(f"{reason} {n}" for reason, n in client.restart_reasons.items())
        rows.append(
            [
                view.session_id,
                str(client.clients),
                str(client.stalls),
                f"{client.buffering_seconds:.1f} s",
                f"{client.restarts}" + (f" ({reasons})" if reasons else ""),
                f"{server.skips} skips ({server.skipped_seconds:.1f} s), "
                f"{server.audio_drops} drops, "
                f"{server.pipeline_failures + server.session_failures} mixer failures",
                view.disagreement or "agree",
            ]
        )
    title = f"LISTENER VIEW ({len(views)} session(s), {disagree} disagree)"
    return ["", title, *_table(rows)]


def _summary(report: AuditReport) -> list[str]:
    summary = report.summary
    window = f"{format_ts(summary.first_ts) or '-'} .. {format_ts(summary.last_ts) or '-'}"
    if report.since is not None or report.until is not None:
        window += f"  (window {format_ts(report.since) or '…'} .. {format_ts(report.until) or '…'})"
    skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(report.skipped_by_reason.items()))
    restarts_logged = f", {summary.restarts_logged} logged" if summary.restarts_logged else ""
    rows = [
        ["log", window],
        ["lines", str(summary.lines)],
        ["sessions created", str(summary.sessions)],
        ["clients", str(summary.clients)],
        ["listeners (audio)", str(summary.listeners)],
        ["event connections", str(summary.event_connections)],
        ["restarts", f"{summary.restarts} inferred{restarts_logged}"],
        [
            "shared sessions",
            f"{summary.shared_sessions} (one station on several devices or players: no split)",
        ],
        [
            "splits",
            f"{summary.splits} found, {summary.live_splits} also logged live, "
            f"{summary.live_only_splits} only logged live",
        ],
        ["untagged lines", str(summary.untagged)],
        [
            "orphans",
            f"{summary.sessions_without_audio} sessions without audio, "
            f"{summary.events_without_audio} events-only sessions",
        ],
        ["skipped lines", f"{summary.skipped_lines}" + (f" ({skipped})" if skipped else "")],
    ]
    out = ["", "SUMMARY", *_table(rows)]
    if report.skipped_examples:
        examples = ", ".join(f"{note.at} {note.problem}" for note in report.skipped_examples)
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
