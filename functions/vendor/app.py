"""Vendor function (deployed once per vendor): the Submit and Poll steps of the state machine.

Submit is idempotent per execution and per vendor-guard check (powertools idempotency): a retried
Submit step returns the first answer instead of submitting the file to the vendor twice.
Logs: JSON, correlation id = the job id (the execution name), key ``vendor``.
"""

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from vendor_import import wiring
from vendor_import.observability import route_library_logs
from vendor_import.scrub import ScrubFilter

logger = Logger()
logger.addFilter(ScrubFilter())
route_library_logs(logger)
tracer = Tracer(patch_modules=("botocore", "requests"))  # only what we call: cold start counts
# one submit per execution and per check: a Submit again after "Wait in queue" (the vendor guard)
# or after a continuation is a new step, a retried attempt of the same step is not
idempotency_config = IdempotencyConfig(
    event_key_jmespath="[execution_name, input.job.execution.index, input.job.execution.polls]",
    expires_after_seconds=7 * 86400)
_submit_once = None


def submit_once(event: dict, context=None) -> dict:
    """Built on the first submit, not at import: the persistence layer creates a DynamoDB client
    (~0.1 s) that polls never need."""
    global _submit_once
    if _submit_once is None:
        persistence = DynamoDBPersistenceLayer(table_name=os.environ.get("IDEMPOTENCY_TABLE", "idempotency"))

        @idempotent_function(data_keyword_argument="event", persistence_store=persistence,
                             config=idempotency_config)
        def run_once(event: dict, context=None) -> dict:
            return wiring.vendor_step(context).run(event)

        _submit_once = run_once
    return _submit_once(event=event, context=context)


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
def lambda_handler(event, context):
    logger.append_keys(vendor=os.environ.get("VENDOR"))
    if event.get("action") == "submit":
        idempotency_config.register_lambda_context(context)
        job = submit_once(event=event, context=context)
    else:
        job = wiring.vendor_step(context).run(event)
    logger.info("vendor step", extra={"action": event.get("action"), "done": job.get("done"),
                                      "state": job.get("state"), "polls": job.get("polls"),
                                      "wait_seconds": job.get("wait_seconds")})
    return job
