#!/usr/bin/env bash
# Build the Debian package: target/debian/pg_trace_<version>_<arch>.deb.
#
#   bash scripts/package.sh           build it
#   sudo bash scripts/package.sh --check
#                                     build it, then install it with dpkg -i, check it
#                                     (--version, man -w, the completions, ldd), and
#                                     remove it again, also when a check fails (CI)
#
# The binary is built with the cargo feature `static` in the `dist` profile: libbpf,
# libelf and zlib are linked in, the BPF programs are embedded by their skeletons, so
# the package needs nothing beyond libc and libgcc_s (Depends is computed by
# dpkg-shlibdeps from the binary itself). The man pages and completions come from the
# binary's own CLI (`pg_trace generate-files`, hidden).
#
# Debian package names cannot hold "_": the package is called pg-trace (dpkg -r
# pg-trace), the file keeps the program's name.
#
# Needs (scripts/setup.sh installs them): cargo, clang (build.rs), libelf-dev and
# zlib1g-dev (for libelf.a and libz.a), dpkg-dev (dpkg-shlibdeps); man-db for --check.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[package] %s\n' "$*" >&2; }
die() { printf '[package] ERROR: %s\n' "$*" >&2; exit 1; }

CHECK=0
case "${1:-}" in
    "") ;;
    --check) CHECK=1 ;;
    *) die "usage: $0 [--check]" ;;
esac

PKG=pg-trace
BIN_NAME=pg_trace

for tool in cargo dpkg-deb dpkg-shlibdeps dpkg-architecture gzip; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install dpkg-dev; or run scripts/setup.sh)"
done
ARCH=$(dpkg --print-architecture)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
LIBDIR=/usr/lib/$MULTIARCH
for lib in libelf.a libz.a; do
    [[ -f "$LIBDIR/$lib" ]] || die "$LIBDIR/$lib missing: apt-get install libelf-dev zlib1g-dev"
done

# Debian 12's libelf compresses with zlib only; a newer elfutils may also call zstd (or
# lzma), which libbpf-sys does not link: then their static archives go in at the end of
# the link (the binary's ldd is checked by --check either way).
if command -v nm >/dev/null 2>&1; then
    undefined=$(nm -u "$LIBDIR/libelf.a" 2>/dev/null || true)
    for dep in ZSTD_:zstd:libzstd-dev lzma_:lzma:liblzma-dev BZ2_:bz2:libbz2-dev; do
        IFS=: read -r prefix lib devpkg <<<"$dep"
        if grep -q " ${prefix}" <<<"$undefined"; then
            [[ -f "$LIBDIR/lib$lib.a" ]] || die "libelf.a needs lib$lib: apt-get install $devpkg"
            log "libelf.a calls lib$lib: linking $LIBDIR/lib$lib.a too"
            export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=$LIBDIR/lib$lib.a"
        fi
    done
else
    log "WARNING: no nm (binutils): cannot tell whether libelf.a needs zstd or lzma"
fi

# ---------------------------------------------------------------------------
# The binary
# ---------------------------------------------------------------------------
# libbpf-sys asks rustc for static=elf and static=z but does not say where they are.
export LIBBPF_SYS_LIBRARY_PATH="$LIBDIR"
log "cargo build --profile dist --features static"
nice cargo build --locked --profile dist --features static --bin "$BIN_NAME"
BIN="$ROOT/target/dist/$BIN_NAME"
[[ -x "$BIN" ]] || die "$BIN was not built"

version_line=$("$BIN" --version) || die "$BIN --version failed"
[[ "$version_line" =~ ^$BIN_NAME\ ([0-9][0-9A-Za-z.+~-]*)$ ]] \
    || die "$BIN --version printed '$version_line', not '$BIN_NAME <version>'"
VERSION="${BASH_REMATCH[1]}"

