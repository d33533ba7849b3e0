// The amount-limit gate in JavaScript (jco componentize, QuickJS backend).
// The same rule as guest/plugins/examples/amount_limit.rs; the cases in
// guest/foreign/cases/amount-limit.jsonl pin it down for every language.
// The exported interface `gate` is the object `gate`; returning allows the
// event, throwing a denial record denies it.
import { utf8 } from "./utf8.js";

const NAME = "amount-limit";
const LIMIT = 10000;

function denial(code, message, amount) {
  const context = [["amount", JSON.stringify(amount)]];
  if (code === "AMOUNT_LIMIT") context.push(["limit", String(LIMIT)]);
  return { gate: NAME, code, message, context };
}

export const gate = {
  describe() {
    return { name: NAME, version: "0.1.0" };
  },

  evaluate(proposal) {
    const payload = JSON.parse(utf8(proposal.payload));
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) return;
    if (!Object.prototype.hasOwnProperty.call(payload, "amount")) return;
    const amount = payload.amount;
    // JSON numbers are doubles here: integers past 2^53 round, which
    // cannot move one across 0 or 10000.
    if (typeof amount !== "number") throw denial("BAD_AMOUNT", "amount must be a number", amount);
    if (amount < 0) throw denial("NEGATIVE_AMOUNT", "amounts must be positive", amount);
    if (amount > LIMIT) throw denial("AMOUNT_LIMIT", "amount over the 10000 limit", amount);
  },
};
