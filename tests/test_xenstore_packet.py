"""The wire format on its own (xenstore.packet): headers decoded and checked, replies
reassembled from the pieces a transport reads, request payloads built and refused.

Expected bytes are written out by hand from xs_wire.h (four native uint32, then the
payload), not produced by the encoder under test."""

import errno
import sys

import pytest

from xe_oneshot.xenstore import InvalidArgument, ProtocolError, XenStoreError
from xe_oneshot.xenstore.packet import (PAYLOAD_MAX, Op, decode_header, encode, path_payload,
                                        take_message, write_payload)


def u32(n):
    return n.to_bytes(4, sys.byteorder)


def wire(typ, req_id, tx_id, payload, length=None):
    """A message as xs_wire.h lays it out."""
    return (u32(typ) + u32(req_id) + u32(tx_id)
            + u32(len(payload) if length is None else length) + payload)


READ_REPLY = wire(Op.READ, 7, 0, b"debian")
EVENT = wire(Op.WATCH_EVENT, 0, 0, b"data/x\0tok\0")
ERROR = wire(Op.ERROR, 8, 3, b"ENOENT\0")


# -- headers ---------------------------------------------------------------------------


def test_decode_header_reads_the_four_fields():
    assert decode_header(wire(2, 7, 0, b"abc")) == (2, 7, 0, 3)
    assert decode_header(bytearray(wire(16, 0xFFFFFFFF, 5, b""))) == (16, 0xFFFFFFFF, 5, 0)


def test_decode_header_at_the_limit_passes_and_over_it_is_a_protocol_error():
    assert decode_header(wire(Op.READ, 1, 0, b"", length=PAYLOAD_MAX))[3] == PAYLOAD_MAX
    with pytest.raises(ProtocolError) as err:
        decode_header(wire(Op.READ, 1, 0, b"", length=PAYLOAD_MAX + 1))
    assert err.value.errno == errno.EPROTO
    assert "4097" in str(err.value) and "4096" in str(err.value)
    assert decode_header(wire(Op.DIRECTORY, 1, 0, b"", length=100000), limit=100000)[3] \
        == 100000


def test_encode_lays_out_the_header_then_the_payload():
    assert encode(Op.WRITE, 9, 4, b"a\0b") == wire(11, 9, 4, b"a\0b")
    assert len(encode(Op.WRITE, 1, 0, b"x" * PAYLOAD_MAX)) == 16 + PAYLOAD_MAX
    with pytest.raises(InvalidArgument) as err:
        encode(Op.WRITE, 1, 0, b"x" * (PAYLOAD_MAX + 1))
    assert err.value.errno == errno.E2BIG


# -- reassembly ------------------------------------------------------------------------


def test_nothing_until_a_message_is_whole():
    buf = bytearray()
    assert take_message(buf) is None and not buf
    buf += READ_REPLY[:15]                       # not even a header
    assert take_message(buf) is None and buf == READ_REPLY[:15]
    buf += READ_REPLY[15:-1]                     # header, payload short of one byte
    assert take_message(buf) is None and buf == READ_REPLY[:-1]
    buf += READ_REPLY[-1:]
    assert take_message(buf) == (Op.READ, 7, 0, b"debian")
    assert take_message(buf) is None and not buf


def test_messages_fed_one_byte_at_a_time_come_out_whole_and_in_order():
    """As the xenbus device (or the fault proxy's ``split = 1``) may deliver them."""
    stream = READ_REPLY + EVENT + ERROR + wire(Op.TRANSACTION_START, 9, 0, b"")
    buf = bytearray()
    out = []
    for i in range(len(stream)):
        buf += stream[i:i + 1]
        message = take_message(buf)
        if message is not None:
            out.append(message)
            assert take_message(buf) is None     # never two from one byte
    assert out == [(Op.READ, 7, 0, b"debian"), (Op.WATCH_EVENT, 0, 0, b"data/x\0tok\0"),
                   (Op.ERROR, 8, 3, b"ENOENT\0"), (Op.TRANSACTION_START, 9, 0, b"")]
    assert not buf


def test_several_messages_in_one_piece_and_a_piece_across_two():
    buf = bytearray(READ_REPLY + EVENT + ERROR[:20])
    assert take_message(buf) == (Op.READ, 7, 0, b"debian")
    assert take_message(buf) == (Op.WATCH_EVENT, 0, 0, b"data/x\0tok\0")
    assert take_message(buf) is None and buf == ERROR[:20]
    buf += ERROR[20:]
    assert take_message(buf) == (Op.ERROR, 8, 3, b"ENOENT\0")


def test_an_oversized_header_is_refused_before_its_payload_arrives():
    """A 16 MiB announcement must not make the client wait for (or buffer) 16 MiB."""
    buf = bytearray(wire(Op.READ, 1, 0, b"", length=PAYLOAD_MAX + 1))
    with pytest.raises(ProtocolError) as err:
        take_message(buf)
    assert err.value.errno == errno.EPROTO


def test_the_limit_is_the_callers():
    big = wire(Op.DIRECTORY, 2, 0, b"n\0" * 3000)
    with pytest.raises(ProtocolError):
        take_message(bytearray(big))
    assert take_message(bytearray(big), limit=1 << 20) == (Op.DIRECTORY, 2, 0, b"n\0" * 3000)


# -- request payloads ------------------------------------------------------------------


def test_write_payload_is_path_nul_value_without_a_trailing_nul():
    assert write_payload("data/os", "debian") == b"data/os\0debian"
    assert write_payload("/a", "h\u00e9") == b"/a\0h\xc3\xa9"
    assert write_payload("a", b"\0\xff") == b"a\0\0\xff"
    assert write_payload("a", "") == b"a\0"


def test_write_payload_fills_a_message_exactly_and_no_more():
    path = "/" + "p" * 999
    fits = "v" * (PAYLOAD_MAX - len(path) - 1)
    assert len(write_payload(path, fits)) == PAYLOAD_MAX
    with pytest.raises(InvalidArgument) as err:
        write_payload(path, fits + "v")
    assert err.value.errno == errno.E2BIG and err.value.path == path
    assert err.value.op == "write"


@pytest.mark.parametrize("path", ["", "a//b", "a/", "a b", "caf\u00e9"])
def test_write_payload_refuses_a_bad_path(path):
    with pytest.raises(InvalidArgument) as err:
        write_payload(path, "v")
    assert err.value.errno == errno.EINVAL
    assert isinstance(err.value, ValueError) and isinstance(err.value, XenStoreError)


def test_path_payload_is_path_nul_then_the_rest():
    assert path_payload("data/os") == b"data/os\0"
    assert path_payload("/a", "watch", b"tok\0") == b"/a\0tok\0"
    with pytest.raises(InvalidArgument) as err:
        path_payload("a//b", "read")
    assert err.value.op == "read" and err.value.errno == errno.EINVAL
