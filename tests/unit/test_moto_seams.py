"""The local runner patches moto internals (local/moto_seams.py). moto is pinned; these
tests fail loudly, naming the seam, when an upgrade moves one of them."""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from moto.awslambda import models as lambda_models
from moto.s3 import notifications as s3_notifications
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function

from local import moto_seams

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements-dev.txt"


def params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


def test_installed_moto_is_the_pinned_version():
    pins = re.findall(r"^moto(?:\[[^\]]*\])?==(\S+)", REQUIREMENTS.read_text(), flags=re.M)
    assert len(pins) == 1, "requirements-dev.txt must pin moto with =="
    assert importlib.metadata.version("moto") == pins[0], (
        "moto is not the pinned version: re-check the seams in local/moto_seams.py, then update the pin")


def test_lambda_seam_invoke_lambda_exists_and_is_what_invoke_calls():
    assert hasattr(lambda_models.LambdaFunction, "_invoke_lambda"), "moto moved LambdaFunction._invoke_lambda"
    assert params(lambda_models.LambdaFunction._invoke_lambda)[:2] == ["self", "event"]
    assert "self._invoke_lambda(" in inspect.getsource(lambda_models.LambdaFunction.invoke), (
        "LambdaFunction.invoke no longer goes through _invoke_lambda")


def test_wait_seam_wait_interval_exists_and_is_what_wait_states_call():
    source = inspect.getsource(wait_function)
    assert re.search(r"def _wait_interval\(\s*self,\s*env[^,]*,\s*wait_seconds", source), (
        "moto moved WaitFunction._wait_interval(self, env, wait_seconds)")
    assert "self._wait_interval(" in source
    assert hasattr(wait_function.WaitFunction, "_wait_interval")


def test_retry_seam_retrier_sleeps_with_the_time_module():
    source = inspect.getsource(retrier_decl)
    assert re.search(r"^import time$", source, flags=re.M), "retrier_decl no longer imports time"
    assert "time.sleep(" in source, "retrier_decl no longer waits with time.sleep: Retry intervals would be real"


def test_start_execution_seam_normalise_parameters_is_what_the_sfn_task_calls():
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service,
        state_task_service_sfn,
    )

    assert params(state_task_service_sfn.StateTaskServiceSfn._normalise_parameters) == [
        "self", "parameters", "boto_service_name", "service_action_name"]
    assert "self._normalise_parameters(" in inspect.getsource(state_task_service), (
        "service tasks no longer go through _normalise_parameters")
    assert "boto_client_for(" in inspect.getsource(state_task_service_sfn.StateTaskServiceSfn._eval_service_task)


def test_s3_event_seam_get_s3_event_exists_and_is_what_notifications_use():
    assert params(s3_notifications._get_s3_event) == ["event_name", "bucket", "key", "notification_id"]
    source = inspect.getsource(s3_notifications.send_event)
    assert "_get_s3_event(" in source, "S3 notifications no longer go through _get_s3_event"


@pytest.fixture
def installed():
    """Install the patches with a recording lambdas object; the next LocalPipeline re-installs its own."""
    class Recorder:
        def __init__(self):
            self.calls = []

        def invoke(self, fn, event):
            self.calls.append((fn, event))
            return '{"ok": true}', False, ""

    previous = dict(moto_seams._installed)
    recorder = Recorder()
    moto_seams.install(recorder, 0.001)
    yield recorder
    if "lambdas" in previous:
        moto_seams.install(previous["lambdas"], previous["scale"])


def test_install_routes_lambda_invocations_in_process(installed):
    fn = object.__new__(lambda_models.LambdaFunction)
    assert fn._invoke_lambda(event='{"a": 1}') == ('{"ok": true}', False, "")
    assert installed.calls == [(fn, '{"a": 1}')]


def test_install_scales_retry_sleeps(installed):
    started = time.perf_counter()
    retrier_decl.time.sleep(100)  # 100 s at scale 0.001
    assert time.perf_counter() - started < 5
    assert retrier_decl.time.monotonic() > 0  # the rest of the time module is untouched


def test_install_scales_wait_states(installed):
    class Event:
        def __init__(self):
            self.waited = None

        def wait(self, seconds):
            self.waited = seconds

    class Env:
        program_state_event = Event()

    env = Env()
    wait_function.WaitFunction._wait_interval(None, env, 300)
    assert env.program_state_event.waited == pytest.approx(0.3)


