//! Hard limits on one guest: fuel per call, linear memory, stack, and the
//! size of what it may hand back.

use wasmtime::ResourceLimiter;

/// Limits applied to every call into a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PluginLimits {
    /// Fuel (roughly, wasm instructions) per call. Default 10 million.
    pub fuel_per_call: u64,
    /// Largest linear memory in bytes. Default 16 MiB.
    pub memory_bytes: usize,
    /// Largest wasm stack in bytes, 64 KiB ..= 4 MiB. Default 512 KiB.
    /// Guests with different limits run on different engines (at most
    /// [`super::MAX_ENGINES`] per process). The writer thread's stack must
    /// hold a gate's stack plus the stack of a projection it reads: see
    /// `WriterConfig::stack_size`.
    pub stack_bytes: usize,
    /// Longest denial message kept, in bytes (longer ones are cut). Default 4 KiB.
    pub max_message_bytes: usize,
    /// Most denial context pairs kept. Default 32.
    pub max_context_pairs: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            fuel_per_call: 10_000_000,
            memory_bytes: 16 * 1024 * 1024,
            stack_bytes: 512 * 1024,
            max_message_bytes: 4096,
            max_context_pairs: 32,
        }
    }
}

/// Per-instance state: the memory limiter, which remembers refusals so a
/// trap can be reported as "out of memory".
pub(crate) struct GuestState {
    pub memory_bytes: usize,
    pub memory_refused: bool,
    /// Projection states a gate may read (`host-state`); none for projections.
    pub states: Option<std::sync::Arc<dyn super::StateReader>>,
    /// Set when a host call refused to answer (a failed projection); the
    /// trap that follows is reported with this cause.
    pub host_failure: Option<String>,
}

impl ResourceLimiter for GuestState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.memory_bytes;
        if !ok {
            self.memory_refused = true;
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        4
    }
}

/// Smallest wasm stack limit a guest may ask for.
pub const MIN_STACK_BYTES: usize = 64 * 1024;
/// Largest wasm stack limit a guest may ask for.
pub const MAX_STACK_BYTES: usize = 4 * 1024 * 1024;

/// Refuses a stack limit outside `MIN_STACK_BYTES..=MAX_STACK_BYTES`.
pub(crate) fn check_stack(stack_bytes: usize) -> Result<(), super::PluginError> {
    if (MIN_STACK_BYTES..=MAX_STACK_BYTES).contains(&stack_bytes) {
        Ok(())
    } else {
        Err(super::PluginError::InvalidLimits(format!(
            "stack_bytes {stack_bytes} is outside {MIN_STACK_BYTES}..={MAX_STACK_BYTES}"
        )))
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate_utf8(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}
