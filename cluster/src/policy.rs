//! How many workers the queue wants. A pure function of what the queue looks
//! like and what workers have been seen to do, so it is unit-tested here and
//! run unchanged against a simulated cluster (`fundus bench mesos-sim`).
//!
//! The rate of work needed is
//!
//! ```text
//!   urgent_queued / target_wait  +  urgent arrivals per second  +  batch_queued / time_left
//! ```
//!
//! where `time_left` runs down to the drain deadline: the drain time counted
//! from when the batch backlog appeared (a backlog sized against the full
//! drain time from every "now" would shrink its workers as it shrinks and
//! never finish on time), and never less than the target wait.
//!
//! and the workers wanted are that rate over one worker's throughput, rounded
//! up, at least one while anything is queued or running, one more than now when
//! the oldest urgent job has already waited past the target, and within
//! `[min, max]`. A worker's throughput is measured from finished jobs per
//! worker-second, and only while the queue had a backlog (an idle worker's rate
//! says nothing about what it can do); until then a configured figure stands.
//!
//! Scaling up is immediate. Scaling down waits until the wanted number has
//! stayed lower for a quiet period, and then goes to the highest number wanted
//! during that period, so a lull between bursts does not kill and relaunch.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Policy {
    pub min_workers: u32,
    pub max_workers: u32,
    /// Urgent (phone) jobs should start within this.
    pub target_wait: Duration,
    /// A batch backlog should be done within this.
    pub drain: Duration,
    /// Scale down only after wanting fewer workers for this long.
    pub quiet: Duration,
    /// Images per second per worker, until one has been measured.
    pub default_rate: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_workers: 0,
            max_workers: 8,
            target_wait: Duration::from_secs(60),
            drain: Duration::from_secs(24 * 3600),
            quiet: Duration::from_secs(300),
            default_rate: 20.0,
        }
    }
}

impl Policy {
    pub fn validate(&self) -> Result<(), String> {
        if self.min_workers > self.max_workers {
            return Err(format!("--min-workers ({}) is above --max-workers ({})", self.min_workers, self.max_workers));
        }
        if self.target_wait.is_zero() {
            return Err("--target-wait-secs must be above 0".into());
        }
        if self.drain.is_zero() {
            return Err("--drain-hours must be above 0".into());
        }
        if !(self.default_rate.is_finite() && self.default_rate > 0.0) {
            return Err("--worker-rate must be a positive number of images per second".into());
        }
        Ok(())
    }
}

/// The queue over the last window, as the policy sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observation {
    pub urgent_queued: u64,
    pub batch_queued: u64,
    /// Jobs claimed by a worker right now.
    pub running: u64,
    /// Age of the oldest urgent job ready to run.
    pub urgent_oldest: Option<Duration>,
    /// Urgent jobs per second arriving, over the window.
    pub urgent_arrival_rate: f64,
    /// Jobs finished in the window, and worker-seconds spent in it.
    pub done: u64,
    pub worker_secs: f64,
}

/// The policy with its memory: the measured rate and the quiet-period clock.
#[derive(Debug, Clone)]
pub struct Scaler {
    pub policy: Policy,
    rate: Option<f64>,
    wanted: u32,
    /// Since when fewer workers have been wanted, and the most wanted since.
    lower_since: Option<(Duration, u32)>,
    /// When the current batch backlog appeared (its drain deadline is `drain` later).
    batch_since: Option<Duration>,
    now: Duration,
}

/// Below this many worker-seconds in the window, a measured rate is noise.
const MIN_WORKER_SECS: f64 = 20.0;

impl Scaler {
    pub fn new(policy: Policy) -> Self {
        let wanted = policy.min_workers;
        Scaler { policy, rate: None, wanted, lower_since: None, batch_since: None, now: Duration::ZERO }
    }

    /// Starts from `current` live workers (a new leader taking over), so that
    /// scaling down still waits for a quiet period.
    pub fn resume(&mut self, current: u32) {
        self.wanted = current.clamp(self.policy.min_workers, self.policy.max_workers);
        self.lower_since = None;
    }

    /// Images per second one worker does: measured, or the configured figure.
    pub fn rate(&self) -> f64 {
        self.rate.unwrap_or(self.policy.default_rate)
    }

    pub fn measured_rate(&self) -> Option<f64> {
        self.rate
    }

    pub fn wanted(&self) -> u32 {
        self.wanted
    }

