"""A raw reader's consumer builds whatever message size a site allows (eventlog/raw.py): its
small fetches must not refuse a `message.max.bytes` raised in the principal's properties, as
a fixed fetch.max.bytes under it would. No broker: a consumer is built without connecting."""

from __future__ import annotations

import pytest

from katagate.eventlog import clients
from katagate.eventlog.raw import RawReader
from katagate.eventlog.settings import KafkaSettings


@pytest.mark.parametrize("message_max_bytes", ["1000000", "2162688", "8388608"])
def test_given_a_raised_message_size_then_the_reader_is_built(
        monkeypatch: pytest.MonkeyPatch, message_max_bytes: str) -> None:
    monkeypatch.setattr(clients, "user_properties",
                        lambda _settings: {"message.max.bytes": message_max_bytes})
    reader = RawReader(KafkaSettings(bootstrap_servers="127.0.0.1:9", topic_prefix="t",
                                     config_file=None, config_dir=None, principal=None))
    reader.close()
