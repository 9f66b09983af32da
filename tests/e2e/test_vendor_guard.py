"""The vendor guard end to end (logic/guard.py): a burst queues instead of flooding the vendor,
starts in upload order, and no slot is lost whatever dies where."""

from __future__ import annotations

import json
import threading

import pytest
from vendor_import.dal.guard_table import GuardTable
from vendor_import.dal.jobs_table import _from_dynamo

from local.moto_seams import LambdaDied
from local.operator import list_text, show_text

CLEAN = b"CREATE Application \"Guard %d\"\n"


@pytest.fixture
def hopex(pipe, hopex_sim):
    hopex_sim.reset()
    yield hopex_sim
    hopex_sim.reset()
    pipe.set_settings("hopex", hopex_sim.settings())
    # the PAUSED / RESUMED messages name no import: later modules read every message as an import's
    pipe.messages[:] = [m for m in pipe.drain_messages() if "job_id" in m["body"]]


def guard_item(pipe, vendor="hopex", target="default"):
    return GuardTable(pipe.table).read(f"guard#{vendor}#{target}")


def burst(pipe, keys):
    return pipe.import_many([(CLEAN % i, key) for i, key in enumerate(keys)])


def test_a_burst_queues_at_the_limit_and_starts_in_upload_order(pipe, hopex):
    hopex.running_polls = 3
    pipe.set_settings("hopex", hopex.settings(max_concurrent_imports=2))
    keys = [f"inbox/hopex/guard-burst/f{i:02d}.mgl" for i in range(6)]
    seen_queued = []
    stop = threading.Event()

    def watch():  # the jobs table shows QUEUED imports while they wait
        while not stop.is_set():
            for item in pipe.table.scan().get("Items", []):
                key = str(item.get("source_key", ""))
                if item.get("state") == "QUEUED" and key.startswith("inbox/hopex/guard-burst"):
                    seen_queued.append(_from_dynamo(item))
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        results = burst(pipe, keys)
    finally:
        stop.set()
        watcher.join()
    assert [r.state for r in results] == ["SUCCEEDED"] * 6, [(r.record or {}).get("error") for r in results]
    assert hopex.max_concurrent_jobs == 2
    assert seen_queued, "no import was ever QUEUED in the jobs table"
    # what `list` and `show` print of a queued import's row (local/operator.py)
    queued = seen_queued[0]
    assert "QUEUED" in list_text([queued]).splitlines()[-1]
    assert "queued: " in queued["message"] and "max_concurrent_imports reached" in queued["message"]
    assert [line.split()[-1] for line in show_text(queued).splitlines() if line.startswith("state")] == ["QUEUED"]
    # queued imports are granted in upload order; imports granted together (up to the limit) reach
    # the vendor in any order, and the first arrivals at an idle guard start in the order their
    # executions reached it: each starts within max_concurrent_imports + 1 places of its upload
    starts = [int(name[1:3]) for name in hopex.job_starts]
    assert sorted(starts) == list(range(6))
    assert all(abs(position - upload) <= 3 for position, upload in enumerate(starts)), starts
    item = guard_item(pipe)
    assert item["holders"] == {} and item["waiters"] == {}


def test_a_slot_held_by_an_ended_execution_is_reclaimed(pipe, hopex):
    """The holder's execution ended without releasing (its release lost: the worst case): the next
    import asks Step Functions, frees the slot and runs; a dead waiter ahead of it
    (ended while QUEUED) does not stall the queue either."""
    pipe.set_settings("hopex", hopex.settings(max_concurrent_imports=1))
    sm = pipe.state_machine_arn("hopex")
    dead = []
    for name in ("guard-dead-holder", "guard-dead-waiter"):
        arn = pipe.sfn.start_execution(stateMachineArn=sm, name=name, input=json.dumps(
            {"bucket": pipe.bucket, "key": "inbox/hopex/guard-missing.mgl"}))["executionArn"]
        assert pipe.wait_execution(arn)["status"] in ("SUCCEEDED", "FAILED")  # ended (its upload is missing)
        dead.append(arn)
    table = GuardTable(pipe.table)
    state = table.read("guard#hopex#default")
    base = int(state["next_ticket"])
    state["holders"]["guard-dead-holder"] = {"arn": dead[0], "ticket": base, "lane": "", "since": 0}
    state["waiters"]["guard-dead-waiter"] = {"arn": dead[1], "ticket": base + 1, "lane": "", "since": 0}
    state["next_ticket"] = base + 2
    table.write("guard#hopex#default", state)
    [result] = burst(pipe, ["inbox/hopex/guard-reclaim.mgl"])
    assert result.state == "SUCCEEDED"
    item = guard_item(pipe)
    assert item["holders"] == {} and item["waiters"] == {}


