"""The on-disk spool: order across segments, acknowledgement, reopening after a restart."""
from drivers.store.spool import Spool


def lines(a, b):
    return [f"m,site=t v={i} {i}" for i in range(a, b)]


def test_fifo_across_segments_ack_and_reopen(tmp_path):
    sp = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=300)
    for k in range(0, 100, 10):
        sp.append(lines(k, k + 10))
    assert len(sp.segments()) > 5
    got, pos = sp.read(35)
    assert got == lines(0, 35)
    sp.ack(pos)
    # a restart: a new Spool on the same directory continues after the acknowledged points
    sp2 = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=300)
    sp2.append(lines(100, 105))
    out = []
    while not sp2.empty():
        got, pos = sp2.read(7)
        out += got
        sp2.ack(pos)
    assert out == lines(35, 105)
    assert sp2.segments() == [] and sp2.size_bytes == 0


def test_unacknowledged_points_are_read_again(tmp_path):
    sp = Spool(tmp_path, max_bytes=10_000_000)
    sp.append(lines(0, 10))
    first, _ = sp.read(4)            # sent, but the server never confirmed
    again, pos = Spool(tmp_path, max_bytes=10_000_000).read(4)
    assert again == first == lines(0, 4)


def _drain(sp):
    out = []
    while not sp.empty():
        got, pos = sp.read(10)
        if not got:
            break
        out += got
        sp.ack(pos)
    return out


def test_a_position_past_its_segment_replays_the_segment_and_says_so(tmp_path, caplog):
    """The fault campaign's case: a ``position`` pointing past the end of its segment made the
    spool skip the points before that offset (36 of 75 lost, no log line). Now it is logged and
    every point is replayed (those already sent are stored once by InfluxDB)."""
    import logging
    sp = Spool(tmp_path, max_bytes=10_000_000)
    sp.append(lines(0, 40))
    (tmp_path / "position").write_text(f"{sp.segments()[0]} 999999\n")
    with caplog.at_level(logging.ERROR, "gestor.store"):
        sp2 = Spool(tmp_path, max_bytes=10_000_000)
    assert "past the end of segment 1 (offset 999999 > " in caplog.text
    sp2.append(lines(40, 75))          # monitoring goes on writing to the same segment
    assert _drain(sp2) == lines(0, 75)


def test_a_position_past_the_last_segment_or_garbage_replays_from_the_oldest(tmp_path, caplog):
    import logging
    for i, (text, words) in enumerate((("7 0\n", "past the last segment (7 > 2)"), ("1 -5\n", "negative"),
                                       ("banana\n", "unreadable (not '<segment> <offset>')"),
                                       (b"\xff\x00", "unreadable"))):
        d = tmp_path / str(i)
        sp = Spool(d, max_bytes=10_000_000, segment_bytes=300)
        for k in range(0, 20, 10):
            sp.append(lines(k, k + 10))
        assert sp.segments() == [1, 2]
        p = d / "position"
        p.write_bytes(text) if isinstance(text, bytes) else p.write_text(text)
        caplog.clear()
        with caplog.at_level(logging.ERROR, "gestor.store"):
            sp2 = Spool(d, max_bytes=10_000_000, segment_bytes=300)
        assert words in caplog.text and "replaying every point from the start of segment 1" in caplog.text
        assert _drain(sp2) == lines(0, 20)


def test_a_position_in_the_middle_of_a_line_replays_that_line(tmp_path, caplog):
    import logging
    sp = Spool(tmp_path, max_bytes=10_000_000)
    sp.append(lines(0, 10))
    data = (tmp_path / "000001.lp").read_bytes()
    third = data.index(b"\n", data.index(b"\n") + 1) + 1       # the start of the third line
    (tmp_path / "position").write_text(f"1 {third + 4}\n")
    with caplog.at_level(logging.ERROR, "gestor.store"):
        sp2 = Spool(tmp_path, max_bytes=10_000_000)
    assert f"in the middle of a line: replaying from the line's start (offset {third})" in caplog.text
    assert _drain(sp2) == lines(2, 10)


def test_a_valid_position_is_kept_without_a_word(tmp_path, caplog):
    import logging
    sp = Spool(tmp_path, max_bytes=10_000_000)
    sp.append(lines(0, 10))
    got, pos = sp.read(4)
    sp.ack(pos)
    with caplog.at_level(logging.WARNING, "gestor.store"):
        sp2 = Spool(tmp_path, max_bytes=10_000_000)
    assert caplog.text == "" and _drain(sp2) == lines(4, 10)


def test_a_segment_that_is_not_a_regular_file_is_left_out(tmp_path, caplog):
    import logging
    import os
    sp = Spool(tmp_path, max_bytes=10_000_000)
    sp.append(lines(0, 5))
    os.mkfifo(tmp_path / "000000.lp")                      # would block the reader
    (tmp_path / "000009.lp").symlink_to("/dev/zero")       # would be read until MemoryError
    from tests.test_statefiles import promptly, unblock
    try:
        with caplog.at_level(logging.ERROR, "gestor.store"):
            sp2 = promptly(lambda: Spool(tmp_path, max_bytes=10_000_000))
            assert sp2.segments() == [1]
        assert "000000.lp is not a regular file" in caplog.text and "000009.lp is not a regular file" in caplog.text
        assert promptly(lambda: _drain(sp2)) == lines(0, 5)
    finally:
        unblock(tmp_path / "000000.lp")
