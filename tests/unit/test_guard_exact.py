"""The vendor guard (logic/guard.py) to exact values: slots, the FIFO queue, lanes, reclaim, the
circuit breaker and the shared per-second budgets, over a moto DynamoDB table. Every expected value
is worked out by hand from the rules the module's docstrings state."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from vendor_import.dal.guard_table import Conflict, GuardTable
from vendor_import.logic import guard as g
from vendor_import.logic.continuation import next_name
from vendor_import.logic.guard import Breaker, Decision, Gate, Guard, SharedPacer, SharedRate

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
KEY = "guard#hopex#default"
PREFIX = "arn:aws:states:us-east-1:123456789012:execution:stack-hopex-import"


@pytest.fixture
def table(aws):
    return aws["dynamodb"].create_table(
        TableName="guard-unit", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}])


class World:
    """A guard whose clock and Step Functions statuses the test sets (every ARN RUNNING unless told)."""

    def __init__(self, table):
        self.now = NOW
        self.status: dict[str, str | None] = {}
        self.described: list[str] = []
        self.announced: list[tuple] = []
        self.table = GuardTable(table)
        self.guard = Guard(self.table, describe=self.describe, clock=lambda: self.now)
        self.breaker = Breaker(self.guard, announce=lambda *a: self.announced.append(a))

    def describe(self, arn):
        self.described.append(arn)
        return self.status.get(arn, "RUNNING")

    def acquire(self, job, limit=2, **kw):
        return self.guard.acquire("hopex", "default", job, f"{PREFIX}:{job}", limit=limit, **kw)

    def item(self):
        return self.table.read(KEY)


@pytest.fixture
def w(table):
    return World(table)


def arn(job):
    return f"{PREFIX}:{job}"


# -- pure parts -----------------------------------------------------------------------------------------------

def test_limits_lanes_and_the_decision_record():
    assert g.limit_of({"max_concurrent_imports": -3}) == 0
    assert g.lane_of("campaign", {}, {"mapping": "S1"}) == "mapping=S1"  # the target's own mapping
    assert g.lane_of("campaign", {"mapping_id": "M2"}, {"one_import_per_lane": True}) == "mapping=M2"
    assert g.lane_of("simplemente", {}, {"one_import_per_lane": True}) == "flux=?"
    assert g.lane_of("simplemente", {}, {"one_import_per_lane": True, "flux": "f9"}) == "flux=f9"
    assert g.lane_of("hopex", {}, {}) is None
    assert Decision(False, 30, 2, 7).as_dict() == {"acquired": False, "wait_seconds": 30, "position": 2,
                                                   "ticket": 7, "paused": False}
    assert Decision(True, 0, 0, 1, paused=True).as_dict()["paused"] is True
    assert g.breaker_settings({}) == (5, 60, 900, 21600)
    assert g.breaker_settings({"breaker_failures": 2, "breaker_cooldown_seconds": 10,
                               "breaker_max_cooldown_seconds": 40, "pause_deadline_seconds": 99}) == (2, 10, 40, 99)
    assert g.rate_key("aep", "prod", "max_messages_per_second") == "rate#aep#prod#max_messages_per_second"


def test_times_and_upload_order():
    assert g._iso_ms(NOW) == "2023-11-14T22:13:20.000Z"
    assert g._iso_ms(NOW + 0.25) == "2023-11-14T22:13:20.250Z"
    assert g._order({"since": NOW + 0.5, "ticket": 7}) == "2023-11-14T22:13:20.500Z|000000000007"
    assert g._order({"order": "x|1", "since": NOW, "ticket": 7}) == "x|1"
    assert g._order({"ticket": 3}) == "1970-01-01T00:00:00.000Z|000000000003"
    assert g._fresh("2023-11-14T22:13:15.001Z", NOW) is True  # 4.999 s ago
    assert g._fresh("2023-11-14T22:13:15.000Z", NOW) is False  # 5 s ago: not fresh any more
    assert g._fresh("2023-11-14T22:13:20+00:00", NOW) is True
    assert g._fresh("yesterday", NOW) is False
    assert g._fresh("", NOW) is False and g._fresh(None, NOW) is False


# -- slots and the queue ----------------------------------------------------------------------------------------

def test_slots_are_granted_up_to_the_limit_then_imports_queue_with_growing_checks(w):
    assert w.acquire("j1") == Decision(True, 0, 0, 0)
    item = w.item()
    assert item["holders"] == {"j1": {"arn": arn("j1"), "index": 0, "ticket": 0, "lane": "", "since": NOW,
                                      "order": "2023-11-14T22:13:20.000Z|000000000000"}}
    assert (item["waiters"], item["next_ticket"], item["version"]) == ({}, 1, 1)
    w.now += 1
    assert w.acquire("j2") == Decision(True, 0, 0, 1)
    assert w.described == []  # a free slot: nobody is asked about
    w.now += 1
    assert w.acquire("j3") == Decision(False, 30, 0, 2)
    assert w.described == [arn("j1"), arn("j2")]  # full: the holders are checked (alive)
    assert w.acquire("j4") == Decision(False, 30, 1, 3)  # 30 x (1 + 1 // 2)
    assert w.acquire("j5") == Decision(False, 60, 2, 4)  # 30 x (1 + 2 // 2)
    assert w.acquire("j6", check_seconds=200) == Decision(False, 300, 3, 5)  # capped at check_max_seconds
    item = w.item()
    assert sorted(item["holders"]) == ["j1", "j2"] and sorted(item["waiters"]) == ["j3", "j4", "j5", "j6"]
    assert item["waiters"]["j3"] == {"arn": arn("j3"), "index": 0, "ticket": 2, "lane": "", "since": NOW + 2,
                                     "order": "2023-11-14T22:13:22.000Z|000000000002"}
    assert item["next_ticket"] == 6
    # j1's execution failed without releasing: j4 reclaims the slot, but j3 was queued first
    w.status[arn("j1")] = "FAILED"
    w.described.clear()
    assert w.acquire("j4") == Decision(False, 30, 1, 3)
    assert w.described == [arn("j1"), arn("j2")]  # full: the holders only, not j3 ahead
    assert sorted(w.item()["holders"]) == ["j2"]
    assert w.acquire("j3") == Decision(True, 0, 0, 2)
    item = w.item()
    assert sorted(item["holders"]) == ["j2", "j3"] and sorted(item["waiters"]) == ["j4", "j5", "j6"]
    assert item["holders"]["j3"]["since"] == NOW + 2


def test_a_queued_check_that_changes_nothing_writes_nothing(w):
    w.acquire("j1", limit=1)
    w.acquire("j2", limit=1)
    version = w.item()["version"]
    assert w.acquire("j2", limit=1) == Decision(False, 30, 0, 1)
    assert w.item()["version"] == version


def test_a_holder_asking_again_keeps_its_slot_and_moves_to_its_new_execution(w):
    w.acquire("j1")
    assert w.guard.acquire("hopex", "default", "j1", arn("j1"), limit=2) == Decision(True, 0, 0, 0)
    assert w.item()["version"] == 1  # same execution: nothing written
    assert w.guard.acquire("hopex", "default", "j1", "", limit=2) == Decision(True, 0, 0, 0)
    assert w.item()["version"] == 1
    assert w.guard.acquire("hopex", "default", "j1", arn("j1-b"), limit=2, index=2) == Decision(True, 0, 0, 0)
    item = w.item()
    assert (item["holders"]["j1"]["arn"], item["holders"]["j1"]["index"], item["version"]) == (arn("j1-b"), 2, 2)


def test_a_waiter_asking_from_a_new_execution_is_moved_there(w):
    w.acquire("j1", limit=1)
    w.acquire("j2", limit=1)
    assert w.guard.acquire("hopex", "default", "j2", arn("j2-b"), limit=1, index=1) == Decision(False, 30, 0, 1)
    item = w.item()
    assert (item["waiters"]["j2"]["arn"], item["waiters"]["j2"]["index"], item["version"]) == (arn("j2-b"), 1, 3)


def test_waiters_meant_to_take_the_free_slots_are_checked_and_dropped_when_ended(w):
    w.acquire("h1")
    w.acquire("h2")
    w.acquire("w1")  # queued
    w.guard.release("hopex", "default", "h2")
    w.status[arn("w1")] = "ABORTED"
    w.described.clear()
    assert w.acquire("me") == Decision(True, 0, 0, 3)
    assert w.described == [arn("w1")]  # a free slot: only the waiter ahead, not the holder
    item = w.item()
    assert sorted(item["holders"]) == ["h1", "me"] and item["waiters"] == {}


def test_free_slots_go_to_earlier_uploads_first(w):
    w.acquire("h1", limit=1)
    # j-late reaches the guard first but was uploaded after j-early
    late = w.acquire("j-late", limit=1, uploaded_at="2023-11-14T22:10:02.000Z")
    early = w.acquire("j-early", limit=1, uploaded_at="2023-11-14T22:10:01.000Z")
    assert (late, early) == (Decision(False, 30, 0, 1), Decision(False, 30, 0, 2))
    # one ahead with a limit of 1: 30 x (1 + 1 // 1)
    assert w.acquire("j-late", limit=1, uploaded_at="2023-11-14T22:10:02.000Z") == Decision(False, 60, 1, 1)
    w.guard.release("hopex", "default", "h1")
    assert w.acquire("j-late", limit=1) == Decision(False, 60, 1, 1)  # j-early is next
    assert w.acquire("j-early", limit=1) == Decision(True, 0, 0, 2)
    assert w.item()["waiters"]["j-late"]["order"] == "2023-11-14T22:10:02.000Z|000000000001"


def test_with_two_free_slots_the_second_waiter_may_start_but_not_the_third(w):
    for job in ("h1", "h2", "h3"):
        w.acquire(job, limit=3)
    w.acquire("a", limit=3)
    w.acquire("b", limit=3)
    w.guard.release("hopex", "default", "h1")
    w.guard.release("hopex", "default", "h2")
    w.acquire("c", limit=3)  # two ahead, two free slots: they are the earlier uploads'
    assert w.acquire("b", limit=3) == Decision(True, 0, 0, 4)  # one ahead of two free slots
    assert w.acquire("c", limit=3) == Decision(False, 30, 1, 5)
    assert sorted(w.item()["holders"]) == ["b", "h3"]


def test_at_most_50_waiters_ahead_are_checked_per_acquire(w):
    waiters = {f"w{i:02d}": {"arn": arn(f"w{i:02d}"), "ticket": i, "lane": "", "since": 0,
                             "order": f"2000-01-01T00:00:00.000Z|{i:012d}"} for i in range(51)}
    w.table.write(KEY, {"holders": {}, "waiters": waiters, "next_ticket": 51, "breaker": {}, "version": 0})
    assert w.acquire("me", limit=100) == Decision(True, 0, 0, 51)  # 51 ahead of 100 free slots: room for all
    assert w.described == [arn(f"w{i:02d}") for i in range(50)]


def test_an_import_of_a_burst_waits_for_earlier_uploads_to_register_first(w):
    fresh = "2023-11-14T22:13:15.100Z"  # 4.9 s ago
    assert w.acquire("j1", limit=1, uploaded_at=fresh) == Decision(False, 2, 0, 0)
    assert w.item()["waiters"]["j1"]["order"] == f"{fresh}|000000000000"
    w.now += 2
    assert w.acquire("j1", limit=1, uploaded_at=fresh) == Decision(True, 0, 0, 0)
    # without a limit, or uploaded 5 s ago, there is no burst wait
    assert w.acquire("j2", limit=0, uploaded_at="2023-11-14T22:13:21.000Z") == Decision(True, 0, 0, 1)
    assert w.acquire("j3", limit=3, uploaded_at="2023-11-14T22:13:17.000Z") == Decision(True, 0, 0, 2)


def test_the_burst_wait_counts_the_earlier_uploads_already_waiting(w):
    w.acquire("h1", limit=1)
    w.acquire("a", limit=1)
    # a arrived (unordered by upload time) at 22:13:20.000, b was uploaded then too: a is ahead
    assert w.acquire("b", limit=1, uploaded_at="2023-11-14T22:13:20.000Z") == Decision(False, 2, 1, 2)


def test_a_full_queue_turns_new_imports_away_without_writing(w):
    waiters = {f"w{i}": {"arn": "", "ticket": i, "lane": "", "since": 0, "order": f"x|{i:012d}"}
               for i in range(g.MAX_WAITERS)}
    w.table.write(KEY, {"holders": {}, "waiters": waiters, "next_ticket": g.MAX_WAITERS, "breaker": {},
                        "version": 0})
    assert w.acquire("late", limit=1) == Decision(False, 300, 1000, -1)
    assert w.acquire("late", limit=1, check_max_seconds=120) == Decision(False, 120, 1000, -1)
    item = w.item()
    assert item["version"] == 1 and "late" not in item["waiters"]


def test_a_paused_target_queues_every_new_import_for_its_cool_down(w):
    w.table.write(KEY, {"holders": {}, "waiters": {}, "next_ticket": 0, "version": 0,
                        "breaker": {"state": "OPEN", "cooldown": 120}})
    assert w.acquire("j1", limit=0) == Decision(False, 120, 0, 0, paused=True)
    state = w.item()
    state["breaker"]["cooldown"] = 1000
    w.table.write(KEY, state)
    assert w.acquire("j1", limit=0) == Decision(False, 300, 0, 0, paused=True)  # at most check_max_seconds
    state = w.item()
    state["breaker"] = {"state": "OPEN"}
    w.table.write(KEY, state)
    assert w.acquire("j1", limit=0) == Decision(False, 30, 0, 0, paused=True)
    assert w.described == []  # paused: no reclaim either


def test_blocked_by_the_caller_queues_even_with_free_slots(w):
    assert w.acquire("j1", limit=0, blocked=True) == Decision(False, 30, 0, 0, paused=True)
    assert w.acquire("j1", limit=0, blocked=True, check_seconds=45) == Decision(False, 45, 0, 0, paused=True)
    assert w.acquire("j1", limit=0) == Decision(True, 0, 0, 0)
    assert w.acquire("j1", limit=0, blocked=True) == Decision(True, 0, 0, 0)  # a holder keeps its slot


def test_a_lane_runs_one_import_at_a_time_and_other_lanes_go_by(w):
    m1, m2 = "mapping=M1", "mapping=M2"
    assert w.acquire("a", limit=0, lane=m1) == Decision(True, 0, 0, 0)
    assert w.acquire("b", limit=0, lane=m1) == Decision(False, 30, 0, 1)
    assert w.described == [arn("a")]  # the lane's holder is checked, alive
    assert w.acquire("c", limit=0, lane=m2) == Decision(True, 0, 0, 2)
    assert w.acquire("d", limit=0, lane=m1) == Decision(False, 30, 1, 3)  # c's lane is not ahead of d
    assert w.item()["holders"]["a"]["lane"] == m1
    w.guard.release("hopex", "default", "a")
    assert w.acquire("d", limit=0, lane=m1) == Decision(False, 30, 1, 3)  # b is first in the lane
    assert w.acquire("b", limit=0, lane=m1) == Decision(True, 0, 0, 1)
    w.status[arn("b")] = "TIMED_OUT"
    assert w.acquire("d", limit=0, lane=m1) == Decision(True, 0, 0, 3)  # b's lane slot reclaimed
    assert sorted(w.item()["holders"]) == ["c", "d"]


def test_a_lane_with_a_limit_needs_both_a_slot_and_its_lane(w):
    assert w.acquire("a", limit=2, lane="flux=x") == Decision(True, 0, 0, 0)
    assert w.acquire("b", limit=2, lane="flux=y") == Decision(True, 0, 0, 1)
    assert w.acquire("c", limit=2, lane="flux=z") == Decision(False, 30, 0, 2)
    w.guard.release("hopex", "default", "b")
    assert w.acquire("d", limit=2, lane="flux=x") == Decision(False, 30, 0, 3)  # a slot, not its lane
    assert w.acquire("c", limit=2, lane="flux=z") == Decision(True, 0, 0, 2)


def test_a_holder_that_went_on_in_a_new_execution_keeps_its_slot_there(w):
    first = f"{PREFIX}:job-1"
    w.guard.acquire("hopex", "default", "job-1", first, limit=1)
    w.status[first] = "SUCCEEDED"
    assert w.acquire("j2", limit=1) == Decision(False, 30, 0, 1)
    holder = w.item()["holders"]["job-1"]
    assert (holder["arn"], holder["index"]) == (f"{PREFIX}:{next_name('job-1', 1)}", 1)


def test_reclaim_follows_at_most_five_continuations():
    chain = [f"{PREFIX}:job-1"] + [f"{PREFIX}:{next_name('job-1', i)}" for i in range(1, 7)]
    status = dict.fromkeys(chain, "SUCCEEDED")
    guard = Guard(table=None, describe=status.get)
    status[chain[4]] = "RUNNING"
    assert guard._current("job-1", {"arn": chain[0]}) == (chain[4], 4)
    status[chain[4]] = "SUCCEEDED"
    status[chain[5]] = "RUNNING"
    assert guard._current("job-1", {"arn": chain[0], "index": 0}) is None  # a sixth execution: given up
    assert guard._current("job-1", {"arn": chain[1], "index": 1}) == (chain[5], 5)
    assert Guard(table=None, describe={"no-colon": "SUCCEEDED"}.get)._current("j", {"arn": "no-colon"}) is None
    assert Guard(table=None, describe={}.get)._current("j", {"arn": chain[0]}) is None


def test_a_lost_race_25_times_leaves_the_import_queued_without_a_place(table):
    rivals = RivalWrites(table)
    guard = Guard(rivals, describe=lambda arn: "RUNNING", clock=lambda: NOW)
    assert guard.acquire("hopex", "default", "j1", arn("j1"), limit=1, check_seconds=40) == Decision(False, 40, -1, -1)
    assert rivals.reads == 25


class RivalWrites(GuardTable):
    """Another writer changes the guard item between each read and write of the code under test."""

    def __init__(self, table):
        super().__init__(table)
        self.reads = 0

    def read(self, key):
        self.reads += 1
        state = super().read(key)
        GuardTable.write(self, key, super().read(key))
        return state


# -- release and touch -------------------------------------------------------------------------------------------

def test_release_frees_a_slot_or_a_queue_place_once_and_only_for_its_execution(w):
    w.acquire("j1", limit=1)
    w.acquire("j2", limit=1)
    assert w.guard.release("hopex", "default", "j1", arn="some-other-execution") is False
    assert "j1" in w.item()["holders"]
    assert w.guard.release("hopex", "default", "j1", arn=arn("j1")) is True
    assert w.guard.release("hopex", "default", "j1") is False
    assert w.guard.release("hopex", "default", "j2") is True
    item = w.item()
    assert item["holders"] == {} and item["waiters"] == {}
    assert w.guard.release("hopex", "default", "never-seen") is False


def test_release_against_rival_writers_gives_up_loudly(table):
    GuardTable(table).write(KEY, {"holders": {"j1": {"arn": "a", "ticket": 0}}, "waiters": {}, "next_ticket": 1,
                                  "breaker": {}, "version": 0})
    rivals = RivalWrites(table)
    guard = Guard(rivals, describe=lambda arn: None, clock=lambda: NOW)
    with pytest.raises(Conflict, match="the hopex/default guard item changed 25 times during one release"):
        guard.release("hopex", "default", "j1")
    assert rivals.reads == 25
    guard.touch("hopex", "default", "j1", "b")  # gives up quietly after as many tries
    assert rivals.reads == 50


def test_touch_moves_a_slot_or_a_queue_place_to_the_new_execution(w):
    w.acquire("j1", limit=1)
    w.acquire("j2", limit=1)
    w.guard.touch("hopex", "default", "j1", arn("j1-c"), index=3)
    w.guard.touch("hopex", "default", "j2", arn("j2-c"))
    item = w.item()
    assert (item["holders"]["j1"]["arn"], item["holders"]["j1"]["index"]) == (arn("j1-c"), 3)
    assert (item["waiters"]["j2"]["arn"], item["waiters"]["j2"]["index"]) == (arn("j2-c"), 0)
    version = item["version"]
    w.guard.touch("hopex", "default", "j1", arn("j1-c"), index=4)  # already there
    w.guard.touch("hopex", "default", "j1", "", index=5)
    w.guard.touch("hopex", "default", "gone", arn("x"))
    assert w.item()["version"] == version
    assert w.guard.snapshot("hopex", "default")["holders"]["j1"]["index"] == 3


def test_describer_asks_step_functions(aws):
    sfn = aws["stepfunctions"]
    describe = g.describer(sfn)
    machine = sfn.create_state_machine(
        name="m", roleArn="arn:aws:iam::123456789012:role/r",
        definition='{"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": true}}}')
    started = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="e1")["executionArn"]
    assert describe(started) == "RUNNING"
    assert describe(started.replace(":e1", ":e2")) is None
    assert describe("") is None
    assert Guard(table=None, describe=describe)._current("j", {}) is None  # no ARN: not asked


# -- circuit breaker -------------------------------------------------------------------------------------------

def fail(w, job, threshold=3, cooldown=60, max_cooldown=900):
    return w.breaker.failed("hopex", "default", threshold=threshold, cooldown=cooldown, max_cooldown=max_cooldown,
                            job_id=job)


def gate(w, job, seen=-1, waited=0, default=60):
    return w.breaker.gate("hopex", "default", job, seen_epoch=seen, waited_in_epoch=waited, cooldown_default=default)


def test_outage_failures_count_once_per_import_and_pause_the_target_at_the_threshold(w):
    assert fail(w, "a") is False
    assert fail(w, "a") is False  # a's own retries are one failure
    assert w.item()["breaker"] == {"failing": ["a"], "failures": 1}
    assert w.item()["version"] == 1
    assert gate(w, "a") == Gate("go", failures=1)
    assert w.breaker.others_failing("hopex", "default", "a") is False
    assert w.breaker.others_failing("hopex", "default", "b") is True
    assert fail(w, "b") is False
    w.now += 5
    assert fail(w, "c") is True
    opened = {"failing": ["a", "b", "c"], "failures": 3, "state": "OPEN", "epoch": 1, "cooldown": 60,
              "probe": None, "probes": 0, "opened_at": NOW + 5}
    assert w.item()["breaker"] == opened
    assert w.announced == [("PAUSED", "hopex", "default", opened)]
    assert w.breaker.is_open("hopex", "default") is True
    assert fail(w, "d") is True  # open, no probe: nothing changes
    assert w.item()["version"] == 3 and len(w.announced) == 1


def test_a_smaller_threshold_keeps_only_the_latest_failures(w):
    fail(w, "a", threshold=5)
    fail(w, "b", threshold=5)
    assert fail(w, "c", threshold=2) is True
    assert w.item()["breaker"]["failing"] == ["b", "c"]


def test_an_open_target_lets_one_probe_through_after_a_whole_cool_down(w):
    for job in ("a", "b", "c"):
        fail(w, job)
    assert gate(w, "a") == Gate("wait", 60, 1, 60)  # another epoch seen: a whole cool-down
    assert gate(w, "a", seen=1, waited=20) == Gate("wait", 40, 1, 60)
    assert gate(w, "a", seen=0, waited=60) == Gate("wait", 60, 1, 60)
    assert gate(w, "a", seen=1, waited=60) == Gate("probe", 0, 1, 60)
    assert w.item()["breaker"]["probe"] == {"job_id": "a", "until": NOW + 900}
    assert gate(w, "a", seen=1, waited=60) == Gate("probe", 0, 1, 60)  # the probe asks again (a retry)
    assert gate(w, "b", seen=1, waited=61) == Gate("wait", 60, 1, 60)  # a live probe: b waits
    assert gate(w, "b", seen=1, waited=60) == Gate("wait", 60, 1, 60)
    w.now += 900
    assert gate(w, "b", seen=1, waited=61) == Gate("probe", 0, 1, 60)  # a's lease ran out
    assert w.item()["breaker"]["probe"] == {"job_id": "b", "until": NOW + 1800}


def test_a_failed_probe_doubles_the_cool_down_up_to_its_maximum(w):
    for job in ("a", "b", "c"):
        fail(w, job, cooldown=50, max_cooldown=150)
    gate(w, "a", seen=1, waited=50)
    assert fail(w, "a", cooldown=50, max_cooldown=150) is True
    b = w.item()["breaker"]
    assert (b["probe"], b["epoch"], b["cooldown"], b["probes"]) == (None, 2, 100, 1)
    assert gate(w, "a", seen=2, waited=99) == Gate("wait", 1, 2, 100)
    gate(w, "a", seen=2, waited=100)
    fail(w, "a", cooldown=50, max_cooldown=150)
    b = w.item()["breaker"]
    assert (b["epoch"], b["cooldown"], b["probes"]) == (3, 150, 2)
    assert len(w.announced) == 1  # one PAUSED, not one per failed probe


def test_an_open_target_without_its_cool_down_uses_the_default(w):
    w.table.write(KEY, {"holders": {}, "waiters": {}, "next_ticket": 0, "version": 0,
                        "breaker": {"state": "OPEN"}})
    assert gate(w, "a", seen=0, default=45) == Gate("wait", 45, 0, 45)
    assert gate(w, "a", seen=0, waited=45, default=45) == Gate("probe", 0, 0, 45)


def test_a_success_closes_the_target_and_announces_it_once(w):
    w.breaker.succeeded("hopex", "default")
    assert w.item()["version"] == 0  # closed and nothing failing: nothing written
    fail(w, "a")
    w.breaker.succeeded("hopex", "default")
    assert w.item()["breaker"] == {"failing": [], "failures": 0, "state": "CLOSED", "probe": None}
    assert w.announced == []
    for job in ("a", "b", "c"):
        fail(w, job)
    before = dict(w.item()["breaker"])
    w.breaker.succeeded("hopex", "default")
    assert w.item()["breaker"]["state"] == "CLOSED"
    assert w.announced[-1] == ("RESUMED", "hopex", "default", before)
    assert gate(w, "a") == Gate("go", failures=0)


def test_the_operator_pauses_and_resumes_a_target(w):
    assert w.breaker.set_state("hopex", "default", "PAUSED") is True
    made = {"state": "OPEN", "epoch": 1, "probe": None, "probes": 0, "cooldown": 60, "manual": True,
            "opened_at": NOW}
    assert w.item()["breaker"] == made
    assert w.announced == [("PAUSED", "hopex", "default", made)]
    assert w.breaker.set_state("hopex", "default", "PAUSED") is False
    assert w.breaker.set_state("hopex", "default", "RESUMED") is True
    resumed = {**made, "state": "CLOSED", "failures": 0, "failing": [], "manual": False}
    assert w.item()["breaker"] == resumed
    assert w.announced[-1] == ("RESUMED", "hopex", "default", resumed)
    assert w.breaker.set_state("hopex", "default", "RESUMED") is False
    assert len(w.announced) == 2
    state = w.item()
    state["breaker"]["cooldown"] = 300
    w.table.write(KEY, state)
    w.breaker.set_state("hopex", "default", "PAUSED")
    assert (w.item()["breaker"]["cooldown"], w.item()["breaker"]["epoch"]) == (300, 2)


def test_a_breaker_without_an_announcer_still_changes_state(table):
    breaker = Breaker(Guard(GuardTable(table), describe=lambda a: None, clock=lambda: NOW))
    assert breaker.set_state("hopex", "default", "PAUSED") is True
    breaker.succeeded("hopex", "default")
    assert breaker.failed("hopex", "default", threshold=1, cooldown=5, max_cooldown=10, job_id="a") is True
    assert breaker.is_open("hopex", "default") is True


def test_breaker_writes_lost_to_rivals_25_times_change_nothing_and_announce_nothing(table):
    rivals = RivalWrites(table)
    announced = []
    breaker = Breaker(Guard(rivals, describe=lambda a: None, clock=lambda: NOW),
                      announce=lambda *a: announced.append(a))
    assert breaker.set_state("hopex", "default", "PAUSED") is False
    assert rivals.reads == 25
    assert breaker.failed("hopex", "default", threshold=1, cooldown=5, max_cooldown=10, job_id="a") is False
    assert announced == [] and GuardTable(table).read(KEY)["breaker"] == {}
    GuardTable(table).write(KEY, {**GuardTable(table).read(KEY), "breaker": {"state": "OPEN"}})
    breaker.succeeded("hopex", "default")
    assert announced == [] and breaker.is_open("hopex", "default") is True


def test_the_pause_and_resume_messages(account):
    announce = g.sns_announcer(account.sns, account.topic_arn)
    announce("PAUSED", "hopex", "prod", {"failures": 5})
    announce("RESUMED", "hopex", "prod", {"manual": True})
    assert account.messages() == [
        {"subject": "[s3-vendor-import] hopex/prod PAUSED",
         "attributes": {"state": "PAUSED", "vendor": "hopex", "target": "prod"},
         "body": {"event": "vendor_guard", "state": "PAUSED", "vendor": "hopex", "target": "prod",
                  "consecutive_failures": 5, "manual": False,
                  "message": "hopex/prod paused: imports wait (queued and running) until a probe succeeds"}},
        {"subject": "[s3-vendor-import] hopex/prod RESUMED",
         "attributes": {"state": "RESUMED", "vendor": "hopex", "target": "prod"},
         "body": {"event": "vendor_guard", "state": "RESUMED", "vendor": "hopex", "target": "prod",
                  "consecutive_failures": 0, "manual": True, "message": "hopex/prod resumed"}},
    ]


# -- shared rates ------------------------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(round(seconds, 6))
        self.now += seconds


def tat(table, key):
    return table.get_item(Key={"job_id": key})["Item"]["tat"]


def test_a_slow_rate_leases_one_token_at_a_time(table):
    clock = Clock()
    rate = SharedRate(table, "r", 5, clock=clock, sleep=clock.sleep)  # 4.5 a second: a tenth holds 0.45
    assert (rate.rate, rate.lease) == (4.5, 1)
    assert rate.acquire(0) == 0  # at least one token
    assert round(rate.acquire(), 6) == 0.222222  # one token by default: the next starts 1 / 4.5 s later
    assert tat(table, "r") == 1_000_444_444
    assert round(rate.acquire(9), 6) == 0.222222  # 9 tokens: 2 s of the budget
    assert tat(table, "r") == 1_002_444_444
    assert SharedRate(table, "r1", 1).rate == 0.9


def test_a_request_larger_than_a_lease_reserves_all_its_tokens(table):
    clock = Clock()
    rate = SharedRate(table, "r", 100, clock=clock, sleep=clock.sleep)
    assert (rate.rate, rate.lease) == (90.0, 9)
    assert rate.acquire(20) == 0
    assert tat(table, "r") == 1_000_222_222  # 20 / 90 s
    assert round(rate.acquire(1), 6) == 0.222222  # nothing left of it: a new lease after it
    assert tat(table, "r") == 1_000_322_222


def test_tokens_of_a_lease_are_dropped_when_its_interval_ends(table):
    clock = Clock()
    rate = SharedRate(table, "r", 100, clock=clock, sleep=clock.sleep)
    rate.acquire(1)  # lease [1000.0, 1000.1), 8 tokens left
    clock.now = 1000.0 + 9 / 90.0  # its end
    assert rate.acquire(1) == 0
    assert tat(table, "r") == 1_000_200_000  # a new lease was taken
    clock.now = 1000.15
    assert rate.acquire(8) == 0  # within the new lease: spent from it
    assert tat(table, "r") == 1_000_200_000
    assert round(rate.acquire(1), 6) == 0.05  # 0 left: a new lease, after the last one
    assert tat(table, "r") == 1_000_300_000
    assert clock.slept == [0.05]


def test_a_lease_lost_to_rivals_25_times_fails(table):
    clock = Clock()
    rate = SharedRate(RivalLeases(table), "r", 100, clock=clock, sleep=clock.sleep)
    with pytest.raises(Conflict, match="r changed 25 times during one lease"):
        rate.acquire(1)
    assert rate.table.reads == 25


class RivalLeases:
    """A jobs table where another import leases between each read and write of the code under test."""

    def __init__(self, table):
        self.table, self.meta = table, table.meta
        self.reads = 0

    def get_item(self, **kw):
        self.reads += 1
        got = self.table.get_item(**kw)
        n = int(got.get("Item", {}).get("tat", 0)) + 1
        self.table.put_item(Item={"job_id": kw["Key"]["job_id"], "tat": n})
        return got

    def update_item(self, **kw):
        return self.table.update_item(**kw)


class LocalPacer:
    def __init__(self):
        self.asked: list[int] = []
        self.busy = 0

    def acquire(self, n=1):
        self.asked.append(n)
        return 0.25

    def assume_busy(self):
        self.busy += 1


def test_a_shared_pacer_paces_this_import_then_the_targets_budgets(table):
    clock = Clock()
    local = LocalPacer()
    per_call = SharedRate(table, "calls", 10, clock=clock, sleep=clock.sleep)  # 9/s, leases of 1
    per_unit = SharedRate(table, "units", 100, clock=clock, sleep=clock.sleep)  # 90/s, leases of 9
    pacer = SharedPacer(local, per_call, per_unit)
    alone = LocalPacer()
    assert SharedPacer(alone, None, None).acquire() == 0.25 and alone.asked == [1]  # one unit by default
    assert pacer.acquire(5) == 0.25
    assert round(pacer.acquire(5), 6) == 0.361111  # 0.25 + the next call 1/9 s on; units: a new lease
    assert local.asked == [5, 5]
    assert tat(table, "calls") == 1_000_222_222
    assert tat(table, "units") // 1000 == 1_000_211  # 1000.111111 s (when the call's sleep ended) + 0.1 s
    pacer.assume_busy()
    assert local.busy == 1
    bare = SharedPacer(None, None, SharedRate(table, "other", 100, clock=clock, sleep=clock.sleep))
    assert bare.acquire(3) == 0
    slow = SharedPacer(None, None, SharedRate(table, "slow", 5, clock=clock, sleep=clock.sleep))
    assert slow.acquire(1) == 0
    assert round(slow.acquire(1), 6) == 0.222222
    bare.assume_busy()  # no local pacer: nothing to tell
    assert SharedPacer(object(), None, None).assume_busy() is None


def test_share_rates_wraps_the_pacer_of_vendors_with_documented_rates_only(table):
    own = LocalPacer()
    cirrus = SimpleNamespace(pacer=own)
    assert g.share_rates("cirrus", "prod", cirrus, {"max_calls_per_second": 0}, table) is False
    assert cirrus.pacer is own
    assert g.share_rates("hopex", "prod", SimpleNamespace(pacer=own), {"max_calls_per_second": 5}, table) is False
    assert g.share_rates("aep", "prod", SimpleNamespace(pacer=own), {"max_messages_per_second": 5}, table) is False
    assert g.share_rates("cirrus", "prod", cirrus, {"max_calls_per_second": 10}, table) is True
    assert (cirrus.pacer.local, cirrus.pacer.per_call) == (own, None)
    assert (cirrus.pacer.per_unit.key, cirrus.pacer.per_unit.rate) == ("rate#cirrus#prod#max_calls_per_second", 9.0)
    assert cirrus.pacer.per_unit.table is table
    aep = SimpleNamespace(_pacer=own)
    assert g.share_rates("aep", "t", aep, {"max_requests_per_second": 1000, "max_messages_per_second": 10000},
                         table) is True
    assert (aep._pacer.per_call.key, aep._pacer.per_call.rate) == ("rate#aep#t#max_requests_per_second", 900.0)
    assert aep._pacer.per_call.table is table
    assert (aep._pacer.per_unit.key, aep._pacer.per_unit.rate) == ("rate#aep#t#max_messages_per_second", 9000.0)
    only = SimpleNamespace(_pacer=own)
    assert g.share_rates("aep", "t", only, {"max_requests_per_second": 0, "max_messages_per_second": 50}, table)
    assert only._pacer.per_call is None and only._pacer.per_unit.rate == 45.0
    none = SimpleNamespace(_pacer=own)
    assert g.share_rates("aep", "t", none, {"max_requests_per_second": 0, "max_messages_per_second": 0},
                         table) is False
    assert none._pacer is own


def test_a_holder_found_running_on_is_not_written_again(w):
    w.guard.acquire("hopex", "default", "job-1", arn("job-1"), limit=1, index=2)
    w.acquire("j2", limit=1)
    version = w.item()["version"]
    assert w.acquire("j2", limit=1) == Decision(False, 30, 0, 1)
    assert w.item()["version"] == version


def test_a_holder_moved_to_its_continuation_by_a_queued_check_is_written(w):
    first = f"{PREFIX}:job-1"
    w.guard.acquire("hopex", "default", "job-1", first, limit=1)
    w.acquire("j2", limit=1)
    w.status[first] = "SUCCEEDED"
    w.acquire("j2", limit=1)
    assert w.item()["holders"]["job-1"]["arn"] == f"{PREFIX}:{next_name('job-1', 1)}"


def test_an_open_target_without_an_epoch_counts_a_failed_probe_as_epoch_1(w):
    w.table.write(KEY, {"holders": {}, "waiters": {}, "next_ticket": 0, "version": 0,
                        "breaker": {"state": "OPEN", "probe": {"job_id": "a", "until": NOW + 900}}})
    assert fail(w, "a") is True
    assert (w.item()["breaker"]["epoch"], w.item()["breaker"]["cooldown"]) == (1, 120)


def test_a_target_paused_again_opens_a_new_epoch(w):
    for job in ("a", "b", "c"):
        fail(w, job)
    w.breaker.succeeded("hopex", "default")
    for job in ("a", "b", "c"):
        fail(w, job)
    assert w.item()["breaker"]["epoch"] == 2


class ProbeRace(RivalWrites):
    """Another import claims the probe between the gate's read and its claim."""

    def read(self, key):
        self.reads += 1
        state = GuardTable.read(self, key)
        if self.reads == 2:  # the claim's read: the rival's claim landed just before
            state["breaker"]["probe"] = {"job_id": "rival", "until": NOW + 900}
            GuardTable.write(self, key, state)
        return state


