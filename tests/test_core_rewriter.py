"""The sequence rewriter, row by row, as mediasoup's TestSeqManager: (input, action, expected output)."""

from __future__ import annotations

import pytest

from sfu.core.rewriter import WINDOW, SeqRewriter

SYNC, DROP, SEND = "sync", "drop", "send"
Row = tuple[int, str, int | None]


def run(rows: list[Row], start: int = 0) -> None:
    rw = SeqRewriter()
    for index, (ext_seq, action, expected) in enumerate(rows):
        if action == SYNC:
            rw.sync(ext_seq, rw.next_output() if rw.started else start)
            action = SEND
        if action == DROP:
            rw.drop(ext_seq)
            continue
        assert rw.input(ext_seq) == expected, f"row {index}: {ext_seq}"


TABLES: dict[str, list[Row]] = {
    "in order, nothing dropped": [(0, SYNC, 0), (1, SEND, 1), (2, SEND, 2), (3, SEND, 3)],
    "a drop leaves no gap": [(0, SYNC, 0), (1, SEND, 1), (2, DROP, None), (3, SEND, 2), (4, SEND, 3)],
    "consecutive drops": [(0, SYNC, 0), (1, DROP, None), (2, DROP, None), (3, DROP, None), (4, SEND, 1)],
    "a late packet before a drop keeps its number": [
        (0, SYNC, 0),
        (2, SEND, 2),  # 1 is late
        (3, DROP, None),
        (4, SEND, 3),
        (1, SEND, 1),
    ],
    "a late packet after a drop is shifted": [
        (0, SYNC, 0),
        (1, DROP, None),
        (3, SEND, 2),  # 2 is late
        (2, SEND, 1),
        (4, SEND, 3),
    ],
    "a dropped packet arriving again is still dropped": [(0, SYNC, 0), (1, DROP, None), (1, SEND, None), (2, SEND, 1)],
    "an out-of-order drop leaves its gap": [(0, SYNC, 0), (2, SEND, 2), (1, DROP, None), (3, SEND, 3)],
    "before the sync point is refused": [(10, SYNC, 0), (9, SEND, None), (11, SEND, 1)],
    "a resync continues the output": [
        (0, SYNC, 0),
        (1, SEND, 1),
        (500, SYNC, 2),  # the source restarted far away
        (501, SEND, 3),
        (499, SEND, None),
    ],
}


@pytest.mark.parametrize("name", TABLES)
def test_rewriter_table(name: str) -> None:
    run(TABLES[name])


def test_output_wraps_at_16_bits() -> None:
    run([(100, SYNC, 65534), (101, SEND, 65535), (102, DROP, None), (103, SEND, 0), (104, SEND, 1)], start=65534)


def test_a_long_pause_of_drops_is_bounded_and_still_continuous() -> None:
    rw = SeqRewriter()
    rw.sync(0, 7)
    assert rw.input(0) == 7
    for ext_seq in range(1, 3 * WINDOW):
        rw.drop(ext_seq)
    assert len(rw.dropped) <= WINDOW + 1
    assert rw.input(3 * WINDOW) == 8
    assert rw.input(3 * WINDOW - 2 * WINDOW - 10) is None  # too old to place
