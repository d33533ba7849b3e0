//! Generated bindings for the worlds in wit/batpak.wit. Only this module and
//! its siblings see them; the public API wraps them. (The gate world's one
//! import, `host-state`, is linked by hand in gate_instance.rs, which meters it.)

/// The `gate-plugin` world: exports `gate`, imports `host-state`.
pub(crate) mod gate {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "gate-plugin",
    });
}

/// The `projection-plugin` world: exports `projection`.
pub(crate) mod projection {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "projection-plugin",
    });
}
