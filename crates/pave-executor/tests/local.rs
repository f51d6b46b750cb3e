//! The local executor against real processes, with the crate's own
//! `pave-executor-supervise` binary as supervisor: every behaviour in
//! `local/semantics.rs` once with a supervisor process per attempt and once
//! through the supervision server, then what is particular to each.

#[path = "local/common.rs"]
mod common;

mod per_attempt_mode {
    use crate::common::Mode;
    const MODE: Mode = Mode::PerAttempt;
    include!("local/semantics.rs");
}

mod server_mode {
    use crate::common::Mode;
    const MODE: Mode = Mode::Server;
    include!("local/semantics.rs");
}

#[path = "local/per_attempt.rs"]
mod per_attempt;

#[path = "local/server.rs"]
mod server;
