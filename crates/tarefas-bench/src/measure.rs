//! Measuring tools shared by the benchmarks: interleaved A/B timings summarized by their
//! medians and ratio, the process's resident memory (from `/proc/self/status`), and a
//! background sampler of its peak.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

/// The resident set size of this process now, in bytes (`VmRSS`), or 0 where
/// `/proc/self/status` cannot be read.
pub fn rss_bytes() -> u64 {
    crate::procfs::rss_of(std::process::id())
}

/// Samples [`rss_bytes`] every millisecond on its own thread and keeps the highest value,
/// so that a peak between two explicit samples is not missed.
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl PeakSampler {
    /// Starts sampling.
    pub fn start() -> PeakSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_bytes()));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        PeakSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the highest RSS seen, in bytes.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed).max(rss_bytes())
    }
}

/// The resident memory seen while a stream ran.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    /// RSS before the first page was asked for, bytes.
    pub before: u64,
    /// RSS after the first page was consumed, bytes.
    pub first_page: u64,
    /// RSS after the last page was consumed, bytes.
    pub last_page: u64,
    /// The highest RSS seen during the stream (sampled every millisecond), bytes.
    pub peak: u64,
}

impl Memory {
    /// Growth from the first page to the last, bytes (negative when memory was returned):
    /// what would grow with the number of rows if streaming were not flat.
    pub fn growth(&self) -> i64 {
        self.last_page as i64 - self.first_page as i64
    }
}

/// A fast, order-sensitive digest of a stream of ids (FNV-1a over their bytes), so that two
/// streams can be compared without keeping either in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdDigest {
    /// How many ids.
    pub count: u64,
    /// FNV-1a of the ids in order.
    pub hash: u64,
    /// The last id seen.
    pub last: Option<i64>,
}

impl Default for IdDigest {
    fn default() -> Self {
        IdDigest {
            count: 0,
            hash: 0xcbf2_9ce4_8422_2325,
            last: None,
        }
    }
}

impl IdDigest {
    /// Adds one page of ids; they must be increasing (keyset order), else an error.
    pub fn add(&mut self, ids: &[i64]) -> anyhow::Result<()> {
        for &id in ids {
            if self.last.is_some_and(|l| id <= l) {
                anyhow::bail!("ids out of order: {id} after {:?}", self.last);
            }
            for b in id.to_le_bytes() {
                self.hash ^= u64::from(b);
                self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
            }
            self.last = Some(id);
            self.count += 1;
        }
        Ok(())
    }
}

/// Timings of a measured side, in seconds, in the order taken.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    /// Adds one timing.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64());
    }

    /// The median (mean of the two middle values for an even count); 0 when empty.
    pub fn median(&self) -> f64 {
        median(&self.0)
    }
}

/// The median of `xs` (mean of the two middle values for an even count); 0 when empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One A/B comparison taken interleaved (A B, B A, A B, …): Tarefas against the hand-written
/// baseline, summarized by medians and their ratio.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// What was measured.
    pub name: String,
    /// Tarefas's timings, seconds.
    pub tarefas: Samples,
    /// The hand-written baseline's timings, seconds.
    pub hand: Samples,
    /// Median of Tarefas / median of the baseline.
    pub ratio: f64,
    /// The ratio of each interleaved pair, lowest and highest (how noisy the run was).
    pub pair_ratio_min: f64,
    /// See `pair_ratio_min`.
    pub pair_ratio_max: f64,
    /// The most the ratio may be, when the issue sets a target.
    pub target: Option<f64>,
}

impl Comparison {
    /// Summarizes the two sides.
    pub fn new(name: &str, tarefas: Samples, hand: Samples, target: Option<f64>) -> Comparison {
        let pairs: Vec<f64> = tarefas.0.iter().zip(&hand.0).map(|(a, b)| a / b).collect();
        let ratio = tarefas.median() / hand.median();
        Comparison {
            name: name.to_string(),
            pair_ratio_min: pairs.iter().copied().fold(f64::INFINITY, f64::min),
            pair_ratio_max: pairs.iter().copied().fold(0.0, f64::max),
            ratio,
            tarefas,
            hand,
            target,
        }
    }

    /// True when there is no target or the ratio is within it.
    pub fn met(&self) -> bool {
        self.target.is_none_or(|t| self.ratio <= t)
    }
}

/// Seconds as a short human figure (`12.3 ms`, `1.24 s`).
pub fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// Bytes as MiB with one decimal, signed when asked.
pub fn mib(b: i64, signed: bool) -> String {
    let m = b as f64 / (1024.0 * 1024.0);
    if signed {
        format!("{m:+.1} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn digest_is_order_sensitive_and_rejects_disorder() {
        let (mut a, mut b) = (IdDigest::default(), IdDigest::default());
        a.add(&[1, 2]).unwrap();
        a.add(&[5]).unwrap();
        b.add(&[1, 2, 5]).unwrap();
        assert_eq!(a, b);
        let mut c = IdDigest::default();
        c.add(&[1, 3, 5]).unwrap();
        assert_ne!(a, c);
        assert!(IdDigest::default().add(&[2, 1]).is_err());
    }

    #[test]
    fn rss_is_read() {
        assert!(rss_bytes() > 0);
    }
}