def test_a_probe_claimed_by_another_import_meanwhile_makes_this_one_wait(table):
    GuardTable(table).write(KEY, {"holders": {}, "waiters": {}, "next_ticket": 0, "version": 0,
                                  "breaker": {"state": "OPEN", "epoch": 3, "cooldown": 50}})
    breaker = Breaker(Guard(ProbeRace(table), describe=lambda a: None, clock=lambda: NOW))
    got = breaker.gate("hopex", "default", "me", seen_epoch=3, waited_in_epoch=50, cooldown_default=60)
    assert got == Gate("wait", 50, 3, 50)
    assert GuardTable(table).read(KEY)["breaker"]["probe"] == {"job_id": "rival", "until": NOW + 900}


def test_a_target_resumed_meanwhile_is_not_probed(table):
    class Resumed(ProbeRace):
        def read(self, key):
            self.reads += 1
            state = GuardTable.read(self, key)
            if self.reads == 2:
                state["breaker"] = {"state": "CLOSED", "epoch": 3}
            return state

    GuardTable(table).write(KEY, {"holders": {}, "waiters": {}, "next_ticket": 0, "version": 0,
                                  "breaker": {"state": "OPEN", "epoch": 3, "cooldown": 50}})
    breaker = Breaker(Guard(Resumed(table), describe=lambda a: None, clock=lambda: NOW))
    got = breaker.gate("hopex", "default", "me", seen_epoch=3, waited_in_epoch=50, cooldown_default=60)
    assert got == Gate("wait", 50, 3, 50)
