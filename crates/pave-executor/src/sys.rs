//! The two system calls the supervision server needs that neither std nor
//! nix wraps safely. This is the only `unsafe` code in pave (the workspace
//! denies it everywhere else); each block says why it is sound.
#![allow(unsafe_code)]

use crate::attempt::Exit;
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// An exited child, reaped: its pid, how it ended and its peak RSS in KiB
/// (its own or its reaped descendants', whichever was larger).
pub(crate) struct Reaped {
    pub pid: Pid,
    pub exit: Exit,
    pub maxrss_kib: u64,
}

/// `wait4(-1, WNOHANG)`: reaps one exited child without blocking, with its
/// resource usage (nix's `waitpid` drops it, and `getrusage(RUSAGE_CHILDREN)`
/// only knows the largest child ever reaped). `None`: no child has exited.
pub(crate) fn reap_one() -> nix::Result<Option<Reaped>> {
    let mut status: nix::libc::c_int = 0;
    let mut usage = std::mem::MaybeUninit::<nix::libc::rusage>::zeroed();
    loop {
        // SAFETY: both pointers point at live, writable locals of the right
        // types; the kernel writes at most one `int` and one `rusage`.
        let pid = unsafe {
            nix::libc::wait4(-1, &raw mut status, nix::libc::WNOHANG, usage.as_mut_ptr())
        };
        match pid {
            0 => return Ok(None),
            -1 if Errno::last() == Errno::EINTR => {}
            -1 => return Err(Errno::last()),
            pid => {
                // SAFETY: zero-initialised above, and filled by a successful wait4.
                let usage = unsafe { usage.assume_init() };
                let exit = if nix::libc::WIFSIGNALED(status) {
                    Exit::Signal {
                        signal: nix::libc::WTERMSIG(status),
                    }
                } else {
                    Exit::Code {
                        code: nix::libc::WEXITSTATUS(status),
                    }
                };
                return Ok(Some(Reaped {
                    pid: Pid::from_raw(pid),
                    exit,
                    maxrss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
                }));
            }
        }
    }
}

/// Makes the spawned task lead a session of its own (so its group and
/// session are its pid, and a scan of the session finds what left the
/// group), die with SIGKILL if `parent` (this single-threaded server)
/// dies, and start with no signal blocked.
pub(crate) fn detach_dying_with(cmd: &mut Command, parent: Pid) {
    // SAFETY: the closure runs in the child between fork and exec; it
    // allocates nothing, takes no lock and makes only async-signal-safe
    // system calls (setsid, prctl, getppid, sigprocmask).
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent died before the prctl: nobody would supervise us.
            if nix::unistd::getppid() != parent {
                return Err(Errno::ESRCH.into());
            }
            pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            Ok(())
        });
    }
}