# ---------------------------------------------------------------------------
# The staged tree
# ---------------------------------------------------------------------------
OUT="$ROOT/target/debian"
STAGE="$OUT/stage"
DEB="$OUT/${BIN_NAME}_${VERSION}_${ARCH}.deb"
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$STAGE/usr/bin" "$STAGE/usr/share/doc/$PKG"
install -m 0755 "$BIN" "$STAGE/usr/bin/$BIN_NAME"
"$STAGE/usr/bin/$BIN_NAME" generate-files "$STAGE/usr" >/dev/null \
    || die "$BIN_NAME generate-files failed"
# Debian policy: man pages gzip -9, without a timestamp so that builds are reproducible.
find "$STAGE/usr/share/man" -type f -name '*.[0-9]' -exec gzip -9n {} +

cat >"$STAGE/usr/share/doc/$PKG/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $BIN_NAME

Files: *
License: MIT or Apache-2.0
Comment: pg_trace, and the vendored libbpf (LGPL-2.1 or BSD-2-Clause) and the
 statically linked libelf (LGPL-3+ or GPL-2+) and zlib (Zlib) it contains.
EOF

# Honest Depends: what the binary's ELF needs, by the versions it was linked against.
shlib_dir=$(mktemp -d)
trap 'rm -rf "$shlib_dir"' EXIT
mkdir -p "$shlib_dir/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" >"$shlib_dir/debian/control"
depends=$(cd "$shlib_dir" && dpkg-shlibdeps -O -e"$STAGE/usr/bin/$BIN_NAME" 2>/dev/null) \
    || die "dpkg-shlibdeps failed on $STAGE/usr/bin/$BIN_NAME"
depends=${depends#shlibs:Depends=}
[[ -n "$depends" ]] || die "dpkg-shlibdeps found no dependency at all"
rm -rf "$shlib_dir"
trap - EXIT

installed_kib=$(du -sk --apparent-size "$STAGE/usr" | cut -f1)
cat >"$STAGE/DEBIAN/control" <<EOF
Package: $PKG
Version: $VERSION
Architecture: $ARCH
Maintainer: pg_trace developers <pg_trace@localhost>
Installed-Size: $installed_kib
Depends: $depends
Section: database
Priority: optional
Description: see what a PostgreSQL process is reading and how far it has got
 pg_trace attaches to one PostgreSQL process (a backend, a walsender serving
 pg_basebackup, ...) with eBPF, USDT probes, ptrace or /proc polling and shows,
 in a terminal UI or as text or NDJSON lines, which relation it reads, how far
 into it, at what rate, and why it is stuck. Files are named from the catalog
 read straight from the data directory: no connection, no password.
 PostgreSQL 12 to 18.
EOF
(cd "$STAGE" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$STAGE/DEBIAN/md5sums"
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -type f ! -path "$STAGE/usr/bin/*" -exec chmod 0644 {} +

rm -f "$DEB"
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)} \
    dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
log "built $DEB ($(du -h "$DEB" | cut -f1); Depends: $depends)"

((CHECK)) || exit 0

# ---------------------------------------------------------------------------
# --check: install, check, remove
# ---------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "--check installs the package: run it as root"
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'installed$'; then
    die "$PKG is already installed here; --check would replace and then remove it (dpkg -r $PKG first)"
fi
[[ ! -e /usr/bin/$BIN_NAME ]] || die "/usr/bin/$BIN_NAME exists and is not from $PKG; not touching it"

