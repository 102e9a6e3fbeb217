"""docs/SCALING.md's arithmetic (bench/sizing.py): messages/s per core and cores per rate from
a budget's CPU per message, net of idle where measured, beside Postfix's from the same run."""

from __future__ import annotations

from bench.sizing import scaling_markdown, sizing

BUDGET = {"msgs_per_s": 60.0,
          "cpu_ms_per_msg": {"ingest": 3.0, "decider": 5.0, "broker": 9.0, "sink": 2.5},
          "cpu_ms_per_msg_net": {"ingest": 2.5, "decider": 4.0, "broker": 5.0, "console": -0.01,
                                 "sink": 2.4, "emulator": 1.5}}
POSTFIX_ROWS = [{"concurrency": 1, "cpu_ms_per_message_groups": {"postfix": 9.0, "sink": 3.0}},
                {"concurrency": 10, "cpu_ms_per_message_groups": {"postfix": 3.5, "exited": 0.5,
                                                                 "sink": 2.6}}]


def test_each_part_is_sized_from_its_cpu_net_of_idle_and_the_sink_and_emulator_are_left_out():
    sized = sizing(BUDGET, POSTFIX_ROWS[1])
    parts = {r["part"]: r for r in sized["parts"]}
    assert set(parts) == {"ingest", "decider", "broker", "console"}
    assert parts["ingest"]["msgs_per_s_per_core"] == 400
    assert parts["broker"]["cores"] == {100: 0.5, 1_000: 5.0, 10_000: 50.0}
    assert parts["console"]["cpu_ms_per_msg"] == 0  # a negative net (noise) is no cost
    assert sized["katagate"]["cpu_ms_per_msg"] == 11.5
    # Postfix: its processes (those that exited in the run too), not the sink
    assert sized["postfix"]["cpu_ms_per_msg"] == 4.0
    assert sized["postfix"]["msgs_per_s_per_core"] == 250


def test_without_an_idle_window_the_gross_figures_are_used():
    gross = {k: v for k, v in BUDGET.items() if k != "cpu_ms_per_msg_net"}
    assert sizing(gross, None)["katagate"]["cpu_ms_per_msg"] == 17.0


def test_the_page_holds_every_part_both_totals_and_the_ratio_at_ten_connections():
    report = {"when": "2026-12-03T18:00:00+00:00", "machine": {"cpu": "Test CPU", "cores": 2},
              "mail_path": {"budget": BUDGET}, "postfix_peer": {"postfix": POSTFIX_ROWS}}
    page = scaling_markdown(report)
    assert "| broker | 5.0 | 200 | 0.5 | 5.0 | 50.0 |" in page
    assert "| katagate (all of the above) | 11.5 | 87 | 1.15 | 11.5 | 115.0 |" in page
    assert "| Postfix relay | 4.0 | 250 | 0.4 | 4.0 | 40.0 |" in page
    assert "2.9x the CPU of a Postfix relay" in page


def test_the_section_replaces_its_last_version_and_leaves_the_written_page_alone():
    from bench.sizing import BEGIN, END, with_section

    page = "# Scaling\n\nwritten by hand\n\n## Estimate for 100\n\nkept\n"
    first = with_section(page, "## Sizing\n\nrun 1\n")
    assert first.index(BEGIN) < first.index("## Estimate for 100")
    assert "written by hand" in first
    assert "kept" in first
    second = with_section(first, "## Sizing\n\nrun 2\n")
    assert "run 2" in second
    assert "run 1" not in second
    assert second.count(BEGIN) == 1
    assert second.count(END) == 1
    assert second.replace("run 2", "run 1") == first
