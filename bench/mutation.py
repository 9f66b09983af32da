"""`make mutation`: mutation testing (mutmut 3) of the import logic, the poll pacing, and the
record readers and cursors; prints the score and every surviving mutant. Not part of `make test`.

Scope (SCOPE below): layers/common/vendor_import/logic/, polling.py, pace.py, and the readers that
hold the record cursors (connectors/aep_records.py, cirrus_xml.py, raw_csv.py). Tests (TESTS): the
unit and contract tests that exercise them, no e2e suite: each mutant runs only the tests that
reached the mutated function (mutmut records that once), in forked workers, one per core.

mutmut derives module names from file paths, so the package is staged as src/vendor_import in
out/mutation/ (the tests import ``vendor_import``); mutmut works in out/mutation/mutants/.

Environment: MUTATION_SCOPE=a.py,b.py (paths under vendor_import/) narrows the scope, e.g.
``MUTATION_SCOPE=polling.py make mutation`` for a run of a minute; MUTATION_CHILDREN sets the
number of workers (default: the number of cores). Survivors are explained in docs/mutation.md.
``--recheck`` runs only the survivors of the last run again, with the tests as they are now, and
prints the score with the other verdicts of that run kept (the figures after writing kill tests).
Exit status: 0 when the score reaches GOAL, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "out" / "mutation"
GOAL = 90.0

SCOPE = [
    "logic/*.py",
    "polling.py",
    "pace.py",
    "connectors/aep_records.py",
    "connectors/cirrus_xml.py",
    "connectors/raw_csv.py",
]
TESTS = [
    "tests/unit/test_finalize.py",
    "tests/unit/test_finalize_exact.py",
    "tests/unit/test_vendor_step.py",
    "tests/unit/test_vendor_step_payload.py",
    "tests/unit/test_routing.py",
    "tests/unit/test_submit_upload.py",
    "tests/unit/test_submit_upload_exact.py",
    "tests/unit/test_generic_scrub.py",
    "tests/unit/test_pace.py",
    "tests/unit/test_pace_exact.py",
    "tests/unit/test_routing_exact.py",
    "tests/unit/test_targets.py",  # check_target
    "tests/unit/test_compressed_source.py",  # the vendor step on a staged (decompressed) source
    "tests/unit/test_polling.py",
    "tests/unit/test_polling_exact.py",
    "tests/unit/test_aep_records.py",
    "tests/unit/test_aep_records_messages.py",
    "tests/unit/test_aep_records_exact.py",
    "tests/unit/test_cirrus_xml.py",
    "tests/unit/test_cirrus_xml_exact.py",
    "tests/unit/test_cirrus_fast_send.py",  # form quoting and the raw payload
    "tests/unit/test_simplemente_raw.py",
    "tests/unit/test_raw_csv_exact.py",
    "tests/unit/test_connector_fast_paths.py",
    "tests/unit/test_continuation.py",
    "tests/unit/test_continuation_exact.py",
    "tests/unit/test_record_count.py",
    "tests/unit/test_record_count_exact.py",
    "tests/unit/test_settle.py",  # the vendor step's settle action's readers (not_sent in the tally)
    "tests/unit/test_guard.py",  # the vendor guard (logic/guard.py): limits, lanes, shared rates, reclaim
    "tests/unit/test_guard_exact.py",  # the guard's slots, queue, breaker and shared rates to exact values
    "tests/unit/test_vendor_step_exact.py",  # the vendor step's admission, QUEUED payload, pauses, settle
    "tests/contract/test_cursor_labels.py",  # the cursors over HTTP; the other contract suites cost
    # a quarter of the run for the few reader mutants only they reach
]
# Tests left out of the mutation run, with why: each reaches functions whose mutants other,
# exact tests kill, and a surviving mutant would pay its whole duration.
DESELECT = [
    # a sweep of 2 x 259,200 one-second polls (11 s under mutmut's trampolines) for an upper bound
    # only; test_continuation's exact figures and tests/unit/test_continuation_exact.py pin it
    "tests/unit/test_continuation.py::test_every_valid_poll_setting_keeps_each_execution_under_both_limits",
]
DO_NOT_MUTATE = [r"^\s*raise \w+\(", r"^\s*(?:log|logger)\.(?:debug|info|warning|error|exception)\("]
COPIED = ["tests", "local", "events", "statemachines", "functions", "template.yaml"]
# mutmut exit codes (mutmut/stats.py): 1 and 3 kill, 0 survives
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "type check",
          None: "not checked"}


# Appended to the staged tests/conftest.py: a mutant's session runs the tests that reach the mutated
# function and stops at the first failure (-x), in the order of mutmut's set of names (arbitrary).
# The order here: first the tests that killed earlier mutants of the same function (most recent
# first: the test that pins a line usually pins its neighbours), then the tests of the mutated
# module's own test files, each group cheapest first (the durations mutmut recorded). A killed
# mutant then costs about one test. The verdicts are the same in any order: a mutant is killed when
# any of its tests fails. The killers are kept in out/mutation/killers/<function> (a line a kill).
KILLERS_FIRST = """

