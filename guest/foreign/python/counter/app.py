"""The counter projection in Python (componentize-py): how many events
each entity has. Its reads and snapshots match guest/plugins/examples/counter.rs.

componentize-py serves the exported interface `projection` with a class
`Projection` in this module, and its resource `state` with a class `State`
in projection.py, a module named after the interface
(see docs/guest-abi.md, "Python"). The host folds catch-up events in packs
(`apply_packed`); projection.unpack reads that layout.
"""


from wit_world import exports
from wit_world.imports.types import ProjectionDescription


class Projection(exports.Projection):
    def describe(self) -> ProjectionDescription:
        return ProjectionDescription(
            name="counter", version="0.1.0", schema_version=1, kinds=[], entity_prefix=""
        )