@pytest.mark.parametrize("where", ["acquire-after-write", "acquire-before-write", "release-after-write",
                                   "release-before-write"])
def test_a_process_killed_at_any_point_of_acquire_or_release_loses_no_slot(pipe, hopex, monkeypatch, where):
    """The function dies (Lambda.Unknown) right before or right after the guard's conditional write,
    once; with max_concurrent_imports 1 three imports still all end and the guard ends empty."""
    pipe.set_settings("hopex", hopex.settings(max_concurrent_imports=1))
    phase, _, moment = where.partition("-")
    original = GuardTable.write
    armed = {"left": 1}

    def dying_write(self, key, state):
        holding = any(True for _ in state["holders"])
        is_phase = (phase == "acquire") == holding  # an acquire write adds a holder; a release empties
        if armed["left"] and is_phase:
            armed["left"] -= 1
            if moment == "before":
                raise LambdaDied(f"killed before the {phase} write")
            original(self, key, state)
            raise LambdaDied(f"killed after the {phase} write")
        return original(self, key, state)

    monkeypatch.setattr(GuardTable, "write", dying_write)
    keys = [f"inbox/hopex/guard-kill-{where}/f{i}.mgl" for i in range(3)]
    results = burst(pipe, keys)
    assert armed["left"] == 0, "the fault was never injected"
    assert [r.state for r in results] == ["SUCCEEDED"] * 3
    assert hopex.max_concurrent_jobs == 1
    item = guard_item(pipe)
    assert item["holders"] == {} and item["waiters"] == {}


