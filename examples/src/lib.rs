//! Examples live in `src/bin/demo.rs` and the `[[example]]` files.
