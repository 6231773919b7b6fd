//! Compiles the BPF programs in `bpf/` into libbpf-rs skeletons in `$OUT_DIR`
//! (`syscalls.skel.rs`, included by `src/trace/ebpf.rs`; `usdt.skel.rs`, included by
//! `src/trace/usdt.rs`). Needs clang (apt: clang, llvm, libelf-dev,
//! zlib1g-dev, pkg-config); `bpf/vmlinux.h` is committed, generated with
//! `bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h`.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SOURCES: [(&str, &str); 2] = [
    ("bpf/syscalls.bpf.c", "syscalls.skel.rs"),
    ("bpf/usdt.bpf.c", "usdt.skel.rs"),
];

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".to_string());
    // Debian keeps <asm/...> under the multiarch directory.
    let multiarch = format!("/usr/include/{arch}-linux-gnu");

    for (src, skel) in SOURCES {
        // <bpf/usdt.bpf.h> includes <linux/errno.h>, which needs <asm/errno.h>.
        if let Err(e) = SkeletonBuilder::new()
            .source(src)
            .clang_args(["-I", "bpf", "-idirafter", multiarch.as_str(), "-Wall"])
            .build_and_generate(out_dir.join(skel))
        {
            panic!(
                "building the BPF skeleton from {src} failed (is clang installed? \
                 apt-get install clang llvm libelf-dev zlib1g-dev pkg-config): {e:#}"
            );
        }
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=bpf/events.h");
    println!("cargo:rerun-if-changed=bpf/vmlinux.h");
    println!("cargo:rerun-if-changed=build.rs");
}