def test_the_burst_command_uploads_a_folder_at_once_and_the_simulator_sees_the_limit(tmp_path):
    """`s3-vendor-import burst` as a user types it (a subprocess: it deploys its own local stack)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    folder = tmp_path / "drop"
    folder.mkdir()
    for i in range(5):
        (folder / f"f{i}.mgl").write_bytes(CLEAN % i)
    script = Path(sys.executable).with_name("s3-vendor-import")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "local.cli"]
    proc = subprocess.run([*command, "burst", "--folder", str(folder), "--prefix", "inbox/hopex/burst",
                           "--simulator", "--max-concurrent", "2", "--json", "--out", str(tmp_path / "out")],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert [r["state"] for r in doc["imports"]] == ["SUCCEEDED"] * 5
    assert [r["key"] for r in doc["imports"]] == [f"inbox/hopex/burst/{i}-f{i}.mgl" for i in range(5)]
    assert doc["max_concurrent_imports"] == 2 and doc["max_concurrent_jobs_seen"] == 2


def test_an_outage_pauses_the_target_once_and_resumes_it_without_failing_the_imports(pipe, hopex):
    """The vendor answers 503 to everything: after breaker_failures consecutive failures the target
    pauses (one PAUSED message), the imports wait instead of failing, a probe after the cool-down finds
    the vendor back, the target resumes (one RESUMED message) and every import succeeds.
    One failure opens it here: with 2, the second import's first call must fail before the first
    import's retries run out, and at the tests' time scale (a Retry of 2 s takes 2 ms) that is a race
    the first import can lose on a loaded machine (tests/unit/test_vendor_step_exact.py pins the
    threshold of several imports without a clock)."""
    pipe.set_settings("hopex", hopex.settings(max_concurrent_imports=2, breaker_failures=1,
                                              breaker_cooldown_seconds=30))
    pipe.drain_messages()
    before = len(pipe.messages)
    # an operator's subscription to the outage alerts only (attribute state, like the imports' own)
    url = pipe.sqs.create_queue(QueueName="guard-outage-alerts")["QueueUrl"]
    queue_arn = pipe.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pipe.sns.subscribe(TopicArn=pipe.deployment.refs["CompletionTopic"], Protocol="sqs", Endpoint=queue_arn,
                       Attributes={"FilterPolicy": json.dumps({"state": ["PAUSED", "RESUMED"]})})
    hopex.down = True
    done = threading.Event()

    def outage():  # the vendor comes back 2 wall seconds (2000 s at the tests' time scale) after its first refusal
        while not done.is_set() and not hopex.refused_while_down:
            done.wait(0.02)
        done.wait(2.0)
        hopex.down = False

    timer = threading.Thread(target=outage, daemon=True)
    timer.start()
    try:
        results = burst(pipe, [f"inbox/hopex/guard-outage/f{i}.mgl" for i in range(4)])
    finally:
        done.set()
        timer.join()
        hopex.down = False
    assert hopex.refused_while_down > 0, [(r.state, (r.record or {}).get("error")) for r in results]
    assert [r.state for r in results] == ["SUCCEEDED"] * 4, [(r.record or {}).get("error") for r in results]
    alerts = [m["attributes"].get("state") for m in pipe.drain_messages()[before:]
              if m["attributes"].get("state") in ("PAUSED", "RESUMED")]
    assert alerts == ["PAUSED", "RESUMED"]
    filtered = [json.loads(json.loads(m["Body"])["Message"]) for m in pipe.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])]
    assert sorted(d["state"] for d in filtered) == ["PAUSED", "RESUMED"]  # and no import's message
    assert {(d["vendor"], d["target"]) for d in filtered} == {("hopex", "default")}
    assert guard_item(pipe)["breaker"]["state"] == "CLOSED"


def test_an_operator_pauses_a_target_by_hand_and_resumes_it(pipe, hopex):
    """What `s3-vendor-import guard pause|resume` does (local/guard_cli.py): while paused, new imports
    wait QUEUED and the vendor sees nothing; after resume they all run; one message each way."""
    from vendor_import.logic.guard import Breaker, Guard, describer, sns_announcer

    from local.guard_cli import status_of

    pipe.set_settings("hopex", hopex.settings(max_concurrent_imports=2))
    guard = Guard(GuardTable(pipe.table), describer(pipe.sfn))
    breaker = Breaker(guard, sns_announcer(pipe.sns, pipe.deployment.refs["CompletionTopic"]))
    pipe.drain_messages()
    before = len(pipe.messages)
    assert breaker.set_state("hopex", "default", "PAUSED") is True
    assert breaker.set_state("hopex", "default", "PAUSED") is False  # already paused: no second message
    results: list = []
    runner = threading.Thread(target=lambda: results.extend(
        burst(pipe, [f"inbox/hopex/guard-manual/f{i}.mgl" for i in range(3)])))
    runner.start()
    try:
        for _ in range(600):
            doc = status_of(guard, "hopex", "default")
            if len(doc["queued"]) == 3:
                break
            threading.Event().wait(0.05)
        assert doc["breaker"]["state"] == "PAUSED" and len(doc["queued"]) == 3 and doc["running"] == []
        assert hopex.job_starts == []
    finally:
        breaker.set_state("hopex", "default", "RESUMED")
        runner.join()
    assert [r.state for r in results] == ["SUCCEEDED"] * 3
    alerts = [m["attributes"].get("state") for m in pipe.drain_messages()[before:]
              if m["attributes"].get("state") in ("PAUSED", "RESUMED")]
    assert alerts == ["PAUSED", "RESUMED"]


def queue_waits(pipe, job_id: str) -> int:
    """How many times the import's executions entered "Wait in queue" (counted in their histories)."""
    arns = [e["executionArn"] for e in pipe.sfn.list_executions(stateMachineArn=pipe.state_machine_arn("hopex"),
                                                                   maxResults=1000)["executions"]
            if e["name"].startswith(job_id)]
    return sum(1 for arn in arns for e in pipe.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
               if e.get("stateEnteredEventDetails", {}).get("name") == "Wait in queue")


def test_an_import_that_never_queues_costs_nothing_more_and_a_queued_one_3_per_check(pipe, hopex):
    """No limit (the default): Submit + Choice, Wait + Poll + Choice per poll, Finalize
    (2 + 3 x polls + 1), as without the guard. With a limit: + Wait in queue, Submit, Choice per
    check (a fresh upload checks at least once: logic/guard.SETTLE_SECONDS)."""
    hopex.running_polls = 2
    [free] = burst(pipe, ["inbox/hopex/guard-cost/free.mgl"])
    assert free.state == "SUCCEEDED" and queue_waits(pipe, free.record["job_id"]) == 0
    assert free.record["cost"]["state_transitions"] == 2 + 3 * free.record["polls"] + 1
    pipe.set_settings("hopex", hopex.settings(max_concurrent_imports=1))
    first, second = burst(pipe, ["inbox/hopex/guard-cost/a.mgl", "inbox/hopex/guard-cost/b.mgl"])
    assert (first.state, second.state) == ("SUCCEEDED", "SUCCEEDED")
    checks = []
    for result in (first, second):
        checks.append(queue_waits(pipe, result.record["job_id"]))
        assert result.record["cost"]["state_transitions"] == 2 + 3 * result.record["polls"] + 1 + 3 * checks[-1]
    assert sum(checks) >= 2, checks  # the second waited for the first


