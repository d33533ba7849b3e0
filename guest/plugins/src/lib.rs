//! Example gates live in `examples/`, one component each.
