//! Pod logs: the lines a container wrote, with their times, and a way for
//! `follow=true` readers to wait for more.

use k8s_openapi::jiff::Timestamp;
use std::sync::Mutex;
use tokio::sync::watch;

/// The log of a pod's first container.
#[derive(Debug)]
pub(crate) struct PodLog {
    lines: Mutex<Vec<(Timestamp, String)>>,
    /// (number of lines, finished); followers wait on changes.
    progress: watch::Sender<(usize, bool)>,
}

impl PodLog {
    pub fn new() -> Self {
        PodLog {
            lines: Mutex::new(Vec::new()),
            progress: watch::Sender::new((0, false)),
        }
    }

    /// Appends one line (without its newline).
    pub fn push(&self, line: String) {
        let n = {
            let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            lines.push((Timestamp::now(), line));
            lines.len()
        };
        self.progress.send_modify(|p| p.0 = n);
    }

    /// Marks the log complete: followers end once they have read it all.
    pub fn finish(&self) {
        self.progress.send_modify(|p| p.1 = true);
    }

    pub fn is_finished(&self) -> bool {
        self.progress.borrow().1
    }

    /// Lines from index `from` on.
    pub fn lines_from(&self, from: usize) -> Vec<(Timestamp, String)> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.get(from..).map(<[_]>::to_vec).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn subscribe(&self) -> watch::Receiver<(usize, bool)> {
        self.progress.subscribe()
    }
}
