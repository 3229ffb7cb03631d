//! `fundus bench mesos-sim`: the scaling policy of [`crate::policy`], unchanged,
//! driving a simulated cluster through a day: a large batch backlog at
//! midnight plus a day's curve of phone uploads (clinic hours, peaking at
//! noon). Workers take a start-up delay before they score, score at a fixed
//! measured rate, and hold their GPU for a short stop after a kill. The
//! baselines are what an operator would otherwise do: a static pool sized to
//! drain the backlog in the target time, and every GPU all day.

use std::collections::VecDeque;
use std::time::Duration;

use crate::policy::{Observation, Policy, Scaler};

#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    #[arg(long, default_value_t = 100)]
    pub agents: u32,
    #[arg(long, default_value_t = 8)]
    pub gpus_per_agent: u32,
    /// Batch photos queued at the start.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: u64,
    /// Phone uploads over the day (07:00–19:00, peaking at noon).
    #[arg(long, default_value_t = 200_000)]
    pub phone_per_day: u64,
    /// Images per second one worker scores (a measured figure: `fundus bench worker`).
    #[arg(long, default_value_t = 83.3)]
    pub worker_rate: f64,
    /// Seconds from launch until a worker scores (agent start, model load).
    #[arg(long, default_value_t = 30.0)]
    pub start_secs: f64,
    /// Seconds a killed worker keeps its GPU while it gives its jobs back.
    #[arg(long, default_value_t = 5.0)]
    pub stop_secs: f64,
    #[arg(long, default_value_t = 60.0)]
    pub target_wait_secs: f64,
    #[arg(long, default_value_t = 1.0)]
    pub drain_hours: f64,
    #[arg(long, default_value_t = 300.0)]
    pub quiet_secs: f64,
    #[arg(long, default_value_t = 0)]
    pub min_workers: u32,
    /// Simulated hours.
    #[arg(long, default_value_t = 24.0)]
    pub hours: f64,
}

