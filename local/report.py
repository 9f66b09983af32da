"""What the CLI commands share: text tables, the one-import report, the settings a run uses.

Imported by both ``local/cli.py`` (run, start, demo) and ``local/operator.py`` (list, show,
rejects, resubmit), so neither imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HEADER = ["file", "vendor", "final state", "records", "rejects", "status and rejects in", "duration"]


def table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned columns, a dashed rule under the header."""
    from vendor_import.scrub import neutralise

    # a file name with line breaks or ANSI escapes must not forge rows or colours
    rows = [[neutralise(c) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def result_row(result, expect: str | None = None) -> list[str]:
    """One ImportResult (local/runner.py) as a row under HEADER (+ "expected" when given)."""
    rec = result.record or {}
    counts = rec.get("counts") or {}
    rejects = rec.get("rejects") or {}
    records = counts.get("records", counts.get("sent", counts.get("accepted", "")))
    # the rows of the rejects file: refused, UNCONFIRMED and NOT_SENT records alike
    n_rej = rejects["rows"] if rejects.get("rows") is not None else counts.get("rejected", "")
    where = str(result.status_path.parent) if result.status_path else (rec.get("status_uri") or "-")
    row = [result.key.rsplit("/", 1)[-1][:40], result.vendor, result.state, str(records), str(n_rej),
           where, f"{result.seconds:.2f}s"]
    if expect is not None:
        row.append("ok" if result.state == expect else f"EXPECTED {expect}")
    return row


def result_json(result) -> dict[str, Any]:
    """One ImportResult as JSON: the status record plus where the runner copied it."""
    return {"key": result.key, "vendor": result.vendor, "state": result.state, "ok": result.ok,
            "seconds": round(result.seconds, 3), "record": result.record,
            "status_path": str(result.status_path) if result.status_path else None,
            "rejects_paths": [str(p) for p in result.rejects_paths]}


def report(result, as_json: bool = False) -> int:
    """Print one import's outcome; exit code 0 when it ended well, else 1."""
    if as_json:
        print(json.dumps(result_json(result), indent=2, default=str))
        return 0 if result.ok else 1
    print(table([result_row(result)], HEADER))
    rec = result.record or {}
    print(f"\nstate: {result.state}\nmessage: {rec.get('message', '')}")
    if rec.get("error"):
        print(f"error: {rec['error'].get('type')}: {rec['error'].get('message')}")
    if result.status_path:
        print(f"status: {result.status_path}")
    for p in result.rejects_paths:
        print(f"rejects: {p}")
    return 0 if result.ok else 1


def settings_for(args, vendor: str) -> tuple[dict[str, Any], Any]:
    """(settings, started simulator or None) from ``--simulator`` or ``--settings FILE``.
    Raises SystemExit(str) for a usage problem (the CLI exits 2)."""
    if args.simulator:
        from .simulators import simulator_class

        sim = simulator_class(vendor)().start()
        return sim.settings(), sim
    if not args.settings:
        raise SystemExit("give --settings FILE (your vendor settings JSON) or --simulator")
    path = Path(args.settings)
    if not path.is_file():
        raise SystemExit(f"settings file {path} does not exist")
    try:
        return json.loads(path.read_text()), None
    except ValueError as exc:
        raise SystemExit(f"settings file {path} is not valid JSON: {exc}") from None
