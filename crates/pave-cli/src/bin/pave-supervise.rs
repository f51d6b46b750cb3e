//! `pave-supervise`: the task supervisor on its own, installed next to
//! `pave`. The local executor starts one per attempt (see
//! `pave_executor::LocalExecutorConfig::default`), and it is much cheaper to
//! start than the full `pave` binary (`pave supervise`, which does the same):
//! it links only the supervisor, with no async runtime, CLI parser or HTTP
//! server, so the loader has far fewer pages to map and relocate.
//!
//! `pave-supervise --result FILE --log FILE [--claim FILE] [--gpus IDS]
//! [--timeout SECS] [--grace SECS] [--cwd DIR] -- PROGRAM ARGS...`

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(pave_executor::supervise_cli(args));
}
