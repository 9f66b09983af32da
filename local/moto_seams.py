"""The places where the local runner reaches into moto (pinned in requirements; a test in
tests/unit/test_moto_seams.py fails loudly if an upgrade moves them):

1. ``moto.awslambda.models.LambdaFunction._invoke_lambda``: moto would start a Docker container;
   we run the real handler in-process instead (Task states, invoke calls, anything). Functions
   take turns (os.environ is process-wide), and the interpreter builds its Lambda client
   (``lambda_eval_utils.boto_client_for``, which reads os.environ) in its turn too.
2. Waits: the ASL interpreter's Wait states and Retry intervals sleep for real; we scale them
   (time_scale 0.001 turns a 300 s wait into 0.3 s) so demos and tests are fast.
3. ``moto.s3.notifications._get_s3_event``: moto's event notifications leave out the object's
   ``versionId`` and ``sequencer`` that S3 sends; without them a re-upload of the same bytes
   would look like a duplicate event (same eTag) and never be imported again.
4. ``StateTaskServiceSfn._normalise_parameters``: the ``arn:aws:states:::states:startExecution``
   task (a job continuing in a new execution) passes the ASL's parameter names (StateMachineArn,
   Name, Input, as AWS documents them) to boto3 as they are; boto3 wants stateMachineArn, name,
   input. Step Functions maps them itself; moto's port leaves that step out.

The others only save time; what moto and botocore do stays the same (README, "Performance",
"Local runner"; the figures in bench/RESULTS.md, "Issue 20b"):

5. ``moto.batch``'s package ``__init__`` runs on first use: the Step Functions interpreter imports
   ``moto.batch.utils`` for one enum, and the package ``__init__`` imports all of moto's EC2 (about
   1 s: it loads every instance type and zone). Nothing here uses Batch; if anything does, the
   first attribute read of ``moto.batch`` runs the real ``__init__``.
6. ``StepFunctionsParserBackend._validate_definition``: each ASL definition moto has already
   parsed without error, for the same moto version, is not parsed again at CreateStateMachine
   (marker files under the runner's cache folder, named by the sha256 of both). An invalid one is
   never marked, so it is refused every time; executions still parse the definition they run.
7. ``ThreadedMotoServer`` (the S3 endpoint for presigned URLs) serves with a 20 ms poll interval
   instead of werkzeug's 0.5 s, so stopping it does not wait up to half a second.
8. ``moto.core.utils.create_loader``: moto reads a service's model (with its moto-extras) through a
   new botocore Loader each time, and each new Loader lists every service folder again (~400
   stats); here moto's calls share one Loader (same search path, same extras, botocore's own cache).
9. botocore's ``endpoints`` and ``partitions`` data are parsed once per process, not once per
   botocore Session (moto's backends, X-Ray and powertools each make their own). Only these two
   read-only files: service models are not shared, since each Loader merges its own extras into them.
10. ``moto.kms.models.generate_private_key``: moto makes an RSA key pair for every KMS key, even a
   symmetric one (~50 ms of CPU each); here it is made on the first use of the key pair (Sign,
   Verify, GetPublicKey), with the same key spec.
11. ``moto.core.responses.method_names_from_class``: moto lists a response class's methods with
   ``inspect.getmembers`` on every API call (~0.5 ms each); here once per class (their methods do
   not change while the process runs).
12. botocore's ``Loader.list_available_services``: each new Loader (one per botocore Session:
   the runner's, moto's, X-Ray's, each powertools provider's) lists and stats every service
   folder again; here once per search path and type (installed packages do not change while
   the process runs). Each caller gets its own copy of the list.
13. ``moto.sns.models.Subscription.private_key``: moto makes an RSA 2048-bit key pair for each SNS
   subscription on its first delivery, to sign the message envelope (~50 ms of CPU each, paid by
   every test that subscribes a queue to a topic); here one pair per process signs for all of them.
   Each message is still signed, with a certificate of its own; nothing here checks SNS signatures.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pickle
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any


def defer_package_init(name: str) -> None:
    """Put package ``name`` in sys.modules without running its ``__init__``: its submodules import
    as usual (the package path is set), and the first attribute read that the package lacks runs
    the real ``__init__`` (PEP 562 module ``__getattr__``). No-op if it is already imported."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    module = importlib.util.module_from_spec(spec)
    lock = threading.Lock()
    running = threading.local()

    def __getattr__(attr: str) -> Any:
        if getattr(running, "init", False):  # the __init__ itself reads a name it has not set yet
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        with lock:  # another thread waits for the __init__ to finish
            if module.__dict__.get("__getattr__") is __getattr__:
                running.init = True
                try:
                    spec.loader.exec_module(module)
                finally:
                    running.init = False
                    module.__dict__.pop("__getattr__", None)
        return getattr(module, attr)

    module.__getattr__ = __getattr__
    sys.modules[name] = module


