"""The decider's invariants under random interleavings, without a broker (hypothesis stateful).

The model is one mail partition — a list of events — read in order by the two consumers the
decider runs: the admission (single writer of the quarantine ledger, whose events it also
mirrors on the partition) and decisions (one decision per message, timers for the response
timeout). Around them: ingest accepting messages, KATA verdicts, administrators sending a
message on or deleting it, settings changes (the limits; on_unavailable skip or hold, the
connection up or down), the clock, and crashes — a consumer losing its
memory and rebuilding it from the log up to where it had committed, as the shells do (the
decisions from the partition's start, or from the restore point committed beside its offset).

Invariants (docs/ARCHITECTURE.md): the quarantine never exceeds the limits in force at each
admission; usage is the sum of what is held; one decision per message; a decided message
holds no slot and waits on no list; a rebuilt consumer equals the one that never crashed, from
either start; and once the clock passes every deadline, every message is decided and the
quarantine is empty, its waiting list too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from uuid import UUID

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from katagate.decider.decide import Messages, decide, timeouts
from katagate.decider.decisions import Decisions
from katagate.decider.ledger import Ledger, admit, admit_waiting, end_hold, release
from katagate.decider.policy import Policy
from katagate.eventlog.restore_points import RestorePoints
from katagate.schemas import (
    DEFAULT_RULE,
    ActionDecided,
    ControlState,
    Event,
    ForcedDelete,
    ForcedRelease,
    KataSettings,
    MessageReceived,
    ProducerRef,
    QuarantineAdmitted,
    QuarantineReleased,
    RawLocation,
    RuleKata,
    VerdictReceived,
)
from katagate.schemas.control import MIB

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
REF = ProducerRef(stage="decider", instance="d-0")
STATES = ("detect", "not_detected", "error")


def control(max_messages: int, max_mib: int, on_unavailable: str = "skip",
            connection: str = "connected") -> ControlState:
    kata = KataSettings(central_node_address=IPv4Address("127.0.0.1"),
                        quarantine_max_messages=max_messages,
                        quarantine_max_bytes=max_mib * MIB, response_timeout_s=60,
                        on_unavailable=on_unavailable)
    return ControlState(settings=kata, protection_enabled=True, connection=connection,
                        version=1)


class Admission:
    """The admission shell's decisions over the partition, state rebuilt from the ledger."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.read = 0  # the committed position on the partition

    def decide(self, event: Event, config: ControlState, now: datetime) -> list[Event]:
        produced: list[Event] = []
        match event:
            case MessageReceived() if (event.message_id not in self.ledger.held
                                       and event.message_id not in self.ledger.waiting):
                produced.append(admit(self.ledger, event, config, DEFAULT_RULE, now, REF))
            case ActionDecided() | ForcedRelease() | ForcedDelete():
                cause = ("forced_release" if isinstance(event, ForcedRelease) else
                         "deleted_by_admin" if isinstance(event, ForcedDelete)
                         else "action_applied")
                done = (release(self.ledger, event.message_id, cause, event, now, REF)
                        or end_hold(self.ledger, event.message_id, cause, event, now, REF))
                produced += [done] if done else []
        for item in produced:
            self.ledger.evolve(item)
        # As the shell: the waiting list goes in as room frees up.
        waiting = admit_waiting(self.ledger, config, now, REF)
        for item in waiting:
            self.ledger.evolve(item)
        return produced + list(waiting)


class DecisionsModel:
    def __init__(self) -> None:
        self.messages = Messages()
        self.points = RestorePoints()  # as the shell keeps them (decider.mail_fold.MailFold.fold)
        self.read = 0

    def fold(self, event: Event, offset: int) -> None:
        self.messages.evolve(event, 0)
        if isinstance(event, MessageReceived):
            self.points.began(0, event.message_id, offset)

    def decide(self, event: Event, now: datetime, policy: Policy) -> list[Event]:
        produced = decide(self.messages, event, lambda _p: policy, now, REF)
        self.fold(event, self.read - 1)
        for item in produced:
            self.messages.evolve(item, 0)
        return produced


class DeciderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[Event] = []  # the partition (ledger events mirrored here)
        self.ledger_topic: list[Event] = []
        self.admission = Admission()
        self.model = DecisionsModel()
        self.now = T0
        self.config = control(3, 4)
        self.count = 0

    # -- the outside world ----------------------------------------------------------------

    @rule(size_kib=st.integers(min_value=1, max_value=3 * 1024))
    def ingest_accepts_a_message(self, size_kib: int) -> None:
        m = f"MSG{self.count:08d}"
        self.count += 1
        self.log.append(MessageReceived(
            event_id=UUID(int=self.count), occurred_at=self.now, producer=REF, message_id=m,
            envelope_from="a@example.org", envelope_to=["b@example.net"],
            client_ip="192.0.2.1", helo="h", tls=False, size=size_kib * 1024,
            sha256="0" * 64, subject=None, rule_id=None, settings_version=1,
            raw=RawLocation(topic="r", partition=0, offsets=[0], chunk_bytes=1)))

    @precondition(lambda self: self.count > 0)
    @rule(which=st.integers(min_value=0), state=st.sampled_from(STATES))
    def kata_gives_a_verdict(self, which: int, state: str) -> None:
        m = f"MSG{which % self.count:08d}"
        self.log.append(VerdictReceived(
            event_id=UUID(int=10**9 + len(self.log)), occurred_at=self.now, producer=REF,
            message_id=m, scan_id=m, state=state,
            detects=[{"type": "am", "name": "EICAR"}] if state == "detect" else []))

    @precondition(lambda self: self.count > 0)
    @rule(which=st.integers(min_value=0), delete=st.booleans())
    def an_administrator_acts(self, which: int, delete: bool) -> None:
        m = f"MSG{which % self.count:08d}"
        kind = ForcedDelete if delete else ForcedRelease
        self.log.append(kind(event_id=UUID(int=2 * 10**9 + len(self.log)), occurred_at=self.now,
                             producer=REF, message_id=m, actor="admin"))

    @rule(max_messages=st.integers(min_value=1, max_value=5),
          max_mib=st.integers(min_value=1, max_value=8))
    def the_limits_change(self, max_messages: int, max_mib: int) -> None:
        settings = self.config.settings
        self.config = control(max_messages, max_mib, settings.on_unavailable,
                              self.config.connection)

    @rule(hold=st.booleans(), connected=st.booleans())
    def on_unavailable_or_the_connection_changes(self, hold: bool, connected: bool) -> None:
        settings = self.config.settings
        self.config = control(settings.quarantine_max_messages,
                              settings.quarantine_max_bytes // MIB, "hold" if hold else "skip",
                              "connected" if connected else "unreachable")

    def policy(self) -> Policy:
        return Policy(RuleKata(), self.config.settings.on_unavailable, "skip")

    @rule(seconds=st.integers(min_value=1, max_value=90))
    def time_passes(self, seconds: int) -> None:
        # The decisions' timer: its outputs join its state at once (and the log, read later).
        self.now += timedelta(seconds=seconds)
        produced = timeouts(self.model.messages, self.now, lambda _p: self.policy(), REF)
        for event in produced:
            self.model.messages.evolve(event, 0)
        self.log += produced

    # -- the decider's consumers --------------------------------------------------------

    @rule(steps=st.integers(min_value=1, max_value=20))
    def the_consumers_read_on(self, steps: int) -> None:
        for _ in range(steps):
            moved = False
            if self.admission.read < len(self.log):
                event = self.log[self.admission.read]
                self.admission.read += 1
                produced = self.admission.decide(event, self.config, self.now)
                self.ledger_topic += produced
                self.log += produced  # the mirrors
                moved = True
            if self.model.read < len(self.log):
                event = self.log[self.model.read]
                self.model.read += 1
                self.log += self.model.decide(event, self.now, self.policy())
                moved = True
            if not moved:
                return

    @rule()
    def the_admission_crashes_and_rebuilds_from_the_ledger(self) -> None:
        before = (dict(self.admission.ledger.held), dict(self.admission.ledger.waiting),
                  self.admission.read)
        rebuilt = Admission()
        for event in self.ledger_topic:
            rebuilt.ledger.evolve(event)
        rebuilt.read = self.admission.read
        self.admission = rebuilt
        assert (dict(rebuilt.ledger.held), dict(rebuilt.ledger.waiting), rebuilt.read) == before

    @rule()
    def decisions_crash_and_rebuilds_from_the_partition(self) -> None:
        before = (set(self.model.messages.pending), dict(self.model.messages.decided))
        # As the loop restores: everything up to the committed position, and after it only
        # their own outputs (Decisions.own_outputs, restore_ahead).
        rebuilt = DecisionsModel()
        for offset in range(self.model.read):
            rebuilt.fold(self.log[offset], offset)
        for event in self.log[self.model.read:]:
            if isinstance(event, Decisions.own_outputs):
                rebuilt.messages.evolve(event, 0)
        rebuilt.read = self.model.read
        self.model = rebuilt
        assert (set(rebuilt.messages.pending), dict(rebuilt.messages.decided)) == before

    @rule()
    def decisions_crash_and_rebuilds_from_its_restore_point(self) -> None:
        # As the loop restores with the point committed beside the offset: from the oldest
        # held message's MessageReceived, not from the partition's start.
        before = (set(self.model.messages.pending), dict(self.model.messages.decided))
        point = self.model.points.point(0, self.model.messages.holds)
        start = self.model.read if point is None else min(point, self.model.read)
        rebuilt = DecisionsModel()
        for offset in range(start, self.model.read):
            rebuilt.fold(self.log[offset], offset)
        for event in self.log[self.model.read:]:
            if isinstance(event, Decisions.own_outputs):
                rebuilt.messages.evolve(event, 0)
        rebuilt.read = self.model.read
        self.model = rebuilt
        assert (set(rebuilt.messages.pending), dict(rebuilt.messages.decided)) == before

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def usage_is_what_is_held(self) -> None:
        ledger = self.admission.ledger
        assert ledger.bytes_in_use == sum(ledger.held.values())
        assert ledger.messages_in_use == len(ledger.held)

    @invariant()
    def no_admission_exceeds_the_limits_in_force(self) -> None:
        for event in self.ledger_topic:
            if isinstance(event, QuarantineAdmitted):
                assert event.bytes_in_use <= event.limit_bytes
                assert event.messages_in_use <= event.limit_messages

    @invariant()
    def one_decision_per_message(self) -> None:
        decided = [e.message_id for e in self.log if isinstance(e, ActionDecided)]
        assert len(decided) == len(set(decided))

    @invariant()
    def a_decided_message_holds_no_slot_once_the_admission_has_read_it(self) -> None:
        read = self.log[:self.admission.read]
        decided = {e.message_id for e in read if isinstance(e, ActionDecided)}
        assert not decided & set(self.admission.ledger.held)
        assert not decided & set(self.admission.ledger.waiting)

    @invariant()
    def every_release_frees_an_admitted_slot(self) -> None:
        admitted = set()
        for event in self.ledger_topic:
            if isinstance(event, QuarantineAdmitted):
                admitted.add(event.message_id)
            elif isinstance(event, QuarantineReleased):
                assert event.message_id in admitted
                admitted.discard(event.message_id)

    def teardown(self) -> None:
        # Once every deadline has passed and the consumers have read everything, every
        # message is decided and the quarantine is empty.
        self.time_passes(3600)
        self.the_consumers_read_on(10_000)
        self.time_passes(3600)
        self.the_consumers_read_on(10_000)
        received = {e.message_id for e in self.log if isinstance(e, MessageReceived)}
        decided = {e.message_id for e in self.log if isinstance(e, ActionDecided)}
        assert received == decided
        assert self.admission.ledger.held == {}
        assert self.admission.ledger.waiting == {}


DeciderMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40,
                                            deadline=None)
TestDecider = DeciderMachine.TestCase
