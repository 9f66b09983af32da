"""One local pipeline (the real template in moto, the real handlers in-process) and one HOPEX
simulator for every e2e test: deploying takes seconds, an import a fraction of one.

The pipeline is package-scoped: it lives while the e2e tests run and is stopped before any other
test package runs, so unit tests never share its moto state or its environment variables.
Tests keep apart by using their own S3 keys; the simulator and the settings are reset per test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.simulators import SIMULATORS, simulator_class
from local.simulators.hopex import CLIENT_SECRET, PASSWORD, HopexSimulator

ROOT = Path(__file__).resolve().parents[2]
HOPEX_FILES = ROOT / "events" / "files" / "hopex"


@pytest.fixture(scope="package")
def hopex_sim():
    with HopexSimulator() as sim:
        yield sim


@pytest.fixture(scope="package")
def pipe(hopex_sim, tmp_path_factory):
    from local.runner import LocalPipeline

    with LocalPipeline(settings={"hopex": hopex_sim.settings()}, simulators={"hopex": hopex_sim},
                       out_dir=tmp_path_factory.mktemp("e2e-out"), execution_timeout=60) as pipeline:
        pipeline.issued_tokens = set()  # every token the simulator ever issued (secret checks)
        yield pipeline


@pytest.fixture(scope="package")
def started_sims(hopex_sim):
    """Every vendor's simulator (found by module name, local/simulators/<vendor>.py), started once for
    the e2e package."""
    started = {v: simulator_class(v)().start() for v in SIMULATORS if v != "hopex"}
    yield {"hopex": hopex_sim, **started}
    for sim in started.values():
        sim.stop()


@pytest.fixture(autouse=True)
def closed_circuits(request):
    """Each e2e test starts with every target's vendor guard as new (no slot held, nobody queued,
    no failure counted by the circuit breaker, no shared-rate lease): one test's failures must not
    pause the target of the next. Only for tests that use the package's pipeline."""
    if "pipe" not in request.fixturenames:
        return
    table = request.getfixturevalue("pipe").table
    scan = {"ProjectionExpression": "job_id"}
    while True:
        page = table.scan(**scan)
        for item in page.get("Items", []):
            if str(item["job_id"]).startswith(("guard#", "rate#")):
                table.delete_item(Key={"job_id": item["job_id"]})
        if "LastEvaluatedKey" not in page:
            return
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.fixture
def sims(pipe, started_sims):
    """The shared simulators, each vendor's settings in the pipeline pointing at its own: a module
    that ran its own servers (and stopped them) cannot leave a later test talking to a dead port."""
    for vendor, sim in started_sims.items():
        if pipe.settings.get(vendor) != sim.settings():
            pipe.set_settings(vendor, sim.settings())
    yield started_sims


@pytest.fixture
def vendor_sim(request, pipe, sims):
    """The simulator of one vendor, with its own settings in the pipeline before and after the test.
    The vendor: ``request.param`` (``@pytest.mark.parametrize("vendor_sim", [...], indirect=True)``)
    or the test module's ``VENDOR``."""
    vendor = getattr(request, "param", None) or request.module.VENDOR
    sim = sims[vendor]

    def restore_settings():
        if pipe.settings.get(vendor) != sim.settings():
            pipe.set_settings(vendor, sim.settings())

    restore_settings()
    yield sim
    restore_settings()