def _mutant_function():  # bench/mutation.py
    import os

    name = os.environ.get("MUTANT_UNDER_TEST", "")
    return name.rsplit("__mutmut_", 1)[0] if "__mutmut_" in name else ""


def _killers_file(function):
    import hashlib
    import pathlib

    return pathlib.Path("killers") / hashlib.sha256(function.encode()).hexdigest()[:24]


def pytest_collection_modifyitems(session, config, items):  # bench/mutation.py: likely killers first
    import json

    try:
        with open("mutmut-stats.json") as stats:
            durations = json.load(stats)["duration_by_test"]
    except (OSError, ValueError, KeyError):
        durations = {}
    function = _mutant_function()
    killers = {}
    if function:
        try:
            lines = _killers_file(function).read_text().split()
        except OSError:
            lines = []
        for rank, nodeid in enumerate(reversed(lines)):
            killers.setdefault(nodeid, rank)
    module = function.rsplit(".", 1)[0].rsplit(".", 1)[-1] if function else ""

    def order(item):
        own = bool(module) and ("test_" + module) in item.nodeid.split("::", 1)[0]
        return (killers.get(item.nodeid, len(killers)), not own, durations.get(item.nodeid, 0.0))

    items.sort(key=order)


def pytest_runtest_logreport(report):  # bench/mutation.py: remember which test killed this function's mutant
    if not report.failed:
        return
    function = _mutant_function()
    if function:
        path = _killers_file(function)
        path.parent.mkdir(exist_ok=True)
        with open(path, "a") as killers:  # one short line per write: appends do not interleave
            killers.write(report.nodeid + "\\n")
