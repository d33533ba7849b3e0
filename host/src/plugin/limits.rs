//! Hard limits on one guest: fuel per call, linear memory, stack, and the
//! size of what it may hand back.

use wasmtime::ResourceLimiter;

/// Limits applied to every call into a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PluginLimits {
    /// Fuel (roughly, wasm instructions) per call. Default 10 million.
    pub fuel_per_call: u64,
    /// Most bytes of linear memory and tables together, across every
    /// memory and table of the guest's instances. Default 16 MiB.
    pub memory_bytes: usize,
    /// Largest wasm stack in bytes, 64 KiB ..= 1 MiB. Default 512 KiB.
    /// Guests with different limits run on different engines (at most
    /// [`super::MAX_ENGINES`] per process). The writer thread's stack must
    /// hold a gate's stack plus the stack of a projection it reads: see
    /// `WriterConfig::stack_size`.
    pub stack_bytes: usize,
    /// Longest denial message kept, in bytes (longer ones are cut). Default 4 KiB.
    pub max_message_bytes: usize,
    /// Most denial context pairs kept. Default 32.
    pub max_context_pairs: usize,
    /// Wall-clock budget of one call, in milliseconds (1..=60 000). Default
    /// 50. Fuel bounds work, not time (10 M fuel takes 2–120 ms depending on
    /// the instructions); past this deadline the call traps ("deadline
    /// exceeded") and a gate fails closed. Checked every 5 ms.
    pub deadline_ms: u64,
    /// Wall-clock budget of one instantiation, in milliseconds (1..=60 000).
    /// Default 1 000. Toolchains that embed a language runtime
    /// (componentize-py, jco) hand over tens of core instances and megabytes
    /// of initialised memory, which takes longer than one call may; a
    /// start function that loops is cut off here. A gate is re-instantiated
    /// inside the writer after a trap, so this also bounds how long an
    /// append can wait on a misbehaving gate's restart.
    pub instantiate_ms: u64,
}

impl PluginLimits {
    /// The defaults, usable in constants (`..PluginLimits::DEFAULT`).
    pub const DEFAULT: PluginLimits = PluginLimits {
        fuel_per_call: 10_000_000,
        memory_bytes: 16 * 1024 * 1024,
        stack_bytes: 512 * 1024,
        max_message_bytes: 4096,
        max_context_pairs: 32,
        deadline_ms: 50,
        instantiate_ms: 1_000,
    };
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Bytes a table element is counted as, toward `memory_bytes`.
const TABLE_ELEMENT_BYTES: usize = 16;
/// Core instances one guest may create. Component toolchains split a guest
/// into many (componentize-py emits dozens); what bounds a guest is its
/// memory total, not the count.
const MAX_INSTANCES: usize = 64;
/// Tables one guest may create.
const MAX_TABLES: usize = 64;
/// Linear memories one guest may create (all share `memory_bytes`).
const MAX_MEMORIES: usize = 16;

/// Per-store state: the resource limiter (which counts every memory and
/// table of the guest against one total and remembers refusals, so a trap
/// can be reported as "out of memory") and what host calls need.
pub(crate) struct GuestState {
    pub memory_bytes: usize,
    /// Bytes of memories and tables the guest holds now.
    pub used_bytes: usize,
    pub memory_refused: bool,
    /// Projection states a gate may read (`host-state`); none for projections.
    pub states: Option<std::sync::Arc<dyn super::StateReader>>,
    /// Set when a host call refused to answer (a failed projection, an
    /// oversized key, fuel spent): the cause and detail the trap that
    /// follows is reported with.
    pub host_failure: Option<(&'static str, String)>,
}

impl GuestState {
    pub(crate) fn new(memory_bytes: usize, states: Option<std::sync::Arc<dyn super::StateReader>>) -> Self {
        Self { memory_bytes, used_bytes: 0, memory_refused: false, states, host_failure: None }
    }

    /// Admits growth from `current` to `desired` bytes against the total.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let extra = desired.saturating_sub(current);
        let total = self.used_bytes.saturating_add(extra);
        if total > self.memory_bytes {
            self.memory_refused = true;
            return false;
        }
        self.used_bytes = total;
        true
    }
}

impl ResourceLimiter for GuestState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = |n: usize| n.saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.grow(bytes(current), bytes(desired)))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Smallest wasm stack limit a guest may ask for.
pub const MIN_STACK_BYTES: usize = 64 * 1024;
/// Largest wasm stack limit a guest may ask for. A gate and a projection
/// it reads run nested on the writer thread, so that thread needs twice
/// this plus room for host frames (see `WriterConfig::stack_size`); a
/// projection read from a caller's thread needs this much of its stack.
pub const MAX_STACK_BYTES: usize = 1024 * 1024;

/// Stack the writer thread needs beside its wasm stacks (its own frames,
/// the host calls between a gate and the projection it reads).
pub const WRITER_STACK_MARGIN: usize = 512 * 1024;

/// Stack the writer thread gets when `WriterConfig::stack_size` is `None`:
/// room for the largest gate stack nested with the largest projection stack.
pub const DEFAULT_WRITER_STACK: usize = 4 * 1024 * 1024;

/// The writer stack that a gate with `gate_stack` bytes of wasm stack,
/// reading a projection with `projection_stack` bytes, needs.
pub fn writer_stack_needed(gate_stack: usize, projection_stack: usize) -> usize {
    gate_stack.saturating_add(projection_stack).saturating_add(WRITER_STACK_MARGIN)
}

/// Longest allowed `deadline_ms` and `instantiate_ms`.
pub const MAX_DEADLINE_MS: u64 = 60_000;

/// Refuses limits out of their ranges (at install).
pub(crate) fn check(limits: &PluginLimits) -> Result<(), super::PluginError> {
    check_stack(limits.stack_bytes)?;
    if !(1..=MAX_DEADLINE_MS).contains(&limits.deadline_ms) {
        return Err(super::PluginError::InvalidLimits(format!(
            "deadline_ms {} is outside 1..={MAX_DEADLINE_MS}",
            limits.deadline_ms
        )));
    }
    if !(1..=MAX_DEADLINE_MS).contains(&limits.instantiate_ms) {
        return Err(super::PluginError::InvalidLimits(format!(
            "instantiate_ms {} is outside 1..={MAX_DEADLINE_MS}",
            limits.instantiate_ms
        )));
    }
    Ok(())
}

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
