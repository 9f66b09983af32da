"""CloudWatch metrics per vendor (embedded metric format, through powertools Metrics).

Namespace: POWERTOOLS_METRICS_NAMESPACE (``S3VendorImport`` in the template); dimensions
``service`` (POWERTOOLS_SERVICE_NAME, added by powertools) and ``vendor`` (the set the alarms
watch), and a second dimension set {service, vendor, target}: the same values per vendor target
(EMF lets one document name several dimension sets; each is its own metric in CloudWatch:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).

- ImportsStarted (submit function): an upload started an execution.
- ImportsSucceeded, ImportsSucceededWithRejects, ImportsFailed, ImportsTimedOut, ImportsValidated:
  an import ended (once: emitted when its SNS message is published, by finalize, or by the
  submit function for a bad upload that never got an execution).
- RecordsSent: records sent to the vendor (counts.sent, else counts.records; absent for HOPEX
  and dry runs), RecordsRefused: records the vendor refused (counts.rejected, else rejects.rows).
- Polls (Count) and DurationSeconds (Seconds, execution start to status record).

Each import's metrics are flushed as one EMF document right away (a submit batch may hold uploads
of several vendors; the vendor dimension is per document). A metrics problem never fails an import.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

_log = logging.getLogger(__name__)

STATE_METRICS = {
    "SUCCEEDED": "ImportsSucceeded",
    "SUCCEEDED_WITH_REJECTS": "ImportsSucceededWithRejects",
    "FAILED": "ImportsFailed",
    "TIMED_OUT": "ImportsTimedOut",
    "VALIDATED": "ImportsValidated",
}
METRIC_NAMES = ("ImportsStarted", *STATE_METRICS.values(), "RecordsSent", "RecordsRefused", "Polls",
                "DurationSeconds")


def ended_values(record: dict[str, Any]) -> list[tuple[str, MetricUnit, float]]:
    """The metrics of one ended import, from its status record: [(name, unit, value)]."""
    values: list[tuple[str, MetricUnit, float]] = []
    name = STATE_METRICS.get(str(record.get("state")))
    if name:
        values.append((name, MetricUnit.Count, 1))
    counts = record.get("counts") or {}
    if not record.get("dry_run"):  # a dry run sends nothing and nobody refuses anything
        sent = _number(counts.get("sent", counts.get("records")))
        if sent is not None:
            values.append(("RecordsSent", MetricUnit.Count, sent))
        refused = _number(counts.get("rejected", (record.get("rejects") or {}).get("rows")))
        if refused is not None:
            values.append(("RecordsRefused", MetricUnit.Count, refused))
    polls = _number(record.get("polls"))
    if polls is not None:
        values.append(("Polls", MetricUnit.Count, polls))
    duration = _number(record.get("duration_seconds"))
    if duration is not None:
        values.append(("DurationSeconds", MetricUnit.Seconds, duration))
    return values


def import_started(metrics, vendor: str, target: str = "default") -> None:
    emit(metrics, vendor, [("ImportsStarted", MetricUnit.Count, 1)], target)


def import_ended(metrics, record: dict[str, Any]) -> None:
    emit(metrics, str(record.get("vendor") or "unknown"), ended_values(record),
         str(record.get("target") or "default"))


def emit(metrics, vendor: str, values: list[tuple[str, MetricUnit, float]], target: str = "default") -> None:
    """One EMF document, printed now, with two dimension sets: {service, vendor} (what the alarms
    watch) and {service, vendor, target}."""
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    if metrics is None or not values:
        return
    try:
        if is_metrics_disabled():
            return  # powertools would keep adding to its (process-wide) set without ever printing
        metrics.add_dimension(name="vendor", value=vendor)
        for name, unit, value in values:
            metrics.add_metric(name=name, unit=unit, value=value)
        print(json.dumps(with_target_set(metrics.serialize_metric_set(), target), separators=(",", ":")))
    except Exception as exc:  # noqa: BLE001 - a metric is never a reason to fail an import
        _log.warning("metrics for %s not emitted: %s", vendor, exc)
    finally:
        try:
            metrics.clear_metrics()
        except Exception:  # noqa: BLE001
            pass


def with_target_set(document: dict[str, Any], target: str) -> dict[str, Any]:
    """An EMF document of powertools with a second dimension set: each existing set plus ``target``
    (powertools writes one set only)."""
    for directive in document["_aws"]["CloudWatchMetrics"]:
        directive["Dimensions"] += [[*dims, "target"] for dims in list(directive["Dimensions"])]
    document["target"] = target
    return document


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