#[derive(Debug, Clone, Copy)]
pub enum Strategy {
    /// The framework's policy, observing every 5 s over a 120 s window.
    Policy,
    /// A fixed number of workers all day.
    Static(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimResult {
    /// Seconds until the batch backlog was done (None: not within the horizon).
    pub drain_secs: Option<f64>,
    pub gpu_hours: f64,
    pub worst_phone_wait: f64,
    pub p99_phone_wait: f64,
    pub phone_scored: u64,
    pub launches: u64,
    pub kills: u64,
    pub peak_workers: u32,
}

struct Worker {
    /// Second from which it scores.
    ready_at: f64,
    /// Set when killed: second at which its GPU is free.
    leaves_at: Option<f64>,
}

/// Phone uploads per second at second `t` of the day.
fn phone_rate(per_day: u64, t: f64) -> f64 {
    let h = (t / 3600.0) % 24.0;
    if !(7.0..19.0).contains(&h) {
        return 0.0;
    }
    // sin over 12 h integrates to 12 h * 2/pi.
    let norm = 12.0 * 3600.0 * 2.0 / std::f64::consts::PI;
    per_day as f64 * (std::f64::consts::PI * (h - 7.0) / 12.0).sin() / norm
}

pub fn simulate(a: &SimArgs, strategy: Strategy) -> SimResult {
    let gpus = a.agents * a.gpus_per_agent;
    let mut scaler = Scaler::new(Policy {
        min_workers: a.min_workers.min(gpus),
        max_workers: gpus,
        target_wait: Duration::from_secs_f64(a.target_wait_secs),
        drain: Duration::from_secs_f64(a.drain_hours * 3600.0),
        quiet: Duration::from_secs_f64(a.quiet_secs),
        default_rate: a.worker_rate,
    });
    let horizon = (a.hours * 3600.0) as u64;
    let (observe_every, window) = (5u64, 120u64);
    let mut workers: Vec<Worker> = Vec::new();
    let mut phone: VecDeque<f64> = VecDeque::new();
    let mut waits: Vec<f64> = Vec::new();
    let mut batch = a.backlog;
    let (mut arrivals_acc, mut capacity_acc) = (0.0, 0.0);
    // Per-second history for the window: (urgent arrivals, done, worker-seconds).
    let mut history: VecDeque<(u64, u64, f64)> = VecDeque::new();
    let mut r = SimResult {
        drain_secs: None,
        gpu_hours: 0.0,
        worst_phone_wait: 0.0,
        p99_phone_wait: 0.0,
        phone_scored: 0,
        launches: 0,
        kills: 0,
        peak_workers: 0,
    };
    if let Strategy::Static(n) = strategy {
        for _ in 0..n.min(gpus) {
            workers.push(Worker { ready_at: a.start_secs, leaves_at: None });
        }
        r.launches = u64::from(n.min(gpus));
    }
    for sec in 0..horizon {
        let t = sec as f64;
        workers.retain(|w| w.leaves_at.is_none_or(|l| l > t));
        r.gpu_hours += workers.len() as f64 / 3600.0;
        r.peak_workers = r.peak_workers.max(workers.len() as u32);
        // Arrivals.
        arrivals_acc += phone_rate(a.phone_per_day, t);
        let arrived = arrivals_acc.floor() as u64;
        arrivals_acc -= arrived as f64;
        phone.extend(std::iter::repeat_n(t, arrived as usize));
        // Scoring: phone first (higher priority), then batch.
        let scoring = workers.iter().filter(|w| w.leaves_at.is_none() && w.ready_at <= t).count();
        // Capacity accrues only while a worker scores; a fraction left over is not banked across idleness.
        capacity_acc = if scoring == 0 { 0.0 } else { capacity_acc + scoring as f64 * a.worker_rate };
        let mut done = 0u64;
        while capacity_acc >= 1.0 {
            if let Some(arrival) = phone.pop_front() {
                waits.push(t - arrival);
                r.phone_scored += 1;
            } else if batch > 0 {
                batch -= 1;
            } else {
                capacity_acc = capacity_acc.min(1.0); // idle capacity does not bank
                break;
            }
            capacity_acc -= 1.0;
            done += 1;
        }
        if batch == 0 && r.drain_secs.is_none() {
            r.drain_secs = Some(t);
        }
        history.push_back((arrived, done, scoring as f64));
        if history.len() > window as usize {
            history.pop_front();
        }
        if !matches!(strategy, Strategy::Policy) || sec % observe_every != 0 {
            continue;
        }
        let (arr, dn, ws) = history.iter().fold((0, 0, 0.0), |(a0, d0, w0), (a1, d1, w1)| (a0 + a1, d0 + d1, w0 + w1));
        let o = Observation {
            urgent_queued: phone.len() as u64,
            batch_queued: batch,
            running: 0,
            urgent_oldest: phone.front().map(|&at| Duration::from_secs_f64(t - at)),
            urgent_arrival_rate: arr as f64 / window as f64,
            done: dn,
            worker_secs: ws,
        };
        let wanted = scaler.observe(&o, Duration::from_secs(sec)) as usize;
        let active: Vec<usize> = (0..workers.len()).filter(|&i| workers[i].leaves_at.is_none()).collect();
        if wanted > active.len() {
            let n = (wanted - active.len()).min(gpus as usize - workers.len());
            for _ in 0..n {
                workers.push(Worker { ready_at: t + a.start_secs, leaves_at: None });
            }
            r.launches += n as u64;
        } else if wanted < active.len() {
            // Not-yet-ready first, then the newest: as the framework does.
            let mut order = active;
            order.sort_by(|&x, &y| {
                let (wx, wy) = (&workers[x], &workers[y]);
                (wx.ready_at <= t, -wx.ready_at).partial_cmp(&(wy.ready_at <= t, -wy.ready_at)).unwrap_or(std::cmp::Ordering::Equal)
            });
            let excess = order.len() - wanted;
            for &i in order.iter().take(excess) {
                workers[i].leaves_at = Some(t + a.stop_secs);
            }
            r.kills += excess as u64;
        }
    }
    // Phone uploads still waiting at the end count with their wait so far.
    let end = horizon as f64;
    waits.extend(phone.iter().map(|&at| end - at));
    waits.sort_by(f64::total_cmp);
    r.worst_phone_wait = waits.last().copied().unwrap_or(0.0);
    r.p99_phone_wait = waits.get(((waits.len() as f64 * 0.99) as usize).min(waits.len().saturating_sub(1))).copied().unwrap_or(0.0);
    r
}

/// Runs the policy and the baselines and prints one line each.
pub fn run(a: &SimArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.agents >= 1 && a.gpus_per_agent >= 1, "--agents and --gpus-per-agent must be at least 1");
    anyhow::ensure!(a.worker_rate.is_finite() && a.worker_rate > 0.0, "--worker-rate must be positive");
    anyhow::ensure!(a.hours > 0.0 && a.hours <= 24.0 * 14.0, "--hours must be within 0..336");
    anyhow::ensure!(a.drain_hours > 0.0 && a.target_wait_secs > 0.0, "--drain-hours and --target-wait-secs must be positive");
    let gpus = a.agents * a.gpus_per_agent;
    let sized = ((a.backlog as f64 / (a.worker_rate * a.drain_hours * 3600.0)).ceil() as u32).clamp(1, gpus);
    println!(
        "cluster {} agents x {} GPUs; backlog {} photos at 00:00; {} phone uploads 07:00-19:00; worker {:.1} images/s, {} s to start; \
         targets: phone wait {} s, drain {} h; {} h simulated",
        a.agents, a.gpus_per_agent, a.backlog, a.phone_per_day, a.worker_rate, a.start_secs, a.target_wait_secs, a.drain_hours, a.hours
    );
    println!("{:<28} {:>10} {:>10} {:>12} {:>12} {:>9} {:>7} {:>6}", "strategy", "drain", "GPU-hours", "worst wait", "p99 wait", "launches", "kills", "peak");
    for (name, s) in [
        ("scaling policy".to_owned(), Strategy::Policy),
        (format!("static {sized} (sized to drain)"), Strategy::Static(sized)),
        (format!("static {gpus} (every GPU)"), Strategy::Static(gpus)),
    ] {
        let r = simulate(a, s);
        let drain = r.drain_secs.map(|d| format!("{:.2} h", d / 3600.0)).unwrap_or_else(|| "not done".into());
        println!(
            "{name:<28} {drain:>10} {:>10.1} {:>10.0} s {:>10.0} s {:>9} {:>7} {:>6}",
            r.gpu_hours, r.worst_phone_wait, r.p99_phone_wait, r.launches, r.kills, r.peak_workers
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SimArgs {
        SimArgs {
            agents: 4,
            gpus_per_agent: 2,
            backlog: 100_000,
            phone_per_day: 20_000,
            worker_rate: 10.0,
            start_secs: 30.0,
            stop_secs: 5.0,
            target_wait_secs: 60.0,
            drain_hours: 1.0,
            quiet_secs: 300.0,
            min_workers: 0,
            hours: 24.0,
        }
    }

    #[test]
    fn the_phone_curve_sums_to_the_day() {
        let total: f64 = (0..86_400).map(|s| phone_rate(200_000, s as f64)).sum();
        assert!((total - 200_000.0).abs() < 50.0, "{total}");
        assert_eq!(phone_rate(1000, 3.0 * 3600.0), 0.0);
    }

    #[test]
    fn the_policy_drains_near_target_and_uses_fewer_gpu_hours_than_every_gpu() {
        let a = small();
        let p = simulate(&a, Strategy::Policy);
        let all = simulate(&a, Strategy::Static(8));
        // 100,000 at 10/s per worker within an hour needs 3 workers: done within ~1.2 h.
        let drain = p.drain_secs.expect("drained");
        assert!(drain < 1.3 * 3600.0, "drained in {drain} s");
        assert!(p.gpu_hours < all.gpu_hours / 2.0, "{} vs {}", p.gpu_hours, all.gpu_hours);
        // Phone uploads start within a few target waits even though workers take 30 s to start.
        assert!(p.worst_phone_wait < 180.0, "worst wait {}", p.worst_phone_wait);
        assert_eq!(p.phone_scored + 0, all.phone_scored, "every upload scored by both");
        assert!(p.launches >= 3 && p.kills >= 1);
    }

    #[test]
    fn a_pool_too_small_misses_the_drain_target() {
        let r = simulate(&small(), Strategy::Static(1));
        assert!(r.drain_secs.is_none_or(|d| d > 2.0 * 3600.0));
    }
}
