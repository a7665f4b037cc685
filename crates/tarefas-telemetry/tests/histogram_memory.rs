//! A process that records histograms and is never scraped must not keep every sample: the
//! exporter holds them (8 bytes each) until its upkeep folds them into buckets, and the
//! upkeep runs on a thread of its own. Observed through the resident memory: once the
//! first round of samples is folded, a second round fits in the memory the first one took.

use std::time::{Duration, Instant};

use tarefas_telemetry::metric::{self, HUGGY_SECONDS, UPKEEP_EVERY};

fn record(n: usize) {
    let h = metrics::histogram!(HUGGY_SECONDS, "endpoint" => "exec_flow", "status" => "200");
    for _ in 0..n {
        h.record(0.001);
    }
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// Keeps recording a little (as a live worker does) for a few upkeeps.
fn let_upkeep_run() {
    let until = Instant::now() + UPKEEP_EVERY * 3;
    while Instant::now() < until {
        record(100);
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn histogram_samples_are_folded_without_a_scrape() {
    let _handle = metric::install("tarefas-test");
    const SAMPLES: usize = 4_000_000; // 32 MB of samples while held
    let start = rss();
    record(SAMPLES);
    let after_first = rss();
    let first = after_first - start;
    assert!(
        first > (SAMPLES * 4) as u64,
        "{SAMPLES} samples grew the process by only {first} bytes; the test measures nothing"
    );
    let_upkeep_run();
    record(SAMPLES);
    // Folded samples are freed: the second round reuses that memory (or the allocator gave
    // it back to the system and takes it again), so the process ends about where the first
    // round left it. Held samples add a second round on top.
    let second = rss().saturating_sub(after_first);
    assert!(
        second < first / 4,
        "a second round of {SAMPLES} samples grew the process by {second} bytes (the first by \
         {first}): the first round's samples are still held; histograms are folded only when \
         /metrics is scraped"
    );
}
