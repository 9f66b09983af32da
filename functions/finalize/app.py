"""Finalize function: rejects, status record (DynamoDB + S3) and the SNS message.

Called by the state machine's last state, and by EventBridge when an execution ended without
reaching it (execution timeout, abort): every import gets exactly one status record.
"""

from aws_lambda_powertools import Logger, Tracer
from vendor_import import wiring
from vendor_import.scrub import ScrubFilter

logger = Logger()
logger.addFilter(ScrubFilter())
tracer = Tracer()


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
def lambda_handler(event, context):
    finalizer = wiring.finalizer()
    if event.get("detail-type") == "Step Functions Execution Status Change":
        return finalizer.from_execution_event(event)
    return finalizer.from_state(event)