def test_install_adds_version_id_and_sequencer_to_s3_events(installed):
    class Bucket:
        name = "b"
        arn = "arn:aws:s3:::b"
        region_name = "us-east-1"
        is_versioned = True

    class Key:
        name = "inbox/hopex/a b.mgl"
        size = 3
        etag = '"abc"'
        version_id = "v-123"

    first = s3_notifications._get_s3_event("s3:ObjectCreated:Put", Bucket(), Key(), "n")["Records"][0]["s3"]["object"]
    second = s3_notifications._get_s3_event("s3:ObjectCreated:Put", Bucket(), Key(), "n")["Records"][0]["s3"]["object"]
    assert first["versionId"] == "v-123"
    assert first["eTag"] == "abc" and first["size"] == 3
    assert first["sequencer"] < second["sequencer"]

    Bucket.is_versioned = False
    Key.version_id = "null"
    unversioned = s3_notifications._get_s3_event("s3:ObjectCreated:Put", Bucket(), Key(), "n")
    assert "versionId" not in unversioned["Records"][0]["s3"]["object"]


# -- the seams that only save time (5-7): what moto does must stay the same ------------------------

def test_batch_package_runs_its_init_only_when_used():
    """Seam 5, in a fresh interpreter: the Step Functions interpreter imports without moto's EC2,
    and moto.batch still gives its backends (its real __init__ runs on first use)."""
    code = "\n".join([
        "import sys",
        "import local.moto_seams",
        "from moto.stepfunctions.parser.models import StepFunctionsParserBackend",
        "print('ec2 before', 'moto.ec2' in sys.modules)",
        "from moto.batch import batch_backends",
        "print('backends', type(batch_backends).__name__)",
        "print('ec2 after', 'moto.ec2' in sys.modules)",
        "from moto.backends import get_backend",
        "print('same', get_backend('batch') is batch_backends)",
    ])
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120,
                         env={**os.environ, "PYTHONPATH": f"{root}:{root / 'layers' / 'common'}"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:4] == ["ec2 before False", "backends BackendDict", "ec2 after True", "same True"]


VALID_ASL = '{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}'
OTHER_VALID_ASL = '{"StartAt": "B", "States": {"B": {"Type": "Succeed"}}}'
INVALID_ASL = '{"StartAt": "A", "States": {"A": {"Type": "Nope"}}}'


def test_asl_is_parsed_once_per_definition_and_an_invalid_one_every_time(tmp_path, monkeypatch):
    """Seam 6: CreateStateMachine's validation is skipped for a definition this moto version already
    parsed without error; a new definition is parsed; an invalid one is refused every time."""
    from moto.stepfunctions.parser.api import InvalidDefinition
    from moto.stepfunctions.parser.asl.parse import asl_parser
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    monkeypatch.setenv("S3_VENDOR_IMPORT_CACHE", str(tmp_path))
    validate = StepFunctionsParserBackend._validate_definition
    validate(definition=VALID_ASL)
    for _ in range(2):
        with pytest.raises(InvalidDefinition):
            validate(definition=INVALID_ASL)
    assert len(list((tmp_path / "asl-valid").iterdir())) == 1  # only the valid one is remembered

    def no_parse(*_args, **_kwargs):
        raise AssertionError("parsed again")

    monkeypatch.setattr(asl_parser.AmazonStateLanguageParser, "parse", staticmethod(no_parse))
    validate(definition=VALID_ASL)  # remembered: not parsed
    with pytest.raises(InvalidDefinition, match="parsed again"):
        validate(definition=OTHER_VALID_ASL)  # another definition: parsed


def test_s3_endpoint_serves_moto_s3_and_stops():
    """Seam 7: the endpoint answers S3 calls from the same in-process moto, and stop() ends its thread."""
    import urllib.request

    server = moto_seams.s3_endpoint_server("127.0.0.1", 0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=10) as resp:
            body = resp.read()
        assert resp.status == 200 and b"ListAllMyBucketsResult" in body
    finally:
        server.stop()
    assert not server._thread.is_alive()


def test_moto_reads_its_models_through_one_loader_with_its_extras():
    """Seam 8: one Loader for moto's model reads, still moto's own (it merges the moto-extras)."""
    from moto.core import loaders as moto_loaders
    from moto.core import utils as moto_utils

    first, second = moto_utils.create_loader(), moto_utils.create_loader()
    assert first is second
    assert isinstance(first, moto_loaders.Loader) and first.BUILTIN_EXTRAS_TYPES == ["moto"]


