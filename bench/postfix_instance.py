"""A private instance of Debian's Postfix (docs/POSTFIX.md): its own configuration, queue and
data folders in a temporary folder, ports above 1024 on loopback, torn down by stop(). The
benchmark's Postfix peer (bench/postfix_peer.py) and the end-to-end tests (tests/e2e/postfix.py)
both run Postfix through it. Needs root: Postfix's master starts as root, then drops to its users.

Debian's "No configuration" install leaves no main.cf, so base_main_cf() sets what `postfix
check` requires; the log goes to a file inside the instance (maillog_file_prefixes names it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

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


def base_main_cf(root: Path) -> str:
    """The settings every instance needs: its folders, Debian's paths, loopback only, no DNS."""
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
"""


def version() -> str:
    """Postfix's mail_version, e.g. 3.7.11 ("" without postconf)."""
    postconf = shutil.which("postconf")
    if postconf is None:
        return ""
    done = subprocess.run([postconf, "-d", "-h", "mail_version"], capture_output=True,
                          text=True, timeout=30, check=False)
    return done.stdout.strip()


class PostfixInstance:
    """Folders made at construction; start() writes main.cf and master.cf and starts the master."""

    def __init__(self, prefix: str = "katagate-postfix-") -> None:
        found = shutil.which("postfix")
        if found is None:
            raise RuntimeError("postfix is missing: scripts/system-packages installs Debian's "
                               "postfix")
        if os.geteuid() != 0:
            raise PermissionError("a private Postfix instance needs root (its master starts "
                                  "as root, then drops to its users)")
        self.postfix = found
        # Not under a 0700 folder (pytest's tmp_path): Postfix's own users must reach it.
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.root.chmod(0o755)
        for name in ("etc", "queue", "data"):
            (self.root / name).mkdir()
        owner = pwd.getpwnam("postfix")
        os.chown(self.root / "data", owner.pw_uid, owner.pw_gid)

    @property
    def config(self) -> Path:
        return self.root / "etc"

    def start(self, main_cf: str, master_cf: str) -> None:
        (self.config / "main.cf").write_text(main_cf)
        (self.config / "master.cf").write_text(master_cf)
        self._postfix("start")

    def _postfix(self, command: str) -> None:
        done = subprocess.run([self.postfix, "-c", str(self.config), command],
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"postfix {command}: {done.stderr}\n{self.log()}")

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def master_pid(self) -> int:
        """The master's pid from its pid file (written once it runs)."""
        path = self.root / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                return int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                time.sleep(0.1)
        raise RuntimeError(f"no master pid in {path}\n{self.log()}")

    def stop(self) -> None:
        """`postfix stop`, wait until the master is gone, remove every folder."""
        try:
            if not (self.root / "queue" / "pid" / "master.pid").exists():
                return  # never started
            pid = self.master_pid()
            self._postfix("stop")
            deadline = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
