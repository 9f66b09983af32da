"""Builds the logic objects from the Lambda environment (clients created once per container).

Environment: JOBS_TABLE, IMPORT_BUCKET, COMPLETION_TOPIC_ARN, IDEMPOTENCY_TABLE;
STATE_MACHINE_ARN_PREFIX and VENDOR_STEMS (submit); VENDOR and SETTINGS_SECRET_ARN (vendor functions).
S3_PRESIGN_ENDPOINT is for the local runner only (presigned URLs must point at the emulated S3 there).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from .errors import SettingsError

_BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10,
                      read_timeout=60, signature_version="s3v4")


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SettingsError(f"environment variable {name} is not set (check the function's configuration)")
    return value


@cache
def client(service: str):
    return boto3.client(service, config=_BOTO_CONFIG)


@cache
def presign_client():
    endpoint = os.environ.get("S3_PRESIGN_ENDPOINT")
    if endpoint:
        return boto3.client("s3", endpoint_url=endpoint, config=_BOTO_CONFIG)
    return client("s3")


@cache
def dynamodb():
    return boto3.resource("dynamodb", config=_BOTO_CONFIG)


def store():
    from .dal.s3_layout import S3Store

    return S3Store(client("s3"), env("IMPORT_BUCKET"))


def jobs():
    from .dal.jobs_table import JobsTable

    return JobsTable(dynamodb(), env("JOBS_TABLE"))


def finalizer():
    from .dal.notifier import Notifier
    from .logic.finalize import Finalizer

    finalizer = Finalizer(store(), jobs(), Notifier(client("sns"), env("COMPLETION_TOPIC_ARN")))
    finalizer.guard = guard()
    return finalizer


def upload_router(logger=None):
    from .logic.submit_upload import UploadRouter

    return UploadRouter(sfn_client=client("stepfunctions"), s3_client=client("s3"),
                        state_machines=state_machines(), finalizer=finalizer(), logger=logger)


def state_machines(environ=os.environ) -> dict[str, str]:
    """Vendor id -> state machine ARN. template.yaml names the state machine of vendor <id> (stem <Id>,
    the id with a capital first letter, in parameter Vendors) ``<stack>-<id>-import``: its ARN is
    STATE_MACHINE_ARN_PREFIX + ``<id>-import``, for each stem in VENDOR_STEMS (comma-separated)."""
    prefix = environ.get("STATE_MACHINE_ARN_PREFIX")
    if not prefix:
        raise SettingsError("environment variable STATE_MACHINE_ARN_PREFIX is not set")
    ids = [stem.strip().lower() for stem in environ.get("VENDOR_STEMS", "").split(",") if stem.strip()]
    return {vendor: f"{prefix}{vendor}-import" for vendor in ids}


_settings_cache: dict[str, Any] = {}
_connector_cache: dict[Any, Any] = {}


def load_vendor_settings(vendor: str, secret_arn: str, target: str = "default") -> dict[str, Any]:
    """One target's settings from the vendor settings secret, validated; the same dict object while
    the secret is unchanged (so the target's connector and its cached token survive across warm
    invocations). InputError for a target the secret does not define."""
    from aws_lambda_powertools.utilities import parameters

    from .connectors import load_settings

    try:
        raw = parameters.get_secret(secret_arn, max_age=300)
    except parameters.exceptions.GetParameterError as exc:
        reason = type(exc.__cause__ or exc).__name__
        raise SettingsError(f"cannot read the {vendor} settings secret ({reason}): check that it exists") from None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    cached = _settings_cache.get((secret_arn, target))
    if cached and cached[0] == raw:
        return cached[1]
    settings = load_settings(vendor, raw, target)
    _settings_cache[(secret_arn, target)] = (raw, settings)
    return settings


def vendor_step(context=None):
    from .logic.vendor_step import VendorStep

    vendor = env("VENDOR")
    secret_arn = env("SETTINGS_SECRET_ARN")
    s3 = client("s3")

    def time_left() -> float:
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            return context.get_remaining_time_in_millis() / 1000.0
        return 600.0

    def settings_loader(target: str = "default") -> dict[str, Any]:
        return load_vendor_settings(vendor, secret_arn, target)

    step = VendorStep(vendor=vendor, settings_loader=settings_loader,
                      s3_client=s3, store=store(), jobs=jobs(), time_left=time_left,
                      connector_cache=_connector_cache, guard=guard())
    step.breaker = breaker(step.guard)
    step.presign_s3 = presign_client()
    return step


def guard():
    """The vendor guard over the jobs table (logic/guard.py); DescribeExecution finds holders whose
    execution ended without releasing."""
    from .dal.guard_table import GuardTable
    from .logic.guard import Guard, describer

    return Guard(GuardTable(dynamodb().Table(env("JOBS_TABLE"))), describer(client("stepfunctions")))


def breaker(the_guard):
    """The per-target circuit breaker; its PAUSED / RESUMED messages go to the completion topic."""
    from .logic.guard import Breaker, sns_announcer

    topic = os.environ.get("COMPLETION_TOPIC_ARN")
    return Breaker(the_guard, sns_announcer(client("sns"), topic) if topic else None)