def test_only_endpoint_data_is_shared_between_botocore_sessions():
    """Seam 9: the endpoint and partition data are parsed once for every Session; a service model is
    each Loader's own (each merges its own extras into it)."""
    import botocore.session

    one, two = (botocore.session.Session().get_component("data_loader") for _ in range(2))
    assert one is not two
    assert one.load_data("endpoints") is two.load_data("endpoints")
    assert one.load_data("partitions") is two.load_data("partitions")
    assert one.load_service_model("sqs", "service-2") is not two.load_service_model("sqs", "service-2")
    assert one.load_service_model("sqs", "service-2") == two.load_service_model("sqs", "service-2")


def test_kms_key_pairs_are_made_on_first_use_and_still_sign_and_verify():
    """Seam 10: CreateKey makes no key pair; Sign/Verify/GetPublicKey use one made then, of the key's spec."""
    import boto3
    from moto import mock_aws
    from moto.kms import models as kms_models

    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        symmetric = kms.create_key()["KeyMetadata"]["KeyId"]
        signing = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]["KeyId"]
        backend = kms_models.kms_backends["123456789012"]["us-east-1"]
        assert backend.keys[symmetric].private_key._key is None
        assert backend.keys[signing].private_key._key is None
        signature = kms.sign(KeyId=signing, Message=b"m", SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")["Signature"]
        assert kms.verify(KeyId=signing, Message=b"m", Signature=signature,
                          SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")["SignatureValid"] is True
        assert backend.keys[signing].private_key._key is not None
        assert kms.get_public_key(KeyId=signing)["PublicKey"].startswith(b"0\x82")  # DER, an RSA key
        assert backend.keys[symmetric].private_key._key is None  # never used: never made


def test_response_classes_list_their_methods_once_and_still_dispatch():
    """Seam 11: the method names of a response class are listed once; calls still reach their method."""
    import boto3
    from moto import mock_aws
    from moto.core import responses as moto_responses
    from moto.sqs.responses import SQSResponse

    assert moto_responses.method_names_from_class(SQSResponse) is moto_responses.method_names_from_class(SQSResponse)
    assert "create_queue" in moto_responses.method_names_from_class(SQSResponse)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        assert sqs.list_queues()["QueueUrls"] == [url]


def test_service_folders_are_listed_once_per_search_path(monkeypatch):
    """Seam 12: a new botocore Session's Loader reuses the listing of the service folders (a copy)."""
    import botocore.session

    first = botocore.session.Session().get_component("data_loader").list_available_services("service-2")
    assert {"s3", "sqs", "stepfunctions"} <= set(first)

    def no_listing(path):
        raise AssertionError(f"listed {path} again")

    monkeypatch.setattr(os, "listdir", no_listing)
    second = botocore.session.Session().get_component("data_loader").list_available_services("service-2")
    assert second == first and second is not first


def test_sns_subscriptions_sign_with_one_key_pair_per_process_and_every_message_is_still_signed():
    """Seam 13: a queue subscribed to a topic gets each message signed, with its own certificate;
    the key pair behind the signatures is made once per process, not once per subscription."""
    import base64

    import boto3
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.x509 import load_pem_x509_certificate
    from moto import mock_aws
    from moto.sns import models as sns_models

    with mock_aws():
        sns, sqs = (boto3.client(n, region_name="us-east-1") for n in ("sns", "sqs"))
        topic = sns.create_topic(Name="t")["TopicArn"]
        envelopes = []
        for name in ("a", "b"):
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
            envelopes.append(url)
        sns.publish(TopicArn=topic, Message="hello")
        bodies = [json.loads(sqs.receive_message(QueueUrl=u)["Messages"][0]["Body"]) for u in envelopes]
        backend = sns_models.sns_backends["123456789012"]["us-east-1"]
        subscriptions = list(backend.subscriptions.values())
        assert len(subscriptions) == 2 and subscriptions[0].private_key() is subscriptions[1].private_key()
        certificates = set()
        for body in bodies:
            assert body["SignatureVersion"] == "2" and body["Message"] == "hello"
            pem = backend._message_public_keys[body["SigningCertURL"].rsplit("/", 1)[-1]]
            certificates.add(pem)
            signed = "".join(f"{k}\n{body[k]}\n" for k in ("Message", "MessageId", "Timestamp", "TopicArn", "Type"))
            load_pem_x509_certificate(pem).public_key().verify(  # raises InvalidSignature if it does not match
                base64.b64decode(body["Signature"]), signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        assert len(certificates) == 2
