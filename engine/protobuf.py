"""The protobuf wire format, as much of it as splicing serialized ONNX models needs: walking a message's
fields without parsing them, and writing keys and lengths. Used by engine.graph (the GPU rewrite and the
resampling front) and export.stand_ins (the real fc weights written into a converted model).

Offsets are byte positions in a ``memoryview`` of the serialized message.
"""
from __future__ import annotations

from collections.abc import Iterator

LENGTH_DELIMITED = 2  # the wire type of messages, bytes and strings


def fields(data: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """The protobuf fields of ``data[start:end]``: (number, wire type, field start, value start, field end);
    a length-delimited field's value starts after its length. ValueError for bytes that are not protobuf."""
    position = start
    while position < end:
        field = position
        key, position = read_varint(data, position)
        number, wire = key >> 3, key & 7
        value = read_varint(data, position)[1] if wire == LENGTH_DELIMITED else position
        position = _after(data, position, number, wire)
        if position > end:
            raise ValueError(f"protobuf field at byte {field} runs past its message")
        yield number, wire, field, value, position


def _after(data: memoryview, position: int, number: int, wire: int) -> int:
    """Where the value of field ``number`` (of ``wire`` type) starting at ``position`` ends."""
    if wire == 0:
        return read_varint(data, position)[1]
    if wire == 1:
        return position + 8
    if wire == LENGTH_DELIMITED:
        length, position = read_varint(data, position)
        return position + length
    if wire == 5:
        return position + 4
    if wire == 3:  # a group (unknown fields may be groups): fields up to its end-group key
        while True:
            key, position = read_varint(data, position)
            if key & 7 == 4:
                if key >> 3 != number:
                    raise ValueError(f"protobuf group {number} ends as {key >> 3} at byte {position}")
                return position
            position = _after(data, position, key >> 3, key & 7)
    raise ValueError(f"protobuf wire type {wire} at byte {position}: not an ONNX model")


def read_varint(data: memoryview, position: int) -> tuple[int, int]:
    """(the varint at ``position``, the position after it)."""
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf varint."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(number: int) -> bytes:
    """The key of length-delimited field ``number``."""
    return varint(number << 3 | LENGTH_DELIMITED)
