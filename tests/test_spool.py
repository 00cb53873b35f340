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