def test_two_targets_of_one_vendor_each_have_their_own_limit(e2e, pipe, hopex):
    """prod: max_concurrent_imports 1; test: no limit. Two uploads to each at once: prod's run one
    after the other (the second QUEUED), test's side by side; neither target holds the other."""
    from local.simulators import start_targets, targets_document

    sims = start_targets("hopex", ["prod", "test"])
    try:
        doc = targets_document("hopex", {"default": hopex, **sims})
        doc["targets"]["prod"]["max_concurrent_imports"] = 1
        for sim in sims.values():
            sim.running_polls = 3
        pipe.set_settings("hopex", doc)
        keys = [f"inbox/hopex/target={t}/guard-targets-{t}{i}.mgl" for t in ("prod", "test") for i in range(2)]
        results = burst(pipe, keys)
        assert [r.state for r in results] == ["SUCCEEDED"] * 4, [(r.record or {}).get("error") for r in results]
        assert [r.record["target"] for r in results] == ["prod", "prod", "test", "test"]
        assert (sims["prod"].max_concurrent_jobs, sims["test"].max_concurrent_jobs) == (1, 2)
        # only prod's imports ever waited in the queue
        assert [bool(queue_waits(pipe, r.record["job_id"])) for r in results] == [True, True, False, False]
        assert guard_item(pipe, target="test")["holders"] == {}  # no limit, no lane: nothing written
    finally:
        for sim in sims.values():
            sim.stop()


def test_an_import_that_continues_in_a_new_execution_keeps_its_slot(pipe, hopex, monkeypatch):
    """Limit 1. The first import's poll loop goes on in new executions (a history budget of 120
    events); each of its old executions ends SUCCEEDED without releasing. The second, QUEUED behind it
    (its checks asking Step Functions about the holder), must not take the slot before the first ends."""
    from vendor_import.logic import continuation

    monkeypatch.setattr(continuation, "HISTORY_BUDGET", 120)
    hopex.running_polls = 12
    pipe.set_settings("hopex", {**hopex.settings(max_concurrent_imports=1, queue_check_seconds=5),
                                "poll": {"first_wait_seconds": 1, "max_wait_seconds": 1, "factor": 1.0}})
    results = burst(pipe, ["inbox/hopex/guard-continue/a.mgl", "inbox/hopex/guard-continue/b.mgl"])
    assert [r.state for r in results] == ["SUCCEEDED", "SUCCEEDED"]
    # (two uploads at an idle target: whichever execution reaches the guard first runs first)
    ran_first = {"a": results[0], "b": results[1]}[hopex.job_starts[0].split(".")[0]]
    assert ran_first.record["executions_count"] >= 2, ran_first.record.get("executions_count")
    assert hopex.max_concurrent_jobs == 1 and len(hopex.job_starts) == 2
    item = guard_item(pipe)
    assert item["holders"] == {} and item["waiters"] == {}


def test_two_triggers_of_one_campaign_mapping_run_one_after_the_other(pipe, sims):
    """Campaign runs one ingestion per XDM mapping (seed 001: "Ingestion request already in progress
    for the Mapping ID"): by default the guard queues the second trigger of a mapping until the
    first ends, so it gets an ingestion of its own instead of adopting the first one's."""
    campaign = sims["campaign"]
    campaign.reset()
    keys = [f"inbox/campaign/mapping=ok-guard-lane/trigger-{i}.json" for i in range(2)]
    for key in keys:
        pipe.upload(b"", key)
    outcomes = {o["key"]: o for o in pipe.pump_queue()}
    results = [pipe._result_for(key, outcomes.get(key)) for key in keys]
    assert [r.state for r in results] == ["SUCCEEDED", "SUCCEEDED"], [(r.record or {}).get("error") for r in results]
    assert campaign.adopted_answers == 0 and campaign.max_concurrent_jobs == 1
    assert len({r.record["vendor_ref"] for r in results}) == 2  # one ingestion request each
