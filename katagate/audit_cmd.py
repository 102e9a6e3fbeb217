"""`katagate audit checkpoint run|once`, `audit verify`, `audit export --message ID`.

Exit codes: 0 verified (or done), 1 tampered or failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from katagate.audit.checkpointer import checkpoint_once, run_checkpointer
from katagate.audit.export import export_message
from katagate.audit.keys import PUBLIC_FILE, AuditKeyError, load_or_create, load_public_key
from katagate.audit.reading import audited_topics
from katagate.audit.settings import AuditSettings
from katagate.audit.verify import verify
from katagate.audit.witness import WitnessError, check_witness, witness_file
from katagate.audit.witness import read as read_witness
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.log_output import add_options as add_log_options
from katagate.process import stop_on_signals
from katagate.projector_cmd import add_replay, iso_instant


def register(commands: Any) -> None:
    parser = commands.add_parser("audit", help="signed checkpoints over the log; verify; export")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    checkpoint = actions.add_parser("checkpoint", help="sign the chains of the audited topics")
    modes = checkpoint.add_subparsers(dest="mode", required=True, metavar="MODE")
    checkpointer = modes.add_parser("run", help="the checkpointer, until SIGTERM")
    add_log_options(checkpointer)
    checkpointer.set_defaults(run=_run)
    modes.add_parser("once", help="checkpoint everything up to now").set_defaults(run=_once)

    add_replay(actions)

    accounts = actions.add_parser(
        "reconcile", help="every accepted message and its terminal event; exit 1 if unbalanced")
    accounts.add_argument("--since", type=iso_instant, metavar="ISO-TIME",
                          help="messages accepted at or after this instant")
    accounts.add_argument("--until", type=iso_instant, metavar="ISO-TIME",
                          help="messages accepted at or before this instant")
    accounts.add_argument("--settled", action="store_true",
                          help="also exit 1 if an accepted message has no terminal event yet")
    accounts.add_argument("--json", action="store_true", help="the whole report as JSON")
    accounts.set_defaults(run=_reconcile)

    check = actions.add_parser("verify", help="recompute every chain; exit 1 if tampered")
    _common(check)
    check.add_argument("--json", action="store_true", help="findings as JSON lines")
    check.add_argument("--witness", type=Path, metavar="PATH",
                       help="the checkpointer's witness file (or its folder): fail when the "
                            "log's latest checkpoint of a partition is older than the witness's")
    check.set_defaults(run=_verify)

    export = actions.add_parser("export", help="a message's events as JSON lines")
    _common(export)
    export.add_argument("--message", required=True, metavar="ID", help="the message id")
    export.set_defaults(run=_export)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--public-key", type=Path, metavar="FILE",
                        help=f"the audit public key (default: {PUBLIC_FILE} in "
                             "KATAGATE_AUDIT_KEY_DIR)")
    parser.add_argument("--audit-topic", metavar="TOPIC",
                        help="where the checkpoints are (default: PREFIX.audit)")


def _public_key(args: argparse.Namespace) -> Any:
    path = args.public_key or AuditSettings().key_dir / PUBLIC_FILE
    return load_public_key(path)


def _run(args: argparse.Namespace) -> int:
    stop = stop_on_signals(args)
    run_checkpointer(KafkaSettings(principal="audit"), AuditSettings(), stop)
    return 0


def _once(_args: argparse.Namespace) -> int:
    settings, kafka = AuditSettings(), KafkaSettings(principal="audit")
    key = load_or_create(settings.key_dir)
    written = checkpoint_once(kafka, key, witness=settings.witness_file(kafka.topic_prefix))
    print(f"{written} checkpoints written (key {key.key_id})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    kafka = KafkaSettings(principal="audit")
    try:
        public_key = _public_key(args)
    except AuditKeyError as exc:
        print(f"katagate audit verify: {exc}", file=sys.stderr)
        return 2
    witness = args.witness and witness_file(args.witness, kafka.topic_prefix)
    try:
        witnessed = read_witness(witness) if witness else []
    except WitnessError as exc:
        print(f"katagate audit verify: {exc}", file=sys.stderr)
        return 2
    audit_topic = args.audit_topic or TopicNames(kafka.topic_prefix).audit
    report = verify(kafka, kafka.topic_prefix, audit_topic, public_key,
                    grace_s=AuditSettings().grace_s)
    if witness:
        report.failures += check_witness(witness, witnessed, [r.entry for r in report.ranges],
                                         public_key, audited_topics(kafka.topic_prefix))
    if args.json:
        for kind, findings in (("failure", report.failures), ("note", report.notes)):
            for finding in findings:
                print(json.dumps({"kind": kind, **vars(finding)}, ensure_ascii=False))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1


def _export(args: argparse.Namespace) -> int:
    kafka = KafkaSettings(principal="audit")
    try:
        public_key = _public_key(args)
    except AuditKeyError as exc:
        print(f"katagate audit export: {exc}", file=sys.stderr)
        return 2
    audit_topic = args.audit_topic or TopicNames(kafka.topic_prefix).audit
    lines, report = export_message(kafka, kafka.topic_prefix, audit_topic, args.message,
                                   public_key)
    for line in lines:
        print(json.dumps(line, ensure_ascii=False, sort_keys=True))
    if not lines:
        print(f"katagate audit export: no records of message {args.message}", file=sys.stderr)
        return 1
    return 0 if report.ok else 1


def _reconcile(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from katagate.audit.reconcile import Window, reconcile

    report = reconcile(KafkaSettings(principal="audit"), datetime.now(UTC),
                       Window(args.since, args.until))
    unsettled = report["without_terminal"]
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(f"accepted: {report['accepted']}, terminal exactly once: "
              f"{report['terminal_exactly_once']}, without a terminal event: {len(unsettled)}")
        for item in unsettled[:50]:
            until = f" until {item['until']}" if item["until"] else ""
            late = " (OVERDUE)" if item["overdue"] else ""
            print(f"  {item['message_id']}: {item['state']}{until}{late}")
        for message_id, outcomes in report["duplicate_terminals"].items():
            print(f"  DUPLICATE {message_id}: {', '.join(outcomes)}")
        for message_id in report["terminal_without_received"]:
            print(f"  TERMINAL WITHOUT ACCEPTANCE {message_id}")
        print(f"quarantine slots held: {len(report['quarantine_held'])}; possible resends: "
              f"{len(report['possible_resends'])}; undecodable records: "
              f"{report['undecodable_records']}")
    if not report["balanced"] or (args.settled and unsettled):
        return 1
    return 0
