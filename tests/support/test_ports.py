import socket

from tests.support import ports


def test_free_ports_are_below_the_ephemeral_range_distinct_and_bindable():
    picked = [ports.free_port() for _ in range(50)]
    assert len(set(picked)) == 50  # never the same port twice in one process
    assert all(ports.LOWEST_PORT <= port < ports.ephemeral_start() for port in picked)
    for port in picked[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_not_picked(monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        free = ports._kernel_pick()  # free when picked; nothing here listens on it
        candidates = iter([taken, taken, free])
        monkeypatch.setattr(ports, "ephemeral_start", lambda: 65536)
        monkeypatch.setattr(ports._random, "randrange", lambda low, high: next(candidates))
        assert ports.free_port() == free
        assert ports.port_open(taken)