    /// Time left to the batch backlog's drain deadline.
    fn time_left(&self) -> Duration {
        let p = &self.policy;
        let spent = self.batch_since.map_or(Duration::ZERO, |since| self.now.saturating_sub(since));
        p.drain.saturating_sub(spent).max(p.target_wait)
    }

    /// What the queue needs right now, before hysteresis.
    pub fn raw(&self, o: &Observation) -> u32 {
        let p = &self.policy;
        let need = o.urgent_queued as f64 / p.target_wait.as_secs_f64()
            + o.urgent_arrival_rate.max(0.0)
            + o.batch_queued as f64 / self.time_left().as_secs_f64();
        let mut n = (need / self.rate()).ceil().min(f64::from(u32::MAX)) as u32;
        if o.urgent_queued + o.batch_queued + o.running > 0 {
            n = n.max(1);
        }
        if o.urgent_oldest.is_some_and(|age| age > p.target_wait) {
            n = n.max(self.wanted.saturating_add(1));
        }
        n.clamp(p.min_workers, p.max_workers)
    }

    /// Takes an observation at time `now` (any monotonic clock) and returns
    /// the number of workers wanted.
    pub fn observe(&mut self, o: &Observation, now: Duration) -> u32 {
        self.now = now;
        if o.batch_queued == 0 {
            self.batch_since = None;
        } else if self.batch_since.is_none() {
            self.batch_since = Some(now);
        }
        // Learn the rate only from a busy window: workers that had work waiting.
        if o.worker_secs >= MIN_WORKER_SECS && o.done > 0 && o.urgent_queued + o.batch_queued > 0 {
            let r = o.done as f64 / o.worker_secs;
            self.rate = Some(match self.rate {
                Some(old) => 0.7 * old + 0.3 * r,
                None => r,
            });
        }
        let raw = self.raw(o);
        if raw >= self.wanted {
            self.wanted = raw;
            self.lower_since = None;
        } else {
            let (since, peak) = self.lower_since.get_or_insert((now, raw));
            *peak = (*peak).max(raw);
            if now.saturating_sub(*since) >= self.policy.quiet {
                self.wanted = *peak;
                self.lower_since = None;
            }
        }
        self.wanted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min_workers: 0,
            max_workers: 10,
            target_wait: Duration::from_secs(60),
            drain: Duration::from_secs(3600),
            quiet: Duration::from_secs(300),
            default_rate: 10.0,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn an_empty_queue_wants_the_minimum() {
        let mut s = Scaler::new(policy());
        assert_eq!(s.observe(&Observation::default(), secs(0)), 0);
        let mut p = policy();
        p.min_workers = 2;
        assert_eq!(Scaler::new(p).observe(&Observation::default(), secs(0)), 2);
    }

    #[test]
    fn any_work_wants_at_least_one_worker() {
        let s = Scaler::new(policy());
        assert_eq!(s.raw(&Observation { batch_queued: 1, ..Default::default() }), 1);
        assert_eq!(s.raw(&Observation { running: 1, ..Default::default() }), 1);
    }

    #[test]
    fn a_batch_backlog_is_sized_to_drain_in_time() {
        let s = Scaler::new(policy());
        // 90,000 photos in an hour at 10/s per worker: 2.5 → 3 workers.
        assert_eq!(s.raw(&Observation { batch_queued: 90_000, ..Default::default() }), 3);
        // More than max can do: capped.
        assert_eq!(s.raw(&Observation { batch_queued: 10_000_000, ..Default::default() }), 10);
    }

    #[test]
    fn a_batch_backlog_keeps_its_deadline_as_it_shrinks() {
        let mut s = Scaler::new(policy());
        // 90,000 due within the hour: 3 workers.
        assert_eq!(s.observe(&Observation { batch_queued: 90_000, ..Default::default() }, secs(0)), 3);
        // Half an hour later 45,000 are left for the remaining half hour: still 3, not 2.
        s.observe(&Observation { batch_queued: 45_000, ..Default::default() }, secs(1800));
        assert_eq!(s.raw(&Observation { batch_queued: 45_000, ..Default::default() }), 3);
        // Behind schedule: 60,000 left with half an hour to go needs 4.
        assert_eq!(s.raw(&Observation { batch_queued: 60_000, ..Default::default() }), 4);
        // Past the deadline the time left never falls below the target wait.
        s.observe(&Observation { batch_queued: 6_000, ..Default::default() }, secs(7200));
        assert_eq!(s.raw(&Observation { batch_queued: 6_000, ..Default::default() }), 10, "6,000 in 60 s at 10/s: capped at 10");
        // Drained: the next backlog starts a deadline of its own.
        s.observe(&Observation::default(), secs(7300));
        s.observe(&Observation { batch_queued: 36_000, ..Default::default() }, secs(7400));
        assert_eq!(s.raw(&Observation { batch_queued: 36_000, ..Default::default() }), 1);
    }

    #[test]
    fn urgent_work_counts_its_backlog_and_its_arrivals() {
        let s = Scaler::new(policy());
        // 1,200 waiting to start within 60 s is 20/s, plus 15/s arriving: 35/s → 4 workers.
        let o = Observation { urgent_queued: 1200, urgent_arrival_rate: 15.0, ..Default::default() };
        assert_eq!(s.raw(&o), 4);
    }

    #[test]
    fn a_late_urgent_job_adds_a_worker() {
        let mut s = Scaler::new(policy());
        let o = Observation { urgent_queued: 5, urgent_oldest: Some(secs(10)), ..Default::default() };
        assert_eq!(s.observe(&o, secs(0)), 1);
        let late = Observation { urgent_oldest: Some(secs(61)), ..o };
        assert_eq!(s.observe(&late, secs(1)), 2);
        assert_eq!(s.observe(&late, secs(2)), 3, "still late: one more");
    }

    #[test]
    fn the_measured_rate_replaces_the_default_only_from_busy_windows() {
        let mut s = Scaler::new(policy());
        // Idle workers: 100 jobs done in 200 worker-seconds with nothing waiting says nothing.
        s.observe(&Observation { done: 100, worker_secs: 200.0, ..Default::default() }, secs(0));
        assert_eq!(s.measured_rate(), None);
        // Busy: 4,000 done in 100 worker-seconds = 40/s.
        s.observe(&Observation { batch_queued: 10, done: 4000, worker_secs: 100.0, ..Default::default() }, secs(1));
        assert_eq!(s.measured_rate(), Some(40.0));
        // 90,000 in an hour at 40/s: 1 worker, not the 3 of the default 10/s.
        assert_eq!(s.raw(&Observation { batch_queued: 90_000, ..Default::default() }), 1);
        // Too few worker-seconds to trust: ignored.
        s.observe(&Observation { batch_queued: 10, done: 1, worker_secs: 5.0, ..Default::default() }, secs(2));
        assert_eq!(s.measured_rate(), Some(40.0));
    }

    #[test]
    fn scale_down_waits_for_a_quiet_period_and_keeps_its_peak() {
        let mut s = Scaler::new(policy());
        let busy = Observation { batch_queued: 90_000, ..Default::default() };
        assert_eq!(s.observe(&busy, secs(0)), 3);
        let some = Observation { batch_queued: 40_000, ..Default::default() }; // 2
        let none = Observation::default(); // 0
        assert_eq!(s.observe(&none, secs(10)), 3, "quiet period starts");
        assert_eq!(s.observe(&some, secs(200)), 3);
        assert_eq!(s.observe(&none, secs(309)), 3, "not yet 300 s");
        assert_eq!(s.observe(&none, secs(310)), 2, "after 300 s: the most wanted in the period");
        // A burst during the quiet period resets it.
        assert_eq!(s.observe(&busy, secs(320)), 3);
        assert_eq!(s.observe(&none, secs(330)), 3);
        assert_eq!(s.observe(&none, secs(629)), 3);
        assert_eq!(s.observe(&none, secs(630)), 0);
    }

    #[test]
    fn a_resumed_scaler_keeps_its_workers_through_the_quiet_period() {
        let mut s = Scaler::new(policy());
        s.resume(4);
        assert_eq!(s.observe(&Observation::default(), secs(0)), 4);
        assert_eq!(s.observe(&Observation::default(), secs(299)), 4);
        assert_eq!(s.observe(&Observation::default(), secs(300)), 0);
        s.resume(50);
        assert_eq!(s.wanted(), 10, "clamped to max");
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut p = policy();
        p.min_workers = 11;
        assert!(p.validate().is_err());
        let mut p = policy();
        p.default_rate = 0.0;
        assert!(p.validate().is_err());
        let mut p = policy();
        p.target_wait = Duration::ZERO;
        assert!(p.validate().is_err());
        assert!(policy().validate().is_ok());
    }
}
