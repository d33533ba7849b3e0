//! Generated bindings for the `gate-plugin` world (wit/batpak.wit). Only
//! this module and its siblings see them; the public API wraps them.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "gate-plugin",
});