defer_package_init("moto.batch")  # seam 5: before the Step Functions interpreter is imported

import botocore.loaders as botocore_loaders  # noqa: E402
import moto.core.responses as moto_responses  # noqa: E402 - after the deferral above
import moto.core.utils as moto_utils  # noqa: E402
from moto.awslambda import models as lambda_models  # noqa: E402
from moto.kms import models as kms_models  # noqa: E402
from moto.s3 import notifications as s3_notifications  # noqa: E402
from moto.sns import models as sns_models  # noqa: E402
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_sfn  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function  # noqa: E402
from moto.stepfunctions.parser.models import StepFunctionsParserBackend  # noqa: E402

from .template_deploy import cache_dir  # noqa: E402

_invoke_lock = threading.RLock()  # os.environ is process-wide: one invocation at a time


class LambdaDied(Exception):
    """The function's process died in the middle of an invocation (timeout, out of memory, runtime
    exit). Lambda then reports no error of the code's own: Step Functions sees ``Lambda.Unknown``.
    Raise it from anywhere inside a handler (fault tests), or arm ``InProcessLambdas.die_next``."""

    error_type = "Lambda.Unknown"


class LambdaContext:
    def __init__(self, function_name: str, memory: int, timeout: float):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


_running_here = threading.local()


def current_function() -> str | None:
    """The deployed function whose handler runs in this thread, if any (local/recorder.py)."""
    return getattr(_running_here, "function", None)


