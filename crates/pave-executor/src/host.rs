//! What the local machine offers (cores, memory, GPUs) and what `/proc` says
//! about a process: the executor's only sources of truth about the host.
//!
//! Parsing is split from reading so the parsers can be tested with fixtures.

use crate::attempt::GpuInfo;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::process::{Command, Stdio};

/// The machine's cores × 1000.
pub fn detect_cpu_millis() -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u64::try_from(cores).unwrap_or(1).saturating_mul(1000)
}

/// `MemTotal` from `/proc/meminfo`, or `None` when it cannot be read.
pub fn detect_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo_total(&text)
}

pub(crate) fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value.saturating_mul(1024)),
        Some(_) => None,
    }
}

/// The machine's NVIDIA GPUs: from NVML (the driver's library, loaded at
/// run time) when it is present, else from `nvidia-smi`; empty when neither
/// answers.
pub fn detect_gpus() -> Vec<GpuInfo> {
    match nvml_gpus() {
        Ok(gpus) => gpus,
        Err(e) => {
            tracing::debug!("NVML unavailable ({e}); asking nvidia-smi");
            nvidia_smi_gpus()
        }
    }
}

/// GPUs as NVML reports them, in NVML's index order (the order of
/// `CUDA_VISIBLE_DEVICES` with `CUDA_DEVICE_ORDER=PCI_BUS_ID`). An error
/// when the library cannot be loaded (no driver) or does not answer.
pub fn nvml_gpus() -> Result<Vec<GpuInfo>, String> {
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| e.to_string())?;
    let count = nvml.device_count().map_err(|e| e.to_string())?;
    let mut gpus = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for id in 0..count {
        let device = nvml
            .device_by_index(id)
            .map_err(|e| format!("GPU {id}: {e}"))?;
        gpus.push(GpuInfo {
            id,
            uuid: device.uuid().ok(),
            name: device.name().ok(),
            memory_bytes: device.memory_info().ok().map(|m| m.total),
        });
    }
    Ok(gpus)
}

/// GPUs as `nvidia-smi` lists them; empty when it is missing or fails.
pub fn nvidia_smi_gpus() -> Vec<GpuInfo> {
    let output = Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,uuid,name,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout)),
        Ok(out) => {
            tracing::warn!(status = %out.status, "nvidia-smi failed; assuming no GPUs");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

/// Parses `index, uuid, name, memory.total` lines (memory in MiB, with or
/// without the ` MiB` unit). Lines that do not parse are skipped.
pub(crate) fn parse_nvidia_smi(csv: &str) -> Vec<GpuInfo> {
    csv.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let id: u32 = fields.first()?.parse().ok()?;
            let non_empty = |i: usize| {
                fields
                    .get(i)
                    .filter(|s| !s.is_empty())
                    .map(|s| (*s).to_owned())
            };
            let memory_bytes = fields
                .get(3)
                .and_then(|m| m.trim_end_matches("MiB").trim().parse::<u64>().ok())
                .map(|mib| mib * 1024 * 1024);
            Some(GpuInfo {
                id,
                uuid: non_empty(1),
                name: non_empty(2),
                memory_bytes,
            })
        })
        .collect()
}

/// The fields of `/proc/PID/stat` the executor uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub state: char,
    pub session: i32,
    pub start_ticks: u64,
}

impl ProcStat {
    /// Zombies and dead entries are gone for our purposes: they run nothing.
    pub fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&text)
}

/// Parses `/proc/PID/stat`. The command name is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted from the
/// last `)`.
pub(crate) fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) session(6) ... starttime(22).
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        session: fields.get(3)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// Whether `pid` is still the same running process: alive, not a zombie,
/// and (when known) started at `start_ticks`, so a reused pid does not count.
pub(crate) fn is_alive(pid: u32, start_ticks: Option<u64>) -> bool {
    match proc_stat(pid) {
        Some(stat) => stat.is_running() && start_ticks.is_none_or(|t| t == stat.start_ticks),
        // Without /proc, fall back to kill(pid, 0).
        None if !std::path::Path::new("/proc/self/stat").exists() => {
            pid_of(pid).is_some_and(|p| kill(p, None).is_ok())
        }
        None => false,
    }
}

pub(crate) fn pid_of(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .map(Pid::from_raw)
}

/// Sends `signal` to every running process in the session led by
/// `session_leader` (a supervisor), except the leader itself and the caller.
/// Returns whether any process was signalled.
///
/// If the leader's pid now belongs to a process that started at another
/// time, the session is already empty: the kernel does not reuse a pid that
/// still names a session or group. So a stale handle never hits strangers.
pub(crate) fn signal_session(
    session_leader: u32,
    leader_start_ticks: Option<u64>,
    signal: Signal,
) -> bool {
    if let Some(stat) = proc_stat(session_leader)
        && leader_start_ticks.is_some_and(|t| t != stat.start_ticks)
    {
        return false;
    }
    let Ok(sid) = i32::try_from(session_leader) else {
        return false;
    };
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let mut any = false;
    for pid in entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| pid != session_leader && pid != me)
    {
        if let Some(stat) = proc_stat(pid)
            && stat.session == sid
            && stat.is_running()
            && let Some(p) = pid_of(pid)
        {
            any |= kill(p, signal).is_ok();
        }
    }
    any
}

/// Signals the process group led by `leader` and every process of its
/// session (a task that a shared supervisor started leads both).
pub(crate) fn signal_group_and_session(leader: Pid, signal: Signal) {
    let _ = nix::sys::signal::killpg(leader, signal);
    if let Ok(pid) = u32::try_from(leader.as_raw()) {
        signal_session(pid, None, signal);
    }
}

/// The direct children of this process (alive or zombie), from
/// `/proc/self/task/*/children`: one read per thread, no `/proc` scan.
pub(crate) fn own_children() -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo() {
        let text = "MemTotal:       16318480 kB\nMemFree:         1234 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(16318480 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn parses_nvidia_smi_with_and_without_units() {
        let csv =
            "0, GPU-aaaa, NVIDIA H200, 143771 MiB\n1, GPU-bbbb, NVIDIA H200, 143771\ngarbage\n";
        let gpus = parse_nvidia_smi(csv);
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].id, 0);
        assert_eq!(gpus[0].uuid.as_deref(), Some("GPU-aaaa"));
        assert_eq!(gpus[1].name.as_deref(), Some("NVIDIA H200"));
        assert_eq!(gpus[1].memory_bytes, Some(143771 * 1024 * 1024));
    }

    #[test]
    fn nvml_without_a_driver_is_an_error_not_a_panic() {
        // On a machine with the NVIDIA driver this lists its GPUs; without
        // one, NVML's library is missing and detection falls back.
        let driver = std::path::Path::new("/proc/driver/nvidia/version").exists();
        match nvml_gpus() {
            Ok(gpus) => assert!(driver, "NVML answered without a driver: {gpus:?}"),
            Err(e) => assert!(!e.is_empty()),
        }
        if !driver {
            assert_eq!(detect_gpus(), nvidia_smi_gpus());
        }
    }

    #[test]
    fn parses_proc_stat_with_parentheses_in_the_name() {
        let text = "4242 (we (ird) name) S 1 4242 4240 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        let stat = parse_proc_stat(text).expect("parse");
        assert_eq!(
            stat,
            ProcStat {
                state: 'S',
                session: 4240,
                start_ticks: 987654
            }
        );
        assert!(stat.is_running());
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let stat = proc_stat(me).expect("own stat");
        assert!(is_alive(me, Some(stat.start_ticks)));
        assert!(!is_alive(me, Some(stat.start_ticks + 1)));
    }
}
