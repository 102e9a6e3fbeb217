"""The Postfix peer's CPU accounting: a process tree's time between two snapshots, by name,
counting daemons that exited in between (their time is only in the parent's reaped count)."""

from bench.postfix_peer import TreeCpu, cpu_by_name


def test_cpu_is_the_difference_per_process_name_summed_over_processes_of_one_name() -> None:
    before = TreeCpu(1.0, 0.0, {10: ("smtpd", 0.5), 11: ("smtpd", 0.25), 12: ("qmgr", 1.0)})
    after = TreeCpu(1.5, 0.0, {10: ("smtpd", 0.75), 11: ("smtpd", 0.5), 12: ("qmgr", 1.0),
                               13: ("cleanup", 0.125)})
    # qmgr spent nothing: left out.
    assert cpu_by_name(before, after) == {"master": 0.5, "smtpd": 0.5, "cleanup": 0.125}


def test_a_daemon_that_exited_counts_only_what_it_spent_after_the_first_snapshot() -> None:
    # Pid 10 had spent 0.5 s and exited with 0.75 s; pid 11 was born and exited with 0.25 s:
    # the master's reaped count grew by 1.0 s, of which 0.5 s was before the first snapshot.
    before = TreeCpu(1.0, 2.0, {10: ("cleanup", 0.5)})
    after = TreeCpu(1.0, 3.0, {})
    assert cpu_by_name(before, after) == {"exited": 0.5}
