"""The relay recipient table, pure: which recipients of a relay domain exist, refused at RCPT if
not (like Postfix's `relay_recipient_maps`), so that mail that cannot be delivered is never
accepted and never bounced to a sender who may be forged (backscatter, docs/SECURITY.md).

Entries are addresses (`bob@example.net`) or whole domains (`@example.org`: any local part).
A relay domain with no entry at all is not checked, as Postfix leaves a domain the map does not
name; so the table can be brought in one domain at a time. Lookups ignore case, as Postfix's do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from katagate.ingest import replies
from katagate.ingest.envelope import domain_of
from katagate.ingest.replies import Reply

# An address or @domain without white space or control characters; quoted local parts are
# written as aiosmtpd hands them over (quotes only where needed).
_ENTRY = re.compile(r"^[!-~]{0,64}@[A-Za-z0-9.\-\[\]:]{1,255}$")


def parse_entry(entry: str) -> str:
    """The entry as looked up (case folded); ValueError naming it when it is not one."""
    if not _ENTRY.match(entry) or entry.endswith("@") or entry.rpartition("@")[2].startswith("."):
        raise ValueError(f"not an address or @domain: {entry!r}")
    return entry.casefold()


def parse_table(text: str) -> list[str]:
    """The entries of a table file: one a line, the first word of it (a Postfix map's value
    column is allowed and ignored), `#` comments and empty lines skipped. ValueError names the
    line of a bad entry."""
    entries: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        try:
            entries.append(parse_entry(words[0]))
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    return entries


@dataclass(frozen=True)
class RecipientTable:
    addresses: frozenset[str] = frozenset()
    whole_domains: frozenset[str] = frozenset()  # from @domain entries
    domains: frozenset[str] = frozenset()  # every domain with an entry: the ones checked

    @classmethod
    def of(cls, entries: Iterable[str]) -> RecipientTable:
        folded = [parse_entry(entry) for entry in entries]
        whole = frozenset(e[1:] for e in folded if e.startswith("@"))
        addresses = frozenset(e for e in folded if not e.startswith("@"))
        return cls(addresses, whole, whole | {domain_of(a) for a in addresses})

    def check(self, recipient: str) -> Reply | None:
        """None: the recipient exists, or its domain is not in the table; else 550 5.1.1."""
        domain = domain_of(recipient)
        if domain not in self.domains or domain in self.whole_domains:
            return None
        if recipient.casefold() in self.addresses:
            return None
        return replies.UNKNOWN_RECIPIENT.with_text(
            f"<{recipient}>: Recipient address rejected: User unknown in relay recipient table")
