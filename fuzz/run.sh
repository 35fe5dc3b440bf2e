#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, one after the
# other, and prints the executions per target. Fails if any target fails.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Needs the nightly toolchain; installs cargo-fuzz if it is missing. New
# inputs go to a scratch corpus under fuzz/target/fuzz-work (FUZZ_WORK
# overrides it); the committed seeds in fuzz/corpus/<target> are only read.
# A crashing input is saved under fuzz/artifacts/<target>/ and its log kept
# in the work directory.
set -euo pipefail

secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame_decoder handshake ring_model)
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz/run.sh: the nightly toolchain is required (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

work=${FUZZ_WORK:-target/fuzz-work}
mkdir -p "$work"
# `-a`: debug assertions and overflow checks on, as in the tests.
cargo +nightly fuzz build -a

failed=0
printf '%-14s %-7s %14s %10s\n' target result executions exec/s
for target in "${targets[@]}"; do
    mkdir -p "$work/corpus/$target" "corpus/$target"
    log="$work/$target.log"
    if cargo +nightly fuzz run -a "$target" "$work/corpus/$target" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        failed=1
    fi
    # libFuzzer's final statistics, or its "Done N runs" line.
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ -z "$execs" ]; then
        execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    fi
    execs=${execs:-0}
    printf '%-14s %-7s %14s %10s\n' "$target" "$result" "$execs" "$((execs / (secs > 0 ? secs : 1)))"
    if [ "$result" = FAILED ]; then
        echo "---- $target failed; last lines of $log:" >&2
        tail -n 40 "$log" >&2
    fi
done
exit "$failed"
