"""Deploys the real template.yaml into in-process moto.

The SAM template is translated offline with aws-sam-translator (exactly what `sam deploy` sends
to CloudFormation), then each resource is created with boto3 calls in dependency order, with
the intrinsic functions resolved here. moto's own CloudFormation is not used: it skips secrets,
alarms and policies, and ignores DefinitionSubstitutions and bucket notifications. A resource
type this module does not know stops the deployment loudly instead of being left out.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3

from .language_extensions import expand

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "s3-vendor-import"
CODE_BUCKET = "local-code"
_SUB_VAR = re.compile(r"\$\{([^}!]+)\}")

# The EventBridge/ESM wiring the runner emulates itself (see LocalDeployment).
SKIPPED_TYPES = {"AWS::Lambda::Permission", "AWS::Lambda::EventSourceMapping", "AWS::Events::Rule"}


class _PolicyLoader:
    """aws-sam-translator asks IAM for managed policy ARNs; offline we know the names we use."""

    def load(self) -> dict[str, str]:
        names = ["CloudWatchLogsFullAccess", "AWSXrayWriteOnlyAccess", "AWSLambdaBasicExecutionRole"]
        return {n: f"arn:aws:iam::aws:policy/{n}" for n in names}


def load_sam_template(path: Path = ROOT / "template.yaml", parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The SAM template as CloudFormation hands it to the SAM transform: language extensions expanded."""
    from samtranslator.yaml_helper import yaml_parse

    return expand(yaml_parse(path.read_text()), parameters)


