//! The Kubernetes executor against the simulated cluster (in process, the
//! real kube client): outcomes, faults, restarts, and rendered pod specs.

mod common;
mod faults;
mod lifecycle;
mod render;
mod restart;
mod routing;
mod scheduler;
