//! `tarefas-bench report`: reads the JSON reports the benchmarks wrote under `target/bench/`
//! (`segment`, `fanout`, `planning`, `scheduler`), prints the one summary table of
//! `make bench` (Markdown) with each target met or missed, and writes the chart
//! (`target/bench/summary.svg`: throughput per system, and calls per second under the rate
//! limit, Tarefas against BullMQ). A benchmark that did not run leaves its rows out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::Value;

/// Options of `tarefas-bench report`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the benchmarks wrote their JSON reports.
    #[arg(long, default_value = "target/bench")]
    dir: PathBuf,
    /// Where to write the chart.
    #[arg(long, default_value = "target/bench/summary.svg")]
    svg: PathBuf,
    /// Where to write the table (Markdown) besides printing it.
    #[arg(long, default_value = "target/bench/summary.md")]
    md: PathBuf,
    /// Exit with status 3 when a target is missed.
    #[arg(long)]
    strict: bool,
}

fn load(dir: &Path, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn f(v: &Value, path: &str) -> Option<f64> {
    let mut cur = v;
    for p in path.split('.') {
        cur = match p.parse::<usize>() {
            Ok(i) => cur.get(i)?,
            Err(_) => cur.get(p)?,
        };
    }
    cur.as_f64()
}

/// ", N of M items lost" when a peer went quiet short of its items.
fn lost(v: &Value, peer: &str) -> String {
    match f(v, &format!("{peer}.lost")) {
        Some(l) if l > 0.0 => format!(
            " ({} of {} items never called: lost)",
            num(l),
            num(f(v, &format!("{peer}.items")).unwrap_or(0.0))
        ),
        _ => String::new(),
    }
}

fn num(x: f64) -> String {
    // Thousands separated by commas, no decimals.
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

struct Row {
    measure: String,
    tarefas: String,
    baseline: String,
    ratio: String,
    target: String,
    met: Option<bool>,
}

fn verdict(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "**MISSED**",
        None => "–",
    }
}

/// Prints the table, writes the chart.
pub fn run(args: Args) -> Result<()> {
    let mut rows: Vec<Row> = Vec::new();
    let fanout = load(&args.dir, "fanout");
    let mut bars: Vec<(String, f64)> = Vec::new();

    if let Some(r) = &fanout {
        if let Some(best) = f(r, "best.items_per_s") {
            let setting = format!(
                "{} workers × {}",
                f(r, "best.workers").unwrap_or(0.0),
                f(r, "best.concurrency").unwrap_or(0.0)
            );
            bars.push((format!("Tarefas ({setting})"), best));
            if let Some(c) = f(r, "celery.items_per_s") {
                let x = best / c;
                rows.push(Row {
                    measure: format!(
                        "1. fan-out, {} contacts: Tarefas ({setting}) vs Celery + RabbitMQ (prefork {})",
                        num(f(r, "best.items").unwrap_or(0.0)),
                        f(r, "celery.processes").unwrap_or(0.0)
                    ),
                    tarefas: format!("{} items/s", num(best)),
                    baseline: format!("{} items/s{}", num(c), lost(r, "celery")),
                    ratio: format!("{x:.1}×"),
                    target: "≥ 20×".into(),
                    met: Some(x >= 20.0),
                });
                bars.push((
                    format!(
                        "Celery (prefork {})",
                        f(r, "celery.processes").unwrap_or(0.0)
                    ),
                    c,
                ));
            }
            if let Some(b) = f(r, "bullmq.items_per_s") {
                let x = best / b;
                rows.push(Row {
                    measure: format!(
                        "1. fan-out: Tarefas vs BullMQ on Redis ({} workers × {}, limiter off)",
                        f(r, "bullmq.processes").unwrap_or(0.0),
                        f(r, "bullmq.concurrency").unwrap_or(0.0)
                    ),
                    tarefas: format!("{} items/s", num(best)),
                    baseline: format!("{} items/s{}", num(b), lost(r, "bullmq")),
                    ratio: format!("{x:.1}×"),
                    target: "≥ 5×".into(),
                    met: Some(x >= 5.0),
                });
                bars.push((
                    format!(
                        "BullMQ ({} × {})",
                        f(r, "bullmq.processes").unwrap_or(0.0),
                        f(r, "bullmq.concurrency").unwrap_or(0.0)
                    ),
                    b,
                ));
            }
            if let Some(p) = f(r, "physical.calls_per_s") {
                let x = best / p;
                rows.push(Row {
                    measure: format!(
                        "1. fan-out: Tarefas vs the physical limit (bare keep-alive HTTP loop, {} in flight)",
                        f(r, "physical.tasks").unwrap_or(0.0)
                    ),
                    tarefas: format!("{} items/s", num(best)),
                    baseline: format!("{} calls/s", num(p)),
                    ratio: format!("{x:.2}"),
                    target: "≥ 0.10".into(),
                    met: Some(x >= 0.10),
                });
                bars.push(("physical limit (bare loop)".into(), p));
            }
        }
        for key in ["rate_tarefas", "rate_bullmq"] {
            let Some(limit) = f(r, &format!("{key}.limit_per_s")) else {
                continue;
            };
            let ach = f(r, &format!("{key}.achieved_per_s")).unwrap_or(0.0);
            let worst = f(r, &format!("{key}.worst_window")).unwrap_or(0.0);
            let span = f(r, &format!("{key}.span_seconds")).unwrap_or(0.0);
            let procs = f(r, &format!("{key}.processes")).unwrap_or(0.0);
            let is_tarefas = key == "rate_tarefas";
            rows.push(Row {
                measure: format!(
                    "2. rate limit {limit}/s, {procs} {}: achieved over {span:.0} s / worst one-second window",
                    if is_tarefas { "`tarefas worker` processes" } else { "BullMQ workers, {max: 200, duration: 1000}" }
                ),
                tarefas: if is_tarefas { format!("{ach:.2}/s, worst {worst}") } else { "–".into() },
                baseline: if is_tarefas {
                    format!("limit {limit}/s")
                } else {
                    format!("{ach:.2}/s, worst {worst} (limit {limit}/s)")
                },
                ratio: format!("{:.3}", ach / limit),
                target: if is_tarefas { "within 2 %, no window > limit".into() } else { "(peer)".into() },
                met: is_tarefas.then_some((ach / limit - 1.0).abs() <= 0.02 && worst <= limit),
            });
        }
    }

    if let Some(p) = load(&args.dir, "planning") {
        let med = |side: &str| -> f64 {
            let mut v: Vec<f64> = p["comparison"][side]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            v.sort_by(f64::total_cmp);
            crate::measure::median(&v)
        };
        let ratio = f(&p, "comparison.ratio").unwrap_or(0.0);
        let target = f(&p, "comparison.target").unwrap_or(1.5);
        rows.push(Row {
            measure: format!(
                "3. planning the compound segment ({} of 1M contacts) into run items vs one INSERT … SELECT",
                num(f(&p, "items").unwrap_or(0.0))
            ),
            tarefas: secs(med("tarefas")),
            baseline: secs(med("hand")),
            ratio: format!("{ratio:.2}"),
            target: format!("≤ {target}"),
            met: Some(ratio <= target),
        });
    }

    if let Some(s) = load(&args.dir, "scheduler") {
        let p50 = f(&s, "lateness_p50").unwrap_or(0.0);
        let p99 = f(&s, "lateness_p99").unwrap_or(0.0);
        rows.push(Row {
            measure: format!(
                "4. scheduler, {} active tasks, {} fires due at minute starts: lateness p50 / p99 (max)",
                num(f(&s, "tasks").unwrap_or(0.0)),
                num(f(&s, "fires").unwrap_or(0.0))
            ),
            tarefas: format!("{} / {} ({})", secs(p50), secs(p99), secs(f(&s, "lateness_max").unwrap_or(0.0))),
            baseline: "–".into(),
            ratio: "–".into(),
            target: "p99 ≤ 1 s".into(),
            met: Some(p99 <= 1.0),
        });
        rows.push(Row {
            measure: "4. scheduler CPU over the measured minutes (user + system)".into(),
            tarefas: format!(
                "{:.1} % of a core, {:.0} ms per 1,000 fires",
                f(&s, "cpu_share").unwrap_or(0.0) * 100.0,
                f(&s, "cpu_ms_per_1000_fires").unwrap_or(0.0)
            ),
            baseline: "–".into(),
            ratio: "–".into(),
            target: "–".into(),
            met: None,
        });
    }

    if let Some(r) = &fanout {
        if let Some(ws) = r["memory"]["memory"].as_array() {
            let items = f(r, "memory.done").unwrap_or(0.0);
            let mib = |b: f64| b / 1048576.0;
            let peak = ws.iter().filter_map(|w| f(w, "peak")).fold(0.0, f64::max);
            let last = ws.iter().filter_map(|w| f(w, "last")).fold(0.0, f64::max);
            let slope = ws
                .iter()
                .filter_map(|w| f(w, "slope_per_100k_items"))
                .fold(0.0, |a: f64, b| a.max(b.abs()));
            rows.push(Row {
                measure: format!(
                    "5. worker memory through a {}-item run ({} workers): peak / final RSS, slope",
                    num(items),
                    ws.len()
                ),
                tarefas: format!(
                    "{:.1} / {:.1} MiB, {:+.2} MiB per 100k items",
                    mib(peak),
                    mib(last),
                    mib(slope)
                ),
                baseline: "–".into(),
                ratio: "–".into(),
                target: "≤ 64 MiB, flat".into(),
                met: Some(mib(peak) <= 64.0 && mib(slope) < 1.0),
            });
        }
        if let Some(ls) = r["latency"].as_array() {
            for l in ls {
                let c = f(l, "trial.concurrency").unwrap_or(0.0);
                let ms = f(l, "trial.latency_ms").unwrap_or(0.0);
                let ratio = f(l, "ratio").unwrap_or(0.0);
                rows.push(Row {
                    measure: format!("6. latency-bound: fake at {ms} ms, one worker of concurrency {c}, vs C ÷ latency"),
                    tarefas: format!("{} items/s", num(f(l, "trial.items_per_s").unwrap_or(0.0))),
                    baseline: format!("{} items/s", num(f(l, "ideal_items_per_s").unwrap_or(0.0))),
                    ratio: format!("{ratio:.2}"),
                    target: "follows C ÷ latency".into(),
                    met: None,
                });
            }
        }
    }

    if let Some(s) = load(&args.dir, "segment") {
        if let Some(cs) = s["comparisons"].as_array() {
            for c in cs {
                let name = c["name"].as_str().unwrap_or("");
                if !(name == "compound count" || name.starts_with("compound stream")) {
                    continue;
                }
                let ratio = f(c, "ratio").unwrap_or(0.0);
                let med = |side: &str| {
                    let v: Vec<f64> = c[side]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_f64).collect())
                        .unwrap_or_default();
                    crate::measure::median(&v)
                };
                rows.push(Row {
                    measure: format!("(segments) {name} over 1M contacts vs hand SQL"),
                    tarefas: secs(med("tarefas")),
                    baseline: secs(med("hand")),
                    ratio: format!("{ratio:.2}"),
                    target: format!("≤ {}", f(c, "target").unwrap_or(2.0)),
                    met: Some(ratio <= f(c, "target").unwrap_or(2.0)),
                });
            }
        }
    }

    let mut md = String::new();
    writeln!(md, "| measure | Tarefas | baseline | ratio | target | |")?;
    writeln!(md, "| --- | ---: | ---: | ---: | --- | --- |")?;
    for r in &rows {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            r.measure,
            r.tarefas,
            r.baseline,
            r.ratio,
            r.target,
            verdict(r.met)
        )?;
    }
    let missed: Vec<&Row> = rows.iter().filter(|r| r.met == Some(false)).collect();
    println!();
    print!("{md}");
    println!();
    if missed.is_empty() {
        println!("every target met");
    } else {
        println!("targets missed: {}", missed.len());
    }
    if let Some(d) = args.md.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&args.md, &md)?;

    let rates: Vec<(String, Vec<f64>, f64)> = fanout
        .iter()
        .flat_map(|r| {
            [
                ("Tarefas", "rate_tarefas"),
                ("BullMQ limiter", "rate_bullmq"),
            ]
            .into_iter()
            .filter_map(|(who, key)| {
                let per: Vec<f64> = r[key]["per_second"]
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_f64)
                    .collect();
                Some((who.to_string(), per, f(r, &format!("{key}.limit_per_s"))?))
            })
            .collect::<Vec<_>>()
        })
        .collect();
    std::fs::write(&args.svg, svg(&bars, &rates))?;
    println!(
        "chart: {}   table: {}",
        args.svg.display(),
        args.md.display()
    );
    if !missed.is_empty() && args.strict {
        std::process::exit(3);
    }
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart: horizontal bars of items/s per system (log scale: the bare loop and Celery
/// are two orders of magnitude apart), then calls per second under the rate limit.
fn svg(bars: &[(String, f64)], rates: &[(String, Vec<f64>, f64)]) -> String {
    let width = 860.0;
    let left = 250.0;
    let plot = width - left - 110.0;
    let bar_h = 26.0;
    let top = 50.0;
    let bars_h = top + bars.len() as f64 * (bar_h + 12.0) + 40.0;
    let rate_h = if rates.is_empty() { 0.0 } else { 300.0 };
    let height = bars_h + rate_h + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="24" font-size="16" font-weight="bold">Fan-out throughput, same machine, same fake Huggy, one run (items/s, log scale)</text>"#
    );
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let lo: f64 = 100.0;
    let scale =
        |v: f64| ((v.max(lo)).log10() - lo.log10()) / (max.log10() - lo.log10()).max(1e-9) * plot;
    // Decade grid lines.
    let mut d = lo;
    while d <= max * 1.0001 {
        let x = left + scale(d);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" fill="#777" font-size="11" text-anchor="middle">{}</text>"##,
            top - 8.0,
            bars_h - 30.0,
            bars_h - 16.0,
            num(d)
        );
        d *= 10.0;
    }
    for (i, (name, v)) in bars.iter().enumerate() {
        let y = top + i as f64 * (bar_h + 12.0);
        let w = scale(*v).max(1.0);
        let color = if name.starts_with("Tarefas") {
            "#1f77b4"
        } else if name.starts_with("physical") {
            "#999999"
        } else {
            "#ff7f0e"
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{left}" y="{y:.1}" width="{w:.1}" height="{bar_h}" fill="{color}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            left - 8.0,
            y + bar_h * 0.68,
            esc(name),
            left + w + 6.0,
            y + bar_h * 0.68,
            num(*v)
        );
    }
    if !rates.is_empty() {
        let y0 = bars_h + 10.0;
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}" font-size="16" font-weight="bold">Calls per second under a limit of {} calls/s (from the fake's call log)</text>"#,
            y0 + 14.0,
            rates[0].2
        );
        let ph = 220.0;
        let py = y0 + 40.0;
        let px = 60.0;
        let pw = width - px - 160.0;
        let maxn = rates.iter().map(|r| r.1.len()).max().unwrap_or(1).max(2) as f64;
        let ymax = rates
            .iter()
            .flat_map(|r| r.1.iter().copied())
            .fold(rates[0].2, f64::max)
            * 1.15;
        let yv = |v: f64| py + ph - v / ymax * ph;
        let _ = writeln!(
            s,
            r##"<rect x="{px}" y="{py}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>"##
        );
        let lim = rates[0].2;
        let _ = writeln!(
            s,
            r##"<line x1="{px}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#d62728" stroke-dasharray="5,4"/><text x="{:.1}" y="{:.1}" fill="#d62728">limit {lim}/s</text>"##,
            yv(lim),
            px + pw,
            yv(lim),
            px + pw + 6.0,
            yv(lim) + 4.0
        );
        for tick in [0.0, ymax / 2.0] {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#777" font-size="11">{:.0}</text>"##,
                px - 6.0,
                yv(tick) + 4.0,
                tick
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#777" font-size="11">seconds from the first call ({} s)</text>"##,
            px + pw / 2.0,
            py + ph + 18.0,
            maxn as usize
        );
        for (i, (name, per, _)) in rates.iter().enumerate() {
            let color = if name.starts_with("Tarefas") {
                "#1f77b4"
            } else {
                "#ff7f0e"
            };
            let pts: Vec<String> = per
                .iter()
                .enumerate()
                .map(|(k, v)| format!("{:.1},{:.1}", px + (k as f64 + 0.5) / maxn * pw, yv(*v)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"#,
                pts.join(" ")
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" fill="{color}">{}</text>"#,
                px + pw + 6.0,
                py + 40.0 + i as f64 * 18.0,
                esc(name)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(num(1234567.0), "1,234,567");
        assert_eq!(num(999.0), "999");
        assert_eq!(num(1000.0), "1,000");
    }

    #[test]
    fn chart_is_svg() {
        let s = svg(
            &[("Tarefas".into(), 12_000.0), ("Celery".into(), 800.0)],
            &[("Tarefas".into(), vec![199.0, 200.0], 200.0)],
        );
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("12,000") && s.contains("limit 200/s"));
    }
}
