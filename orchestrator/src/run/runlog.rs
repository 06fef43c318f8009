//! `run.json`, kept up to date as phases begin and end, so that a run cut short at
//! any point says how far it got and why it stopped.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::model::{AdaptiveRecord, PhaseRecord, PhaseStatus, RunRecord};
use crate::rundir::{utc_now, write_json, RunDir};

/// Space set aside next to run.json, given back when the disk fills up, so that the
/// run's last state (failed, and why) can still be written.
const RESERVE_BYTES: usize = 64 * 1024;

pub struct RunLog {
    rd: RunDir,
    rec: Mutex<RunRecord>,
    /// When each failed phase failed, to relabel those a signal caused.
    failed_at: Mutex<Vec<(usize, Instant)>>,
}

/// A phase begun: its index in run.json and when it began.
pub struct Begun(usize, Instant);

impl RunLog {
    pub fn new(rd: &RunDir, rec: RunRecord) -> RunLog {
        // Real blocks (zeros written), not a sparse file: they must be there to free.
        let _ = std::fs::write(rd.run_json_reserve(), vec![0u8; RESERVE_BYTES]);
        let log = RunLog {
            rd: rd.clone(),
            rec: Mutex::new(rec),
            failed_at: Mutex::new(Vec::new()),
        };
        log.save();
        log
    }

    /// The record, also after a panic elsewhere poisoned the lock: what it holds is
    /// still the best account of the run.
    fn rec(&self) -> MutexGuard<'_, RunRecord> {
        self.rec.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn save(&self) {
        let _ = write_json(&self.rd.run_json(), &*self.rec());
    }

    /// The last save: if the disk is full, the reserve is given up for it (only
    /// now, when nothing else writes into the run directory any more). The reserve
    /// goes in any case: run.json has its last state.
    fn save_last(&self) {
        let r = self.rec();
        if write_json(&self.rd.run_json(), &*r).is_err()
            && std::fs::remove_file(self.rd.run_json_reserve()).is_ok()
        {
            let _ = write_json(&self.rd.run_json(), &*r);
        }
        let _ = std::fs::remove_file(self.rd.run_json_reserve());
    }

    pub fn begin(&self, name: &str, host: Option<&str>) -> Begun {
        crate::panics::failpoint(name);
        let idx = {
            let mut r = self.rec();
            r.phases.push(PhaseRecord {
                name: name.into(),
                host: host.map(str::to_string),
                status: PhaseStatus::Running,
                started: utc_now(),
                seconds: 0.0,
                error: None,
            });
            r.phases.len() - 1
        };
        self.save();
        Begun(idx, Instant::now())
    }

    pub fn end(&self, Begun(idx, t): Begun, res: Result<(), String>) {
        if let Some(p) = self.rec().phases.get_mut(idx) {
            p.seconds = t.elapsed().as_secs_f64();
            match res {
                Ok(()) => p.status = PhaseStatus::Ok,
                Err(e) => {
                    p.status = PhaseStatus::Failed;
                    p.error = Some(e);
                    self.failed_at
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((idx, Instant::now()));
                }
            }
        }
        self.save();
    }

    /// Phases that failed in the last `within`: a signal that reached kdelta's
    /// children too made them fail; they were interrupted.
    pub fn relabel_recent_failures(&self, within: Duration) {
        let recent: Vec<usize> = self
            .failed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, t)| t.elapsed() <= within)
            .map(|(i, _)| *i)
            .collect();
        {
            let mut r = self.rec();
            for i in recent {
                if let Some(p) = r.phases.get_mut(i) {
                    p.status = PhaseStatus::Interrupted;
                }
            }
        }
        self.save();
    }

    /// Phases still running when the pipeline was dropped (signal, whole-run
    /// timeout, panic) end with `status` and the reason.
    pub fn cut_running(&self, status: PhaseStatus, why: &str) {
        {
            let mut r = self.rec();
            for p in r
                .phases
                .iter_mut()
                .filter(|p| p.status == PhaseStatus::Running)
            {
                p.status = status;
                p.error = Some(why.to_string());
            }
        }
        self.save();
    }

    pub fn finish(&self, status: PhaseStatus, error: Option<String>) {
        {
            let mut r = self.rec();
            r.status = status;
            r.error = error;
            r.finished = Some(utc_now());
        }
        self.save_last();
    }

    pub fn set_adaptive(&self, rec: AdaptiveRecord) {
        self.rec().adaptive = Some(rec);
        self.save();
    }

    /// Changes the record in place and saves it.
    pub fn update<T>(&self, f: impl FnOnce(&mut RunRecord) -> T) -> T {
        let out = f(&mut self.rec());
        self.save();
        out
    }

    pub fn snapshot(&self) -> RunRecord {
        self.rec().clone()
    }
}

/// Runs `f` as phase `name` of the run (on `host`, if given): recorded as running,
/// then ok or failed with the error's whole chain.
pub async fn phase<F, T>(log: &RunLog, name: &str, host: Option<&str>, f: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let h = log.begin(name, host);
    let r = f.await;
    log.end(h, r.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
    r
}
