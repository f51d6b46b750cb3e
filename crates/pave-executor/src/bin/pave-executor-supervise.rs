//! A thin binary around [`pave_executor::supervise_cli`], so this crate's
//! tests can run real supervisors without the `pave` binary:
//! `pave-executor-supervise --result FILE --log FILE [--timeout SECS] -- PROGRAM ARGS...`.
//!
//! The supervisor that ships next to `pave` is `pave-supervise`, built by
//! the pave-cli package (the two must not share a name: they would write the
//! same file under `target/`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(pave_executor::supervise_cli(args));
}
