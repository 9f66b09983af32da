"""Submit function: S3 upload events from the queue -> one vendor state machine execution each.

Partial batch failures: a message that fails (e.g. throttled StartExecution) is retried by SQS,
then lands in the dead-letter queue; a bad upload is not a failure, it gets a FAILED status.
"""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from vendor_import import wiring
from vendor_import.scrub import ScrubFilter

logger = Logger()
logger.addFilter(ScrubFilter())
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record):
    for outcome in wiring.upload_router(logger).handle_message_body(record.body):
        logger.info("upload routed", extra={"key": outcome.key, "action": outcome.action,
                                            "job_id": outcome.job_id, "detail": outcome.detail})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
