"""Finalize function: rejects, status record (DynamoDB + S3) and the SNS message.

Called by the state machine's last state, and by EventBridge when an execution ended without
reaching it (execution timeout, abort): every import gets exactly one status record.
Logs: JSON, correlation id = the job id (the execution name). Metrics: one set per ended import.
"""

from functools import partial

from aws_lambda_powertools import Logger, Metrics, Tracer
from vendor_import import metrics as import_metrics
from vendor_import import wiring
from vendor_import.observability import route_library_logs
from vendor_import.scrub import ScrubFilter

logger = Logger()
logger.addFilter(ScrubFilter())
route_library_logs(logger)
tracer = Tracer(patch_modules=("botocore",))  # only what we call: cold start counts
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path="execution_name || detail.name")
@tracer.capture_lambda_handler
def lambda_handler(event, context):
    finalizer = wiring.finalizer()
    finalizer.notifier.on_published = partial(import_metrics.import_ended, metrics)
    if event.get("detail-type") == "Step Functions Execution Status Change":
        record = finalizer.from_execution_event(event)
    else:
        record = finalizer.from_state(event)
    if record:
        logger.info("import finalized", extra={"vendor": record.get("vendor"), "state": record.get("state")})
    return record
