#!/usr/bin/env bash
# Maintainer's tool: ask each PostgreSQL server binary for its own wait-event names
# and write them to tests/data/wait_names/pg<major>.tsv, which `tests/wait_names.rs`
# compares with our tables (src/process/status/wait_names.rs) on every CI run.
#
#   scripts/wait-names-from-gdb.sh [MAJOR...]      (default: 12 13 14 15 16 17 18)
#
# Run it after changing a table or the binaries `scripts/setup.sh` installs, then
# commit the data files. It needs gdb and a CPU whose register state gdb can write
# (calling a function in the inferior; some virtual CPUs refuse with "Couldn't write
# extended state status: Bad address"). The tests never need gdb.
#
# How: gdb starts `postgres --version`, stops in __libc_start_main (the loader has
# relocated the executable; PostgreSQL's main, and its refusal to run as root, has
# not run) and calls `pgstat_get_wait_event(class << 24 | n)` for every n of a
# generous range per class. The file keeps each class's numbers up to three past
# the last one the server named, so the server's "no such event" answer ("unknown
# wait event"; "???" for Lock) is recorded too. BufferPin is probed at 0..3 (up to
# 16 the server names the whole class whatever the number), Extension at 0 only
# (from 17 a higher number is looked up in shared memory, which does not exist yet).
#
# Binaries are found as the tests find them: $PG_TRACE_PG<N>_BIN, then Debian's
# /usr/lib/postgresql/<N>/bin, then target/pg/<N>/native/bin.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT_DIR=tests/data/wait_names
RANGE=256

die() { printf 'wait-names-from-gdb: %s\n' "$*" >&2; exit 1; }
command -v gdb >/dev/null || die "no gdb on PATH (apt-get install gdb)"

bin_dir() {
    local major=$1 var="PG_TRACE_PG${1}_BIN"
    if [[ -n ${!var:-} ]]; then
        printf '%s\n' "${!var}"
    elif [[ -x /usr/lib/postgresql/$major/bin/postgres ]]; then
        printf '%s\n' "/usr/lib/postgresql/$major/bin"
    else
        printf '%s\n' "target/pg/$major/native/bin"
    fi
}

# class name, class id (wait_event_info >> 24), how many numbers to probe
CLASSES=(
    "Lock 0x03 $RANGE"
    "BufferPin 0x04 4"
    "Activity 0x05 $RANGE"
    "Client 0x06 $RANGE"
    "Extension 0x07 1"
    "IPC 0x08 $RANGE"
    "Timeout 0x09 $RANGE"
    "IO 0x0A $RANGE"
)

one_major() {
    local major=$1 postgres script raw out version sha build_id
    postgres="$(bin_dir "$major")/postgres"
    [[ -x $postgres ]] || die "PG$major: no $postgres (run scripts/setup.sh)"
    version=$("$postgres" --version)
    [[ $version == *"PostgreSQL) $major."* ]] || die "PG$major: $postgres says '$version'"
    sha=$(sha256sum "$postgres" | cut -d' ' -f1)
    build_id=$(readelf -n "$postgres" 2>/dev/null | sed -n 's/.*Build ID: *//p' | head -1)

    script=$(mktemp)
    raw=$(mktemp)
    trap 'rm -f "$script" "$raw"' RETURN
    {
        printf 'set pagination off\nset confirm off\nset breakpoint pending on\n'
        printf 'break __libc_start_main\nrun\n'
        local c name id n i
        for c in "${CLASSES[@]}"; do
            read -r name id n <<<"$c"
            for ((i = 0; i < n; i++)); do
                printf 'printf "EV\\t%s\\t%d\\t%%s\\n", (char *) pgstat_get_wait_event(%d)\n' \
                    "$name" "$i" $(((id << 24) | i))
            done
        done
        printf 'kill\nquit\n'
    } >"$script"
    gdb -batch -nx -x "$script" --args "$postgres" --version >"$raw" 2>&1 || true
    local want got
    want=$(grep -c '^printf' "$script")
    got=$(grep -c $'^EV\t' "$raw" || true)
    [[ $got == "$want" ]] || {
        tail -20 "$raw" >&2
        die "PG$major: gdb answered $got of $want calls (output above)"
    }

    out="$OUT_DIR/pg$major.tsv"
    mkdir -p "$OUT_DIR"
    {
        printf '# The wait-event names PostgreSQL %s gave, asked of its own binary:\n' "$major"
        printf '# pgstat_get_wait_event(class << 24 | number), called under gdb.\n'
        printf '# Written by scripts/wait-names-from-gdb.sh; checked by tests/wait_names.rs.\n'
        printf '# binary: %s\n' "$postgres"
        printf '# version: %s\n' "$version"
        printf '# sha256: %s\n' "$sha"
        printf '# build-id: %s\n' "${build_id:-none}"
        printf '# size: %s\n' "$(stat -c %s "$postgres")"
        printf '# date: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        printf '# command: scripts/wait-names-from-gdb.sh %s\n' "$major"
        printf 'class\tnumber\tname\n'
        # Per class: drop the probes past three after the last named number, and
        # fail if the range ended while the server was still naming events.
        awk -F'\t' -v range="$RANGE" '
            $1 == "EV" {
                cls = $2; n = $3; name = $4
                if (!(cls in count)) { order[++classes] = cls }
                rows[cls, n] = name; count[cls] = n + 1
                if (name != "unknown wait event" && name != "???") last[cls] = n
            }
            END {
                for (k = 1; k <= classes; k++) {
                    cls = order[k]
                    keep = (cls in last) ? last[cls] + 4 : 3
                    if (count[cls] < range) keep = count[cls]
                    else if (keep > count[cls]) {
                        print "class " cls " still named at " range - 1 > "/dev/stderr"; exit 1
                    }
                    for (n = 0; n < keep; n++) print cls "\t" n "\t" rows[cls, n]
                }
            }' "$raw"
    } >"$out.new"
    mv "$out.new" "$out"
    printf 'wrote %s (%s, %d events)\n' "$out" "$version" "$(($(grep -vc '^#' "$out") - 1))"
}

MAJORS=("$@")
((${#MAJORS[@]})) || MAJORS=(12 13 14 15 16 17 18)
for m in "${MAJORS[@]}"; do
    [[ $m =~ ^1[2-8]$ ]] || die "bad major '$m' (12..18)"
    one_major "$m"
done
