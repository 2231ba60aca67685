//! The system page's charts, drawn on the server as SVG (plotters), readable without
//! script, each with its figures in a table beside it (for screen readers and for
//! copying). Every chart reads a bounded set of rows whatever the log's size: the
//! activity rows of 90 days (`register::activity`) and the latest 200 tests.
//!
//! - decisions per day, one line per model version;
//! - each test figure an evaluator decides on, over time, against the threshold that
//!   test applied (dashed), passing points green and failing ones red; figures another
//!   tool reported, with that tool's verdicts;
//! - human oversight per ISO week: the share of reviewed decisions accepted as proposed,
//!   and the median review time.

use std::collections::BTreeMap;

use maud::{html, Markup, PreEscaped};
use plotters::prelude::*;
use serde_json::Value;

use crate::api::State;
use crate::error::AppError;
use crate::register::projections;

/// Days of activity a chart shows.
pub const DAYS: u32 = 90;
/// Tests a chart shows at most (the latest).
pub const TESTS: usize = 200;

const DAY_MICROS: f64 = 86_400_000_000.0;
const PALETTE: [RGBColor; 6] = [
    RGBColor(11, 92, 173),
    RGBColor(138, 90, 0),
    RGBColor(102, 51, 153),
    RGBColor(0, 121, 107),
    RGBColor(164, 14, 38),
    RGBColor(87, 96, 106),
];
const PASS: RGBColor = RGBColor(26, 127, 55);
const FAIL: RGBColor = RGBColor(164, 14, 38);

