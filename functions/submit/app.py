"""Submit function: S3 upload events from the queue -> one vendor state machine execution each.

Partial batch failures: a message that fails (e.g. throttled StartExecution) is retried by SQS,
then lands in the dead-letter queue; a bad upload is not a failure, it gets a FAILED status.
Logs: JSON; while a record is handled its job id is the correlation id. Metrics: ImportsStarted
per vendor, and the ended-import metrics of bad uploads (they end here).
"""

import json
from contextlib import contextmanager
from functools import partial

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from vendor_import import metrics as import_metrics
from vendor_import import wiring
from vendor_import.logic.routing import decode_event_key, execution_name
from vendor_import.observability import route_library_logs
from vendor_import.scrub import ScrubFilter

logger = Logger()
logger.addFilter(ScrubFilter())
route_library_logs(logger)
tracer = Tracer(patch_modules=("botocore",))  # only what we call: cold start counts
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


def job_ids(body: str) -> list[str]:
    """The job ids (execution names) of the uploads in one queue message, as the router names them."""
    try:
        records = json.loads(body).get("Records") or []
        return [execution_name(r["s3"]["bucket"]["name"], decode_event_key(r["s3"]["object"]["key"]),
                               r["s3"]["object"].get("versionId") or r["s3"]["object"].get("eTag")
                               or r["s3"]["object"].get("sequencer"))
                for r in records]
    except (ValueError, AttributeError, KeyError, TypeError):
        return []  # the router reports what is wrong with the message


@contextmanager
def correlated(job_id: str | None):
    logger.set_correlation_id(job_id)
    try:
        yield
    finally:
        logger.set_correlation_id(None)


def record_handler(record):
    router = wiring.upload_router(logger)
    router.finalizer.notifier.on_published = partial(import_metrics.import_ended, metrics)
    ids = job_ids(record.body)
    with correlated(ids[0] if len(ids) == 1 else None):
        for outcome in router.handle_message_body(record.body):
            if outcome.action == "started":
                import_metrics.import_started(metrics, outcome.key.split("/")[1], outcome.target)
            logger.info("upload routed", extra={"key": outcome.key, "action": outcome.action,
                                                "job_id": outcome.job_id, "detail": outcome.detail})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
