"""The amount-limit gate in Python (componentize-py).

The same rule as guest/plugins/examples/amount_limit.rs; the cases in
guest/foreign/cases/amount-limit.jsonl pin it down for every language.
componentize-py finds the implementation by name: the exported interface
`gate` is served by a class `Gate` in this module. A denial is raised as
`Err(Denial(...))`; returning normally allows the event.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import Denial, Description, Proposal

NAME = "amount-limit"
LIMIT = 10_000


def deny(code: str, message: str, amount) -> Err:
    context = [("amount", json.dumps(amount))]
    if code == "AMOUNT_LIMIT":
        context.append(("limit", str(LIMIT)))
    return Err(Denial(gate=NAME, code=code, message=message, context=context))


class Gate(exports.Gate):
    def describe(self) -> Description:
        return Description(name=NAME, version="0.1.0")

    def evaluate(self, proposal: Proposal) -> None:
        payload = json.loads(proposal.payload)
        if not isinstance(payload, dict) or "amount" not in payload:
            return
        amount = payload["amount"]
        # bool is a subclass of int in Python: rule it out first.
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise deny("BAD_AMOUNT", "amount must be a number", amount)
        if amount < 0:
            raise deny("NEGATIVE_AMOUNT", "amounts must be positive", amount)
        if amount > LIMIT:
            raise deny("AMOUNT_LIMIT", "amount over the 10000 limit", amount)
