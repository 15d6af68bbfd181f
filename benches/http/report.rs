//! The report from every round's loads: the markdown tables and the latency chart.
//!
//! `loads[row][round]`, where row 0 is the reference and every row ran every round.

use std::fmt::Write as _;
use std::path::Path;

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::common::{self, Spread};
use crate::wrk::{self, Load};
use crate::{Result, Row, Settings, PATH};

/// The latency target for memory hits at 64 connections, in ms.
const P99_GOAL_MS: f64 = 1.5;

/// Targets on requests/s, each the median of within-round ratios: (row, over row, goal).
const RATIO_TARGETS: [(&str, &str, f64); 6] = [
    ("memory", "reference", 0.92),
    ("memcache", "memory", 0.95),
    ("wasm", "memory", 0.80),
    ("redis", "memory", 0.50),
    ("memory+redis", "memory", 0.90),
    ("memory", "memory-log-error", 0.80),
];

/// A statistic of one row over its rounds.
fn over(loads: &[Load], stat: fn(&Load) -> f64) -> Spread {
    Spread::of(loads.iter().map(stat)).expect("every row ran every round")
}

/// Row `a`'s requests/s over row `b`'s within each round, over the rounds.
fn ratio(loads: &[Vec<Load>], a: usize, b: usize) -> Spread {
    let rounds = loads[a].iter().zip(&loads[b]);
    Spread::of(rounds.map(|(a, b)| a.rps / b.rps)).expect("every row ran every round")
}

/// The report in markdown; `date` and `commit` say what was measured when.
pub fn markdown(
    s: &Settings,
    rows: &[Row],
    loads: &[Vec<Load>],
    date: &str,
    commit: &str,
) -> String {
    let index = |key: &str| rows.iter().position(|row| row.key == key);
    let mut out = format!(
        "## fibcache load report\n\n\
         {date}, commit {commit}, features: {}. `{}` on `GET {PATH}` (every fibcache row runs \
         with `--cache-ttl 1h`, so that every request is a hit except with `nop`), after {} s of \
         warm-up per row, in {} round(s) that each run every row once, round r starting at row \
         r mod {}. \
         wrk and the servers share {} CPUs: compare ratios, not absolute figures across \
         machines.\n\n\
         Each figure is the median over the rounds, with its range (min–max). `× reference` is \
         the median of the within-round ratios of requests/s (the row's over the reference's \
         in the same round), with their range.\n\n\
         | row | requests/s: median (min–max) | × reference: median of round ratios (min–max) \
         | p50 ms: median (min–max) | p99 ms: median (min–max) | errors, all rounds |\n\
         |---|---:|---:|---:|---:|---:|\n",
        common::features().join(", "),
        wrk::command_line(s.secs),
        s.warmup,
        s.rounds,
        rows.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    for (i, (row, runs)) in rows.iter().zip(loads).enumerate() {
        let versus = if i == 0 {
            "1 (itself)".to_owned()
        } else {
            ratio(loads, i, 0).show(2)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {versus} | {} | {} | {} |",
            row.title,
            over(runs, |l| l.rps).show(0),
            over(runs, |l| l.p50_ms).show(2),
            over(runs, |l| l.p99_ms).show(2),
            runs.iter().map(|l| l.errors).sum::<u64>(),
        );
    }

    out.push_str("\n### Targets\n\n| target | measured | goal | met |\n|---|---:|---:|:---:|\n");
    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    for (a, b, goal) in RATIO_TARGETS {
        let (shown, ok) = match (index(a), index(b)) {
            (Some(i), Some(j)) => {
                let r = ratio(loads, i, j);
                (r.show(2), met(r.median >= goal))
            }
            _ => ("not measured".to_owned(), "—"),
        };
        let what = format!("`{a}` / `{b}`, requests/s: median of round ratios (min–max)");
        let _ = writeln!(out, "| {what} | {shown} | ≥ {goal:.2} | {ok} |");
    }
    let (shown, ok) = match index("memory") {
        Some(i) => {
            let (p99, reference) = (over(&loads[i], |l| l.p99_ms), over(&loads[0], |l| l.p99_ms));
            let shown = format!("{}; reference {}", p99.show(2), reference.show(2));
            (shown, met(p99.median <= P99_GOAL_MS))
        }
        None => ("not measured".to_owned(), "—"),
    };
    let what = "`memory` p99 ms: median over rounds (min–max)";
    let _ = writeln!(out, "| {what} | {shown} | ≤ {P99_GOAL_MS} | {ok} |");
    out
}

/// Writes an SVG chart of p50 and p99 per row: bars at the medians, whiskers over the range,
/// and the p99 target as a dashed line.
///
/// # Errors
/// When the file cannot be written.
pub fn chart(path: &Path, s: &Settings, rows: &[Row], loads: &[Vec<Load>]) -> Result<()> {
    let p50: Vec<Spread> = loads.iter().map(|r| over(r, |l| l.p50_ms)).collect();
    let p99: Vec<Spread> = loads.iter().map(|r| over(r, |l| l.p99_ms)).collect();
    let n = rows.len() as f64;
    // Headroom above the highest whisker, for the legend.
    let top = p99.iter().map(|s| s.max).fold(P99_GOAL_MS, f64::max) * 1.35;
    // Wide enough for the caption whatever the number of rows.
    let width = (140 * rows.len() as u32 + 120).max(840);
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "latency, GET {PATH}: median of {} round(s), range as whiskers ({})",
        s.rounds,
        wrk::command_line(s.secs)
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5..n - 0.5, 0.0..top)?;
    // One label per row, at the integer positions the bars are centred on.
    let label = |x: &f64| match rows.get(x.round() as usize) {
        Some(row) if (x - x.round()).abs() < 1e-9 => row.key.to_owned(),
        _ => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh()
        .x_labels(rows.len())
        .x_label_formatter(&label);
    mesh.y_desc("ms").draw()?;
    let series = [
        ("p50", &p50, -0.4, RGBColor(78, 121, 167)),
        ("p99", &p99, 0.0, RGBColor(225, 87, 89)),
    ];
    for (name, spreads, offset, color) in series {
        let x = |i: usize| i as f64 + offset;
        let bars = spreads.iter().enumerate().map(|(i, s)| {
            Rectangle::new(
                [(x(i) + 0.02, 0.0), (x(i) + 0.38, s.median)],
                color.filled(),
            )
        });
        chart
            .draw_series(bars)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart.draw_series(
            spreads.iter().enumerate().map(|(i, s)| {
                ErrorBar::new_vertical(x(i) + 0.2, s.min, s.median, s.max, BLACK, 10)
            }),
        )?;
    }
    let goal = [(-0.5, P99_GOAL_MS), (n - 0.5, P99_GOAL_MS)];
    chart
        .draw_series([DashedPathElement::new(goal, 6, 4, RED)])?
        .label(format!("memory p99 target ({P99_GOAL_MS} ms)"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], RED));
    let mut legend = chart.configure_series_labels();
    legend.position(SeriesLabelPosition::UpperLeft);
    legend.background_style(WHITE).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
