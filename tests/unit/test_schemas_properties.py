"""Property tests: models accept exactly the product's documented ranges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from katagate.schemas import KataSettings, KataSettingsChanged, RuleKata, decode_event, encode_event
from tests.unit.fixtures.events import envelope

MIB = 1_048_576


def around(low: int, high: int) -> st.SearchStrategy[int]:
    """Integers concentrated on and beside the bounds, plus anything in between."""
    edges = [low - 1, low, low + 1, high - 1, high, high + 1]
    return st.one_of(st.sampled_from(edges), st.integers(low - 10, high + 10))


@given(
    port=around(1, 65535),
    timeout=around(60, 86400),
    max_bytes=around(MIB, 1 << 45),
    max_messages=around(1, 4294967296),
    poll=around(1, 3600),
)
def test_given_any_values_then_settings_accepted_iff_within_the_documented_ranges(
    port: int, timeout: int, max_bytes: int, max_messages: int, poll: int
) -> None:
    in_range = (
        1 <= port <= 65535
        and 60 <= timeout <= 86400
        and max_bytes >= MIB
        and 1 <= max_messages <= 4294967296
        and 1 <= poll <= 3600
    )
    try:
        settings = KataSettings(
            central_node_port=port,
            response_timeout_s=timeout,
            quarantine_max_bytes=max_bytes,
            quarantine_max_messages=max_messages,
            poll_interval_s=poll,
        )
    except ValidationError:
        assert not in_range
    else:
        assert in_range
        event = KataSettingsChanged(
            **envelope(1, "admin"),
            version=1,
            actor="admin",
            settings=settings,
            changed=["central_node_port"],
        )
        assert decode_event(encode_event(event)) == event


@given(tag=st.text(min_size=0, max_size=300))
def test_given_any_tag_then_accepted_iff_one_line_of_1_to_255_chars(tag: str) -> None:
    forbidden = {chr(c) for c in range(0x20) if c != 0x09} | {"\x7f", "\x85", "\u2028",
                                                               "\u2029"}
    ok = 1 <= len(tag) <= 255 and not any(c in forbidden for c in tag)
    try:
        RuleKata(tag=tag)
    except ValidationError:
        assert not ok
    else:
        assert ok
