//! The report's plots, drawn with `plotters` into SVG strings: latency of every op over time
//! (colour = op type, marker = outcome), and throughput per second by outcome. Nemesis
//! windows are shaded behind both.

use plotters::prelude::*;

use crate::nemesis::Window;
use crate::{History, Op, OpKind, Outcome, TxnStep};

const W: u32 = 1100;
const H: u32 = 420;
const NS: f64 = 1e9;

fn type_of(op: &Op) -> &'static str {
    match op.kind {
        OpKind::Get { .. } => "get",
        OpKind::Put { .. } => "put",
        OpKind::Delete { .. } => "delete",
        OpKind::Cas { .. } => "cas",
        OpKind::Txn { ref ops, .. } => {
            if ops.iter().all(|s| matches!(s, TxnStep::Get { .. })) {
                "txn read"
            } else {
                "txn write"
            }
        }
    }
}

fn outcome_of(op: &Op) -> &'static str {
    match op.outcome {
        Outcome::Ok(_) => "ok",
        Outcome::Failed => "fail",
        Outcome::Indeterminate => "info",
    }
}

fn type_color(t: &str) -> RGBColor {
    match t {
        "get" => RGBColor(31, 119, 180),
        "put" => RGBColor(44, 160, 44),
        "cas" => RGBColor(148, 103, 189),
        "txn read" => RGBColor(23, 190, 207),
        "txn write" => RGBColor(227, 119, 194),
        _ => RGBColor(140, 86, 75),
    }
}

fn outcome_color(o: &str) -> RGBColor {
    match o {
        "ok" => RGBColor(44, 160, 44),
        "fail" => RGBColor(214, 39, 40),
        _ => RGBColor(255, 127, 14),
    }
}

fn end_secs(history: &History, windows: &[Window]) -> f64 {
    let ops = history.ops().iter().map(|o| o.ret.unwrap_or(o.call));
    let wins = windows.iter().map(|w| w.end.unwrap_or(w.start));
    (ops.chain(wins).max().unwrap_or(0) as f64 / NS).max(1.0)
}

fn shade<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, impl Ranged<ValueType = f64>>,
    >,
    windows: &[Window],
    y: (f64, f64),
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for w in windows {
        let (s, e) = (w.start as f64 / NS, w.end.unwrap_or(w.start) as f64 / NS);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(s, y.0), (e, y.1)],
            RGBColor(255, 200, 200).mix(0.45).filled(),
        )))?;
    }
    Ok(())
}

/// Latency (ms, log scale) of each completed op against its start time.
pub fn latency(history: &History, windows: &[Window]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let points: Vec<(f64, f64, &Op)> = history
            .ops()
            .iter()
            .filter_map(|o| {
                let ret = o.ret?;
                let ms = ((ret - o.call) as f64 / 1e6).max(0.01);
                Some((o.call as f64 / NS, ms, o))
            })
            .collect();
        let ymax = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.5;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Latency of each op (ms) over time (s); shaded: nemesis active",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(
                0f64..end_secs(history, windows),
                (0.01f64..ymax).log_scale(),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("latency (ms)")
            .draw()
            .map_err(|e| e.to_string())?;
        shade(&mut chart, windows, (0.01, ymax)).map_err(|e| e.to_string())?;
        for t in ["get", "put", "cas", "delete", "txn read", "txn write"] {
            for o in ["ok", "fail", "info"] {
                let series: Vec<(f64, f64)> = points
                    .iter()
                    .filter(|p| type_of(p.2) == t && outcome_of(p.2) == o)
                    .map(|p| (p.0, p.1))
                    .collect();
                if series.is_empty() {
                    continue;
                }
                let c = type_color(t);
                let drawn = match o {
                    "ok" => chart.draw_series(
                        series
                            .iter()
                            .map(|&p| Circle::new(p, 2, c.mix(0.6).filled())),
                    ),
                    "fail" => chart.draw_series(
                        series
                            .iter()
                            .map(|&p| Cross::new(p, 4, RGBColor(214, 39, 40).stroke_width(1))),
                    ),
                    _ => chart.draw_series(
                        series
                            .iter()
                            .map(|&p| TriangleMarker::new(p, 4, RGBColor(255, 127, 14).filled())),
                    ),
                }
                .map_err(|e| e.to_string())?;
                drawn
                    .label(format!("{t} {o} ({})", series.len()))
                    .legend(move |(x, y)| Circle::new((x + 5, y), 4, c.filled()));
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Ops completed per second, one line per outcome.
pub fn throughput(history: &History, windows: &[Window]) -> Result<String, String> {
    let secs = end_secs(history, windows).ceil() as usize + 1;
    let mut buckets = [vec![0u32; secs], vec![0u32; secs], vec![0u32; secs]];
    for o in history.ops() {
        let at = (o.ret.unwrap_or(o.call) as f64 / NS) as usize;
        let i = match outcome_of(o) {
            "ok" => 0,
            "fail" => 1,
            _ => 2,
        };
        if let Some(b) = buckets[i].get_mut(at.min(secs - 1)) {
            *b += 1;
        }
    }
    let ymax = buckets.iter().flatten().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Throughput (ops completed per second); shaded: nemesis active",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..secs as f64, 0f64..ymax)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("ops/s")
            .draw()
            .map_err(|e| e.to_string())?;
        shade(&mut chart, windows, (0.0, ymax)).map_err(|e| e.to_string())?;
        for (i, name) in ["ok", "fail", "info"].iter().enumerate() {
            let c = outcome_color(name);
            chart
                .draw_series(LineSeries::new(
                    buckets[i]
                        .iter()
                        .enumerate()
                        .map(|(s, &n)| (s as f64 + 0.5, n as f64)),
                    c.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
