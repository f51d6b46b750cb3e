//! Slot accounting of the local executor: parallelism, CPU, memory and GPU
//! ids. Plain data and functions, so the rules are tested without processes.

use crate::attempt::{AttemptKey, Capacity};
use crate::error::ExecutorError;
use pave_core::Resources;
use std::collections::BTreeSet;

/// What is in use out of a [`Capacity`].
#[derive(Clone, Debug)]
pub(crate) struct Slots {
    capacity: Capacity,
    running: usize,
    cpu_used: u64,
    memory_used: u64,
    gpus_busy: BTreeSet<u32>,
}

impl Slots {
    pub fn new(capacity: Capacity) -> Slots {
        Slots {
            capacity,
            running: 0,
            cpu_used: 0,
            memory_used: 0,
            gpus_busy: BTreeSet::new(),
        }
    }

    pub fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    /// Takes the slots `res` needs and returns the GPU ids handed out (the
    /// lowest free ones). On `Err` nothing was taken.
    pub fn reserve(
        &mut self,
        key: &AttemptKey,
        res: &Resources,
    ) -> Result<Vec<u32>, ExecutorError> {
        let cap = &self.capacity;
        let unsatisfiable = |asked: String, total: String| ExecutorError::Unsatisfiable {
            key: key.clone(),
            reason: format!("asks for {asked} but this executor has only {total}"),
        };
        if res.gpu > cap.gpu_count() {
            return Err(unsatisfiable(gpus(res.gpu), gpus(cap.gpu_count())));
        }
        if res.cpu_millis > cap.cpu_millis {
            return Err(unsatisfiable(
                format!("{} CPU millicores", res.cpu_millis),
                format!("{}", cap.cpu_millis),
            ));
        }
        if res.memory_bytes > cap.memory_bytes {
            return Err(unsatisfiable(mib(res.memory_bytes), mib(cap.memory_bytes)));
        }

        let busy = |reason: String| ExecutorError::Busy {
            key: key.clone(),
            reason,
        };
        if self.running >= cap.parallelism {
            return Err(busy(format!(
                "all {} parallelism slots are taken",
                cap.parallelism
            )));
        }
        let cpu_free = cap.cpu_millis.saturating_sub(self.cpu_used);
        if res.cpu_millis > cpu_free {
            return Err(busy(format!(
                "needs {} CPU millicores, {cpu_free} of {} free",
                res.cpu_millis, cap.cpu_millis
            )));
        }
        let memory_free = cap.memory_bytes.saturating_sub(self.memory_used);
        if res.memory_bytes > memory_free {
            return Err(busy(format!(
                "needs {}, {} of {} free",
                mib(res.memory_bytes),
                mib(memory_free),
                mib(cap.memory_bytes)
            )));
        }
        let free_gpus: Vec<u32> = cap
            .gpus
            .iter()
            .map(|g| g.id)
            .filter(|id| !self.gpus_busy.contains(id))
            .collect();
        let wanted = usize::try_from(res.gpu).unwrap_or(usize::MAX);
        if wanted > free_gpus.len() {
            return Err(busy(format!(
                "needs {}, {} of {} free",
                gpus(res.gpu),
                free_gpus.len(),
                cap.gpus.len()
            )));
        }

        let ids: Vec<u32> = free_gpus.into_iter().take(wanted).collect();
        self.take(res, &ids);
        Ok(ids)
    }

    /// Takes the slots of an attempt that is already running (adopted after a
    /// restart), even past capacity: the process exists whether it fits or not.
    pub fn take(&mut self, res: &Resources, gpu_ids: &[u32]) {
        self.running += 1;
        self.cpu_used = self.cpu_used.saturating_add(res.cpu_millis);
        self.memory_used = self.memory_used.saturating_add(res.memory_bytes);
        self.gpus_busy.extend(gpu_ids.iter().copied());
    }

