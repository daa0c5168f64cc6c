//! What the benchmark binaries share: running child processes under a stop flag and
//! wall-clock limits (`cmd`), and describing the machine and summarising runs (`machine`).
//! The benchmarks themselves are the binaries in `src/bin/`.

pub mod cmd;
pub mod machine;
