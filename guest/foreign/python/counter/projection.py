"""The counter's state resource. componentize-py looks for the class
implementing resource `state` of the exported interface `projection` in a
module named after the interface: this one."""

import json
import struct
from typing import Iterator, Optional, Tuple

from wit_world.exports import projection
from wit_world.imports.types import Event

# One packed event's fixed head: kind u16, sequence u64, clock u32, id high
# u64, id low u64 (little-endian, no padding).
HEAD = struct.Struct("<HQIQQ")
LEN = struct.Struct("<I")


def unpack(buf: bytes) -> Iterator[Tuple[str, str, int, bytes]]:
    """Yields (entity, scope, kind, payload) for each event of a pack."""
    at = 0
    while at < len(buf):
        kind, _sequence, _clock, _id_hi, _id_lo = HEAD.unpack_from(buf, at)
        at += HEAD.size
        fields = []
        for _ in range(3):  # entity, scope, payload
            (n,) = LEN.unpack_from(buf, at)
            at += LEN.size
            fields.append(bytes(buf[at : at + n]))
            at += n
        entity, scope, payload = fields
        yield entity.decode(), scope.decode(), kind, payload


class State(projection.State):
    def __init__(self, snapshot: Optional[bytes]) -> None:
        self.counts = json.loads(snapshot) if snapshot else {}

    def count(self, entity: str) -> None:
        self.counts[entity] = self.counts.get(entity, 0) + 1

    def apply(self, event: Event) -> None:
        self.count(event.coordinate.entity)

    def apply_packed(self, events: bytes) -> None:
        for entity, _scope, _kind, _payload in unpack(events):
            self.count(entity)

    def snapshot(self) -> bytes:
        return json.dumps(self.counts, sort_keys=True, separators=(",", ":")).encode()

    def read(self, key: str) -> Optional[bytes]:
        n = self.counts.get(key)
        return None if n is None else str(n).encode()
