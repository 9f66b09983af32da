"""Logging set-up shared by the handlers: every line of a job is JSON with its correlation id.

The handlers log through a powertools Logger (JSON, correlation id = the job id). In Lambda, the
library's own loggers (vendor_import.*, and urllib3/requests, which log retries) are routed to the
same handler, so their lines are JSON with the same correlation id too, and scrubbed.
"""

from __future__ import annotations

import logging
import os

LIBRARY_LOGGERS = {"vendor_import", "urllib3", "requests"}


def in_lambda() -> bool:
    return os.environ.get("AWS_EXECUTION_ENV", "").startswith("AWS_Lambda_")


def route_library_logs(logger, *, force: bool = False) -> bool:
    """Send the library's log records through ``logger``'s JSON handler (in Lambda only, unless
    forced: the local runner hosts every function in one process and leaves Python's logging alone)."""
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    from .scrub import ScrubFilter

    if not (force or in_lambda()):
        return False
    for handler in logger.handlers:  # a handler filter sees the records of every copied logger
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name)  # registered, so powertools finds it
    copy_config_to_registered_loggers(source_logger=logger, include=LIBRARY_LOGGERS)
    return True
