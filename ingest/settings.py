"""The ingest stage's settings: one frozen object, read from `KATAGATE_INGEST_*` at the entry
point only. Lists come as JSON, e.g. KATAGATE_INGEST_RELAY_DOMAINS='["example.org"]'."""

from __future__ import annotations

import os
import socket
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, IPvAnyNetwork, ValidationInfo, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from katagate.eventlog.config_file import FileSettings
from katagate.eventlog.health import DEFAULT_STALL_S, StallSeconds
from katagate.eventlog.listen import LOOPBACK, ListenHost, refuse_metrics_on
from katagate.ingest.callout import NextHop, RecipientVerifier, StartTls
from katagate.ingest.content import ContentLimits
from katagate.ingest.envelope import AddressLimits, RelayPolicy
from katagate.ingest.recipients import RecipientTable, parse_entry, parse_table
from katagate.ingest.verify_cache import VerifyCache

MiB = 1024 * 1024
_IPV4_MAPPED = IPv6Network("::ffff:0:0/96")


def _default_hostname() -> str:
    name = socket.getfqdn()
    return name if name and all(c.isalnum() or c in ".-" for c in name) else "localhost"


class IngestSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_INGEST_", frozen=True, extra="ignore")
    config_section: ClassVar[str] = "ingest"

    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)  # 0: any free port (tests)
    hostname: str = Field(default_factory=_default_hostname,
                          pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")
    # Names the producer's client and the events' producer; unique per running instance.
    instance_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
                             pattern=r"^[A-Za-z0-9._-]{1,100}$")

    # No open relay: mail is accepted for these recipient domains (globs, case-insensitive;
    # "*.example.org" does not match "example.org") or from these client networks.
    relay_domains: list[str] = Field(default_factory=list)
    relay_networks: list[IPvAnyNetwork] = Field(default_factory=list)

    # Which recipients of the relay domains exist (Postfix's relay_recipient_maps): addresses
    # and @domain entries, here and in a file of one entry a line (read at start). A relay
    # domain with no entry is not checked. Unknown recipients get 550 5.1.1 at RCPT.
    relay_recipients: list[str] = Field(default_factory=list)
    relay_recipients_file: Path | None = None
    # Recipient verification (Postfix's reject_unverified_recipient): ask the next hop (the
    # decider's next_hop_host/port) at RCPT whether it takes a relay domain's recipient; 5xx
    # gives 550 5.1.1, no answer 450 4.1.1. Answers are kept, a refusal for less time.
    verify_recipients: bool = False
    verify_host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    verify_port: int = Field(default=2526, ge=1, le=65535)
    # As the decider's next_hop_starttls: encrypted when offered (not authenticated, RFC 7435);
    # "required": no STARTTLS offered gives 450 4.1.1.
    verify_starttls: StartTls = "opportunistic"
    verify_timeout_s: float = Field(default=10.0, gt=0, le=120)
    verify_positive_ttl_s: float = Field(default=24 * 3600.0, gt=0, le=31 * 24 * 3600)
    verify_negative_ttl_s: float = Field(default=3600.0, gt=0, le=31 * 24 * 3600)
    verify_cache_size: int = Field(default=100_000, ge=100, le=10_000_000)
    verify_concurrency: int = Field(default=20, ge=1, le=1000)

    # Behind a load balancer: every connection starts with a HAProxy PROXY header (v1 or v2),
    # and the client it names is the client (events, relay_networks, per-client caps, our
    # Received field). Only from these networks (CIDRs; required when on): another peer gets
    # 421 4.7.0, since it could name any address.
    proxy_protocol: bool = False
    proxy_protocol_hosts: list[IPvAnyNetwork] = Field(default_factory=list)
    # Postfix's XFORWARD (smtpd_authorized_xforward_hosts): from these clients (CIDRs) EHLO
    # offers it, and the client it names is the message's client in events and our Received
    # field; relaying stays decided on the connection (the upstream MTA has decided it), as in
    # Postfix. Others: 550 5.7.0.
    xforward_hosts: list[IPvAnyNetwork] = Field(default_factory=list)

    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_tls: bool = False

    # Limits. Lower bounds are RFC 5321's minimums (section 4.5.3.1); upper bounds what the
    # events can hold. The 200 MB KATA per-message cap is the decider's business, not ours.
    max_message_bytes: int = Field(default=36 * MiB, ge=1024, le=1024 * MiB)
    max_recipients: int = Field(default=1000, ge=100, le=1000)
    max_line_length: int = Field(default=1000, ge=1000, le=65536)  # octets with CRLF
    max_local_part: int = Field(default=64, ge=64, le=254)
    max_domain: int = Field(default=255, ge=255, le=255)
    max_path: int = Field(default=256, ge=256, le=258)  # MessageReceived holds 256 octets
    # A message that would carry more Received fields than this, ours included, is a loop:
    # 554 5.4.6 (Postfix's hopcount_limit, same default).
    hop_count_limit: int = Field(default=50, ge=10, le=1000)
    # Look up each client's reverse DNS name for our Received field (in the background, from
    # HELO on; a name not known by the end of DATA is written `unknown`, never waited for).
    reverse_dns: bool = True
    # Commands per session other than MAIL, RCPT, DATA and QUIT (see server.py).
    max_commands: int = Field(default=1000, ge=10, le=100_000)
    session_timeout_s: float = Field(default=300.0, gt=0, le=3600)
    data_timeout_s: float = Field(default=180.0, gt=0, le=3600)
    # During DATA each read of N octets buys N/min_data_rate seconds, up to data_timeout_s
    # ahead (Postfix's smtpd_min_data_rate, same default); 0: a plain inactivity timeout.
    min_data_rate: int = Field(default=500, ge=0, le=100 * MiB)
    # Sessions at once, in all and per client address (Postfix's anvil default is 50).
    max_sessions: int = Field(default=1000, ge=1, le=100_000)
    max_sessions_per_client: int = Field(default=50, ge=1, le=100_000)
    # The per-client caps count an IPv6 client by its network of this many bits (a host is
    # commonly given a whole /64, and picks any address in it); IPv4 counts per address.
    client_ipv6_prefix: int = Field(default=64, ge=32, le=128)
    # DATA bytes all sessions together may hold in memory; past it a new DATA, or a body that
    # would go over it, gets 451 4.3.1 and the messages already in hand keep their room. Sized
    # for the 2 GiB memory limit of deploy/k8s/ingest.yaml: a message held peaks at about 2.4
    # times its size (tests/faults/test_big_messages.py), so 512 MiB in DATA stays near 1.2 GiB.
    # Scale it with the stage's memory; at least max_message_bytes, or the largest message
    # allowed could never be held.
    data_budget_bytes: int = Field(default=512 * MiB, ge=MiB, le=64 * 1024 * MiB)
    # Past this, answer 451: the raw bytes and MessageReceived were not durable in time.
    commit_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # On stop: sessions may finish the transactions they have begun for at most this long,
    # while new connections get 421 4.3.2 and /readyz says draining; then the sessions left
    # are closed with 421 (a message being written first gets its answer within
    # commit_timeout_s). 0: close at once, as when an orchestrator gives no grace.
    drain_timeout_s: float = Field(default=30.0, ge=0, le=600)

    # The writer (ingest/writer.py) takes at most this many messages, or bytes, from the
    # sessions in one turn. The producer's linger: 0, so a message on an idle gateway waits
    # for no one (at one connection 2 ms cost 3 ms of the 250's p50, two writes); under load
    # the writes that queue while requests are in flight still share one (decisions/0007).
    batch_max_messages: int = Field(default=64, ge=1, le=10_000)
    batch_max_bytes: int = Field(default=32 * MiB, ge=MiB, le=1024 * MiB)
    batch_linger_ms: float = Field(default=0.0, ge=0, le=1000)
    # Writers, each with its own producer and threads. On 2 cores one writer moves more mail:
    # a second costs CPU, and the machine is CPU-bound. Raise it with cores.
    writers: int = Field(default=1, ge=1, le=8)
    # SMTP worker processes sharing the listening port (SO_REUSEPORT: the kernel spreads the
    # connections), each with its own writers, under one supervising process that restarts a
    # worker that dies and serves their metrics and probes as one (ingest/workers.py). The
    # DATA budget is divided among them; the session caps are counted across them. One
    # interpreter takes one core.
    processes: int = Field(default=1, ge=1, le=64)

    # Wait this long for the control log to be read to its end before listening; past it,
    # listen with what was read (logged), and keep folding.
    control_catchup_s: float = Field(default=10.0, ge=0, le=600)
    # Serve Prometheus metrics on metrics_host:PORT (None: not served): their own address, not
    # the SMTP listener's, which faces the mail senders.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # An IP literal, loopback unless told otherwise, whatever `host` is: 0.0.0.0 in a
    # container, for Prometheus to reach it. Never the SMTP listener's address (checked).
    metrics_host: ListenHost = LOOPBACK
    # /healthz answers 503 when a loop of the stage has not polled for this long (5-3600 s).
    health_stall_s: StallSeconds = DEFAULT_STALL_S

    @field_validator("relay_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern or len(pattern) > 255 or any(
                not (c.isalnum() or c in ".-*?[]") for c in pattern
            ):
                raise ValueError(f"not a domain glob: {pattern!r}")
        return [pattern.casefold() for pattern in value]

    @field_validator("relay_networks", "proxy_protocol_hosts", "xforward_hosts")
    @classmethod
    def _networks(cls, value: list[IPv4Network | IPv6Network], info: ValidationInfo
                  ) -> list[IPv4Network | IPv6Network]:
        for network in value:
            if isinstance(network, IPv6Network) and network.subnet_of(_IPV4_MAPPED):
                ipv4 = IPv4Network((int(network.network_address) & 0xFFFF_FFFF,
                                    network.prefixlen - 96))
                raise ValueError(f"{network} is IPv4-mapped: an IPv4 client is compared as "
                                 f"IPv4 and would never match it; write {ipv4}")
            # Whom we believe about another client's address: never everyone.
            if network.prefixlen == 0 and info.field_name != "relay_networks":
                raise ValueError(f"{network} would let any peer name any client; list the "
                                 "balancers' or MTAs' own networks")
        return value

    @field_validator("relay_recipients")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return [parse_entry(entry) for entry in value]

    @field_validator("relay_recipients_file")
    @classmethod
    def _recipients_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            _read_table(value)  # refuse a missing or bad file at start, naming the line
        return value

    @model_validator(mode="after")
    def _verify_ttls(self) -> Self:
        if self.verify_negative_ttl_s > self.verify_positive_ttl_s:
            raise ValueError("verify_negative_ttl_s must not exceed verify_positive_ttl_s: a "
                             "refusal is remembered for less time than an acceptance")
        return self

    @model_validator(mode="after")
    def _proxy_hosts(self) -> Self:
        if self.proxy_protocol and not self.proxy_protocol_hosts:
            raise ValueError("proxy_protocol needs proxy_protocol_hosts: the load balancers' "
                             "networks (CIDRs) that may send the PROXY header")
        return self

    @model_validator(mode="after")
    def _metrics_apart(self) -> Self:
        refuse_metrics_on("SMTP", self.host, self.port, self.metrics_host, self.metrics_port)
        return self

    @model_validator(mode="after")
    def _budget(self) -> Self:
        if self.data_budget_bytes < self.max_message_bytes:
            raise ValueError(
                f"data_budget_bytes ({self.data_budget_bytes}) must be at least "
                f"max_message_bytes ({self.max_message_bytes}): a message of the size allowed "
                "could never be held")
        return self

    @model_validator(mode="after")
    def _shares(self) -> Self:
        # Divided among the workers (ingest/worker_plan.py): each share must still be a cap.
        count = self.processes
        if count > 1 and self.data_budget_bytes < count * self.max_message_bytes:
            raise ValueError(
                f"data_budget_bytes ({self.data_budget_bytes}) must be at least processes "
                f"({count}) times max_message_bytes ({self.max_message_bytes}): each worker "
                "holds its share, and must be able to hold the largest message allowed")
        return self

    @model_validator(mode="after")
    def _tls(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.require_tls and self.tls_cert is None:
            raise ValueError("require_tls needs tls_cert and tls_key")
        return self

    def address_limits(self) -> AddressLimits:
        return AddressLimits(self.max_local_part, self.max_domain, self.max_path)

    def content_limits(self) -> ContentLimits:
        return ContentLimits(self.max_message_bytes, self.max_line_length)

    def relay_policy(self) -> RelayPolicy:
        return RelayPolicy(tuple(self.relay_domains), tuple(self.relay_networks))

    def recipient_table(self) -> RecipientTable:
        entries = list(self.relay_recipients)
        if self.relay_recipients_file is not None:
            entries += _read_table(self.relay_recipients_file)
        return RecipientTable.of(entries)

    def recipient_verifier(self) -> RecipientVerifier | None:
        if not self.verify_recipients:
            return None
        hop = NextHop(self.verify_host, self.verify_port, self.hostname, self.verify_timeout_s,
                      self.verify_starttls)
        cache = VerifyCache(self.verify_cache_size, self.verify_positive_ttl_s,
                            self.verify_negative_ttl_s)
        return RecipientVerifier(hop, cache, self.verify_concurrency)


def _read_table(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    try:
        return parse_table(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
