"""The deployed template, saved once and restored: what ``Deployer.deploy()`` leaves in moto is
kept under ``cache_dir()``, keyed on the hashes of everything it depends on.

Deploying the real template into moto is about 150 API calls through botocore and moto (~0.45 s
of CPU, most of a small ``s3-vendor-import run``; bench/RESULTS.md). The first run with a given
template deploys it through the API as before, then pickles the state of every moto backend the
deployment touched (and the ``Deployer``'s record of names and ARNs); the next runs load that
state into the fresh moto in about a millisecond. Same fidelity: what is restored is what the real
template's deployment produced, through the same calls.

The key (``snapshot_key``) covers what the deployment depends on: the translation key (template,
every ASL file, the expander and deployer code, aws-sam-translator, the parameters), this module
and the moto seams, and the versions of moto, botocore and Python. Any change is a miss: the
template is deployed anew and saved again (tests/unit/test_deploy_snapshot.py). A snapshot that
cannot be written (an object pickle refuses) or read (corrupt, written by other code) is simply
not used: the template is deployed through the API. The cache is the user's own folder (.cache/
in the checkout, or $S3_VENDOR_IMPORT_CACHE), trusted as the code beside it is.
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import io
import os
import pickle
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

from .template_deploy import ROOT, Deployer, cache_dir

_FORMAT = b"s3-vendor-import deployment snapshot 1\n"
# what the restored state depends on besides the translation key
_CODE = ("local/deploy_snapshot.py", "local/moto_seams.py")
_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def snapshot_key(translation_key: str) -> str:
    """sha256 over the translation key, this module and the moto seams' code, and the moto,
    botocore and Python versions."""
    from importlib.metadata import version

    digest = hashlib.sha256(translation_key.encode())
    for name in _CODE:
        digest.update(hashlib.sha256((ROOT / name).read_bytes()).digest())
    for package in ("moto", "botocore"):
        digest.update(f"{package}={version(package)}".encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def deployed(template: dict[str, Any], parameters: dict[str, Any] | None,
             translation_key: str) -> tuple[Deployer, bool]:
    """(the deployment, restored?): the saved deployment of this key loaded into moto (which must
    be freshly started: nothing deployed yet), else ``Deployer(template, parameters).deploy()``
    through the API, then saved for the next run."""
    key = snapshot_key(translation_key)
    path = cache_dir() / f"deployment-{key[:32]}.pickle"
    restored = _load(path, key, template)
    if restored is not None:
        return restored, True
    deployer = Deployer(template, parameters).deploy()
    _save(path, key, deployer)
    return deployer, False


class _Pickler(pickle.Pickler):
    """Pickles moto's state: a lock is saved as a new, released lock (nothing holds one between
    API calls); the two containers moto builds with a lambda or a weak reference are saved as
    their plain equivalents."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) in _LOCK_TYPES:
            return (threading.Lock if type(obj) is _LOCK_TYPES[0] else threading.RLock), ()
        if type(obj) is collections.defaultdict and getattr(obj.default_factory, "__name__", "") == "<lambda>":
            made = obj.default_factory()  # LambdaStorage._aliases: defaultdict(lambda: {})
            if type(made) in (dict, list, set) and not made:
                return collections.defaultdict, (type(made), dict(obj))
        if type(obj) is weakref.WeakValueDictionary:  # its values are held elsewhere in the same state
            return weakref.WeakValueDictionary, (dict(obj),)
        return NotImplemented


def _backend_dicts() -> list[tuple[str, str, Any]]:
    """(module, global name, BackendDict) of every moto service the deployment touched."""
    from moto.core.base_backend import BackendDict

    found = []
    for backend_dict in BackendDict._instances:
        module = sys.modules[backend_dict.backend.__module__]
        name = next((n for n, v in vars(module).items() if v is backend_dict), None)
        if name is None:
            raise LookupError(f"{backend_dict.service_name}: its BackendDict is not a global of {module.__name__}")
        found.append((module.__name__, name, backend_dict))
    return found


def _state() -> list[tuple[str, str, dict]]:
    """(module, global name, {account id: AccountSpecificBackend}) of every moto service in use: per
    account, the AccountSpecificBackend itself (its regions are listed at creation, through a
    botocore session: kept too), holding the backend of each region."""
    return [(module, name, dict(backend_dict)) for module, name, backend_dict in _backend_dicts()]


def _restore(state: list[tuple[str, str, dict]]) -> None:
    from moto.core.base_backend import BackendDict

    for module, name, accounts in state:
        backend_dict = getattr(importlib.import_module(module), name)
        backend_dict.update(accounts)  # as BackendDict._create_account_specific_backend stores them
        if backend_dict not in BackendDict._instances:  # so that moto's reset clears it
            BackendDict._instances.append(backend_dict)


def moto_state() -> bytes | None:
    """What moto holds now, pickled (None if something in it cannot be): ``restore_moto_state``
    puts a copy of it into a freshly reset moto. The unit tests' ``account`` fixture makes its
    bucket, table and topic through the API once per process, then restores them for each test."""
    try:
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(_state())
    except (pickle.PicklingError, TypeError, AttributeError, LookupError, RecursionError):
        return None
    return buffer.getvalue()


def restore_moto_state(data: bytes) -> None:
    """A copy of the state ``moto_state`` saved, into moto (freshly reset: nothing created yet)."""
    _restore(pickle.loads(data))


def _save(path: Path, key: str, deployer: Deployer) -> None:
    try:
        state = _state()
        record = {k: v for k, v in vars(deployer).items() if k not in ("_c", "template")}
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump((key, record, state))
    except (pickle.PicklingError, TypeError, AttributeError, LookupError, RecursionError):
        return  # something moto holds cannot be saved: every run deploys through the API
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(_FORMAT + buffer.getvalue())
        os.replace(partial, path)  # atomic: a concurrent run reads the old file or the new one
    except OSError:
        pass  # a read-only checkout still runs, without the snapshot


def _load(path: Path, key: str, template: dict[str, Any]) -> Deployer | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(_FORMAT):
        return None
    try:
        saved_key, record, state = pickle.loads(data[len(_FORMAT):])
    except Exception:  # noqa: BLE001 - unreadable or made by other code: deploy through the API instead
        return None
    if saved_key != key:
        return None
    _restore(state)  # everything is loaded before moto is touched: a failure above leaves it as it was
    deployer = Deployer.__new__(Deployer)
    vars(deployer).update(record, template=template, _c={})
    return deployer