# Slim Docker images drop man pages at install (path-exclude=/usr/share/man/* in
# /etc/dpkg/dpkg.cfg.d/); a package would then install without them and `man -w` fail
# for no visible reason. Said here, and overridden for this package's own files.
include=()
excluded=$(grep -hs '^[[:space:]]*path-exclude' /etc/dpkg/dpkg.cfg.d/* /etc/dpkg/dpkg.cfg || true)
if [[ -n "$excluded" ]]; then
    log "NOTICE: dpkg is configured to leave files out of every package here:"
    while IFS= read -r line; do printf '[package]     %s\n' "$line" >&2; done <<<"$excluded"
    log "NOTICE: installing with --path-include for every file of $PKG (man pages included)"
    include=(--path-include="/usr/share/man/man1/$BIN_NAME*" --path-include="/usr/share/doc/$PKG/*"
        --path-include="/usr/share/*/*$BIN_NAME*")
fi

remove() {
    log "dpkg --purge $PKG"
    dpkg --purge "$PKG" >/dev/null || log "ERROR: dpkg --purge $PKG failed: remove it by hand"
    [[ ! -e /usr/bin/$BIN_NAME ]] || log "ERROR: /usr/bin/$BIN_NAME is still there"
}
fail() {
    printf '[package] CHECK FAILED: %s\n' "$*" >&2
    exit 1
}

log "dpkg -i $DEB"
trap remove EXIT
dpkg "${include[@]}" -i "$DEB" >/dev/null

out=$(/usr/bin/$BIN_NAME --version) || fail "/usr/bin/$BIN_NAME --version exited $?"
[[ "$out" == "$BIN_NAME $VERSION" ]] || fail "--version printed '$out', expected '$BIN_NAME $VERSION'"
log "ok: $out"

help=$(/usr/bin/$BIN_NAME --help) || fail "/usr/bin/$BIN_NAME --help exited $?"
[[ "$help" != *generate-files* ]] || fail "--help shows the hidden generate-files"

# Ubuntu's minimized images divert /usr/bin/man to a stub that finds nothing.
if dpkg-divert --list /usr/bin/man 2>/dev/null | grep -q .; then
    fail "/usr/bin/man is diverted (a minimized image: run unminimize), man -w cannot be checked"
fi
for page in "$BIN_NAME" "$BIN_NAME-catalog" "$BIN_NAME-ps"; do
    where=$(man -w "$page") || fail "man -w $page found nothing"
    [[ "$where" == "/usr/share/man/man1/$page.1.gz" ]] || fail "man -w $page: $where"
done
# The page must render, not just exist.
page=$(MANWIDTH=80 man "$BIN_NAME" 2>/dev/null) || fail "man $BIN_NAME exited $?"
[[ "$page" == *--usdt-probes* ]] || fail "man $BIN_NAME does not render the options"
log "ok: man -w $BIN_NAME: $(man -w "$BIN_NAME")"

for f in /usr/share/bash-completion/completions/$BIN_NAME \
    /usr/share/zsh/vendor-completions/_$BIN_NAME \
    /usr/share/fish/vendor_completions.d/$BIN_NAME.fish; do
    [[ -s "$f" ]] || fail "completion file $f missing or empty"
    grep -q -- 'usdt-probes' "$f" || fail "$f does not complete --usdt-probes"
    grep -q 'generate-files' "$f" && fail "$f completes the hidden generate-files"
done
# bash must be able to load it: a syntax error would break every completion.
bash -c "source /usr/share/bash-completion/completions/$BIN_NAME && complete -p $BIN_NAME" >/dev/null \
    || fail "the bash completion does not load"
log "ok: bash, zsh and fish completions"

# Only the C runtime: no libelf, libz, libzstd (libbpf, libelf and zlib are linked in).
allowed='^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1)$'
libs=$(ldd /usr/bin/$BIN_NAME | awk '{print $1}' | sed 's|.*/||')
extra=$(grep -Ev "$allowed" <<<"$libs" || true)
[[ -z "$extra" ]] || fail "ldd /usr/bin/$BIN_NAME lists libraries outside the C runtime: $(echo $extra)"
log "ok: ldd: $(echo $libs)"

# What the package holds matches what dpkg says it installed (md5sums).
dpkg --verify "$PKG" || fail "dpkg --verify $PKG"

trap - EXIT
remove
dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'installed$' && fail "$PKG is still installed"
log "ok: installed, checked and removed $DEB"
