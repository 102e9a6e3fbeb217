"""Everything the console's request handlers share, wired once by `bootstrap` (the entry point)
or by a test: settings, the account store, sessions, the login limiter, the configuration, the
projector, the writer of administrator requests to `katagate.mail` and the Backup's reader."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from katagate.console.accounts import AccountStore
from katagate.console.backup_copies import BackupReader
from katagate.console.control import ControlService
from katagate.console.projector_client import ProjectorClient
from katagate.console.quarantine import QuarantineWriter
from katagate.console.ratelimit import LoginLimiter
from katagate.console.sessions import Sessions
from katagate.console.settings import ConsoleSettings
from katagate.console.state_db import STATE_DB, StateDb
from katagate.eventlog.settings import KafkaSettings


@dataclass
class Console:
    settings: ConsoleSettings
    kafka: KafkaSettings
    accounts: AccountStore
    sessions: Sessions
    limiter: LoginLimiter
    control: ControlService
    projector: ProjectorClient
    quarantine: QuarantineWriter  # every request the console writes to katagate.mail
    backup: BackupReader
    # Wall-clock seconds: sessions are kept on disk, shared with other console processes.
    clock: Callable[[], float] = field(default=time.time)

    def close(self) -> None:
        self.control.close()
        self.quarantine.close()
        self.backup.close()


def bootstrap(settings: ConsoleSettings, kafka: KafkaSettings) -> Console:
    state = StateDb(settings.state_dir / STATE_DB)  # sessions and failed sign-ins
    return Console(
        settings=settings,
        kafka=kafka,
        accounts=AccountStore(settings.state_dir),
        sessions=Sessions(state, settings.session_idle_s, settings.session_max_s),
        limiter=LoginLimiter(state, settings.login_failures, settings.login_window_s),
        control=ControlService(kafka, settings.read_your_writes_s),
        projector=ProjectorClient(settings.projector_url, settings.projector_timeout_s,
                                  settings.projector_token_file),
        quarantine=QuarantineWriter(kafka),
        backup=BackupReader(kafka),
    )