class InProcessLambdas:
    """Runs each deployed function's handler from its code folder, with its environment."""

    def __init__(self, code_dirs: dict[str, tuple[Path, str]], layer_dirs: list[Path]):
        self.code_dirs = code_dirs  # function name -> (folder, handler)
        self.layer_dirs = [str(p) for p in layer_dirs]
        self.modules: dict[str, Any] = {}
        self.invocations: list[dict[str, Any]] = []
        self.crash_next: dict[str, int] = {}  # function name -> crashes to inject (fault tests)
        self.die_next: dict[str, int] = {}  # function name -> process deaths (Lambda.Unknown) to inject
        for d in self.layer_dirs:
            if d not in sys.path:
                sys.path.insert(0, d)

    def _module(self, fname: str):
        if fname not in self.modules:
            folder, handler = self.code_dirs[fname]
            mod_name = handler.rsplit(".", 1)[0]
            spec = importlib.util.spec_from_file_location(f"lambda_{fname.replace('-', '_')}_{mod_name}",
                                                          folder / f"{mod_name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self.modules[fname] = module
        return self.modules[fname]

    def invoke(self, fn, event: Any) -> tuple[str, bool, str]:
        fname = fn.function_name
        if isinstance(event, (str, bytes)):
            event = json.loads(event or "{}")
        with _invoke_lock:
            saved = dict(os.environ)
            os.environ.update({k: str(v) for k, v in (fn.environment_vars or {}).items()})
            os.environ["AWS_LAMBDA_FUNCTION_NAME"] = fname
            os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(fn.memory_size or 128)
            os.environ["POWERTOOLS_LOG_LEVEL"] = saved.get("S3VI_LOCAL_LOG_LEVEL", "WARNING")
            started = time.perf_counter()
            _running_here.function = fname
            try:
                module = self._module(fname)
                handler_name = self.code_dirs[fname][1].rsplit(".", 1)[1]
                if self.crash_next.get(fname):
                    self.crash_next[fname] -= 1
                    raise RuntimeError("injected crash: the function died in the middle of the step")
                if self.die_next.get(fname):
                    self.die_next[fname] -= 1
                    raise LambdaDied("injected: the function's process died in the middle of the step")
                ctx = LambdaContext(fname, int(fn.memory_size or 128), float(fn.timeout or 3))
                result = getattr(module, handler_name)(event, ctx)
                payload, errored = json.dumps(result, default=str), False
            except Exception as exc:  # noqa: BLE001 - reported as Lambda does: errorType/errorMessage
                from vendor_import.scrub import scrub

                trace = [scrub(line) for line in traceback.format_tb(exc.__traceback__)[-3:]]
                error_type = getattr(exc, "error_type", None) or type(exc).__name__
                payload = json.dumps({"errorMessage": scrub(str(exc)), "errorType": error_type,
                                      "stackTrace": trace})
                errored = True
            finally:
                _running_here.function = None
                _restore_environ(saved)
            self.invocations.append({"function": fname, "seconds": time.perf_counter() - started,
                                     "errored": errored, "memory_mb": int(fn.memory_size or 128),
                                     "action": event.get("action") if isinstance(event, dict) else None})
        return payload, errored, ""


def _restore_environ(saved: dict[str, str]) -> None:
    """Put os.environ back as it was, touching only the keys the invocation changed. Other threads
    read the environment meanwhile (moto's interpreter builds a client per Lambda task; botocore and
    urllib iterate os.environ for proxies): with clear() every key vanishes for a moment, and an
    iteration that listed a key before gets a KeyError for it after."""
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    for key in [k for k in os.environ if k not in saved]:
        os.environ.pop(key, None)


def _locked(create_client):
    """The interpreter's client creation, under the invocation lock: it iterates os.environ, which
    an invocation changes (its function's variables) and puts back. One client per region and
    service: the interpreter would build one per task (tens of ms each, most of a poll's cost)."""
    clients: dict[tuple, Any] = {}

    def wrapper(*args, **kwargs):
        key = (args, tuple(sorted((k, v) for k, v in kwargs.items() if k != "state_credentials")))
        with _invoke_lock:
            if key not in clients:
                clients[key] = create_client(*args, **kwargs)
            return clients[key]

    return wrapper


_installed: dict[str, Any] = {}
_virtual = {"seconds": 0.0}
_virtual_lock = threading.Lock()


def virtual_clock() -> float:
    """Vendor time in the local world: the nominal seconds of every Wait state run so far (all
    executions together: exact while one import runs at a time). Simulators can measure job
    lengths on it so they agree with the poll loop whatever the time scale and the step overheads."""
    with _virtual_lock:
        return _virtual["seconds"]


def install(lambdas: InProcessLambdas, time_scale: float) -> None:
    """Patch moto (idempotent; the latest call wins)."""
    _installed["lambdas"] = lambdas
    _installed["scale"] = time_scale
    if _installed.get("patched"):
        return

    def _invoke_lambda(self, event=None):
        return _installed["lambdas"].invoke(self, event)

    def _wait_interval(self, env, wait_seconds):
        if wait_seconds > 0:
            env.program_state_event.wait(wait_seconds * _installed["scale"])
            with _virtual_lock:
                _virtual["seconds"] += wait_seconds

    class _ScaledTime:
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds):
            time.sleep(seconds * _installed["scale"])

    original_s3_event = s3_notifications._get_s3_event
    sequence = iter(range(1, 1 << 62))

    def _get_s3_event(event_name, bucket, key, notification_id):
        event = original_s3_event(event_name, bucket, key, notification_id)
        for record in event.get("Records", []):
            obj = record["s3"]["object"]
            if getattr(bucket, "is_versioned", False) and key.version_id not in (None, "null"):
                obj.setdefault("versionId", key.version_id)
            obj.setdefault("sequencer", f"{next(sequence):016X}")
        return event

    original_normalise = state_task_service_sfn.StateTaskServiceSfn._normalise_parameters

    def _normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None):
        original_normalise(self, parameters, boto_service_name=boto_service_name,
                           service_action_name=service_action_name)
        for name in [k for k in parameters if k[:1].isupper()]:
            parameters[name[0].lower() + name[1:]] = parameters.pop(name)

    state_task_service_sfn.StateTaskServiceSfn._normalise_parameters = _normalise_parameters
    state_task_service_sfn.boto_client_for = _locked(state_task_service_sfn.boto_client_for)
    lambda_models.LambdaFunction._invoke_lambda = _invoke_lambda
    lambda_eval_utils.boto_client_for = _locked(lambda_eval_utils.boto_client_for)
    s3_notifications._get_s3_event = _get_s3_event
    wait_function.WaitFunction._wait_interval = _wait_interval
    retrier_decl.time = _ScaledTime()
    _installed["patched"] = True


