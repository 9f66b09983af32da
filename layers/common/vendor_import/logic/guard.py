"""The vendor guard: at most ``max_concurrent_imports`` imports per (vendor, target) talk to the
vendor at once, the others wait QUEUED and start in upload order (FIFO per lane).

The pattern is the Step Functions "controlling concurrency" semaphore (docs.aws.amazon.com/
step-functions/latest/dg/sample-controlling-concurrency.html): a DynamoDB item per target changed
by conditional writes, an "Acquire slot" state before the vendor is called and a release wherever
the import ends. What this adds to the sample, and why it runs in the vendor function rather than
as direct DynamoDB service integrations: FIFO tickets, per-lane exclusivity (Campaign: one
ingestion per mapping, seed 001 "Ingestion request already in progress for the Mapping ID";
simplement-e: one run per flow) and reclaiming slots of executions that ended without releasing
(DescribeExecution) need logic a single conditional UpdateItem cannot express.

A slot belongs to the job id (the first execution's name), not to an execution: a poll loop that
continues in a fresh execution keeps it (``touch`` moves it to the new execution ARN).

No stuck slot: ``release`` runs in Finalize, in the execution-ended handler (abort, timeout,
failure) and an acquire that finds the target full asks Step Functions about every holder and about
the waiters ahead of it, and drops those whose execution has ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..dal.guard_table import Conflict, GuardTable, guard_key

# No vendor document states how many imports a target takes at once (VENDORS.md, seeds 000-004),
# so there is no limit unless ``max_concurrent_imports`` is set (docs/vendors/<vendor>.md suggests
# values, opt-in). What a document does imply stays on by default: Campaign runs one ingestion per
# XDM mapping at a time (seed 001: a second trigger is answered "Ingestion request already in
# progress for the Mapping ID: <value>", status "In Progress", lines 74-80). simplement-e's document (seed 000)
# states no such rule for a flux: one run per flux is opt-in (``one_import_per_lane``).
EXCLUSIVE_OPTIONS: dict[str, tuple[str, ...]] = {"campaign": ("mapping", "mapping_id"), "simplemente": ("flux",)}
EXCLUSIVE_BY_DEFAULT = {"campaign": True, "simplemente": False}
# Limits the vendor documents per destination, one budget for every import of a target at once
# (SharedRate): (the connector's pacer attribute, the per-request rate setting, the per-unit rate
# setting). AEP: one inlet takes 1,000 requests/s and 10,000 messages/s (VENDORS.md "Limits",
# Adobe's streaming ingestion overview; the settings' defaults). Cirrus Shield documents no rate:
# ``max_calls_per_second`` (opt-in, 0 = none) is then the target's, not each import's.
SHARED_RATES: dict[str, tuple[str, str | None, str]] = {
    "aep": ("_pacer", "max_requests_per_second", "max_messages_per_second"),
    "cirrus": ("pacer", None, "max_calls_per_second"),
}
# The vendor counts by its own second: leases of a tenth of a second, spent at once, let up to 11
# of them into one of its seconds, so the imports together are paced at 90 % of the documented rate
SHARED_RATE_MARGIN = 0.9
SHARED_RATE_LEASE_SECONDS = 0.1  # budget an import takes per lease (2 DynamoDB requests)
MAX_WAITERS = 1000  # keeps the guard item far under DynamoDB's 400 KB (a waiter is ~250 bytes)
WRITE_ATTEMPTS = 25  # conditional writes lost to other writers before the step gives up (and retries)
QUEUE_CHECK_SECONDS = 30  # a waiter next in line checks this often
QUEUE_CHECK_MAX_SECONDS = 300  # a waiter far back checks at least this often
ENDED = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
UNLIMITED = 10**9  # max_concurrent_imports 0: no limit
# With a limit, an import uploaded less than SETTLE_SECONDS ago registers and waits SETTLE_WAIT_SECONDS
# before it may take a slot: the imports of one burst reach the guard in any order (their executions
# start side by side), the wait lets the earlier uploads register so the slots go in upload order
SETTLE_SECONDS = 5
SETTLE_WAIT_SECONDS = 2
RECLAIM_AHEAD = 50  # waiters ahead of an import checked per acquire, at most
CONTINUATION_HOPS = 5  # executions of one job followed per reclaim (continuations are days apart)


@dataclass
class Decision:
    acquired: bool
    wait_seconds: int
    position: int  # waiters ahead in this lane (0 when acquired)
    ticket: int
    paused: bool = False  # held back by the target's open circuit breaker

    def as_dict(self) -> dict[str, Any]:
        return {"acquired": self.acquired, "wait_seconds": self.wait_seconds, "position": self.position,
                "ticket": self.ticket, "paused": self.paused}


def limit_of(settings: dict[str, Any]) -> int:
    """The target's ``max_concurrent_imports`` (0: no limit, the default)."""
    return max(0, int(settings.get("max_concurrent_imports") or 0))


