//! What `/proc` says about processes: resident memory, CPU time, and where the whole
//! machine's CPU went over a stretch of time (per command name), which is how the fan-out
//! benchmark tells what each item costs each process, whatever else the machine is doing.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// Clock ticks per second of `/proc`'s CPU times (USER_HZ, 100 on every Linux this runs on).
const TICKS_PER_S: f64 = 100.0;

/// Resident memory of a process in bytes (`VmRSS`); 0 when it is gone.
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The command name and user + system CPU ticks of a process, from `/proc/PID/stat`.
fn stat_of(pid: u32) -> Option<(String, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let (head, rest) = s.rsplit_once(')')?;
    let mut name = head.split_once('(')?.1.to_string();
    if name == "tarefas" {
        // Which of its commands: `tarefas worker`, `tarefas fake-huggy`, …
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if let Some(sub) = cmdline
            .split(|&b| b == 0)
            .skip(1)
            .find(|a| !a.is_empty() && !a.starts_with(b"-"))
        {
            name = format!("tarefas {}", String::from_utf8_lossy(sub));
        }
    }
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((name, ticks))
}

/// User + system CPU seconds of a process; 0 when it is gone.
pub fn cpu_of(pid: u32) -> f64 {
    stat_of(pid).map_or(0.0, |(_, t)| t as f64 / TICKS_PER_S)
}

/// CPU times of the whole machine and of every process at one moment.
pub struct CpuSnapshot {
    /// Ticks the CPUs spent running anything (user, nice, system, irq, softirq): not idle,
    /// not waiting for I/O, not stolen by the host.
    busy: u64,
    /// Ticks stolen by the hypervisor for other guests.
    steal: u64,
    by_pid: HashMap<u32, (String, u64)>,
}

/// Where the CPU went between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// CPU seconds the machine was busy, all processes and the kernel.
    pub busy_s: f64,
    /// CPU seconds the host stole.
    pub steal_s: f64,
    /// CPU seconds per command name (`postgres`, `tarefas`, `redis-server`, …), most first.
    pub by_name: Vec<(String, f64)>,
}

impl CpuSnapshot {
    /// Reads `/proc/stat` and every `/proc/PID/stat` now.
    pub fn take() -> CpuSnapshot {
        let (mut busy, mut steal) = (0, 0);
        if let Ok(s) = std::fs::read_to_string("/proc/stat") {
            if let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) {
                let f: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal …
                busy = [0, 1, 2, 5, 6].iter().filter_map(|&i| f.get(i)).sum();
                steal = f.get(7).copied().unwrap_or(0);
            }
        }
        let by_pid = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| Some((pid, stat_of(pid)?)))
            .collect();
        CpuSnapshot {
            busy,
            steal,
            by_pid,
        }
    }

    /// What ran between `earlier` and this snapshot. A process that exited in between is
    /// not counted; one that started is counted whole.
    pub fn since(&self, earlier: &CpuSnapshot) -> CpuUse {
        let mut by_name: BTreeMap<&str, u64> = BTreeMap::new();
        for (pid, (name, ticks)) in &self.by_pid {
            let before = earlier
                .by_pid
                .get(pid)
                .filter(|(n, _)| n == name)
                .map_or(0, |(_, t)| *t);
            *by_name.entry(name).or_default() += ticks.saturating_sub(before);
        }
        let mut by_name: Vec<(String, f64)> = by_name
            .into_iter()
            .filter(|(_, t)| *t > 0)
            .map(|(n, t)| (n.to_string(), t as f64 / TICKS_PER_S))
            .collect();
        by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
        CpuUse {
            busy_s: self.busy.saturating_sub(earlier.busy) as f64 / TICKS_PER_S,
            steal_s: self.steal.saturating_sub(earlier.steal) as f64 / TICKS_PER_S,
            by_name,
        }
    }
}

impl CpuUse {
    /// One line: machine CPU per 1,000 items, and the share of each process name.
    pub fn describe(&self, items: u64) -> String {
        let per_k = |s: f64| s * 1e3 * 1e3 / items.max(1) as f64;
        let parts: Vec<String> = self
            .by_name
            .iter()
            .take(6)
            .map(|(n, s)| format!("{n} {:.0}", per_k(*s)))
            .collect();
        format!(
            "CPU {:.0} ms per 1,000 items (steal {:.0}); by process: {}",
            per_k(self.busy_s),
            per_k(self.steal_s),
            parts.join(", ")
        )
    }
}
