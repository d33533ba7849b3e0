#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder of bytes from disk, with
# cargo-fuzz (libFuzzer) on a nightly toolchain; installs both if missing.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Targets: frames footer checkpoint index_image compaction_plan projection_snapshot
# segment segment_scan (host/src/fuzzing.rs) and projection_events (the
# guest SDK's decoder of packed events). Each starts from fuzz/seeds/<target> (made
# from real store files by `cargo run -p batpak-examples --example
# make_fuzz_seeds -- fuzz/seeds`) and grows fuzz/corpus/<target>. An input
# that panics, hangs (>10 s), or allocates more than 256 MiB at once fails
# the run; libFuzzer writes it to fuzz/artifacts/<target>/, and
# `cargo +nightly fuzz run <target> <file>` replays it. Copy such a file
# to fuzz/regressions/<target>/ so the test suite replays it for good
# (host/tests/fuzz_replay.rs).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frames footer checkpoint index_image compaction_plan projection_snapshot segment segment_scan projection_events)
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  echo "== $t (${secs}s)"
  cargo +nightly fuzz run --release "$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 \
    -print_final_stats=1 2>&1 | grep -E "^(stat::|#[0-9]+ +DONE|==|SUMMARY|Done)" || true
  if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
    echo "fuzz target $t found a failing input: see fuzz/artifacts/$t"; exit 1
  fi
done
