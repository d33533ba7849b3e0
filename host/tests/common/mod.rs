//! Helpers shared by the compaction test binaries.

use std::path::Path;

/// Files a compaction leaves behind until it is finished or undone:
/// outputs, the plan, temporaries.
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.expect("entry").file_name().into_string().ok())
        .filter(|n| n.ends_with(".compact") || n == "compact.plan" || n.ends_with(".tmp"))
        .collect()
}
