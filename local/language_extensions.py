"""Expands the AWS::LanguageExtensions constructs template.yaml uses, as CloudFormation does before
the SAM transform runs: ``Fn::ForEach`` loops (in Resources, Outputs, Conditions and inside
properties) and ``Fn::FindInMap`` (with ``DefaultValue``).

Semantics from the CloudFormation Template Reference, "Fn::ForEach" and "AWS::LanguageExtensions
transform": the collection is a list or a Ref to a CommaDelimitedList parameter; ``${Id}`` and
``&{Id}`` (non-alphanumerics dropped) are replaced in the output keys and in Fn::Sub strings, and
``Ref: Id`` becomes the current item; the loop's logical name does not appear in the result.
aws-sam-translator has no expander, and cfn-lint's is a linter's approximation (random values for
what it cannot resolve), so the local runner and the tests use this one.

    expand(template: dict, parameters: dict | None) -> dict   # a new template; raises ValueError
"""

from __future__ import annotations

import copy
import re
from typing import Any

LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
_FOR_EACH = "Fn::ForEach::"


def expand(template: dict[str, Any], parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The template with every loop unrolled and every resolvable Fn::FindInMap replaced by its value.

    ``parameters`` override the Default of CommaDelimitedList parameters used as collections.
    Raises ValueError on a malformed loop, a key produced twice, or a missing map entry without
    DefaultValue (CloudFormation fails the change set in those cases).
    """
    out = copy.deepcopy(template)
    transforms = out.get("Transform")
    if isinstance(transforms, list) and LANGUAGE_EXTENSIONS in transforms:
        rest = [t for t in transforms if t != LANGUAGE_EXTENSIONS]
        out["Transform"] = rest[0] if len(rest) == 1 else rest
    elif transforms == LANGUAGE_EXTENSIONS:
        out.pop("Transform")
    context = _Context(out, parameters or {})
    for section in ("Conditions", "Resources", "Outputs"):
        if section in out:
            out[section] = context.walk(out[section], {})
    return out


class _Context:
    def __init__(self, template: dict[str, Any], parameters: dict[str, Any]):
        self.mappings = template.get("Mappings", {})
        self.template_parameters = template.get("Parameters", {})
        self.parameters = parameters

    def collection(self, value: Any) -> list[str]:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if isinstance(value, dict) and set(value) == {"Ref"}:
            name = value["Ref"]
            spec = self.template_parameters.get(name)
            if spec is None or spec.get("Type") != "CommaDelimitedList":
                raise ValueError(f"Fn::ForEach collection Ref {name!r} is not a CommaDelimitedList parameter")
            raw = self.parameters.get(name, spec.get("Default", ""))
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return [item.strip() for item in items if item.strip()]
        raise ValueError(f"Fn::ForEach collection must be a list of strings or a Ref, not {value!r}")

    def walk(self, value: Any, names: dict[str, str]) -> Any:
        if isinstance(value, list):
            return [self.walk(v, names) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref" and isinstance(arg, str) and arg in names:
                return names[arg]
            if fn == "Fn::Sub":
                return _sub(self.walk(arg, names) if isinstance(arg, list) else _replace(arg, names))
            if fn == "Fn::FindInMap":
                return self.find_in_map(self.walk(arg, names))
            if fn == "Ref" and isinstance(arg, dict):
                arg = self.walk(arg, names)
                return {"Ref": arg}
        result: dict[str, Any] = {}
        for key, item in value.items():
            if key.startswith(_FOR_EACH):
                for new_key, new_value in self.loop(key, item, names).items():
                    _put(result, new_key, new_value)
            else:
                _put(result, _replace(key, names), self.walk(item, names))
        return result

    def loop(self, key: str, spec: Any, names: dict[str, str]) -> dict[str, Any]:
        if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str) and isinstance(spec[2], dict)):
            raise ValueError(f"{key}: expected [identifier, collection, fragment]")
        identifier, collection, fragment = spec
        produced: dict[str, Any] = {}
        for item in self.collection(self.walk(collection, names)):
            for new_key, new_value in self.walk(fragment, {**names, identifier: item}).items():
                _put(produced, new_key, new_value)
        return produced

    def find_in_map(self, arg: list[Any]) -> Any:
        default = arg[3].get("DefaultValue") if len(arg) == 4 and isinstance(arg[3], dict) else None
        keys = arg[:3]
        if not all(isinstance(k, str) for k in keys):
            return {"Fn::FindInMap": arg}  # depends on a parameter or pseudo parameter: CloudFormation resolves it
        found = self.mappings.get(keys[0], {}).get(keys[1], {}).get(keys[2])
        if found is None:
            if default is None:
                raise ValueError(f"Fn::FindInMap {keys}: no such entry and no DefaultValue")
            return default
        return copy.deepcopy(found)


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if key in target:
        raise ValueError(f"Fn::ForEach produced {key!r} twice")
    target[key] = value


def _replace(text: str, names: dict[str, str]) -> str:
    for name, item in names.items():
        text = text.replace("${" + name + "}", item).replace("&{" + name + "}", re.sub(r"[^0-9A-Za-z]", "", item))
    return text


def _sub(arg: Any) -> Any:
    """Fn::Sub with its literal variables written in; a string with nothing left to substitute stays a string."""
    if isinstance(arg, list):
        text, variables = arg[0], dict(arg[1])
        for name, item in list(variables.items()):
            if isinstance(item, str):
                text = text.replace("${" + name + "}", item)
                del variables[name]
        arg = [text, variables] if variables else text
    text = arg[0] if isinstance(arg, list) else arg
    if "${" not in text:
        return text
    return {"Fn::Sub": arg}


def main(argv: list[str] | None = None) -> None:
    """python -m local.language_extensions TEMPLATE OUT.json: writes the expanded template (what
    checkov reads: it does not expand Fn::ForEach itself)."""
    import json
    import sys
    from pathlib import Path

    from samtranslator.yaml_helper import yaml_parse

    source, target = (argv if argv is not None else sys.argv[1:])
    out = Path(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(expand(yaml_parse(Path(source).read_text())), indent=1) + "\n")


if __name__ == "__main__":
    main()
