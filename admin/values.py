"""Validators for the values administrators type, shared by the settings and rule commands.

Input arrives loosely typed (strings from the CLI, numbers and booleans from JSON), so each
validator accepts `object`, returns the typed value, or raises InvalidCommand naming the field
and what it accepts. They check no more than the event schemas and no less, so a refused
command never reaches pydantic and an accepted one always builds a valid event.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from ipaddress import AddressValueError, IPv4Address

from katagate.admin.errors import InvalidCommand
from katagate.schemas import ProducerRef
from katagate.schemas.control import placeholder_problem, reserved_header

_INTEGER = re.compile(r"^[+-]?[0-9]{1,30}$")
_ON = {"on", "true", "yes", "1"}
_OFF = {"off", "false", "no", "0"}
# What must never reach a header or a one-line display: C0/C1 controls, DEL, and the Unicode
# line and paragraph separators (a tab is a control character too: refused as well).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_IPV4 = "the unicast IPv4 address of a server, e.g. 192.0.2.10"


def shown(value: object) -> str:
    """A value as the refusal quotes it: numbers bare, text quoted and kept short."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return str(int(value.strip()))
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def integer(field: str, value: object, low: int, high: int, unit: str = "") -> int:
    """An integer in low..high; decimal strings are accepted, booleans are not."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None or not low <= number <= high:
        suffix = f" {unit}" if unit else ""
        raise InvalidCommand(
            f"{field}: must be an integer in {low}..{high}{suffix}, got {shown(value)}",
            field=field, allowed=f"an integer in {low}..{high}{suffix}",
        )
    return number


def switch(field: str, value: object) -> bool:
    """on/off (also true/false, yes/no, 1/0, or a JSON boolean)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().casefold()
        if word in _ON:
            return True
        if word in _OFF:
            return False
    raise InvalidCommand(f"{field}: must be on or off, got {shown(value)}", field=field,
                         allowed=["on", "off"])


def ipv4(field: str, value: object) -> IPv4Address:
    """A unicast IPv4 address: the product takes the Central Node by IPv4 address only."""
    if isinstance(value, IPv4Address):
        address = value
    else:
        try:
            address = IPv4Address(value.strip() if isinstance(value, str) else "")
        except AddressValueError:
            raise InvalidCommand(
                f"{field}: must be an IPv4 address (e.g. 192.0.2.10), got {shown(value)}",
                field=field, allowed=_IPV4,
            ) from None
    if address.is_unspecified or address.is_multicast or address == IPv4Address(
            "255.255.255.255"):
        raise InvalidCommand(
            f"{field}: must be the unicast IPv4 address of a server, got {shown(str(address))}",
            field=field, allowed=_IPV4,
        )
    return address


def choice(field: str, value: object, options: Sequence[str]) -> str:
    if isinstance(value, str) and value.strip().casefold() in options:
        return value.strip().casefold()
    raise InvalidCommand(f"{field}: must be one of {', '.join(options)}, got {shown(value)}",
                         field=field, allowed=list(options))


def line(field: str, value: object, max_length: int) -> str:
    """One line of printable text, 1..max_length characters, not only spaces."""
    allowed = f"one line of 1..{max_length} characters, without control characters"

    def refuse(problem: str) -> InvalidCommand:
        return InvalidCommand(f"{field}: {problem}", field=field, allowed=allowed)

    if not isinstance(value, str):
        raise refuse(f"must be text of 1..{max_length} characters, got {shown(value)}")
    if not value.strip():
        raise refuse(f"must be 1..{max_length} characters, not empty or only spaces, "
                     f"got {shown(value)}")
    if len(value) > max_length:
        raise refuse(f"must be 1..{max_length} characters, got {len(value)} characters")
    bad = _CONTROL.search(value)
    if bad is not None:
        name = unicodedata.name(bad.group(), f"U+{ord(bad.group()):04X}")
        raise refuse(f"must not contain line breaks or control characters, got {name} at "
                     f"character {bad.start() + 1}")
    return value


def patterns(field: str, value: object) -> list[str]:
    """A non-empty list of address glob patterns (e.g. *@example.com), each one line."""
    allowed = "one or more address patterns without spaces, e.g. *@example.com ('*': any)"
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise InvalidCommand(f"{field}: must list at least one address pattern (e.g. "
                             f"'*@example.com', or '*' for any), got {shown(value)}",
                             field=field, allowed=allowed)
    checked = [line(field, item, 256) for item in items]
    spaced = [p for p in checked if p != p.strip() or " " in p]
    if spaced:
        raise InvalidCommand(f"{field}: a pattern must not contain spaces, got {spaced[0]!r}",
                             field=field, allowed=allowed)
    return checked


def actor_ref(actor: str) -> ProducerRef:
    """Check who acts and name the writer after them: the event records both."""
    line("actor", actor, 128)
    return ProducerRef(stage="admin", instance=re.sub(r"\s", "_", actor))


_HEADER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,75}$")


def header_name(field: str, value: object) -> str | None:
    """A header field name (letters, digits, hyphens; 1..76), or off/none/empty for none."""
    allowed = "a header name such as X-KATA-Verdict (letters, digits, '-'), or off"
    if value is None or (isinstance(value, str) and value.strip().casefold() in ("", "off",
                                                                               "none")):
        return None
    if isinstance(value, str) and _HEADER_NAME.match(value.strip()):
        reserved = reserved_header(value.strip())
        if reserved is not None:
            raise InvalidCommand(f"{field}: {reserved}", field=field, allowed=allowed)
        return value.strip()
    raise InvalidCommand(f"{field}: must be {allowed}, got {shown(value)}", field=field,
                         allowed=allowed)


def header_format(field: str, value: object, placeholders: Sequence[str]) -> str:
    """The verdict header's value: printable ASCII, with only bare known {placeholders}."""
    allowed = (f"1..200 printable ASCII characters; placeholders: "
               f"{', '.join('{' + p + '}' for p in placeholders)}")
    if not isinstance(value, str) or not re.fullmatch(r"[\x20-\x7e]{1,200}", value):
        raise InvalidCommand(f"{field}: must be {allowed}, got {shown(value)}", field=field,
                             allowed=allowed)
    problem = placeholder_problem(value, placeholders)
    if problem is not None:
        raise InvalidCommand(f"{field}: {problem}; {allowed}", field=field, allowed=allowed)
    return value