def _validated_once(validate):
    """Seam 6: ``validate(definition)`` (moto's ASL parse, raising InvalidDefinition) skipped for a
    definition this moto version already parsed without error (a marker file per sha256)."""
    salt = f"moto {importlib.metadata.version('moto')}\n".encode()

    def _validate_definition(definition: str) -> None:
        marker = cache_dir() / "asl-valid" / hashlib.sha256(salt + definition.encode()).hexdigest()[:40]
        if marker.is_file():
            return
        validate(definition=definition)
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass  # a read-only checkout validates every time

    return _validate_definition


def _shared(create_loader):
    """Seam 8: one moto Loader for moto's model reads (moto.core.utils.get_service_model...)."""
    loader = []

    def create_shared_loader():
        if not loader:
            loader.append(create_loader())
        return loader[0]

    return create_shared_loader


_READ_ONLY_DATA = ("endpoints", "partitions")


def _parsed_once(load_file):
    """Seam 9: botocore's JSONFileLoader.load_file(self, file_path) (file_path without ".json"),
    memoised for the read-only endpoint and partition data only."""
    parsed: dict[str, Any] = {}
    lock = threading.Lock()

    def load_file_once(self, file_path):
        if os.path.basename(file_path) not in _READ_ONLY_DATA:
            return load_file(self, file_path)
        with lock:
            if file_path not in parsed:
                parsed[file_path] = load_file(self, file_path)
            return parsed[file_path]

    return load_file_once


class _KeyPairOnFirstUse:
    """Seam 10: stands for the key pair moto's KMS Key holds (``private_key``), made on first use."""

    def __init__(self, generate, key_spec: str):
        self._generate = generate
        self._key_spec = key_spec
        self._key = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            if self._key is None:
                self._key = self._generate(self._key_spec)
        return getattr(self._key, name)

    def __reduce__(self):
        """Pickled (local/deploy_snapshot.py) as the key spec while the pair is not made yet."""
        if self._key is not None:
            raise pickle.PicklingError("a KMS key pair already made is not saved")
        return _key_pair_on_first_use, (self._key_spec,)


_generate_key_pair = kms_models.generate_private_key  # moto's own, before seam 10 replaces it


def _key_pair_on_first_use(key_spec: str) -> _KeyPairOnFirstUse:
    return _KeyPairOnFirstUse(_generate_key_pair, key_spec)


def _on_first_use(generate):
    def generate_private_key(key_spec: str) -> _KeyPairOnFirstUse:
        return _KeyPairOnFirstUse(generate, key_spec)

    return generate_private_key


def _listed_once(list_available_services):
    """Seam 12: Loader.list_available_services(self, type_name), once per (search paths, type)."""
    listed: dict[tuple, list[str]] = {}
    lock = threading.Lock()

    def list_services(self, type_name):
        key = (tuple(self.search_paths), type_name)
        with lock:
            if key not in listed:
                listed[key] = list_available_services(self, type_name)
            return list(listed[key])

    return list_services


def _one_signing_key(private_key):
    """Seam 13: Subscription.private_key(self), one key pair per process (moto's method ignores self)."""
    make = functools.cache(private_key.__wrapped__)

    def shared_private_key(self):
        return make(None)

    return shared_private_key


# seams 6, 8-13 at import: the runner deploys (CreateStateMachine...) before it installs the others
StepFunctionsParserBackend._validate_definition = staticmethod(
    _validated_once(StepFunctionsParserBackend._validate_definition))
moto_utils.create_loader = _shared(moto_utils.create_loader)
botocore_loaders.JSONFileLoader.load_file = _parsed_once(botocore_loaders.JSONFileLoader.load_file)
kms_models.generate_private_key = _on_first_use(kms_models.generate_private_key)
moto_responses.method_names_from_class = functools.cache(moto_responses.method_names_from_class)
botocore_loaders.Loader.list_available_services = _listed_once(botocore_loaders.Loader.list_available_services)
sns_models.Subscription.private_key = _one_signing_key(sns_models.Subscription.private_key)


def s3_endpoint_server(ip_address: str = "127.0.0.1", port: int = 0):
    """Seam 7: moto's ThreadedMotoServer polling for shutdown every 20 ms (werkzeug's default is
    0.5 s, which every local run would wait at its end). Started by the caller."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class _QuickStopServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )

            app = DomainDispatcherApplication(create_backend_app)
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever(poll_interval=0.02)

    return _QuickStopServer(ip_address=ip_address, port=port, verbose=False)
