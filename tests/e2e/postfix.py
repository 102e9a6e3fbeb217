"""A private instance of Debian's real Postfix for the end-to-end tests (docs/POSTFIX.md), made
by bench/postfix_instance.py (the benchmark's Postfix peer uses it too): its own configuration,
queue and data folders, ports above 1024 on loopback, and a virtual mailbox (a Maildir) for
example.net that the tests read. Needs root (Postfix's master does), as CI runs.

Ports: `smtpd_port`, the Postfix that receives from the internet and hands mail to katagate as
its content_filter (`content_filter` set, XFORWARD sent); `reinject_port`, the second smtpd
katagate delivers to (`-o content_filter=`, as in the amavis recipe), which also serves as the
next hop of katagate placed in front. The content_filter lines are docs/POSTFIX.md's, read from
it.
"""

from __future__ import annotations

import mailbox
import os
import pwd
import re
from pathlib import Path

import pytest

from bench.postfix_instance import SERVICES, PostfixInstance, base_main_cf
from katagate.eventlog.broker import free_port
from tests.tools import require_tool

MAILBOX_DOMAIN = "example.net"
DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "POSTFIX.md"


def main_cf(root: Path, filter_port: int) -> str:
    return base_main_cf(root) + f"""\
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
# The mailbox katagate's clean mail must reach: every example.net recipient, one Maildir.
virtual_mailbox_domains = {MAILBOX_DOMAIN}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = static:mailbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
# After the queue, every message goes through katagate: docs/POSTFIX.md's line.
{documented("Postfix, `main.cf`:").replace("[127.0.0.1]:10024", f"[127.0.0.1]:{filter_port}")}
"""


def master_cf(smtpd_port: int, reinject_port: int) -> str:
    """Postfix's services, the smtpd the internet reaches, and docs/POSTFIX.md's own lines for
    the hand-over to katagate and the reinjection, on this test's ports: the lines documented
    are the lines tested."""
    handover = documented("Postfix, `master.cf`:")
    assert "127.0.0.1:10025 inet" in handover, handover
    handover = handover.replace("127.0.0.1:10025", f"127.0.0.1:{reinject_port}")
    return SERVICES + f"127.0.0.1:{smtpd_port} inet n - n - - smtpd\n" + handover


def documented(caption: str) -> str:
    """The code block right after `caption` in docs/POSTFIX.md's content_filter section."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 2. katagate as Postfix's content_filter"):]
    after = section[section.index(caption) + len(caption):]
    match = re.match(r"\s*```[a-z]*\n(.*?)```", after, re.DOTALL)
    assert match, f"no code block after {caption!r} in {DOC}"
    return match.group(1)


class Postfix:
    def __init__(self, filter_port: int) -> None:
        require_tool("postfix", package="postfix")
        if os.geteuid() != 0:  # Postfix's master starts as root, then drops to its users
            message = "a private Postfix instance needs root (CI runs the tests as root)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.smtpd_port, self.reinject_port = free_port(), free_port()
        self.instance = PostfixInstance()
        self.root = self.instance.root
        (self.root / "mail").mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(self.root / "mail", nobody.pw_uid, nobody.pw_gid)
        try:
            self.instance.start(main_cf(self.root, filter_port),
                                master_cf(self.smtpd_port, self.reinject_port))
        except BaseException:
            self.instance.stop()
            raise

    def log(self) -> str:
        return self.instance.log()

    def delivered(self) -> list[bytes]:
        """The messages Postfix delivered to the example.net mailbox, as stored."""
        folder = self.root / "mail" / "mailbox"
        if not (folder / "new").is_dir():
            return []
        return [message.as_bytes() for message in mailbox.Maildir(folder, create=False)]

    def stop(self) -> None:
        self.instance.stop()
