"""Vendor function (deployed once per vendor): the Submit and Poll steps of the state machine.

Submit is idempotent per execution (powertools idempotency): a retried Submit step returns the
first answer instead of submitting the file to the vendor twice.
"""

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from vendor_import import wiring
from vendor_import.scrub import ScrubFilter

logger = Logger()
logger.addFilter(ScrubFilter())
tracer = Tracer()
idempotency_config = IdempotencyConfig(event_key_jmespath="execution_name", expires_after_seconds=7 * 86400)
persistence = DynamoDBPersistenceLayer(table_name=os.environ.get("IDEMPOTENCY_TABLE", "idempotency"))


@idempotent_function(data_keyword_argument="event", persistence_store=persistence, config=idempotency_config)
def submit_once(event: dict, context=None) -> dict:
    return wiring.vendor_step(context).run(event)


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
def lambda_handler(event, context):
    if event.get("action") == "submit":
        idempotency_config.register_lambda_context(context)
        return submit_once(event=event, context=context)
    return wiring.vendor_step(context).run(event)
