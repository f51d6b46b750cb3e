//! The simulator's protocol, scheduler, kubelet and faults, driven through
//! the real `kube` client (in process, over TCP and over TLS) and kubectl.

mod common;
mod faults;
mod kubelet;
mod protocol;
mod scheduler;
mod tcp;
mod tls;
mod watch;
