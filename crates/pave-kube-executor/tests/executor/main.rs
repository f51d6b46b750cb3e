//! The Kubernetes executor against the simulated cluster (in process, the
//! real kube client; over TLS in `tls`): outcomes, faults, restarts, and
//! rendered pod specs.

mod common;
mod faults;
mod lifecycle;
mod render;
mod restart;
mod routing;
mod scheduler;
mod tls;