def lane_of(vendor: str, options: dict[str, Any], settings: dict[str, Any]) -> str | None:
    """The vendor's exclusive unit for this import (``mapping=<id>`` for Campaign, ``flux=<name>``
    for simplement-e when ``one_import_per_lane`` is on), or None when imports of one target run
    side by side. A Campaign mapping named only in the trigger's body is not known yet here: such
    imports run one at a time among themselves (lane ``mapping=?``)."""
    names = EXCLUSIVE_OPTIONS.get(vendor)
    exclusive = settings.get("one_import_per_lane")
    if not names or not (EXCLUSIVE_BY_DEFAULT.get(vendor, False) if exclusive is None else exclusive):
        return None
    for name in names:
        value = options.get(name) or settings.get(name)
        if value:
            return f"{names[0]}={value}"
    return f"{names[0]}=?"  # unknown until the body is read: one at a time with the other unknowns


class Guard:
    """``describe`` returns the status of an execution ARN (RUNNING, SUCCEEDED, ...) or None when
    it does not exist; ``clock`` gives epoch seconds."""

    def __init__(self, table: GuardTable, describe: Callable[[str], str | None],
                 clock: Callable[[], float] = time.time):
        self.table = table
        self.describe = describe
        self.clock = clock

    # -- acquire -------------------------------------------------------------------------------------
    def acquire(self, vendor: str, target: str, job_id: str, arn: str, *, limit: int,
                lane: str | None = None, uploaded_at: str | None = None, check_seconds: int = QUEUE_CHECK_SECONDS,
                check_max_seconds: int = QUEUE_CHECK_MAX_SECONDS, blocked: bool = False, index: int = 0) -> Decision:
        """Take a slot for ``job_id`` or queue it. Idempotent: a job already holding a slot gets it
        again (a retried step, a killed step that wrote before dying). ``limit`` 0: no limit (the
        lane alone holds imports back). ``blocked`` (the circuit breaker is open) queues without
        granting. ``arn`` and ``index``: the execution the job runs in now (continuations count up)."""
        limit = int(limit) if limit else UNLIMITED
        key = guard_key(vendor, target)
        for _ in range(WRITE_ATTEMPTS):
            state = self.table.read(key)
            try:
                return self._acquire_once(key, state, job_id, arn, limit, lane, uploaded_at or "", check_seconds,
                                          check_max_seconds, blocked, index)
            except Conflict:
                continue
        # too many writers raced on the item: stay queued (without a known place) and check again
        return Decision(False, check_seconds, -1, -1)

    def _acquire_once(self, key, state, job_id, arn, limit, lane, uploaded_at, check_seconds, check_max_seconds,
                      blocked, index) -> Decision:
        holders, waiters = state["holders"], state["waiters"]
        blocked = blocked or (state.get("breaker") or {}).get("state") == "OPEN"  # paused: nobody starts
        if job_id in holders:
            if arn and holders[job_id].get("arn") != arn:
                holders[job_id].update({"arn": arn, "index": index})
                self.table.write(key, state)
            return Decision(True, 0, 0, int(holders[job_id]["ticket"]))
        now = self.clock()
        changed = False
        if job_id not in waiters:
            if len(waiters) >= MAX_WAITERS:
                return Decision(False, check_max_seconds, len(waiters), -1)
            waiters[job_id] = {"arn": arn, "index": index, "ticket": int(state["next_ticket"]), "lane": lane or "",
                               "since": now,
                               "order": f"{uploaded_at or _iso_ms(now)}|{int(state['next_ticket']):012d}"}
            state["next_ticket"] = int(state["next_ticket"]) + 1
            if limit < UNLIMITED and _fresh(uploaded_at, now):
                # a burst: the executions of earlier uploads may not have reached the guard yet; wait
                # SETTLE_WAIT_SECONDS so they register, then the free slots go in upload order
                self.table.write(key, state)
                return Decision(False, SETTLE_WAIT_SECONDS, len(_ahead(waiters, waiters[job_id], lane)),
                                int(waiters[job_id]["ticket"]))
            changed = True
        mine = waiters[job_id]
        if arn and mine.get("arn") != arn:
            mine.update({"arn": arn, "index": index})
            changed = True
        ahead = _ahead(waiters, mine, lane)
        free = limit - len(holders)
        in_my_lane = [j for j, h in holders.items() if lane and h.get("lane") == lane]
        if not blocked and len(ahead) <= limit and (free <= 0 or ahead or in_my_lane):
            # near the head of the queue and held back: are the holders (all of them when the target
            # is full, else my lane's), and the waiters meant to take the free slots, still alive?
            # (bounded: at most limit + RECLAIM_AHEAD DescribeExecution calls)
            changed |= self._reclaim(holders, list(holders) if free <= 0 else in_my_lane, waiters,
                                     ahead[:max(0, min(free, RECLAIM_AHEAD))], job_id)
            ahead = _ahead(waiters, mine, lane)
            free = limit - len(holders)
        lane_busy = bool(lane) and any(h.get("lane") == lane for h in holders.values())
        if blocked or free <= 0 or lane_busy or _ahead_in_line(waiters, mine, lane, free):
            if changed:
                self.table.write(key, state)
            position = len(ahead)
            wait = min(check_max_seconds, check_seconds * (1 + position // max(1, min(limit, MAX_WAITERS))))
            if blocked:
                cooldown = int((state.get("breaker") or {}).get("cooldown") or check_seconds)
                wait = max(wait, min(cooldown, check_max_seconds))
            return Decision(False, int(wait), position, int(mine["ticket"]), paused=blocked)
        holders[job_id] = {**waiters.pop(job_id), "since": now}
        self.table.write(key, state)
        return Decision(True, 0, 0, int(holders[job_id]["ticket"]))

    def _reclaim(self, holders, holder_ids: list[str], waiters, ahead: list[str], me: str) -> bool:
        """Drop holders (and waiters ahead of ``me``) whose job has ended: its execution ended or
        never existed, and did not go on in a new execution (``_current``)."""
        changed = False
        for table, ids in ((holders, holder_ids), (waiters, ahead)):
            ids = [i for i in ids if i in table]
            for jid in ids:
                if jid == me:
                    continue
                current = self._current(jid, table[jid])
                if current is None:
                    del table[jid]
                    changed = True
                elif current != (table[jid].get("arn"), int(table[jid].get("index") or 0)):
                    table[jid].update({"arn": current[0], "index": current[1]})
                    changed = True
        return changed

    def _current(self, job_id: str, entry: dict[str, Any]) -> tuple[str, int] | None:
        """The running execution of the job (ARN, index), or None when the job has ended. An
        execution that SUCCEEDED without releasing went on in a new one ("Continue in a new
        execution" then "Continued in a new execution": logic/continuation.next_name names it):
        the slot follows the job there, whether or not that execution has told the guard yet."""
        from .continuation import next_name

        arn, index = str(entry.get("arn") or ""), int(entry.get("index") or 0)
        for _ in range(CONTINUATION_HOPS):
            status = self.describe(arn)
            if status == "RUNNING":
                return arn, index
            if status != "SUCCEEDED" or ":" not in arn:
                return None
            index += 1
            arn = f"{arn.rsplit(':', 1)[0]}:{next_name(job_id, index)}"
        return None

    # -- release -------------------------------------------------------------------------------------
    def release(self, vendor: str, target: str, job_id: str, arn: str | None = None) -> bool:
        """Free ``job_id``'s slot or queue place. With ``arn`` (the execution-ended handler) only
        if the slot still belongs to that execution (a continued poll loop moved it on). Idempotent."""
        key = guard_key(vendor, target)
        for _ in range(WRITE_ATTEMPTS):
            state = self.table.read(key)
            removed = False
            for table in (state["holders"], state["waiters"]):
                entry = table.get(job_id)
                if entry and (arn is None or entry.get("arn") == arn):
                    del table[job_id]
                    removed = True
            if not removed:
                return False
            try:
                self.table.write(key, state)
                return True
            except Conflict:
                continue
        raise Conflict(f"the {vendor}/{target} guard item changed {WRITE_ATTEMPTS} times during one release")

    def touch(self, vendor: str, target: str, job_id: str, arn: str, index: int = 0) -> None:
        """A job continued in a fresh execution (``index``): its slot or queue place follows it.
        (Reclaim follows the continuation by itself; this saves it the DescribeExecution calls.)"""
        key = guard_key(vendor, target)
        for _ in range(WRITE_ATTEMPTS):
            state = self.table.read(key)
            entry = state["holders"].get(job_id) or state["waiters"].get(job_id)
            if not entry or not arn or entry.get("arn") == arn:
                return
            entry.update({"arn": arn, "index": index})
            try:
                self.table.write(key, state)
                return
            except Conflict:
                continue

    def snapshot(self, vendor: str, target: str) -> dict[str, Any]:
        return self.table.read(guard_key(vendor, target))


def _fresh(uploaded_at: str | None, now: float) -> bool:
    """Uploaded less than SETTLE_SECONDS ago (S3 event time, ISO 8601)."""
    if not uploaded_at:
        return False
    try:
        at = datetime.fromisoformat(str(uploaded_at).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return False
    return now - at < SETTLE_SECONDS


def _iso_ms(ts: float) -> str:
    """The S3 event time format (a console start is ordered by its first acquire)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def _order(waiter: dict[str, Any]) -> str:
    """Upload order: the S3 event time (ms), then the ticket (arrival at the guard)."""
    return str(waiter.get("order") or f"{_iso_ms(float(waiter.get('since') or 0))}|{int(waiter['ticket']):012d}")


def _ahead(waiters: dict[str, Any], mine: dict[str, Any], lane: str | None) -> list[str]:
    """Waiters of my lane (all of the target when there are no lanes) uploaded before me."""
    return sorted((jid for jid, w in waiters.items()
                   if _order(w) < _order(mine) and (lane is None or w.get("lane") == (lane or ""))),
                  key=lambda j: _order(waiters[j]))


def _ahead_in_line(waiters, mine, lane, free: int) -> bool:
    """True when the free slots go to earlier uploads first (FIFO across the target: the first
    ``free`` waiters, skipping none; in a lane: the first one)."""
    earlier = _ahead(waiters, mine, lane)
    return len(earlier) >= free if lane is None else bool(earlier)


def describer(sfn_client) -> Callable[[str], str | None]:
    def describe(arn: str) -> str | None:
        if not arn:
            return None
        try:
            return sfn_client.describe_execution(executionArn=arn)["status"]
        except sfn_client.exceptions.ExecutionDoesNotExist:
            return None
    return describe


# -- circuit breaker per target ----------------------------------------------------------------------
# Failures that say "the vendor (or our access to it) is down", not "this file is wrong"
OUTAGE_ERRORS = ("VendorUnavailableError", "VendorThrottledError", "VendorAuthError")
BREAKER_FAILURES = 5  # consecutive outage failures of a target before it pauses
BREAKER_COOLDOWN_SECONDS = 60  # first wait before a probe; doubled after each failed probe
BREAKER_MAX_COOLDOWN_SECONDS = 900
PAUSE_DEADLINE_SECONDS = 6 * 3600  # an import paused longer ends FAILED (VendorOutage)
PROBE_LEASE_SECONDS = 900  # a probe whose import died is given up after this long (wall clock)


@dataclass
class Gate:
    """What the breaker lets an import do now: ``go`` (closed), ``probe`` (this import's next call
    is the probe of an open target) or ``wait`` (paused: ``wait_seconds``, then ask again)."""

    action: str
    wait_seconds: int = 0
    epoch: int = 0
    cooldown: int = 0
    failures: int = 0  # consecutive outage failures so far (a success then resets them)


def breaker_settings(settings: dict[str, Any]) -> tuple[int, int, int, int]:
    return (int(settings.get("breaker_failures") or BREAKER_FAILURES),
            int(settings.get("breaker_cooldown_seconds") or BREAKER_COOLDOWN_SECONDS),
            int(settings.get("breaker_max_cooldown_seconds") or BREAKER_MAX_COOLDOWN_SECONDS),
            int(settings.get("pause_deadline_seconds") or PAUSE_DEADLINE_SECONDS))


class Breaker:
    """A per-target circuit breaker in the guard item (``breaker``: state CLOSED/OPEN, failures,
    epoch, cooldown, probe {job_id, until}). Time is counted in the waits the imports make (the
    poll loop's own seconds), so it holds on the local runner's scaled clock too; only a dead
    probe's lease uses the wall clock. ``announce(state, vendor, target, breaker)`` publishes the
    PAUSED / RESUMED message: called once per transition, by the writer that made it."""

    def __init__(self, guard: Guard, announce: Callable[[str, str, str, dict[str, Any]], None] | None = None):
        self.guard = guard
        self.announce = announce

    def _update(self, vendor: str, target: str, change: Callable[[dict[str, Any]], Any]) -> Any:
        key = guard_key(vendor, target)
        for _ in range(WRITE_ATTEMPTS):
            state = self.guard.table.read(key)
            breaker = state["breaker"]
            result = change(breaker)
            if result is _UNCHANGED:
                return None
            try:
                self.guard.table.write(key, state)
                return result
            except Conflict:
                continue
        return None

    def is_open(self, vendor: str, target: str) -> bool:
        return self.guard.table.read(guard_key(vendor, target))["breaker"].get("state") == "OPEN"

    def others_failing(self, vendor: str, target: str, job_id: str) -> bool:
        """Other imports of the target are failing too (counted, the breaker not open yet): an
        outage is likely on its way to pausing the target."""
        failing = self.guard.table.read(guard_key(vendor, target))["breaker"].get("failing") or []
        return any(j != job_id for j in failing)

    def gate(self, vendor: str, target: str, job_id: str, *, seen_epoch: int, waited_in_epoch: int,
             cooldown_default: int) -> Gate:
        """Closed: go. Open: the first import that has waited a whole cool-down in the current
        epoch (and finds no live probe) becomes the probe; the others wait."""
        now = self.guard.clock()
        snap = self.guard.table.read(guard_key(vendor, target))["breaker"]
        if snap.get("state") != "OPEN":
            return Gate("go", failures=int(snap.get("failures") or 0))
        epoch, cooldown = int(snap.get("epoch") or 0), int(snap.get("cooldown") or cooldown_default)
        waited = waited_in_epoch if seen_epoch == epoch else 0
        probe = snap.get("probe") or {}
        probe_live = probe and probe.get("job_id") != job_id and float(probe.get("until") or 0) > now
        if waited < cooldown or probe_live:
            return Gate("wait", max(1, min(cooldown - waited, cooldown)) if waited < cooldown else cooldown,
                        epoch, cooldown)

        def claim(b):
            if b.get("state") != "OPEN" or int(b.get("epoch") or 0) != epoch:
                return _UNCHANGED
            p = b.get("probe") or {}
            if p and p.get("job_id") != job_id and float(p.get("until") or 0) > now:
                return _UNCHANGED
            b["probe"] = {"job_id": job_id, "until": now + PROBE_LEASE_SECONDS}
            return True

        if self._update(vendor, target, claim):
            return Gate("probe", 0, epoch, cooldown)
        return Gate("wait", cooldown, epoch, cooldown)

    def failed(self, vendor: str, target: str, *, threshold: int, cooldown: int, max_cooldown: int,
               job_id: str = "") -> bool:
        """An outage failure of ``job_id``. Consecutive failures count once per import (its own
        retries are one failure: a lone import against a dead vendor fails as before), so the
        threshold is at most the slots that can be failing at once. Returns True when the target is
        (now) paused."""
        transition: dict[str, Any] = {}

        def change(b):
            transition.clear()
            if b.get("state") == "OPEN":
                if b.get("probe"):  # the probe failed: back off
                    b["probe"] = None
                    b["epoch"] = int(b.get("epoch") or 0) + 1
                    b["cooldown"] = min(max_cooldown, int(b.get("cooldown") or cooldown) * 2)
                    b["probes"] = int(b.get("probes") or 0) + 1
                    return True
                return _UNCHANGED
            failing = list(b.get("failing") or [])
            if job_id in failing:
                return _UNCHANGED
            failing = (failing + [job_id])[-threshold:]
            b["failing"] = failing
            b["failures"] = len(failing)
            if b["failures"] >= threshold:
                b.update({"state": "OPEN", "epoch": int(b.get("epoch") or 0) + 1, "cooldown": cooldown,
                          "probe": None, "probes": 0, "opened_at": self.guard.clock()})
                transition["paused"] = dict(b)
            return True

        if self._update(vendor, target, change) is None:
            transition.clear()  # every write lost to other writers: no transition was made
        if transition.get("paused") and self.announce:
            self.announce("PAUSED", vendor, target, transition["paused"])
        return transition.get("paused") is not None or self.is_open(vendor, target)

    def succeeded(self, vendor: str, target: str) -> None:
        """A vendor call went through: the failure count restarts; an open target resumes."""
        resumed: dict[str, Any] = {}

        def change(b):
            resumed.clear()
            if b.get("state") != "OPEN" and not int(b.get("failures") or 0):
                return _UNCHANGED
            if b.get("state") == "OPEN":
                resumed.update(b)
            b.update({"state": "CLOSED", "failures": 0, "failing": [], "probe": None})
            return True

        if self._update(vendor, target, change) is None:
            resumed.clear()  # every write lost to other writers: still open
        if resumed and self.announce:
            self.announce("RESUMED", vendor, target, resumed)

    def set_state(self, vendor: str, target: str, state: str) -> bool:
        """The operator's hand: PAUSED or RESUMED. Returns False when it already was."""
        made: dict[str, Any] = {}

        def change(b):
            made.clear()
            if (state == "PAUSED") == (b.get("state") == "OPEN"):
                return _UNCHANGED
            if state == "PAUSED":
                b.update({"state": "OPEN", "epoch": int(b.get("epoch") or 0) + 1, "probe": None, "probes": 0,
                          "cooldown": int(b.get("cooldown") or BREAKER_COOLDOWN_SECONDS), "manual": True,
                          "opened_at": self.guard.clock()})
            else:
                b.update({"state": "CLOSED", "failures": 0, "failing": [], "probe": None, "manual": False})
            made.update(b)
            return True

        if self._update(vendor, target, change) is None:
            made.clear()  # every write lost to other writers: nothing was changed
        if made and self.announce:
            self.announce(state, vendor, target, made)
        return bool(made)


_UNCHANGED = object()


def sns_announcer(sns_client, topic_arn: str) -> Callable[[str, str, str, dict[str, Any]], None]:
    """One SNS message per breaker transition, attribute ``state`` PAUSED / RESUMED (filterable,
    like the import messages' state), plus ``vendor`` and ``target``."""
    import json

    def announce(state: str, vendor: str, target: str, breaker: dict[str, Any]) -> None:
        body = {"event": "vendor_guard", "state": state, "vendor": vendor, "target": target,
                "consecutive_failures": int(breaker.get("failures") or 0),
                "manual": bool(breaker.get("manual")),
                "message": (f"{vendor}/{target} paused: imports wait (queued and running) until a probe "
                            f"succeeds" if state == "PAUSED" else f"{vendor}/{target} resumed")}
        sns_client.publish(
            TopicArn=topic_arn, Subject=f"[s3-vendor-import] {vendor}/{target} {state}",
            Message=json.dumps(body),
            MessageAttributes={"state": {"DataType": "String", "StringValue": state},
                               "vendor": {"DataType": "String", "StringValue": vendor},
                               "target": {"DataType": "String", "StringValue": target}})

    return announce


# -- shared rates: one per-second budget per (vendor, target) -----------------------------------------
class SharedRate:
    """``acquire(n)`` takes ``n`` tokens of a rate shared by every import of one target (every
    Lambda, every thread), whatever second the vendor counts in: a GCRA ("virtual scheduling") whose
    one state, the theoretical arrival time ``tat`` (epoch microseconds), is item
    ``rate#<vendor>#<target>#<setting>`` of the jobs table, changed by conditional writes only. An
    import leases a tenth of a second of the budget at a time: the lease reserves the interval
    [max(tat, now), + lease / rate), the import sleeps until it starts and spends its tokens in
    it, never later. The leases never overlap, so any one-second window, however aligned, holds at
    most 11 of them: with the rate at ``SHARED_RATE_MARGIN`` (90 %) of the documented one, at most
    99 % of it. Tokens of a lease not spent within its interval are dropped. Returns seconds slept."""

    def __init__(self, table, key: str, rate: float, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self.table, self.key = table, key
        self.rate = max(1e-6, float(rate) * SHARED_RATE_MARGIN)  # tokens per second, all imports together
        self.lease = max(1, int(self.rate * SHARED_RATE_LEASE_SECONDS))  # tokens per lease
        self.clock, self.sleep = clock, sleep
        self._lock = threading.Lock()
        self._left = 0
        self._until = 0.0  # end of the current lease's interval

    def acquire(self, n: int = 1) -> float:
        n = max(1, int(n))
        slept = 0.0
        with self._lock:
            if self._left >= n and self.clock() < self._until:  # spent within the lease's own interval
                self._left -= n
                return 0.0
            tokens = max(n, self.lease)
            start = self._reserve(tokens)
            wait = start - self.clock()
            if wait > 0:
                self.sleep(wait)
                slept = wait
            self._left, self._until = tokens - n, start + tokens / self.rate
        return slept

    def _reserve(self, tokens: int) -> float:
        """Move ``tat`` past ``tokens``; returns when the reserved interval starts (epoch seconds)."""
        failed = self.table.meta.client.exceptions.ConditionalCheckFailedException
        for _ in range(WRITE_ATTEMPTS):
            item = self.table.get_item(Key={"job_id": self.key}, ConsistentRead=True).get("Item")
            old = int(item["tat"]) if item else None
            start = max(old or 0, int(self.clock() * 1e6))
            new = start + int(tokens / self.rate * 1e6)
            try:
                self.table.update_item(
                    Key={"job_id": self.key}, UpdateExpression="SET tat = :new",
                    ConditionExpression="attribute_not_exists(job_id)" if old is None else "tat = :old",
                    ExpressionAttributeValues={":new": new} if old is None else {":new": new, ":old": old})
                return start / 1e6
            except failed:
                continue  # another import leased meanwhile: read again
        raise Conflict(f"{self.key} changed {WRITE_ATTEMPTS} times during one lease")


class SharedPacer:
    """Stands in for a connector's pacer (``acquire(n)``, connectors/call_pacing.py): the
    connector's own pacer first (it spaces the calls of this import), then the target's shared
    budgets: ``per_call`` takes 1 per acquire (AEP requests), ``per_unit`` takes ``n`` (AEP
    messages, Cirrus calls)."""

    def __init__(self, local, per_call: SharedRate | None, per_unit: SharedRate | None):
        self.local, self.per_call, self.per_unit = local, per_call, per_unit

    def assume_busy(self) -> None:
        if hasattr(self.local, "assume_busy"):
            self.local.assume_busy()

    def acquire(self, n: int = 1) -> float:
        slept = self.local.acquire(n) if self.local is not None else 0.0
        if self.per_call is not None:
            slept += self.per_call.acquire(1)
        if self.per_unit is not None:
            slept += self.per_unit.acquire(n)
        return slept


def rate_key(vendor: str, target: str, setting: str) -> str:
    return f"rate#{vendor}#{target}#{setting}"


def share_rates(vendor: str, target: str, connector, settings: dict[str, Any], table) -> bool:
    """Make ``connector`` pace itself under its target's shared budgets (SHARED_RATES). Returns
    False when the vendor or the settings have none (the connector keeps its own pacer)."""
    spec = SHARED_RATES.get(vendor)
    if not spec or not hasattr(connector, spec[0]):
        return False
    attr, per_call, per_unit = spec
    calls = SharedRate(table, rate_key(vendor, target, per_call), settings[per_call]) \
        if per_call and settings.get(per_call) else None
    units = SharedRate(table, rate_key(vendor, target, per_unit), settings[per_unit]) \
        if settings.get(per_unit) else None
    if calls is None and units is None:
        return False
    setattr(connector, attr, SharedPacer(getattr(connector, attr), calls, units))
    return True
