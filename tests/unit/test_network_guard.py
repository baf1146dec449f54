import socket

import pytest

from tests import conftest


def test_outbound_connection_is_refused_and_recorded():
    before = len(conftest.NETWORK_ATTEMPTS)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(ConnectionRefusedError, match="offline"):
            s.connect(("198.51.100.7", 443))
    finally:
        s.close()
    # The guard recorded it; remove our deliberate attempt so the session itself stays green.
    assert len(conftest.NETWORK_ATTEMPTS) == before + 1
    conftest.NETWORK_ATTEMPTS.pop()