class Harness:
    """What one e2e test needs: unique keys, imports, and the one-outcome checks."""

    def __init__(self, pipe, sim: HopexSimulator, name: str):
        self.pipe = pipe
        self.sim = sim
        self.name = re.sub(r"[^A-Za-z0-9_-]+", "-", name)[:60]
        self.vendor_function = pipe.deployment.functions["HopexFunction"]
        self.submit_function = pipe.submit_function
        self.finalize_function = pipe.finalize_function
        self._first_invocation = len(pipe.lambdas.invocations)

    def key(self, suffix: str = ".mgl", *, vendor: str = "hopex", segments: str = "") -> str:
        return f"inbox/{vendor}/{segments}{self.name}{suffix}"

    def sample(self, name: str) -> bytes:
        return (HOPEX_FILES / name).read_bytes()

    def put_without_event(self, key: str, body: bytes) -> dict[str, Any]:
        """Upload as a console user would before starting by hand: the upload's own queue
        message is dropped, so only the console start imports it."""
        put = self.pipe.s3.put_object(Bucket=self.pipe.bucket, Key=key, Body=body)
        self.drop_messages(self.pipe.queue_url)
        return put

    def drop_messages(self, queue_url: str) -> int:
        """Delete what waits in a queue (PurgeQueue is allowed once a minute only)."""
        dropped = 0
        while True:
            msgs = self.pipe.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return dropped
            for m in msgs:
                self.pipe.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
                dropped += 1

    def import_status_gets(self) -> list:
        return [r for r in self.sim.requests_to("/import/job/", "GET") if not r.path.endswith("/rejects")]

    def invocations(self, function: str, action: str | None = None) -> list[dict[str, Any]]:
        return [i for i in self.pipe.lambdas.invocations[self._first_invocation:]
                if i["function"] == function and (action is None or i["action"] == action)]

    # -- outcome checks ---------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        from vendor_import.dal.jobs_table import _from_dynamo

        items = self.pipe.table.scan(ConsistentRead=True)["Items"]
        return [_from_dynamo(i) for i in items if "finished_at" in i]

    def status_documents(self) -> list[dict[str, Any]]:
        s3, bucket = self.pipe.s3, self.pipe.bucket
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="status/")
                for o in page.get("Contents", [])]
        return [json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]

    def messages(self) -> list[dict[str, Any]]:
        return list(self.pipe.drain_messages())

    def one_outcome(self, *, job_id: str | None = None, key: str | None = None):
        """Exactly one status record, one status JSON and one SNS message for this job (or for
        this upload key); they agree with each other. Returns (record, message)."""
        def mine(doc):  # (the vendor guard's items and PAUSED / RESUMED messages name no import)
            if "job_id" not in doc or str(doc["job_id"]).startswith("guard#"):
                return False
            return (job_id is None or doc["job_id"] == job_id) and (key is None or doc["source"]["key"] == key)

        records = [r for r in self.records() if mine(r)]
        documents = [d for d in self.status_documents() if mine(d)]
        messages = [m for m in self.messages() if mine(m["body"])]
        assert len(records) == 1, records
        assert len(documents) == 1, documents
        assert len(messages) == 1, messages
        (record,), (document,), (message,) = records, documents, messages
        assert record.get("notified_at")
        assert document == message["body"] == {k: v for k, v in record.items() if k != "notified_at"}
        assert message["attributes"] == {"vendor": record["vendor"], "target": record["target"],
                                         "state": record["state"],
                                         "dry_run": str(record["dry_run"]).lower(),
                                         **({"error_type": record["error"]["type"]} if record["error"] else {})}
        return record, message

    def assert_no_secret(self, *documents: Any) -> None:
        self.pipe.issued_tokens |= set(self.sim.tokens)
        text = json.dumps(documents, default=str)
        for secret in (PASSWORD, CLIENT_SECRET, *self.pipe.issued_tokens):
            assert secret not in text


@pytest.fixture
def e2e(pipe, hopex_sim, request):
    """A clean simulator and the simulator's settings before each test (and after it)."""
    def reset():
        tokens = set(hopex_sim.tokens)
        pipe.issued_tokens |= tokens
        hopex_sim.reset()
        hopex_sim.tokens |= tokens  # a server does not forget tokens between imports
        pipe.lambdas.crash_next.clear()
        if pipe.settings.get("hopex") != hopex_sim.settings():
            pipe.set_settings("hopex", hopex_sim.settings())

    reset()
    yield Harness(pipe, hopex_sim, request.node.name)
    reset()


@pytest.fixture
def static_polling(monkeypatch):
    """The static backoff of the settings, whatever history earlier tests left in the jobs table
    (the learned pace would otherwise pick the first wait from those jobs)."""
    from vendor_import.logic.vendor_step import VendorStep

    monkeypatch.setattr(VendorStep, "_learned_pace", lambda self, *args, **kwargs: None)


@pytest.fixture
def no_wait(pipe):
    """Waits and Retry intervals take no wall time (their nominal seconds still count on the
    virtual clock); the scale the pipeline had comes back after the test."""
    from local import moto_seams

    saved = moto_seams._installed["scale"]
    moto_seams._installed["scale"] = 0.0
    yield
    moto_seams._installed["scale"] = saved
