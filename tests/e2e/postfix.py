"""A private instance of Debian's real Postfix for the end-to-end tests (docs/POSTFIX.md): its
own configuration, queue and data folders, ports above 1024 on loopback, and a virtual mailbox
(a Maildir) for example.net that the tests read. Needs root (Postfix's master does), as CI runs.

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
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from katagate.eventlog.broker import free_port
from tests.tools import require_tool

MAILBOX_DOMAIN = "example.net"
DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "POSTFIX.md"

# Postfix's own services, none chrooted (the instance's folders are not in a chroot).
SERVICES = """\
pickup    unix  n  -  n  60    1  pickup
cleanup   unix  n  -  n  -     0  cleanup
qmgr      unix  n  -  n  300   1  qmgr
rewrite   unix  -  -  n  -     -  trivial-rewrite
bounce    unix  -  -  n  -     0  bounce
defer     unix  -  -  n  -     0  bounce
trace     unix  -  -  n  -     0  bounce
verify    unix  -  -  n  -     1  verify
flush     unix  n  -  n  1000? 0  flush
proxymap  unix  -  -  n  -     -  proxymap
smtp      unix  -  -  n  -     -  smtp
relay     unix  -  -  n  -     -  smtp
showq     unix  n  -  n  -     -  showq
error     unix  -  -  n  -     -  error
retry     unix  -  -  n  -     -  error
discard   unix  -  -  n  -     -  discard
virtual   unix  -  n  n  -     -  virtual
anvil     unix  -  -  n  -     1  anvil
scache    unix  -  -  n  -     1  scache
postlog   unix-dgram n - n -   1  postlogd
"""


def main_cf(root: Path, filter_port: int) -> str:
    return f"""\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
mailq_path = /usr/bin/mailq
sendmail_path = /usr/sbin/sendmail
newaliases_path = /usr/bin/newaliases
html_directory = no
readme_directory = no
manpage_directory = /usr/share/man
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
myhostname = postfix.example.net
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
disable_dns_lookups = yes
smtp_host_lookup = native
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
        self.postfix = require_tool("postfix", package="postfix")
        if os.geteuid() != 0:  # Postfix's master starts as root, then drops to its users
            message = "a private Postfix instance needs root (CI runs the tests as root)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.smtpd_port, self.reinject_port = free_port(), free_port()
        # Not under pytest's 0700 tmp folders: Postfix's own users must reach its folders.
        self.root = Path(tempfile.mkdtemp(prefix="katagate-postfix-"))
        self.root.chmod(0o755)
        for name in ("etc", "queue", "data", "mail"):
            (self.root / name).mkdir()
        postfix_user, nobody = pwd.getpwnam("postfix"), pwd.getpwnam("nobody")
        os.chown(self.root / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        os.chown(self.root / "mail", nobody.pw_uid, nobody.pw_gid)
        (self.root / "etc" / "main.cf").write_text(main_cf(self.root, filter_port))
        (self.root / "etc" / "master.cf").write_text(
            master_cf(self.smtpd_port, self.reinject_port))
        self._postfix("start")

    def _postfix(self, command: str) -> None:
        done = subprocess.run([self.postfix, "-c", str(self.root / "etc"), command],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"postfix {command}: {done.stderr}\n{self.log()}"

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def delivered(self) -> list[bytes]:
        """The messages Postfix delivered to the example.net mailbox, as stored."""
        folder = self.root / "mail" / "mailbox"
        if not (folder / "new").is_dir():
            return []
        return [message.as_bytes() for message in mailbox.Maildir(folder, create=False)]

    def stop(self) -> None:
        try:
            self._postfix("stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
