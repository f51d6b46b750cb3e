//! A thin binary around [`pave_executor::supervise_cli`], so this crate's
//! tests (and anyone without the `pave` binary) can run real supervisors:
//! `pave-supervise --result FILE --log FILE [--timeout SECS] -- PROGRAM ARGS...`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(pave_executor::supervise_cli(args));
}
