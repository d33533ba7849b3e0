//! WebAssembly plugins on [`Store`]: gates (install, swap, provenance)
//! and projections (install, state, status).

use crate::store::*;

impl Store<Open> {
    /// Adds a gate at the end of the chain, atomically between appends. The
    /// component is compiled and instantiated first; on any failure the
    /// installed chain is unchanged.
    pub fn install_gate(&self, plugin: GatePlugin) -> Result<(), StoreError> {
        self.check_writer_stack(plugin.limits().stack_bytes, self.projections.max_stack())?;
        let mut plugins = self.plugins.lock();
        let mut next = plugins.clone();
        next.push(plugin);
        self.swap_gates(&mut plugins, next)
    }

    /// Replaces the gate named `name` with `plugin`, atomically.
    pub fn replace_gate(&self, name: &str, plugin: GatePlugin) -> Result<(), StoreError> {
        self.check_writer_stack(plugin.limits().stack_bytes, self.projections.max_stack())?;
        let mut plugins = self.plugins.lock();
        let at = self.gate_position(name)?;
        let mut next = plugins.clone();
        next[at] = plugin;
        self.swap_gates(&mut plugins, next)
    }

    /// Removes the gate named `name`, atomically.
    pub fn remove_gate(&self, name: &str) -> Result<(), StoreError> {
        let mut plugins = self.plugins.lock();
        let at = self.gate_position(name)?;
        let mut next = plugins.clone();
        next.remove(at);
        self.swap_gates(&mut plugins, next)
    }

    /// Names of the installed gates, in evaluation order.
    pub fn gates(&self) -> Vec<String> {
        self.gate_names.lock().clone()
    }

    /// Every gate set that admitted at least one event, as recorded in the log.
    pub fn gate_sets(&self) -> Vec<GateSetInfo> {
        self.provenance.list()
    }

    /// Visible events admitted by gate set `set_id`.
    pub fn events_admitted_by(&self, set_id: u32) -> Vec<IndexEntry> {
        let mut out = self.index.query(&Region::all());
        out.retain(|e| e.gate_set == Some(set_id));
        out
    }

    /// Installs (or replaces) a WASM projection under `name`: restores its
    /// saved snapshot if it matches the component and schema, else rebuilds
    /// from the log; then it follows every committed event.
    pub fn install_projection(&self, name: &str, plugin: ProjectionPlugin) -> Result<(), StoreError> {
        self.install_projection_with_progress(name, plugin, |_, _| {})
    }

    /// [`Store::install_projection`] reporting catch-up progress as (done, total) events.
    pub fn install_projection_with_progress(
        &self,
        name: &str,
        plugin: ProjectionPlugin,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(), StoreError> {
        let gates = self.plugins.lock().iter().map(|g| g.limits().stack_bytes).max().unwrap_or(0);
        self.check_writer_stack(gates, plugin.stack_bytes())?;
        if plugin.in_background_mode() {
            self.ensure_projector()?;
        }
        self.projections.install(name, plugin, &self.index, &self.reader, &mut progress)
    }

    /// Starts the projector thread once: it wakes on every publish (through a
    /// one-slot lossy subscription: a missed wake-up is covered by the next,
    /// since each catch-up runs to the current watermark).
    fn ensure_projector(&self) -> Result<(), StoreError> {
        let mut slot = self.projector.lock();
        if slot.is_some() {
            return Ok(());
        }
        let sub = self.subscribers.subscribe(&Region::all(), 1);
        let (index, reader, set) =
            (Arc::clone(&self.index), Arc::clone(&self.reader), Arc::clone(&self.projections));
        let handle = std::thread::Builder::new().name("batpak-projector".into()).spawn(move || loop {
            set.catch_up_background(&index, &reader);
            if sub.recv().is_none() {
                return;
            }
        })?;
        *slot = Some(handle);
        Ok(())
    }

    /// Removes a projection and its saved snapshot.
    pub fn remove_projection(&self, name: &str) -> Result<(), StoreError> {
        self.projections.remove(name)
    }

    /// The state projection `name` holds for `key`, as of the last committed event.
    pub fn projection_state(&self, name: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.projections.state(name, key)
    }

    /// Waits until projection `name` has folded the event at `sequence` (for
    /// background projections: "read your writes"); `false` on timeout or
    /// if the projection failed.
    pub fn wait_for_projection(
        &self,
        name: &str,
        sequence: u64,
        timeout: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.projections.wait_for(name, sequence, timeout)
    }

    /// Where projection `name` stands and what it declared.
    pub fn projection_status(&self, name: &str) -> Option<(ProjectionStatus, ProjectionInfo)> {
        self.projections.status(name)
    }

    /// The whole state of projection `name`, as its `snapshot` returns it.
    pub fn projection_snapshot(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.projections.snapshot_bytes(name)
    }

    fn gate_position(&self, name: &str) -> Result<usize, StoreError> {
        self.gate_names
            .lock()
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| StoreError::Plugin(crate::plugin::PluginError::UnknownGate(name.to_string())))
    }

    /// Refuses a plugin whose wasm stack, nested with the largest stack of
    /// the other kind, would not fit on the writer thread.
    fn check_writer_stack(&self, gate_stack: usize, projection_stack: usize) -> Result<(), StoreError> {
        let have = self.cfg.writer.stack_size.unwrap_or(crate::plugin::DEFAULT_WRITER_STACK);
        let needed = crate::plugin::writer_stack_needed(gate_stack, projection_stack);
        if have < needed {
            return Err(StoreError::Plugin(crate::plugin::PluginError::InvalidLimits(format!(
                "a gate with a {gate_stack}-byte wasm stack reading a projection with {projection_stack} \
                 needs a {needed}-byte writer stack; the writer has {have} (WriterConfig::stack_size)"
            ))));
        }
        Ok(())
    }

    fn swap_gates(&self, plugins: &mut Vec<GatePlugin>, next: Vec<GatePlugin>) -> Result<(), StoreError> {
        let states: Arc<dyn StateReader> = Arc::clone(&self.projections) as Arc<dyn StateReader>;
        let mut infos = self.gate_infos.lock();
        let mut edit = GateChain::plan(&next, plugins, &infos, Some(states)).map_err(StoreError::Plugin)?;
        edit.assign_set_id(&self.provenance.list(), || self.next_set_id.fetch_add(1, Ordering::SeqCst));
        let next_infos = edit.infos.clone();
        self.call(|reply| Command::SetGates(Box::new(edit), reply))?;
        *plugins = next;
        *self.gate_names.lock() = next_infos.iter().map(|i| i.name.clone()).collect();
        *infos = next_infos;
        Ok(())
    }
}