/// A chart: its title, the SVG, and its figures as a table.
pub struct Chart {
    pub title: String,
    pub svg: String,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Chart {
    pub fn render(&self) -> Markup {
        html! {
            figure.chart {
                figcaption { (self.title) }
                (PreEscaped(&self.svg))
                details {
                    summary { "The figures" }
                    table {
                        thead { tr { @for c in &self.columns { th scope="col" { (c) } } } }
                        tbody { @for r in &self.rows { tr { @for v in r { td { (v) } } } } }
                    }
                }
            }
        }
    }
}

/// What one plot draws.
#[derive(Default)]
struct Plot {
    y_desc: String,
    /// Solid lines with their points, one colour each, named in the legend.
    lines: Vec<(String, Vec<(f64, f64)>)>,
    /// The pass threshold, dashed.
    threshold: Vec<(f64, f64)>,
    /// Points coloured by verdict.
    verdicts: Vec<(f64, f64, bool)>,
    /// The y axis starts at 0 and reaches at least this.
    y_min_top: f64,
    /// Counts: the y axis is labelled in whole numbers.
    counts: bool,
}

fn date(day: f64) -> String {
    chrono::DateTime::from_timestamp((day * 86_400.0) as i64, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Draw `p` as an SVG document titled `title` (for assistive technology).
fn draw(title: &str, p: &Plot) -> Result<String, AppError> {
    let xs = p
        .lines
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|q| q.0))
        .chain(p.threshold.iter().map(|q| q.0))
        .chain(p.verdicts.iter().map(|q| q.0));
    let (mut x0, mut x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 - x0 < 1.0 {
        (x0, x1) = (x0 - 0.5, x1 + 0.5);
    }
    let ys = p
        .lines
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|q| q.1))
        .chain(p.threshold.iter().map(|q| q.1))
        .chain(p.verdicts.iter().map(|q| q.1));
    let top = ys.fold(p.y_min_top, f64::max) * 1.1;
    let top = if top > 0.0 { top } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 280)).into_drawing_area();
        let fail = |e: &dyn std::fmt::Display| AppError::internal(format!("chart: {e}"));
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .margin_right(48)
            .x_label_area_size(32)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, 0.0..top)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_labels(6)
            .x_label_formatter(&|d| date(*d))
            .y_label_formatter(&|y| {
                if p.counts {
                    format!("{y:.0}")
                } else {
                    format!("{y}")
                }
            })
            .y_desc(p.y_desc.as_str())
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| fail(&e))?;
        for (i, (name, pts)) in p.lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| fail(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|q| Circle::new(*q, 3, color.filled())))
                .map_err(|e| fail(&e))?;
        }
        if !p.threshold.is_empty() {
            chart
                .draw_series(DashedLineSeries::new(
                    p.threshold.clone(),
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(|e| fail(&e))?
                .label("pass threshold")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
        }
        if !p.verdicts.is_empty() {
            for (passed, name, color) in [(true, "passed", PASS), (false, "failed", FAIL)] {
                let pts: Vec<_> = p.verdicts.iter().filter(|v| v.2 == passed).collect();
                if pts.is_empty() {
                    continue;
                }
                chart
                    .draw_series(
                        pts.iter()
                            .map(|v| Circle::new((v.0, v.1), 4, color.filled())),
                    )
                    .map_err(|e| fail(&e))?
                    .label(name)
                    .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    // Named for assistive technology; the table beside it holds the figures.
    Ok(svg.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-label=\"{}\" ", escape(title)),
        1,
    ))
}

/// The last day with a decision of `system`, or today.
fn last_day(state: &State, system: &str) -> Result<u32, AppError> {
    let today = projections::activity::day_of(crate::log::sequencer::now_micros());
    Ok(projections::activity::last_day(&**state.ledger.store(), system)?.unwrap_or(today))
}

/// Every chart of the system page.
pub fn system_charts(state: &State, system: &str) -> Result<Vec<Chart>, AppError> {
    let store = &**state.ledger.store();
    let to = last_day(state, system)?;
    let from = to.saturating_sub(DAYS - 1);
    let mut charts = Vec::new();
    charts.extend(decisions_chart(&projections::activity::decisions_per_day(
        store, system, from, to,
    )?)?);
    charts.extend(oversight_charts(
        &projections::activity::oversight_per_week(store, system, from, to)?,
    )?);
    charts.extend(test_charts(&recent_tests(state, system)?)?);
    Ok(charts)
}

fn decisions_chart(days: &BTreeMap<u32, BTreeMap<String, u64>>) -> Result<Option<Chart>, AppError> {
    if days.is_empty() {
        return Ok(None);
    }
    // Each version's line runs over every day from its first decision to its last in
    // the window, a day without decisions at 0.
    let mut span: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut rows = Vec::new();
    for (day, versions) in days {
        for (v, n) in versions {
            let s = span.entry(v).or_insert((*day, *day));
            s.1 = *day;
            rows.push(vec![date(f64::from(*day)), v.clone(), n.to_string()]);
        }
    }
    let by_version: Vec<(&str, Vec<(f64, f64)>)> = span
        .into_iter()
        .map(|(v, (first, last))| {
            let pts = (first..=last)
                .map(|d| {
                    let n = days.get(&d).and_then(|m| m.get(v)).copied().unwrap_or(0);
                    (f64::from(d), n as f64)
                })
                .collect();
            (v, pts)
        })
        .collect();
    let title = "Decisions per day, by model version";
    let plot = Plot {
        y_desc: "decisions".into(),
        lines: by_version
            .into_iter()
            .map(|(v, pts)| (format!("version {v}"), pts))
            .collect(),
        y_min_top: 1.0,
        counts: true,
        ..Default::default()
    };
    Ok(Some(Chart {
        title: title.into(),
        svg: draw(title, &plot)?,
        columns: vec!["Day (UTC)", "Model version", "Decisions"],
        rows,
    }))
}

fn oversight_charts(
    weeks: &BTreeMap<u32, projections::activity::Oversight>,
) -> Result<Vec<Chart>, AppError> {
    if weeks.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    let (mut share, mut median) = (Vec::new(), Vec::new());
    for (week, o) in weeks {
        let x = f64::from(*week);
        let s = o.accepted_share();
        let m = o.median_ms();
        if let Some(s) = s {
            share.push((x, s * 100.0));
        }
        if let Some(m) = m {
            median.push((x, m as f64 / 1000.0));
        }
        rows.push(vec![
            date(x),
            o.reviewed.to_string(),
            s.map(|s| format!("{:.1} %", s * 100.0)).unwrap_or_default(),
            m.map(|m| format!("{:.1} s", m as f64 / 1000.0))
                .unwrap_or_default(),
        ]);
    }
    let columns = vec![
        "Week from (UTC)",
        "Reviewed",
        "Accepted as proposed",
        "Median review time",
    ];
    let t1 = "Human oversight per week: share accepted as proposed";
    let t2 = "Human oversight per week: median review time (within 3.2 %)";
    Ok(vec![
        Chart {
            title: t1.into(),
            svg: draw(
                t1,
                &Plot {
                    y_desc: "% accepted".into(),
                    lines: vec![("accepted as proposed".into(), share)],
                    y_min_top: 100.0 / 1.1,
                    ..Default::default()
                },
            )?,
            columns: columns.clone(),
            rows: rows.clone(),
        },
        Chart {
            title: t2.into(),
            svg: draw(
                t2,
                &Plot {
                    y_desc: "seconds".into(),
                    lines: vec![("median review time".into(), median)],
                    ..Default::default()
                },
            )?,
            columns,
            rows,
        },
    ])
}

/// One recorded test, as a chart reads it.
struct TestPoint {
    index: u64,
    day: f64,
    version: String,
    evaluator: String,
    params: Value,
    figures: Value,
    passed: bool,
}

/// The latest [`TESTS`] tests of `system`, across its versions, oldest first.
fn recent_tests(state: &State, system: &str) -> Result<Vec<TestPoint>, AppError> {
    let store = &**state.ledger.store();
    let mut ids = Vec::new();
    for v in projections::models::list(store, system)? {
        ids.extend(projections::models::test_ids(
            store,
            system,
            &v.spec.version,
        )?);
    }
    ids.sort_unstable();
    let keep = ids.len().saturating_sub(TESTS);
    let mut out = Vec::new();
    for index in &ids[keep..] {
        let Some(bytes) = state.ledger.entry(*index)? else {
            continue;
        };
        let e = crate::log::entry::entry_json(&bytes).map_err(AppError::internal)?;
        let b = &e["body"];
        out.push(TestPoint {
            index: *index,
            day: e["time"].as_f64().unwrap_or(0.0) / DAY_MICROS,
            version: b["version"].as_str().unwrap_or_default().to_owned(),
            evaluator: b["evaluator"].as_str().unwrap_or_default().to_owned(),
            params: b["params"].clone(),
            figures: b["figures"].clone(),
            passed: b["passed"] == true,
        });
    }
    Ok(out)
}

/// One chart per evaluator (its deciding figure against each test's threshold), and
/// per figure another tool reported (against that tool's verdicts).
fn test_charts(tests: &[TestPoint]) -> Result<Vec<Chart>, AppError> {
    let mut groups: BTreeMap<(String, String), Vec<&TestPoint>> = BTreeMap::new();
    for t in tests {
        let rule = crate::evaluators::registry()
            .get(&t.evaluator)
            .and_then(|e| e.info().pass_rule);
        match rule {
            Some(r) => groups
                .entry((t.evaluator.clone(), r.figure.clone()))
                .or_default()
                .push(t),
            None => {
                for (name, v) in t.figures.as_object().into_iter().flatten() {
                    if v.is_number() {
                        groups
                            .entry((t.evaluator.clone(), name.clone()))
                            .or_default()
                            .push(t);
                    }
                }
            }
        }
    }
    let mut charts = Vec::new();
    for ((evaluator, figure), ts) in groups {
        let rule = crate::evaluators::registry()
            .get(&evaluator)
            .and_then(|e| e.info().pass_rule);
        let mut plot = Plot {
            y_desc: figure.clone(),
            ..Default::default()
        };
        let mut rows = Vec::new();
        for t in ts {
            let (value, threshold) = match &rule {
                Some(r) => match r.read(&t.params, &t.figures) {
                    Some((v, th)) => (v, Some(th)),
                    None => continue,
                },
                None => match t.figures[&figure].as_f64() {
                    Some(v) => (v, None),
                    None => continue,
                },
            };
            plot.verdicts.push((t.day, value, t.passed));
            if let Some(th) = threshold {
                plot.threshold.push((t.day, th));
            }
            rows.push(vec![
                t.index.to_string(),
                date(t.day),
                t.version.clone(),
                value.to_string(),
                threshold
                    .map(|th| th.to_string())
                    .unwrap_or_else(|| "the tool's".into()),
                if t.passed { "passed" } else { "failed" }.into(),
            ]);
        }
        if rows.is_empty() {
            continue;
        }
        let title = match &rule {
            Some(r) => format!(
                "{evaluator}: {figure} per test, passing {} the threshold the test applied ({})",
                match r.passes {
                    crate::evaluators::Passes::Below => "below",
                    crate::evaluators::Passes::AtOrBelow => "at or below",
                    crate::evaluators::Passes::Above => "above",
                    crate::evaluators::Passes::AtOrAbove => "at or above",
                },
                r.param
            ),
            None => format!("{evaluator}: {figure} per test, with the reporting tool's verdicts"),
        };
        charts.push(Chart {
            svg: draw(&title, &plot)?,
            title,
            columns: vec![
                "Test (entry)",
                "Recorded (UTC)",
                "Model version",
                "Figure",
                "Threshold",
                "Verdict",
            ],
            rows,
        });
    }
    Ok(charts)
}
