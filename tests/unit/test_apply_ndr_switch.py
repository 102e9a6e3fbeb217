"""The NDR switch, without a broker: a Reject's NDR follows the switch as it was when the
message was received (its settings version, like its rule), not as it is when apply acts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import pytest

from katagate.decider.apply import Apply
from katagate.decider.history import ControlHistory, evolve_history
from katagate.decider.settings import DeciderSettings
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.schemas import (
    ActionDecided,
    KataSettings,
    KataSettingsChanged,
    NdrSuppressed,
    ProducerRef,
)
from tests.unit.test_decider_core import REF, T0, received

M = "m0000001"
ADMIN = ProducerRef(stage="admin", instance="t")
RAW = b"Subject: hi\r\n\r\nbody\r\n"


@dataclass
class Control:
    """What apply reads of the control view: its folded value."""

    value: ControlHistory


def ndr_switched(history: ControlHistory, version: int, on: bool) -> ControlHistory:
    event = KataSettingsChanged(event_id=UUID(int=100 + version), occurred_at=T0, producer=ADMIN,
                                version=version, actor="cli:root",
                                settings=KataSettings(ndr_enabled=on), changed=["ndr_enabled"])
    return evolve_history(history, event)


@pytest.fixture
def apply():
    # Nothing listens on port 9: an NDR apply tries to send is deferred, never suppressed.
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9", topic_prefix="t", config_file=None,
                          config_dir=None, principal=None, request_timeout_s=1)
    control = Control(ControlHistory())
    handler = Apply(kafka, DeciderSettings(next_hop_port=9, smtp_timeout_s=1, helo_name="gw"),
                    control, REF, lambda: datetime.now(UTC), None)  # type: ignore[arg-type]
    yield handler, control
    handler.close()


def rejected(handler: Apply, settings_version: int, held: bool = False) -> list[object]:
    """A message received at `settings_version`, decided Reject (or, `held`, rejected at the
    end of a hold: hold_outcome = reject), carried out on RAW."""
    reject = ActionDecided(event_id=UUID(int=9), occurred_at=T0, producer=REF, message_id=M,
                           action="reject", tag=None, backup=False, skipped=False,
                           reason="timeout" if held else "detected", held=held)
    for n, event in enumerate((received(M).model_copy(
            update={"settings_version": settings_version}), reject)):
        handler.fold(event, Consumed("t.mail", 0, n, M.encode(),
                                     Outgoing.event("t.mail", event).value))
    return list(handler._carry_out(handler.parcels.live[M], RAW))


def test_given_received_with_ndr_on_when_switched_off_before_the_reject_then_an_ndr_is_tried(
        apply):
    handler, control = apply
    # Given the switch on at version 1, the message received under it
    control.value = ndr_switched(ControlHistory(), 1, True)
    # When the switch is turned off (version 2) before apply carries out the Reject
    control.value = ndr_switched(control.value, 2, False)
    events = rejected(handler, settings_version=1)
    # Then the NDR is sent (here: tried, and deferred, as nothing listens), not suppressed
    assert not any(isinstance(e, NdrSuppressed) for e in events)
    assert [e.type for e in events] == ["delivery.deferred"]  # type: ignore[attr-defined]


def test_given_received_with_ndr_off_when_switched_on_before_the_reject_then_no_ndr(apply):
    handler, control = apply
    # Given the switch off at version 1, the message received under it
    control.value = ndr_switched(ControlHistory(), 1, False)
    # When the switch is turned on (version 2) before apply carries out the Reject
    control.value = ndr_switched(control.value, 2, True)
    events = rejected(handler, settings_version=1)
    # Then the NDR is suppressed, as the switch said when the message came
    assert [(type(e), e.reason) for e in events] == [  # type: ignore[attr-defined]
        (NdrSuppressed, "ndr_disabled")]


def test_given_the_ndr_switch_off_when_a_held_message_is_rejected_then_no_backscatter(apply):
    handler, control = apply
    # Given the switch off, a message held (KATA unavailable) under hold_outcome = reject
    control.value = ndr_switched(ControlHistory(), 1, False)
    # When its response timeout ends and apply rejects it
    events = rejected(handler, settings_version=1, held=True)
    # Then no NDR goes to its (possibly forged) sender (docs/SECURITY.md, "Backscatter")
    assert [(type(e), e.reason) for e in events] == [  # type: ignore[attr-defined]
        (NdrSuppressed, "ndr_disabled")]