    /// Gives back what [`Slots::reserve`] or [`Slots::take`] took.
    pub fn release(&mut self, res: &Resources, gpu_ids: &[u32]) {
        self.running = self.running.saturating_sub(1);
        self.cpu_used = self.cpu_used.saturating_sub(res.cpu_millis);
        self.memory_used = self.memory_used.saturating_sub(res.memory_bytes);
        for id in gpu_ids {
            self.gpus_busy.remove(id);
        }
    }
}

fn gpus(n: u32) -> String {
    if n == 1 {
        "1 GPU".to_owned()
    } else {
        format!("{n} GPUs")
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::GpuInfo;
    use pave_core::{MapIndex, TryNumber};

    fn key() -> AttemptKey {
        AttemptKey {
            dag_id: "d".into(),
            run_id: "r".into(),
            task_id: "t".into(),
            map_index: MapIndex::UNMAPPED,
            try_number: TryNumber(1),
        }
    }

    fn slots(parallelism: usize, gpu_count: u32) -> Slots {
        Slots::new(Capacity {
            parallelism,
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            gpus: (0..gpu_count)
                .map(|id| GpuInfo {
                    id,
                    uuid: None,
                    name: None,
                    memory_bytes: None,
                })
                .collect(),
        })
    }

    fn res(cpu_millis: u64, memory_bytes: u64, gpu: u32) -> Resources {
        Resources {
            cpu_millis,
            memory_bytes,
            gpu,
            ..Resources::default()
        }
    }

    #[test]
    fn hands_out_lowest_free_gpus_and_takes_them_back() {
        let mut s = slots(8, 3);
        assert_eq!(s.reserve(&key(), &res(0, 0, 2)).expect("fits"), vec![0, 1]);
        let err = s.reserve(&key(), &res(0, 0, 2)).expect_err("busy");
        assert_eq!(
            err.to_string(),
            "no free slot for attempt d/r/t#1: needs 2 GPUs, 1 of 3 free"
        );
        s.release(&res(0, 0, 2), &[0, 1]);
        assert_eq!(s.reserve(&key(), &res(0, 0, 1)).expect("fits"), vec![0]);
        assert_eq!(s.reserve(&key(), &res(0, 0, 2)).expect("fits"), vec![1, 2]);
    }

    #[test]
    fn tells_never_from_not_now() {
        let mut s = slots(1, 0);
        assert!(matches!(
            s.reserve(&key(), &res(0, 0, 1)),
            Err(ExecutorError::Unsatisfiable { .. })
        ));
        assert!(matches!(
            s.reserve(&key(), &res(5000, 0, 0)),
            Err(ExecutorError::Unsatisfiable { .. })
        ));
        assert!(matches!(
            s.reserve(&key(), &res(0, 9 << 30, 0)),
            Err(ExecutorError::Unsatisfiable { .. })
        ));
        s.reserve(&key(), &res(3000, 1 << 30, 0)).expect("fits");
        let err = s.reserve(&key(), &res(0, 0, 0)).expect_err("parallelism");
        assert!(
            err.to_string()
                .contains("all 1 parallelism slots are taken"),
            "{err}"
        );
    }

    #[test]
    fn cpu_and_memory_are_never_oversubscribed() {
        let mut s = slots(10, 0);
        s.reserve(&key(), &res(3000, 6 << 30, 0)).expect("fits");
        let err = s.reserve(&key(), &res(2000, 0, 0)).expect_err("cpu");
        assert!(
            err.to_string()
                .contains("needs 2000 CPU millicores, 1000 of 4000 free"),
            "{err}"
        );
        let err = s.reserve(&key(), &res(0, 3 << 30, 0)).expect_err("memory");
        assert!(
            err.to_string()
                .contains("needs 3072 MiB, 2048 MiB of 8192 MiB free"),
            "{err}"
        );
        s.reserve(&key(), &res(1000, 2 << 30, 0))
            .expect("exactly fits");
    }
}
