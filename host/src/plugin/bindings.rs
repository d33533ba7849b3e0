//! Generated bindings for the worlds in wit/batpak.wit. Only this module and
//! its siblings see them; the public API wraps them.

/// The `gate-plugin` world: exports `gate`, imports `host-state`.
pub(crate) mod gate {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "gate-plugin",
        // A host call can fail the gate (a failed projection): it traps.
        imports: { default: trappable },
    });
}

/// The `projection-plugin` world: exports `projection`.
pub(crate) mod projection {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "projection-plugin",
    });
}
