"""The restart benchmark's count at the next hop (bench/sink_count.py): which copies are lost,
duplicated, or a client's own retry; and the sink's folder read as it grows."""

from datetime import UTC, datetime

from bench.sink_count import SinkArrivals, tally
from katagate.demo_sink.store import MessageStore


def test_a_message_with_a_250_may_arrive_once_a_second_copy_is_duplicated() -> None:
    copies = {"<a>": [10.0], "<b>": [11.0, 30.0], "<c>": [12.0, 31.0, 32.0]}
    figures = tally(["<a>", "<b>", "<c>", "<d>"], copies)
    assert figures["lost"] == 1  # <d>
    assert figures["duplicated"] == 2  # <b> and <c>
    assert figures["extra_copies"] == 3
    assert figures["max_copies"] == 3
    assert figures["arrived"] == 3


def test_an_attempt_broken_off_after_data_allows_one_more_copy_counted_as_resent() -> None:
    # <a>: its first attempt broke with no reply, the retry got the 250: two copies are the
    # client's doing. <b>: one unanswered attempt, three copies: one is the gateway's.
    copies = {"<a>": [1.0, 2.0], "<b>": [1.0, 2.0, 3.0]}
    figures = tally(["<a>", "<b>"], copies, unanswered={"<a>": 1, "<b>": 1})
    assert (figures["duplicated"], figures["extra_copies"], figures["resent_copies"]) == (1, 1, 2)


def test_a_message_never_accepted_may_arrive_only_by_an_unanswered_attempt() -> None:
    copies = {"<x>": [1.0], "<y>": [1.0], "<z>": [1.0, 2.0]}
    figures = tally([], copies, sent=["<x>", "<y>", "<z>"], unanswered={"<y>": 1})
    assert figures["arrived_unaccepted"] == 2  # <x>, <z>: refused, delivered anyway
    assert figures["duplicated"] == 1  # <z>'s second copy has nothing to explain it
    assert figures["lost"] == 0


def test_arrivals_are_split_at_the_stop_by_each_message_s_first_copy() -> None:
    copies = {"<a>": [5.0], "<b>": [9.0, 12.0], "<c>": [15.0]}
    figures = tally(["<a>", "<b>", "<c>", "<d>"], copies, stop_at=10.0)
    assert (figures["arrived_before_stop"], figures["arrived_after_stop"],
            figures["pending_at_stop"]) == (2, 1, 2)


def test_the_sink_folder_is_read_as_it_grows_one_copy_per_stored_file(tmp_path) -> None:
    store = MessageStore(tmp_path)
    arrivals = SinkArrivals(tmp_path)

    def save(message_id: str) -> None:
        store.save(data=f"Message-ID: {message_id}\r\n\r\nbody\r\n".encode(),
                   envelope_from="a@example.org", recipients=["b@example.net"],
                   peer="127.0.0.1:1", helo="gw", received_at=datetime.now(UTC),
                   mail_options=[])

    save("<one@x>")
    assert list(arrivals.refresh()) == ["<one@x>"]
    save("<two@x>")
    save("<one@x>")
    copies = arrivals.refresh()
    assert {m: len(c) for m, c in copies.items()} == {"<one@x>": 2, "<two@x>": 1}
    assert arrivals.holds(["<one@x>", "<two@x>", "<three@x>"]) == 2
    (tmp_path / "stray.txt").write_text("not a message")  # only sidecars are counted
    assert sum(len(c) for c in arrivals.refresh().values()) == 3