def translate(sam: dict[str, Any], parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """SAM -> CloudFormation, with local code locations (S3 placeholders) and the ASL inlined."""
    from samtranslator.translator.transform import transform

    sam = expand(json.loads(json.dumps(sam)), parameters)
    for name, res in sam["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = f"s3://{CODE_BUCKET}/{name}.zip"
        elif res["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://{CODE_BUCKET}/{name}.zip"
        elif res["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["Definition"] = json.loads((ROOT / props.pop("DefinitionUri")).read_text())
    return transform(sam, parameters or {}, _PolicyLoader())


# what the translation reads besides template.yaml: the ASL files and the code that expands/translates
_TRANSLATION_INPUTS = ("statemachines", "local/language_extensions.py", "local/template_deploy.py")


def cache_dir() -> Path:
    """Where derived files are kept: $S3_VENDOR_IMPORT_CACHE, else .cache/ in the repository (gitignored)."""
    return Path(os.environ.get("S3_VENDOR_IMPORT_CACHE") or ROOT / ".cache")


def translation_key(template: Path = ROOT / "template.yaml", parameters: dict[str, Any] | None = None) -> str:
    """sha256 over template.yaml, every ASL file, the expander and translator code, the
    aws-sam-translator version and the parameters: any change is a cache miss."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    files = [template]
    for name in _TRANSLATION_INPUTS:
        path = ROOT / name
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for path in files:
        digest.update(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(version("aws-sam-translator").encode())
    digest.update(json.dumps(parameters or {}, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def translated_template(template: Path = ROOT / "template.yaml",
                        parameters: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(SAM template expanded, CloudFormation template translated, cache hit?) of ``template``.

    The translation (YAML parse, Fn::ForEach expansion, the SAM transform: about 2 s with its
    imports) is kept under ``cache_dir()`` keyed on ``translation_key``: an unchanged template,
    ASL and translator give the same files, read back as JSON. Whatever the key, the result is
    deployed into moto in full every time (the cache only skips the translation)."""
    key = translation_key(template, parameters)
    path = cache_dir() / f"template-{key[:32]}.json"
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached["sam"], cached["cfn"], True
    except (OSError, ValueError, AttributeError):
        pass  # absent or unreadable: translate again
    sam = load_sam_template(template, parameters)
    cfn = translate(sam, parameters)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({"key": key, "sam": sam, "cfn": cfn}))
        os.replace(partial, path)  # atomic: a concurrent run reads the old file or the new one
    except OSError:
        pass  # a read-only checkout still runs, without the cache
    return sam, cfn, False


def vendor_stems(sam: dict[str, Any]) -> dict[str, str]:
    """Vendor id -> logical-id stem (HopexFunction, HopexSettings...) of the vendors the template deploys:
    the rows of Mappings VendorTable whose stem has a function."""
    rows = sam.get("Mappings", {}).get("VendorTable", {})
    return {row["Id"]: stem for stem, row in rows.items() if f"{stem}Function" in sam["Resources"]}


def function_code_dirs(sam: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """Logical id -> (code folder, handler) of every function in the SAM template."""
    out = {}
    globals_fn = sam.get("Globals", {}).get("Function", {})
    for name, res in sam["Resources"].items():
        if res["Type"] == "AWS::Serverless::Function":
            props = res["Properties"]
            out[name] = (ROOT / props["CodeUri"], props.get("Handler") or globals_fn.get("Handler"))
    return out


class Deployer:
    def __init__(self, template: dict[str, Any], parameters: dict[str, Any] | None = None):
        self.template = template
        self.params = {k: v.get("Default") for k, v in template.get("Parameters", {}).items()}
        self.params.update(parameters or {})
        for name, spec in template.get("Parameters", {}).items():  # a Ref to a list parameter is a list
            if spec.get("Type") == "CommaDelimitedList" and isinstance(self.params.get(name), str):
                self.params[name] = [item.strip() for item in self.params[name].split(",")]
        stack_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, STACK))
        self.pseudo = {
            "AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::StackName": STACK,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/{stack_uuid}",
            "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None,
        }
        self.refs: dict[str, Any] = {}
        self.attrs: dict[str, dict[str, Any]] = {}
        self.created: dict[str, str] = {}  # logical id -> type
        self.rules: list[dict[str, Any]] = []  # EventBridge rules the runner emulates
        self.event_sources: list[dict[str, Any]] = []  # SQS -> function mappings the runner pumps
        self.conditions = {n: None for n in template.get("Conditions", {})}
        self._c: dict[str, Any] = {}

    def c(self, service: str):
        if service not in self._c:
            self._c[service] = boto3.client(service, region_name=REGION)
        return self._c[service]

    # -- intrinsic functions ---------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if self.conditions.get(name) is None:
            self.conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    def resolve(self, v: Any) -> Any:
        if isinstance(v, list):
            return [x for x in (self.resolve(i) for i in v) if x is not None]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (fn, arg), = v.items()
            if fn == "Ref":
                return self._ref(arg)
            if fn == "Fn::GetAtt":
                name, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._getatt(name, attr)
            if fn == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return _SUB_VAR.sub(lambda m: str(self._sub_var(m.group(1), extra)), text)
            if fn == "Fn::Join":
                return self.resolve(arg[0]).join(str(x) for x in self.resolve(arg[1]))
            if fn == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if fn == "Fn::Split":
                return self.resolve(arg[1]).split(self.resolve(arg[0]))
            if fn == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            if fn == "Fn::Not":
                return not self.resolve(arg[0])
            if fn == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::GetAZs":
                return [f"{REGION}a", f"{REGION}b"]
        return {k: r for k, r in ((k, self.resolve(x)) for k, x in v.items()) if r is not None}

    def _ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name not in self.refs:
            raise KeyError(f"Ref to {name} before it was created")
        return self.refs[name]

    def _getatt(self, name: str, attr: str) -> Any:
        try:
            return self.attrs[name][attr]
        except KeyError:
            raise KeyError(f"GetAtt {name}.{attr} is not known to the local deployer") from None

    def _sub_var(self, var: str, extra: dict[str, Any]) -> Any:
        if var in extra:
            return extra[var]
        if "." in var:
            return self._getatt(*var.split(".", 1))
        return self._ref(var)

    # -- ordering ------------------------------------------------------------------------------------
    def _deps(self, res: dict[str, Any]) -> set[str]:
        names = set(self.template["Resources"])
        found: set[str] = set()

        def walk(v: Any) -> None:
            if isinstance(v, dict):
                for k, x in v.items():
                    if k == "Ref" and isinstance(x, str) and x in names:
                        found.add(x)
                    elif k == "Fn::GetAtt":
                        found.add(x[0] if isinstance(x, list) else x.split(".")[0])
                    elif k == "Fn::Sub":
                        text = x if isinstance(x, str) else x[0]
                        for var in _SUB_VAR.findall(text):
                            if var.split(".")[0] in names:
                                found.add(var.split(".")[0])
                        if not isinstance(x, str):
                            walk(x[1])
                    else:
                        walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)

        walk(res.get("Properties", {}))
        dep = res.get("DependsOn", [])
        found.update([dep] if isinstance(dep, str) else dep)
        return found

    def order(self) -> list[str]:
        resources = self.template["Resources"]
        deps = {n: self._deps(r) for n, r in resources.items()}
        done: list[str] = []
        seen: set[str] = set()

        def visit(n: str, path: tuple[str, ...] = ()) -> None:
            if n in seen:
                return
            if n in path:
                raise ValueError(f"circular dependency: {' -> '.join(path + (n,))}")
            for d in sorted(deps[n]):
                visit(d, path + (n,))
            seen.add(n)
            done.append(n)

        for n in sorted(resources):
            visit(n)
        return done

    # -- creation ------------------------------------------------------------------------------------
    def deploy(self) -> Deployer:
        self.c("s3").create_bucket(Bucket=CODE_BUCKET)
        for name in self.order():
            res = self.template["Resources"][name]
            if "Condition" in res and not self.condition(res["Condition"]):
                continue
            typ = res["Type"]
            if typ in SKIPPED_TYPES:
                self._record_wiring(name, typ, res.get("Properties", {}))
                continue
            props = self.resolve(res.get("Properties", {}))
            creator = getattr(self, "_create_" + typ.replace("::", "_").lower(), None)
            if creator is None:
                raise NotImplementedError(f"the local runner cannot create {name} ({typ}): add it to {__file__}")
            creator(name, props)
            self.created[name] = typ
        return self

    def _record_wiring(self, name: str, typ: str, props: dict[str, Any]) -> None:
        """Emulated by the runner, not created: keep what it needs and give the resource an id."""
        self.refs[name] = name
        self.attrs[name] = {"Arn": self._arn("events", f"rule/{name}")}
        if typ == "AWS::Events::Rule":
            self.rules.append({"name": name, **self.resolve(props)})
        elif typ == "AWS::Lambda::EventSourceMapping":
            self.event_sources.append(self.resolve(props))

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"

    def _create_aws_s3_bucket(self, name: str, p: dict[str, Any]) -> None:
        s3 = self.c("s3")
        bucket = p["BucketName"]
        s3.create_bucket(Bucket=bucket)
        if p.get("VersioningConfiguration"):
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=p["VersioningConfiguration"])
        if p.get("BucketEncryption"):
            rules = [{"ApplyServerSideEncryptionByDefault": r["ServerSideEncryptionByDefault"],
                      **({"BucketKeyEnabled": r["BucketKeyEnabled"]} if "BucketKeyEnabled" in r else {})}
                     for r in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]]
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
        if p.get("PublicAccessBlockConfiguration"):
            s3.put_public_access_block(Bucket=bucket,
                                       PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"])
        if p.get("LifecycleConfiguration"):
            rules = []
            for r in p["LifecycleConfiguration"]["Rules"]:
                rule: dict[str, Any] = {"ID": r["Id"], "Status": r["Status"],
                                        "Filter": {"Prefix": r.get("Prefix", "")}}
                if "ExpirationInDays" in r:
                    rule["Expiration"] = {"Days": int(r["ExpirationInDays"])}
                if "NoncurrentVersionExpiration" in r:
                    rule["NoncurrentVersionExpiration"] = {
                        "NoncurrentDays": int(r["NoncurrentVersionExpiration"]["NoncurrentDays"])}
                if "AbortIncompleteMultipartUpload" in r:
                    rule["AbortIncompleteMultipartUpload"] = {
                        "DaysAfterInitiation": int(r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
                rules.append(rule)
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
        notif = p.get("NotificationConfiguration") or {}
        queues = []
        for q in notif.get("QueueConfigurations", []):
            rules = q.get("Filter", {}).get("S3Key", {}).get("Rules", [])
            entry: dict[str, Any] = {"QueueArn": q["Queue"], "Events": [q["Event"]]}
            if rules:
                entry["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
            queues.append(entry)
        if queues:
            s3.put_bucket_notification_configuration(Bucket=bucket,
                                                     NotificationConfiguration={"QueueConfigurations": queues})
        self.refs[name] = bucket
        self.attrs[name] = {"Arn": f"arn:aws:s3:::{bucket}", "DomainName": f"{bucket}.s3.amazonaws.com"}

    def _create_aws_s3_bucketpolicy(self, name: str, p: dict[str, Any]) -> None:
        # moto evaluates bucket policies without request context: a Deny conditioned on
        # aws:SecureTransport would deny everything. Local traffic never leaves the process,
        # so those statements are left out here (tests check them in the template itself).
        doc = dict(p["PolicyDocument"])
        doc["Statement"] = [st for st in doc["Statement"]
                            if "aws:SecureTransport" not in json.dumps(st.get("Condition", {}))]
        if doc["Statement"]:
            self.c("s3").put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(doc))
        self.refs[name] = p["Bucket"]

    def _create_aws_sqs_queue(self, name: str, p: dict[str, Any]) -> None:
        qname = p.get("QueueName") or f"{STACK}-{name}"
        attrs = {k: (json.dumps(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool) else str(v))
                 for k, v in p.items() if k not in ("QueueName", "Tags")}
        url = self.c("sqs").create_queue(QueueName=qname, Attributes=attrs)["QueueUrl"]
        self.refs[name] = url
        self.attrs[name] = {"Arn": self._arn("sqs", qname), "QueueName": qname, "QueueUrl": url}

    def _create_aws_sqs_queuepolicy(self, name: str, p: dict[str, Any]) -> None:
        for url in p["Queues"]:
            self.c("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(p["PolicyDocument"])})
        self.refs[name] = name

    def _create_aws_dynamodb_table(self, name: str, p: dict[str, Any]) -> None:
        tname = p.get("TableName") or f"{STACK}-{name}"
        kwargs = {k: p[k] for k in ("AttributeDefinitions", "KeySchema", "BillingMode",
                                    "GlobalSecondaryIndexes", "SSESpecification") if k in p}
        if "SSESpecification" in kwargs:
            kwargs["SSESpecification"] = {"Enabled": bool(kwargs["SSESpecification"].get("SSEEnabled"))}
        resp = self.c("dynamodb").create_table(TableName=tname, **kwargs)
        if p.get("TimeToLiveSpecification"):
            self.c("dynamodb").update_time_to_live(TableName=tname,
                                                   TimeToLiveSpecification=p["TimeToLiveSpecification"])
        self.refs[name] = tname
        self.attrs[name] = {"Arn": resp["TableDescription"]["TableArn"]}

    def _create_aws_sns_topic(self, name: str, p: dict[str, Any]) -> None:
        tname = p.get("TopicName") or f"{STACK}-{name}"
        attrs = {k: str(p[k]) for k in ("DisplayName", "KmsMasterKeyId") if k in p}
        arn = self.c("sns").create_topic(Name=tname, Attributes=attrs)["TopicArn"]
        self.refs[name] = arn
        self.attrs[name] = {"TopicName": tname, "TopicArn": arn}

    def _create_aws_sns_subscription(self, name: str, p: dict[str, Any]) -> None:
        arn = self.c("sns").subscribe(TopicArn=p["TopicArn"], Protocol=p["Protocol"], Endpoint=p["Endpoint"])
        self.refs[name] = arn["SubscriptionArn"]

    def _create_aws_logs_loggroup(self, name: str, p: dict[str, Any]) -> None:
        lname = p.get("LogGroupName") or f"/{STACK}/{name}"
        self.c("logs").create_log_group(logGroupName=lname)
        if p.get("RetentionInDays"):
            self.c("logs").put_retention_policy(logGroupName=lname, retentionInDays=int(p["RetentionInDays"]))
        self.refs[name] = lname
        self.attrs[name] = {"Arn": self._arn("logs", f"log-group:{lname}:*")}

    def _create_aws_secretsmanager_secret(self, name: str, p: dict[str, Any]) -> None:
        arn = self.c("secretsmanager").create_secret(
            Name=p.get("Name") or f"{STACK}/{name}", SecretString=p.get("SecretString", "{}"),
            Description=p.get("Description", ""))["ARN"]
        self.refs[name] = arn
        self.attrs[name] = {"Id": arn}

    def _create_aws_iam_role(self, name: str, p: dict[str, Any]) -> None:
        iam = self.c("iam")
        rname = p.get("RoleName") or f"{STACK}-{name}"[:64]
        role = iam.create_role(RoleName=rname, AssumeRolePolicyDocument=json.dumps(p["AssumeRolePolicyDocument"]))
        for pol in p.get("Policies", []):
            doc = {"Version": "2012-10-17", **pol["PolicyDocument"]}  # IAM's default when omitted
            iam.put_role_policy(RoleName=rname, PolicyName=pol["PolicyName"], PolicyDocument=json.dumps(doc))
        self.refs[name] = rname
        self.attrs[name] = {"Arn": role["Role"]["Arn"], "RoleId": role["Role"]["RoleId"]}
        self.role_policies = getattr(self, "role_policies", {})
        self.role_policies[name] = p

    def _create_aws_kms_key(self, name: str, p: dict[str, Any]) -> None:
        kms = self.c("kms")
        key = kms.create_key(Policy=json.dumps(p["KeyPolicy"]), Description=p.get("Description", ""))["KeyMetadata"]
        if p.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=key["KeyId"])
        self.refs[name] = key["KeyId"]
        self.attrs[name] = {"Arn": key["Arn"], "KeyId": key["KeyId"]}

    def _create_aws_iam_policy(self, name: str, p: dict[str, Any]) -> None:
        pname = p["PolicyName"]
        for role in p.get("Roles", []):
            self.c("iam").put_role_policy(RoleName=role, PolicyName=pname,
                                          PolicyDocument=json.dumps(p["PolicyDocument"]))
        self.refs[name] = pname

    def _create_aws_lambda_layerversion(self, name: str, p: dict[str, Any]) -> None:
        resp = self.c("lambda").publish_layer_version(
            LayerName=p.get("LayerName") or name, Content={"ZipFile": _empty_zip()},
            CompatibleRuntimes=p.get("CompatibleRuntimes", []))
        self.refs[name] = resp["LayerVersionArn"]

    def _create_aws_lambda_function(self, name: str, p: dict[str, Any]) -> None:
        fname = p.get("FunctionName") or f"{STACK}-{name}"[:64]
        kwargs = {"FunctionName": fname, "Runtime": p["Runtime"], "Role": p["Role"], "Handler": p["Handler"],
                  "Code": {"ZipFile": _empty_zip()}, "Timeout": int(p.get("Timeout", 3)),
                  "MemorySize": int(p.get("MemorySize", 128)),
                  "Environment": {"Variables": {k: str(v) for k, v in
                                                p.get("Environment", {}).get("Variables", {}).items()}},
                  "Architectures": p.get("Architectures", ["x86_64"]), "Layers": p.get("Layers", [])}
        arn = self.c("lambda").create_function(**kwargs)["FunctionArn"]
        self.refs[name] = fname
        self.attrs[name] = {"Arn": arn}
        self.functions = getattr(self, "functions", {})
        self.functions[name] = fname
        # where Lambda sends an asynchronous event after its retries (the runner emulates it)
        self.dead_letters = getattr(self, "dead_letters", {})
        target = (p.get("DeadLetterConfig") or {}).get("TargetArn")
        if target:
            self.dead_letters[fname] = next(self.refs[q] for q, a in self.attrs.items() if a.get("Arn") == target)

    def _create_aws_stepfunctions_statemachine(self, name: str, p: dict[str, Any]) -> None:
        definition = p.get("DefinitionString") or json.dumps(p["Definition"])
        # what CloudFormation does with DefinitionSubstitutions (moto would ignore them)
        for var, value in (p.get("DefinitionSubstitutions") or {}).items():
            definition = definition.replace("${" + var + "}", str(value))
        left = _SUB_VAR.findall(definition)
        if left:
            raise ValueError(f"{name}: unresolved definition substitutions {left}")
        sm_name = p.get("StateMachineName") or f"{STACK}-{name}"
        arn = self.c("stepfunctions").create_state_machine(
            name=sm_name, definition=definition, roleArn=p["RoleArn"], type=p.get("StateMachineType", "STANDARD"),
        )["stateMachineArn"]
        self.refs[name] = arn
        self.attrs[name] = {"Name": sm_name, "Arn": arn}

    def _create_aws_cloudwatch_alarm(self, name: str, p: dict[str, Any]) -> None:
        kwargs = {"AlarmName": p.get("AlarmName") or f"{STACK}-{name}"}
        for k in ("AlarmDescription", "Namespace", "MetricName", "Statistic", "Period", "EvaluationPeriods",
                  "Threshold", "ComparisonOperator", "TreatMissingData", "AlarmActions", "Dimensions"):
            if k in p:
                kwargs[k] = p[k]
        for k in ("Period", "EvaluationPeriods"):
            if k in kwargs:
                kwargs[k] = int(kwargs[k])
        if "Threshold" in kwargs:
            kwargs["Threshold"] = float(kwargs["Threshold"])
        self.c("cloudwatch").put_metric_alarm(**kwargs)
        self.refs[name] = kwargs["AlarmName"]

    def _create_aws_cloudwatch_dashboard(self, name: str, p: dict[str, Any]) -> None:
        dname = p.get("DashboardName") or f"{STACK}-{name}"
        self.c("cloudwatch").put_dashboard(DashboardName=dname, DashboardBody=p["DashboardBody"])
        self.refs[name] = dname


def _empty_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("README.txt", "code runs in-process in the local runner")
    return buf.getvalue()
