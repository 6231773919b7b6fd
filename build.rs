//! Compiles the BPF programs in `bpf/` into a libbpf-rs skeleton in `$OUT_DIR`
//! (included by `src/trace/ebpf.rs`). Needs clang (apt: clang, llvm, libelf-dev,
//! zlib1g-dev, pkg-config); `bpf/vmlinux.h` is committed, generated with
//! `bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h`.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "bpf/syscalls.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"))
        .join("syscalls.skel.rs");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".to_string());
    // Debian keeps <asm/...> under the multiarch directory.
    let multiarch = format!("/usr/include/{arch}-linux-gnu");

    if let Err(e) = SkeletonBuilder::new()
        .source(SRC)
        .clang_args(["-I", "bpf", "-idirafter", multiarch.as_str(), "-Wall"])
        .build_and_generate(&out)
    {
        panic!(
            "building the BPF skeleton from {SRC} failed (is clang installed? \
             apt-get install clang llvm libelf-dev zlib1g-dev pkg-config): {e:#}"
        );
    }
    println!("cargo:rerun-if-changed=bpf/syscalls.bpf.c");
    println!("cargo:rerun-if-changed=bpf/events.h");
    println!("cargo:rerun-if-changed=bpf/vmlinux.h");
    println!("cargo:rerun-if-changed=build.rs");
}
