// The amount-limit gate in C (clang + `wit-bindgen c`, no WASI).
//
// The same rule as guest/plugins/examples/amount_limit.rs; the cases in
// guest/foreign/cases/amount-limit.jsonl pin it down for every language.
// `evaluate` returns true to allow; to deny it fills `err` and returns
// false. Ownership follows wit-bindgen's C rules: the proposal belongs to
// this function (freed before returning), and every string and list of a
// denial must come from malloc, because the generated post-return hook
// frees them after the host has copied them out.
//
// C has no JSON parser in libc, so this file carries a small scanner for
// the one thing the rule needs: the value of the top-level key "amount".
// The host hands over valid JSON only (canonical, checked before gates run).

#include "gate_plugin.h"

#include <stdlib.h>
#include <string.h>

// The bindings were generated without wit-bindgen's type object (its
// component type is embedded by `batpak guest new --world gate-plugin`), but
// they still reference the symbol that forces that object into the link.
void __component_type_object_force_link_gate_plugin(void) {}

#define NAME "amount-limit"
#define LIMIT 10000.0

typedef struct {
  const uint8_t *at;
  const uint8_t *end;
} cursor_t;

static void skip_ws(cursor_t *c) {
  while (c->at < c->end && (*c->at == ' ' || *c->at == '\t' || *c->at == '\n' || *c->at == '\r')) c->at++;
}

// Skips a string whose opening quote is at `c->at`. If `key` is not NULL,
// also reports whether the string's text, with escapes undone, equals `key`
// (a short ASCII word, so only \uXXXX escapes below 0x80 can match it).
static bool skip_string(cursor_t *c, const char *key) {
  size_t matched = 0;
  bool equal = key != NULL;
  c->at++;  // the opening quote
  while (c->at < c->end && *c->at != '"') {
    int ch = *c->at++;
    if (ch == '\\' && c->at < c->end) {
      ch = *c->at++;
      if (ch == 'u' && c->end - c->at >= 4) {
        ch = (int)strtol((const char[]){(char)c->at[0], (char)c->at[1], (char)c->at[2], (char)c->at[3], 0}, NULL, 16);
        c->at += 4;
      } else if (ch == 'n' || ch == 't' || ch == 'r' || ch == 'b' || ch == 'f') {
        ch = 0x100;  // a control character: never part of the key
      }
    }
    if (equal) equal = key[matched] != '\0' && (int)(unsigned char)key[matched] == ch;
    matched++;
  }
  if (c->at < c->end) c->at++;  // the closing quote
  return equal && key[matched] == '\0';
}

// Skips one value of any kind, nested ones included.
static void skip_value(cursor_t *c) {
  int depth = 0;
  do {
    skip_ws(c);
    if (c->at >= c->end) return;
    uint8_t ch = *c->at;
    if (ch == '"') {
      skip_string(c, NULL);
    } else if (ch == '{' || ch == '[') {
      depth++;
      c->at++;
    } else if (ch == '}' || ch == ']') {
      depth--;
      c->at++;
    } else if (ch == ',' || ch == ':') {
      c->at++;
    } else {
      while (c->at < c->end && strchr(",}] \t\r\n", *c->at) == NULL) c->at++;
    }
  } while (depth > 0);
}

typedef enum { ABSENT, NUMBER, NOT_A_NUMBER } amount_kind_t;

// Finds the top-level "amount" of a JSON document (the last one, as JSON
// parsers keep the last of repeated keys), points `raw` at its JSON text and
// parses it if it is a number.
static amount_kind_t find_amount(const uint8_t *json, size_t len, double *amount, cursor_t *raw) {
  cursor_t c = {json, json + len};
  amount_kind_t found = ABSENT;
  skip_ws(&c);
  if (c.at >= c.end || *c.at != '{') return ABSENT;
  c.at++;
  for (;;) {
    skip_ws(&c);
    if (c.at >= c.end || *c.at != '"') return found;  // '}' or the end
    bool is_amount = skip_string(&c, "amount");
    skip_ws(&c);
    if (c.at < c.end && *c.at == ':') c.at++;
    skip_ws(&c);
    const uint8_t *value = c.at;
    skip_value(&c);
    if (is_amount) {
      raw->at = value;
      raw->end = c.at;
      if (value < c.end && (*value == '-' || (*value >= '0' && *value <= '9'))) {
        // strtod needs a terminated string; numbers are short.
        char buf[64];
        size_t n = (size_t)(c.at - value) < sizeof buf - 1 ? (size_t)(c.at - value) : sizeof buf - 1;
        memcpy(buf, value, n);
        buf[n] = '\0';
        *amount = strtod(buf, NULL);
        found = NUMBER;
      } else {
        found = NOT_A_NUMBER;
      }
    }
    skip_ws(&c);
    if (c.at < c.end && *c.at == ',') c.at++;
  }
}

// Fills a denial: gate, code and message, and the amount's JSON text as context.
static bool deny(exports_batpak_plugin_gate_denial_t *err, const char *code, const char *message,
                 cursor_t amount, bool with_limit) {
  gate_plugin_string_dup(&err->gate, NAME);
  gate_plugin_string_dup(&err->code, code);
  gate_plugin_string_dup(&err->message, message);
  size_t pairs = with_limit ? 2 : 1;
  err->context.ptr = malloc(pairs * sizeof(gate_plugin_tuple2_string_string_t));
  if (err->context.ptr == NULL) abort();
  err->context.len = pairs;
  gate_plugin_string_dup(&err->context.ptr[0].f0, "amount");
  gate_plugin_string_dup_n(&err->context.ptr[0].f1, (const char *)amount.at, (size_t)(amount.end - amount.at));
  if (with_limit) {
    gate_plugin_string_dup(&err->context.ptr[1].f0, "limit");
    gate_plugin_string_dup(&err->context.ptr[1].f1, "10000");
  }
  return false;
}

void exports_batpak_plugin_gate_describe(exports_batpak_plugin_gate_description_t *ret) {
  gate_plugin_string_dup(&ret->name, NAME);
  gate_plugin_string_dup(&ret->version, "0.1.0");
}

bool exports_batpak_plugin_gate_evaluate(exports_batpak_plugin_gate_proposal_t *proposal,
                                         exports_batpak_plugin_gate_denial_t *err) {
  double amount = 0;
  cursor_t raw = {NULL, NULL};
  bool allowed = true;
  switch (find_amount(proposal->payload.ptr, proposal->payload.len, &amount, &raw)) {
    case ABSENT:
      break;
    case NOT_A_NUMBER:
      allowed = deny(err, "BAD_AMOUNT", "amount must be a number", raw, false);
      break;
    case NUMBER:
      if (amount < 0) {
        allowed = deny(err, "NEGATIVE_AMOUNT", "amounts must be positive", raw, false);
      } else if (amount > LIMIT) {
        allowed = deny(err, "AMOUNT_LIMIT", "amount over the 10000 limit", raw, true);
      }
      break;
  }
  // `raw` points into the payload: free the proposal only after the denial copied it.
  exports_batpak_plugin_gate_proposal_free(proposal);
  return allowed;
}
