"""Envelope policy, pure: address limits and syntax, the relay decision, the recipient count.

Everything here decides on the SMTP envelope only, never on header display parsing
(CVE-2023-27043: `parseaddr` and `getaddresses` disagree on hostile input).
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email._header_value_parser import AddrSpec, AngleAddr, get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from ipaddress import IPv4Network, IPv6Network

from katagate.ingest import replies
from katagate.ingest.replies import Reply

NULL_SENDER = "<>"  # how aiosmtpd hands over `MAIL FROM:<>`


@dataclass(frozen=True)
class AddressLimits:
    local_part: int = 64  # RFC 5321 section 4.5.3.1.1
    domain: int = 255  # 4.5.3.1.2
    path: int = 256  # 4.5.3.1.3, counting the angle brackets


def _control_char(value: str) -> int | None:
    for index, char in enumerate(value):
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return index
    return None


def check_address(address: str, limits: AddressLimits, *, sender: bool) -> Reply | None:
    """None if the address may be used; else the reply that refuses it."""
    too_long = replies.SENDER_TOO_LONG if sender else replies.RECIPIENT_TOO_LONG
    bad = replies.BAD_SENDER if sender else replies.BAD_RECIPIENT
    if sender and address == NULL_SENDER:
        return None  # the null sender of bounces: always allowed
    position = _control_char(address)
    if position is not None:
        return bad.with_text(f"{bad.text}: control character at position {position + 1}")
    if len(address) + 2 > limits.path:
        return too_long.with_text(
            f"Path too long: {len(address) + 2} octets with <>, limit {limits.path}")
    local, at, domain = address.rpartition("@")
    if not at:
        return (replies.BAD_SENDER.with_text("Sender address must have a domain") if sender
                else replies.NO_DOMAIN)
    if not local:
        return bad.with_text(f"{bad.text}: empty local part")
    if len(local) > limits.local_part:
        return too_long.with_text(
            f"Path too long: local part is {len(local)} octets, limit {limits.local_part}")
    if len(domain) > limits.domain:
        return too_long.with_text(
            f"Path too long: domain is {len(domain)} octets, limit {limits.domain}")
    problem = _domain_problem(domain)
    if problem:
        return bad.with_text(f"{bad.text}: {problem}")
    return None


def written_mailbox(arg: str) -> str:
    """The mailbox as the client wrote it in a MAIL or RCPT argument: the text inside the
    angle brackets (up to the first `>` outside quotes), without a source route (`@a,@b:`),
    or, without brackets, up to the first space. Compared with the address aiosmtpd parsed
    (see `mailbox_as_written`)."""
    text = arg.strip()
    if not text.startswith("<"):
        return text.split(" ", 1)[0]
    quoted = escaped = False
    for index, char in enumerate(text[1:], start=1):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            text = text[1:index]
            break
    else:
        text = text[1:]
    text = text.strip()
    if text.startswith("@") and ":" in text:
        text = text.split(":", 1)[1]  # a source route, which RFC 5321 C says to ignore
    return text.strip()


# RFC 5322 atext, ASCII: what the email package's dot-atom takes, with nothing to unquote.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_PLAIN_PATH = re.compile(rf"<({_DOT_ATOM}@{_DOT_ATOM})>((?: .*)?)\Z", re.DOTALL)


def path_address(arg: str, local_part_limit: int = 0) -> tuple[str | None, str | None]:
    """A MAIL or RCPT argument's (address, rest), as aiosmtpd 1.4's `SMTP._getaddr` parses it,
    or (None, None): unparsable, a local part over `local_part_limit` (0: none), or an address
    the client did not write (`mailbox_as_written`). aiosmtpd's own defines a typing Protocol
    class on every call: 59 µs a path against 35 here, twice a message (MAIL and RCPT); a
    plain path takes a fast path of under 1 µs.
    tests/unit/test_envelope_path.py holds the two to the same answers with the locked
    aiosmtpd, so a release that changes its parse fails there."""
    if not arg:
        return "", ""
    # `=?` may begin an RFC 2047 encoded word, which the email package decodes (and the
    # as-written check then refuses): only the full parse answers for it.
    plain = _PLAIN_PATH.match(arg) if "=?" not in arg else None
    if plain is not None:
        # The common path, `<dot-atom@dot-atom>` and parameters after a space: the email
        # package gives the text inside the brackets as it is, and the parameters with their
        # leading white space dropped (str.lstrip, as its get_fws does; a comment there takes
        # the full parse). Under 1 µs against 39.
        address, after = plain.group(1), plain.group(2)
        rest = after.lstrip()
        if not rest.startswith("("):
            return (None, None) if _over_limit(address, local_part_limit) else (address, rest)
    token: AngleAddr | AddrSpec
    try:
        if arg.lstrip().startswith("<"):
            token, rest = get_angle_addr(arg)
        else:
            token, rest = get_addr_spec(arg)
    except HeaderParseError:
        return None, None
    address = str(token.addr_spec)
    if _over_limit(address, local_part_limit):
        return None, None
    if address and not mailbox_as_written(arg, address):
        return None, None
    return address, rest


def _over_limit(address: str, local_part_limit: int) -> bool:
    """A local part over the limit (0: none)."""
    return bool(local_part_limit) and len(address.rpartition("@")[0]) > local_part_limit


def mailbox_as_written(arg: str, parsed: str) -> bool:
    """Whether `parsed` (aiosmtpd's address) is the mailbox the client wrote. aiosmtpd parses
    a path as a header address: it drops comments (`<x(y)@example.org>` gives `x@example.org`)
    and quotes what a header would need quoted (`<a b@example.org>` gives `"a b"@example.org`).
    Both are addresses the client never sent, and neither is an RFC 5321 path. It also
    removes quotes that were not needed (`"ab"@x` gives `ab@x`): the same mailbox (RFC 5321
    4.1.2), so that is kept."""
    written = written_mailbox(arg)
    if written == parsed or (written, parsed) == ("", NULL_SENDER):
        return True
    local, at, domain = written.rpartition("@")
    if not (local.startswith('"') and local.endswith('"') and len(local) >= 2):
        return False
    unquoted = re.sub(r"\\(.)", r"\1", local[1:-1])
    return f"{unquoted}{at}{domain}" == parsed


def _domain_problem(domain: str) -> str | None:
    if domain.startswith("[") and domain.endswith("]"):
        return None  # an address literal; the relay decision treats it as a domain name
    labels = domain.split(".")
    if any(not label for label in labels):
        return "empty domain label"
    if any(len(label) > 63 for label in labels):  # RFC 1035 section 2.3.4
        return "domain label longer than 63 octets"
    return None


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].casefold()


@functools.lru_cache(maxsize=4096)
def client_address(peer: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address a peer string names (a ValueError if none): parsed once per peer, not at
    every RCPT and DATA of its messages (immutable; the cache holds at most 4,096)."""
    ip = ipaddress.ip_address(peer.split("%", 1)[0])
    # An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=4096)
def client_text(peer: str) -> str:
    """`client_address` as the events and checks write it."""
    return str(client_address(peer))


def in_networks(peer: str, networks: Iterable[IPv4Network | IPv6Network]) -> bool:
    """Whether the client address (IPv4-mapped counts as IPv4) lies in one of the networks;
    something that is not an IP address (a Unix socket) lies in none."""
    try:
        ip = client_address(peer)
    except ValueError:
        return False
    return any(ip in network for network in networks if network.version == ip.version)


def local_part(address: str) -> str:
    """The local part as the mailbox means it: a quoted one unquoted, its escapes undone."""
    local = address.rpartition("@")[0]
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        return re.sub(r"\\(.)", r"\1", local[1:-1])
    return local


def sender_routing(address: str) -> str | None:
    """The routing character in the local part (`%`, `!` or `@`), or None. `user%other@relay`,
    `other!user@relay` and `"user@other"@relay` name a further destination that a next hop
    honouring the percent hack, bang paths or a dequoted address would relay to: an open relay
    through a domain we relay for. Refused whatever the client, as Postfix's
    reject_unauth_destination refuses sender-specified routing."""
    local = local_part(address)
    return next((char for char in "@%!" if char in local), None)


@dataclass(frozen=True)
class RelayPolicy:
    """Mail is accepted *for* the relay domains, or *from* the relay networks; nothing else:
    no open relay."""

    domains: tuple[str, ...] = ()  # glob patterns over the recipient's domain, e.g. *.example.org
    networks: tuple[IPv4Network | IPv6Network, ...] = ()

    def decide(self, client_ip: str, recipient: str) -> Reply | None:
        """None: relay allowed; else the refusal naming the reason."""
        routing = sender_routing(recipient)
        if routing is not None:
            return replies.RELAY_DENIED.with_text(
                f"Relaying denied: sender-specified routing ({routing!r} in the local part)")
        domain = domain_of(recipient)
        if self.is_relay_domain(domain):
            return None
        if in_networks(client_ip, self.networks):
            return None
        return replies.RELAY_DENIED.with_text(
            f"Relaying denied: {domain} is not a relay domain and client {client_ip} is not "
            "in a relay network")

    def is_relay_domain(self, domain: str) -> bool:
        return any(fnmatch.fnmatchcase(domain, pattern.casefold()) for pattern in self.domains)


def recipient_limit_reached(current: Sequence[str], limit: int) -> Reply | None:
    return replies.TOO_MANY_RECIPIENTS if len(current) >= limit else None
