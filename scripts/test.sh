#!/usr/bin/env bash
# The one test command: setup, format check, clippy, the Debian package (built,
# installed, checked, removed), tests.
# Run as root (the tests start PostgreSQL clusters as user nobody and attach to them).
# Set PG_TRACE_TEST_MAJORS=15,18 (say) to test fewer PostgreSQL majors.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

now() { date +%s; }
T0=$(now)
run_step() {
    local name="$1"
    shift
    local t
    t=$(now)
    printf '\n==> [%s] %s\n' "$name" "$*" >&2
    if "$@"; then
        printf '==> [%s] ok (%ss)\n' "$name" "$(( $(now) - t ))" >&2
    else
        local rc=$?
        printf '\n==> FAILED at step [%s] (exit %s): %s\n' "$name" "$rc" "$*" >&2
        exit "$rc"
    fi
}

if [[ $(id -u) -ne 0 ]]; then
    echo "==> WARNING: not running as root; tests that attach to processes will fail or skip" >&2
fi

run_step setup bash scripts/setup.sh
run_step fmt cargo fmt --all -- --check
run_step clippy cargo clippy --all-targets -- -D warnings
if [[ $(id -u) -eq 0 ]]; then
    run_step package bash scripts/package.sh --check
else
    echo "==> WARNING: not root: the package is built but not installed and checked" >&2
    run_step package bash scripts/package.sh
fi
rm -f target/test-skips.log
run_step test cargo test --all-targets --no-fail-fast
# cargo hides a passing test's stderr: what was skipped is said here, once more.
if [[ -s target/test-skips.log ]]; then
    printf '\n==> SKIPPED (%s), tests passed without these parts:\n' "$(sort -u target/test-skips.log | wc -l)" >&2
    sort -u target/test-skips.log | sed 's/^/    /' >&2
fi

printf '\n==> all steps passed (%ss)\n' "$(( $(now) - T0 ))" >&2
