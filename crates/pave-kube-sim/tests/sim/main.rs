//! The simulator's protocol, scheduler, kubelet and faults, driven through
//! the real `kube` client (in process and over TCP) and kubectl.

mod common;
mod faults;
mod kubelet;
mod protocol;
mod scheduler;
mod tcp;
mod watch;
