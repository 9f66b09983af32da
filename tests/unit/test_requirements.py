"""Upgrade safety: the layer's and the development dependencies are locked (pinned, hashed), the
two locks agree, `make install` checks the hashes, and the layer's lock installs on the Lambda
platform (arm64, Python 3.13) from wheels alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER_IN = ROOT / "layers" / "common" / "requirements.in"
LAYER_LOCK = ROOT / "layers" / "common" / "requirements.txt"
DEV_IN = ROOT / "requirements-dev.in"
DEV_LOCK = ROOT / "requirements-dev.txt"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{package: (version, [hashes])} of a pip-compile --generate-hashes lock."""
    text = re.sub(r"\\\n", " ", path.read_text())
    entries = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"{path.name}: unexpected option line {line!r} (index URLs stay out)"
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert m, f"{path.name}: not a pinned, hashed requirement: {line!r}"
        entries[canonical(m.group(1))] = (m.group(2), re.findall(r"sha256:([0-9a-f]{64})", m.group(3)))
    return entries


def direct_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]+\])?==(\S+)", line)
            assert m, f"{path.name}: pin direct dependencies exactly: {line!r}"
            pins[canonical(m.group(1))] = m.group(2)
    return pins


@pytest.mark.parametrize("lock", [LAYER_LOCK, DEV_LOCK], ids=["layer", "dev"])
def test_every_package_of_the_lock_is_pinned_and_hashed(lock):
    entries = lock_entries(lock)
    assert entries
    assert all(hashes for _, hashes in entries.values()), [n for n, (_, h) in entries.items() if not h]


@pytest.mark.parametrize(("source", "lock"), [(LAYER_IN, LAYER_LOCK), (DEV_IN, DEV_LOCK)], ids=["layer", "dev"])
def test_the_lock_has_the_versions_of_its_in_file(source, lock):
    entries = lock_entries(lock)
    for name, version in direct_pins(source).items():
        assert entries[name][0] == version, f"{lock.name}: {name} {entries[name][0]} != {version} in {source.name}"


def test_development_installs_exactly_the_layers_locked_versions():
    layer, dev = lock_entries(LAYER_LOCK), lock_entries(DEV_LOCK)
    assert "-r layers/common/requirements.in" in DEV_IN.read_text()
    assert "-c layers/common/requirements.txt" in DEV_IN.read_text()
    for name, (version, _) in layer.items():
        assert dev.get(name, (None,))[0] == version, f"{name}: layer {version}, dev {dev.get(name)}"


def test_make_install_checks_the_hashes():
    rule = re.search(r"^\$\(STAMP\):.*?(?=^\S)", (ROOT / "Makefile").read_text(), re.S | re.M).group(0)
    assert "--require-hashes -r requirements-dev.txt" in rule
    assert "--no-deps -e ." in rule  # the project itself cannot be hashed: installed without dependencies


def _index_url() -> str:
    """The index pip downloads from: PIP_INDEX_URL, else pip's configuration, else PyPI."""
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        proc = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                              capture_output=True, text=True, timeout=30)
        url = proc.stdout.strip() if proc.returncode == 0 else ""
    return url or "https://pypi.org/simple"


def _registry_unreachable(url: str, timeout: float = 3.0) -> str | None:
    """Why the package registry cannot be reached (None when it answers): one short request."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/pip/", timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:  # it answered: reachable, whatever the page
        return None if exc.code < 500 else f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.slow
def test_the_layer_installs_on_lambda_arm64_python_313_from_wheels(tmp_path):
    """What `sam build` does for an arm64 python3.13 layer, without Docker: only wheels for
    manylinux aarch64 (or pure Python) may be needed.

    Needs the package registry (pip download). Offline, it is skipped with the reason; in CI
    (environment variable CI set, as CI services do) an unreachable registry fails it instead, so
    the check cannot silently stop running there."""
    index = _index_url()
    why = _registry_unreachable(index)
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI: the package registry {index} cannot be reached ({why})")
        pytest.skip(f"needs the package registry {index}, which cannot be reached ({why})")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
         "--only-binary=:all:", "--platform", "manylinux2014_aarch64", "--python-version", "3.13",
         "--implementation", "cp", "--require-hashes", "-r", str(LAYER_LOCK), "-d", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert {canonical(f.split("-")[0]) for f in files} == set(lock_entries(LAYER_LOCK))
    for name in files:
        assert name.endswith(".whl"), name
        platform = name[:-4].split("-")[-1]
        python, abi = name[:-4].split("-")[-3:-1]
        assert platform == "any" or ("aarch64" in platform and "linux" in platform), name
        assert python.startswith(("py3", "cp313", "py2.py3")) or python.startswith("cp3") and abi == "abi3", name


# `sam validate --lint` is not a test: CI (`make test`) never installs aws-sam-cli, so a test of it
# was always skipped there. The same checks run in `make lint` (cfn-lint, which sam validate --lint
# wraps); `make sam-validate` stays for a manual run.