"""


def stage(scope: list[str], *, keep_results: bool = False) -> None:
    """Stage the package, the tests and mutmut's configuration in out/mutation. ``keep_results``:
    refresh the tests and the configuration only (mutmut's mutants and verdicts stay)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    if not keep_results:
        if STAGE.exists():
            shutil.rmtree(STAGE)
        STAGE.mkdir(parents=True)
        shutil.copytree(ROOT / "layers/common/vendor_import", STAGE / "src/vendor_import", ignore=ignore)
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.rmtree(STAGE / name, ignore_errors=True)
            shutil.copytree(src, STAGE / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, STAGE / name)
    with open(STAGE / "tests" / "conftest.py", "a") as conftest:  # the staged copy only
        conftest.write(KILLERS_FIRST)
    toml = (ROOT / "pyproject.toml").read_text()
    toml = toml.replace('pythonpath = ["layers/common", "."]', 'pythonpath = ["."]')
    deselect = [arg for test in DESELECT for arg in ("--deselect", test)]
    # --assert=plain: each mutant's pytest session imports the test modules again, and rewriting
    # their asserts cost 0.25 s of the 0.4 s a session takes; a failing assert fails all the same
    toml += "\n[tool.mutmut]\n" + "\n".join([
        'source_paths = ["src/vendor_import"]',
        f"only_mutate = {json.dumps(['src/vendor_import/' + s for s in scope])}",
        f"pytest_add_cli_args_test_selection = {json.dumps(TESTS)}",
        f"pytest_add_cli_args = {json.dumps(['-p', 'no:cacheprovider', '-q', '--assert=plain'] + deselect)}",
        f"also_copy = {json.dumps(COPIED)}",
        "timeout_multiplier = 5.0",
        # the text of an error is not mutated (each string literal would give three mutants, most of
        # the run): the statement that raises is skipped, its condition is still mutated
        f"do_not_mutate_patterns = {json.dumps(DO_NOT_MUTATE)}",
        "use_git_change_detection = false",
    ]) + "\n"
    (STAGE / "pyproject.toml").write_text(toml)


def results() -> Counter:
    """{mutant name: status} from mutmut's .meta files."""
    out: dict[str, str] = {}
    for meta in sorted((STAGE / "mutants" / "src").rglob("*.meta")):
        data = json.loads(meta.read_text())
        for name, code in data.get("exit_code_by_key", {}).items():
            out[name] = STATUS.get(code, f"suspicious ({code})")
    return out


def per_file(status: dict[str, str]) -> dict[str, Counter]:
    """{module path under vendor_import/: Counter of statuses}."""
    out: dict[str, Counter] = {}
    for name, state in status.items():
        module = name.split(".x", 1)[0].removeprefix("vendor_import.").replace(".", "/") + ".py"
        out.setdefault(module, Counter())[state] += 1
    return out


# one process for every diff (``mutmut show`` per survivor costs a second each)
_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
out = {}
for name in json.load(sys.stdin):
    try:
        out[name] = get_diff_for_mutant(name, path=find_mutant(name).path)
    except Exception as exc:  # noqa: BLE001 - a diff that cannot be shown is named, not fatal
        out[name] = f"(no diff: {exc!r})"
print(json.dumps(out))
"""


def survivor_diffs(names: list[str]) -> dict[str, str]:
    """{mutant name: the changed lines}."""
    if not names:
        return {}
    proc = subprocess.run([sys.executable, "-c", _DIFFS], cwd=STAGE, input=json.dumps(names),
                          capture_output=True, text=True)
    try:
        raw = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}
    return {n: "\n".join(ln for ln in d.splitlines() if re.match(r"^[-+](?![-+])", ln)) for n, d in raw.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--scope", default=os.environ.get("MUTATION_SCOPE", ""),
                        help="comma-separated files to mutate (default: env MUTATION_SCOPE, else the whole scope)")
    parser.add_argument("--children", default=os.environ.get("MUTATION_CHILDREN") or str(os.cpu_count() or 2),
                        help="mutmut worker processes (default: env MUTATION_CHILDREN, else the CPU count)")
    parser.add_argument("--recheck", action="store_true",
                        help="run only the survivors of the last run in out/mutation again, with the tests as they "
                             "are now (after writing kill tests); the other verdicts of that run stand")
    args = parser.parse_args(argv)
    scope = [s.strip() for s in args.scope.split(",") if s.strip()] or SCOPE
    children = str(args.children)
    mutmut = Path(sys.executable).with_name("mutmut")
    rechecked: list[str] = []
    previous: dict[str, str] = {}
    if args.recheck:
        # the verdicts of the last run, rechecks included (mutmut itself keeps only those it ran last)
        saved = STAGE / "verdicts.json"
        previous = json.loads(saved.read_text()) if saved.exists() else results()
        rechecked = sorted(n for n, s in previous.items() if s in ("survived", "no tests"))
        if not rechecked:
            print("nothing to recheck: no survivors in out/mutation (run without --recheck first)")
            return 1
        stage(scope, keep_results=True)  # a new test selection: mutmut maps tests to functions again
        print(f"mutation recheck of {len(rechecked)} survivors; {len(TESTS)} test files; {children} workers",
              flush=True)
    else:
        stage(scope)
        print(f"mutation scope: {', '.join(scope)}; {len(TESTS)} test files; {children} workers", flush=True)
    started = time.monotonic()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # mutmut's progress line goes to the terminal as it runs (a whole run takes the best part of an
    # hour) and, whole, to out/mutation/mutmut-run.log
    with open(STAGE / "mutmut-run.log", "wb") as log:
        run = subprocess.Popen([str(mutmut), "run", "--max-children", children, *rechecked], cwd=STAGE, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        while chunk := run.stdout.read1(65536):
            log.write(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        run.wait()
    output = (STAGE / "mutmut-run.log").read_text(errors="replace")
    elapsed = time.monotonic() - started
    status = results()
    if previous:  # mutmut reset every verdict (new configuration) and ran the named ones only
        status = {**previous, **{n: status[n] for n in rechecked if status.get(n, "not checked") != "not checked"}}
    if not status:
        print(output[-5000:])
        print("mutmut produced no results (log: out/mutation/mutmut-run.log)")
        return 1
    (STAGE / "verdicts.json").write_text(json.dumps(status))
    counts = Counter(status.values())
    considered = sum(n for s, n in counts.items() if s not in ("skipped", "not checked"))
    killed = counts["killed"] + counts["timeout"] + counts["type check"]
    score = 100.0 * killed / considered if considered else 0.0
    survivors = sorted(n for n, s in status.items() if s not in ("killed", "timeout", "type check", "skipped"))
    diffs = survivor_diffs(survivors)
    lines = [f"{name} [{status[name]}]\n{diffs.get(name, '')}\n" for name in survivors]
    (STAGE / "survivors.txt").write_text("\n".join(lines))
    print(f"\nsurviving mutants ({len(survivors)}; diffs in out/mutation/survivors.txt):")
    for block in lines:
        print("  " + block.replace("\n", "\n    ").rstrip())
    print("\nper file: mutants, killed (timeouts included), survived, score")
    for path, file_counts in sorted(per_file(status).items()):
        total = sum(file_counts.values())
        dead = file_counts["killed"] + file_counts["timeout"] + file_counts["type check"]
        print(f"  {path:<28} {total:>5} {dead:>5} {total - dead:>4} {100.0 * dead / total:5.1f} %")
    print(f"\nmutants: {len(status)}; " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
    print(f"mutation score: {score:.1f} % killed ({killed}/{considered}) in {elapsed / 60:.1f} min; goal {GOAL:.0f} %")
    return 0 if score >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
