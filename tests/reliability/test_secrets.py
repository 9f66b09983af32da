"""Secrets stay secret.

With distinctive credentials in every vendor's settings (helpers.SECRETS), a run across the five
vendors (successes, rejects, vendor failures, refused credentials, a refused token echoed back by
the vendor, a dropped connection with the token in the URL), with every log at DEBUG (the
functions' powertools loggers, the library, urllib3 and requests), must not write any secret
anywhere we look: log records (message, arguments, extra fields, exception text), the JSON lines
the functions log, status records, status JSON files, SNS messages, rejects files, the exceptions
that escape a handler (what Lambda itself would log) and the executions' histories and outputs.

Secrets include each credential as is, URL-encoded (query strings, form bodies) and inside Basic
authorization values (base64 of user:password), every token the simulators issued, and the
signature of every presigned URL handed to simplement-e.

botocore's own DEBUG logging is left at WARNING here: it logs whole API responses (the settings
secret's value included) and is not ours to turn on in a function. So is ``responses``, the HTTP
mock moto runs in this process (absent from Lambda), which logs every URL it lets through.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import traceback
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import pytest

from local.simulators import hopex as hopex_sim_mod
from local.simulators import simplemente as simplemente_sim_mod
from local.simulators.base import Fault

from .helpers import (
    LOGICAL,
    SECRETS,
    VENDORS,
    default_settings,
    import_many,
    make_sample,
    report,
    status_documents,
    status_records,
)

pytestmark = pytest.mark.e2e

LOUD = ("s3-vendor-import", "vendor_import", "urllib3", "requests", "aws_lambda_powertools")
QUIET = ("botocore", "boto3", "moto", "s3transfer", "werkzeug", "responses")  # the last: moto's HTTP mock


class Capture(logging.Handler):
    """Everything a log record carries, as text: the formatted line (with powertools' JSON
    formatter when there is one), every attribute (extra fields included), the exception."""

    def __init__(self, formatter: logging.Formatter | None = None):
        super().__init__(level=logging.DEBUG)
        self.json_formatter = formatter
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [json.dumps({k: v for k, v in record.__dict__.items() if k != "exc_info"}, default=str)]
        try:
            parts.append(record.getMessage())
        except Exception:  # noqa: BLE001 - a bad format string: the raw msg is in the dict above
            pass
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        if self.json_formatter is not None:
            try:
                parts.append(self.json_formatter.format(record))
            except Exception:  # noqa: BLE001
                pass
        self.texts.append("\n".join(parts))


@pytest.fixture
def captured(pipe, monkeypatch):
    """DEBUG everywhere that is ours; every record and every escaping exception captured."""
    monkeypatch.setenv("S3VI_LOCAL_LOG_LEVEL", "DEBUG")
    # one import per vendor first: every function's module (and its loggers) is loaded, in its
    # own environment, as a warm container's would be
    import_many(pipe, [(s.key, s.body, None) for s in (make_sample(v, f"secret-warm-up-{v}") for v in VENDORS)])
    assert set(pipe.lambdas.modules) == set(pipe.lambdas.code_dirs)
    saved_levels = {name: logging.getLogger(name).level for name in ("", *LOUD, *QUIET)}
    powertools = logging.getLogger("s3-vendor-import")
    json_formatter = next((h.formatter for h in powertools.handlers if h.formatter), None)
    root_capture, powertools_capture = Capture(), Capture(json_formatter)
    logging.getLogger().addHandler(root_capture)
    powertools.addHandler(powertools_capture)
    logging.getLogger().setLevel(logging.DEBUG)
    for name in LOUD:
        logging.getLogger(name).setLevel(logging.DEBUG)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)

    escaped: list[str] = []  # what Lambda's runtime would log for an unhandled exception
    for fname, module in pipe.lambdas.modules.items():
        handler_name = pipe.lambdas.code_dirs[fname][1].rsplit(".", 1)[1]
        original = getattr(module, handler_name)

        def wrapped(event, context, _original=original):
            try:
                return _original(event, context)
            except Exception as exc:
                escaped.append(f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exception(exc)))
                raise

        monkeypatch.setattr(module, handler_name, wrapped)
    yield {"logs": lambda: root_capture.texts + powertools_capture.texts, "escaped": escaped}
    logging.getLogger().removeHandler(root_capture)
    powertools.removeHandler(powertools_capture)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)


def secret_forms(sims, presigned_urls: list[str]) -> dict[str, str]:
    """Every form a secret could take in text: name -> value."""
    forms: dict[str, str] = {}
    for name, value in SECRETS.items():
        forms[name] = value
        forms[f"{name} (url-encoded)"] = quote(value, safe="")
        forms[f"{name} (form-encoded)"] = quote_plus(value)
    forms["hopex basic authorization"] = base64.b64encode(
        f"{hopex_sim_mod.USERNAME}:{SECRETS['hopex_password']}".encode()).decode()
    forms["simplemente basic authorization"] = base64.b64encode(
        f"{simplemente_sim_mod.APP_ID}:{SECRETS['simplemente_secret']}".encode()).decode()
    tokens = {*sims["hopex"].tokens, *sims["campaign"].tokens, *sims["aep"].tokens, *sims["cirrus"].tokens}
    for i, token in enumerate(sorted(tokens)):
        forms[f"issued token {i}"] = token
    for i, url in enumerate(presigned_urls):
        query = parse_qs(urlsplit(url).query)
        for param in ("X-Amz-Signature", "Signature"):
            for value in query.get(param, []):
                forms[f"presigned URL signature {i}"] = value
    return forms


def everything_written(pipe, captured, invocation_payloads: list[str], vendors_jobs: list[tuple[str, str]]) -> dict:
    texts: dict[str, list[str]] = {
        "log records": captured["logs"](),
        "exceptions escaping a handler": captured["escaped"],
        "function responses": invocation_payloads,
        "status records": [json.dumps(r, default=str) for r in status_records(pipe)],
        "status JSON files": [json.dumps(d) for d in status_documents(pipe)],
        "SNS messages": [json.dumps(m) for m in pipe.drain_messages()],
    }
    rejects = []
    for page in pipe.s3.get_paginator("list_objects_v2").paginate(Bucket=pipe.bucket, Prefix="rejects/"):
        for obj in page.get("Contents", []):
            rejects.append(pipe.s3.get_object(Bucket=pipe.bucket, Key=obj["Key"])["Body"].read()
                           .decode("utf-8", "replace"))
    texts["rejects files"] = rejects
    histories = []
    for vendor, job_id in vendors_jobs:
        arn = pipe.state_machine_arn(vendor).replace(":stateMachine:", ":execution:") + ":" + job_id
        try:
            histories.append(json.dumps(pipe.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"],
                                        default=str))
            histories.append(json.dumps(pipe.sfn.describe_execution(executionArn=arn), default=str))
        except pipe.sfn.exceptions.ExecutionDoesNotExist:
            pass
    texts["execution histories and outputs"] = histories
    return texts


def test_no_secret_is_written_anywhere(pipe, sims, captured, settings_restored, monkeypatch):
    payloads: list[str] = []
    invoke = pipe.lambdas.invoke

    def recording_invoke(fn, event):
        out = invoke(fn, event)
        payloads.append(out[0])
        return out

    monkeypatch.setattr(pipe.lambdas, "invoke", recording_invoke)
    results = []

    def run(*samples):
        results.extend(import_many(pipe, [(s.key, s.body, None) for s in samples]))

    # every vendor with its own settings: success, rejects, vendor failure
    run(*[make_sample(v, f"secret-{v}-{variant}", records=6, invalid=invalid, variant=variant)
          for v in VENDORS for variant, invalid in (("ok", 0), ("rejects", 2), ("fail", 0))])
    # HOPEX with Basic and HOPEXBASIC authorization
    for auth in ("basic", "hopexbasic"):
        pipe.set_settings("hopex", sims["hopex"].settings(auth=auth))
        run(make_sample("hopex", f"secret-hopex-{auth}"))
    # a refused token: HOPEX echoes the Authorization header it got in its 401 answer
    pipe.set_settings("hopex", default_settings(sims, "hopex"))
    sims["hopex"].accept_tokens = False
    try:
        run(make_sample("hopex", "secret-hopex-token-echoed"))
    finally:
        sims["hopex"].accept_tokens = True
    # a DataAction whose connection drops: urllib3 logs the URL, with the token in its query string
    sims["cirrus"].inject(Fault(drop=True, match="DataAction"), Fault(status=503, match="DataAction"))
    run(make_sample("cirrus", "secret-cirrus-dropped", records=7, invalid=1))
    # refused credentials, each vendor: error messages quote what the vendor answered
    for vendor, path in (("hopex", "auth.password"), ("campaign", "ims.client_secret"),
                         ("aep", "ims.client_secret"), ("simplemente", "secret"), ("cirrus", "password")):
        doc = json.loads(json.dumps(default_settings(sims, vendor)))
        *parents, last = path.split(".")
        target = doc
        for name in parents:
            target = target[name]
        target[last] = f"not-the-{last}-{vendor}-x1"
        pipe.set_settings(vendor, doc)
        run(make_sample(vendor, f"secret-{vendor}-refused", records=3))
        pipe.set_settings(vendor, default_settings(sims, vendor))

    states = {r.state for r in results}
    assert {"SUCCEEDED", "SUCCEEDED_WITH_REJECTS", "FAILED"} <= states
    assert any(r.record and (r.record.get("error") or {}).get("type") == "VendorAuthError" for r in results)
    with sims["simplemente"]._lock:
        presigned = [imp.url for imp in sims["simplemente"].imports.values()]
    forms = secret_forms(sims, presigned)
    assert len([f for f in forms if f.startswith("issued token")]) >= 4
    assert any(f.startswith("presigned URL signature") for f in forms)

    texts = everything_written(pipe, captured, payloads, [(r.vendor, r.job_id) for r in results])
    assert len(texts["log records"]) > 100, "DEBUG logging did not reach the capture"
    assert any("urllib3" in t for t in texts["log records"])
    leaks = []
    for where, items in texts.items():
        for text in items:
            for name, value in forms.items():
                if value in text:
                    i = text.index(value)
                    leaks.append(f"{name} in {where}: ...{text[max(0, i - 300):i + len(value) + 60]}...")
    assert leaks == []
    total = sum(len(items) for items in texts.values())
    report("secrets (tests/reliability/test_secrets.py)",
           f"{len(results)} imports across {len(VENDORS)} vendors (UAS, Basic, HOPEXBASIC, IMS, app secret, "
           f"token in URL), {len(forms)} secret forms searched in {total} texts "
           f"({', '.join(f'{len(v)} {k}' for k, v in texts.items())}): 0 found")
    assert re.search(r"authToken=\*\*\*", "\n".join(texts["log records"])), "the token URL was logged, masked"
    assert all(f"{LOGICAL[v]}Settings" in pipe.deployment.refs for v in VENDORS)
