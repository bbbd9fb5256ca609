"""The client over the xenbus device, without Xen: the real DeviceTransport (os.write /
os.read on a file descriptor) on a socket to the fault proxy, which forwards the way
Linux's device frontend does (tests/support/fault_proxy.py, ``xenbus_frontend``): a request's
payload stays in the open file's one buffer until the kernel's xenbus thread sends it, and
the next write() overwrites it. In a real guest (tests/test_xen_guest.py, scenario
``concurrent``) pipelined requests got ``EINVAL`` from xenstored this way.
"""

import socket

import pytest

from tests.support.fault_proxy import FaultProxy
from xe_oneshot.xenstore import Client, InvalidArgument
from xe_oneshot.xenstore.transport import DeviceTransport, SocketTransport

BASE = "/local/domain/7/data/dev"
# values and paths of different lengths: a payload taken for another's shows
KEYS = ["%s/k%s" % (BASE, "x" * n) for n in range(12)]


def device_on(path):
    """A DeviceTransport whose file descriptor is a socket to ``path`` (read() and write()
    work on both: the transport's own code runs unchanged)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    transport = DeviceTransport.__new__(DeviceTransport)
    transport.path = "/dev/xen/xenbus"
    transport._fd = sock.detach()
    return transport


@pytest.fixture
def frontend(xenstored, tmp_path):
    with Client(SocketTransport(str(xenstored.socket))) as xs:
        for n, key in enumerate(KEYS):
            xs.write(key, "value-%s" % ("v" * n))
    with FaultProxy(xenstored.socket, tmp_path / "xenbus.sock") as proxy:
        proxy.xenbus_frontend = True
        yield proxy


def test_pipelined_requests_through_the_frontend_buffer_get_einval_or_wrong_keys(frontend):
    """The control: a client that pipelines (as over a socket) is corrupted by the
    emulated frontend, so the next test can fail."""
    with Client(SocketTransport(str(frontend.path))) as xs:
        try:
            values = xs.read_many(KEYS)
        except InvalidArgument:
            return                                  # EINVAL: a path without its NUL
        except Exception as err:                     # any other wire error shows it too
            assert "EINVAL" in str(err) or "ENOENT" in str(err), err
            return
    assert values != [("value-%s" % ("v" * n)).encode() for n in range(len(KEYS))]


def test_device_transport_never_pipelines_so_the_frontend_cannot_mix_payloads(frontend):
    """read_many, directory_many and write_many over the device: one request in flight,
    every reply right, and xenstored saw each request's own path."""
    with Client(device_on(frontend.path)) as xs:
        assert xs.read_many(KEYS) == [("value-%s" % ("v" * n)).encode()
                                      for n in range(len(KEYS))]
        assert xs.directory_many([BASE, BASE + "/none"]) == [
            sorted(k.rsplit("/", 1)[1] for k in KEYS), None]

        def publish(tx):
            return xs.write_many([(key, "new-%d" % n) for n, key in enumerate(KEYS)], tx)
        assert xs.transaction(publish) == {}
        assert xs.read_many(KEYS) == [b"new-%d" % n for n in range(len(KEYS))]
    reads = [path for op, path, _tx in frontend.requests if op == "read"]
    assert reads[:len(KEYS)] == KEYS


def test_device_transport_refuses_a_message_longer_than_the_frontend_buffer(frontend):
    """The frontend answers a write() over 4096 bytes (header included) with EINVAL and
    drops it: the transport says E2BIG before sending, the daemon sees nothing."""
    with Client(device_on(frontend.path)) as xs:
        with pytest.raises(InvalidArgument) as err:
            xs.write(BASE + "/big", "x" * (4096 - 16 - len(BASE + "/big")))
        assert err.value.errno == 7  # E2BIG
    assert not any(path == BASE + "/big" for _op, path, _tx in frontend.requests)
