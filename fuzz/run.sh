#!/usr/bin/env bash
# Fuzzes every parser (or the targets named as arguments) for FUZZ_SECONDS each (default 300),
# FUZZ_JOBS targets at a time (default 2), starting from the seeds, and prints executions per
# target. A crash leaves its input in fuzz/artifacts/<target>/: copy it to
# fuzz/regressions/<target>/ with the fix, and the seed test replays it in CI from then on.
#
# Needs cargo-fuzz (installed when absent); libFuzzer wants nightly flags, which
# RUSTC_BOOTSTRAP=1 allows on the stable toolchain. No sanitizer: the code is safe Rust, and
# what we look for is panics, failed invariants and runaway memory or time.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-300}"
jobs="${FUZZ_JOBS:-2}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^messaging-fuzz$')
fi
# Before RUSTC_BOOTSTRAP is set: with it, cargo would rebuild the workspace's own target.
cargo run -q -p messaging-tests --example fuzz_corpus -- fuzz/corpus >/dev/null
export RUSTC_BOOTSTRAP=1
(cd fuzz && cargo fuzz build -s none)
mkdir -p fuzz/logs
run_one() {
  local t="$1"
  (cd fuzz && cargo fuzz run -s none "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -dict=json.dict -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 >"logs/$t.log" 2>&1) || { echo "$t: FAILED (fuzz/logs/$t.log)"; return 1; }
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "fuzz/logs/$t.log" | tail -n1)
  echo "$t: ${execs:-?} executions in ${seconds} s, no failure"
}
export -f run_one
export seconds
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
