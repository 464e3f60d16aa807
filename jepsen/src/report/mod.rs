//! A run's report: one directory with
//! - `history.jsonl`: every op, one JSON object per line ([`crate::History`]'s format);
//! - `nemesis.json`: the fault windows; `verdicts.json`: the checkers' verdicts;
//! - `summary.json`: the run's settings and counts;
//! - `nodes/n{i}.log`: each node's log (written there by the control layer);
//! - `index.html` (+ `latency.svg`, `throughput.svg`): readable offline in a browser.

pub mod plot;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checker::Verdict;
use crate::nemesis::Window;
use crate::{History, Outcome};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the history: {0}")]
    History(#[from] crate::HistoryError),
    #[error("encoding {0}: {1}")]
    Json(&'static str, serde_json::Error),
    #[error("drawing {0}: {1}")]
    Plot(&'static str, String),
}

/// The settings and counts of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub workload: String,
    pub nemeses: Vec<String>,
    pub nodes: u64,
    pub clients: u64,
    pub seconds: f64,
    pub network: String,
    pub ops: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    /// true / false / null (unknown): all verdicts together.
    pub valid: Option<bool>,
    pub seed: u64,
    /// Anything that went wrong in the harness itself (e.g. a nemesis that could not run).
    pub notes: Vec<String>,
}

impl Summary {
    pub fn counts(history: &History) -> (usize, usize, usize) {
        history
            .ops()
            .iter()
            .fold((0, 0, 0), |(ok, fail, info), o| match o.outcome {
                Outcome::Ok(_) => (ok + 1, fail, info),
                Outcome::Failed => (ok, fail + 1, info),
                Outcome::Indeterminate => (ok, fail, info + 1),
            })
    }

    /// The one line printed per run.
    pub fn line(&self, dir: &Path) -> String {
        let valid = match self.valid {
            Some(true) => "true",
            Some(false) => "FALSE",
            None => "unknown",
        };
        format!(
            "run: workload={} nemesis={} time={:.0}s ops={} (ok {}, fail {}, info {}) valid={} net={} report={}",
            self.workload,
            if self.nemeses.is_empty() { "none".into() } else { self.nemeses.join(",") },
            self.seconds,
            self.ops,
            self.ok,
            self.fail,
            self.info,
            valid,
            if self.network.starts_with("LOOPBACK") { "loopback" } else { "netns" },
            dir.display()
        )
    }
}

/// All verdicts together: false if any is false, else unknown if any is unknown.
pub fn overall(verdicts: &[Verdict]) -> Option<bool> {
    if verdicts.iter().any(|v| v.valid == Some(false)) {
        Some(false)
    } else if verdicts.iter().any(|v| v.valid.is_none()) || verdicts.is_empty() {
        None
    } else {
        Some(true)
    }
}

fn write(path: PathBuf, data: &[u8]) -> Result<(), ReportError> {
    std::fs::write(&path, data).map_err(|source| ReportError::Io { path, source })
}

fn json<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, ReportError> {
    serde_json::to_vec_pretty(v).map_err(|e| ReportError::Json(what, e))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes every file of the report into `dir` (which exists; `nodes/` may already hold logs).
pub fn write_report(
    dir: &Path,
    summary: &Summary,
    history: &History,
    windows: &[Window],
    verdicts: &[Verdict],
) -> Result<(), ReportError> {
    history.save(dir.join("history.jsonl"))?;
    write(
        dir.join("nemesis.json"),
        &json("nemesis windows", &windows)?,
    )?;
    write(dir.join("verdicts.json"), &json("verdicts", &verdicts)?)?;
    write(dir.join("summary.json"), &json("summary", summary)?)?;
    let latency = plot::latency(history, windows).map_err(|e| ReportError::Plot("latency", e))?;
    let throughput =
        plot::throughput(history, windows).map_err(|e| ReportError::Plot("throughput", e))?;
    write(dir.join("latency.svg"), latency.as_bytes())?;
    write(dir.join("throughput.svg"), throughput.as_bytes())?;
    write(
        dir.join("index.html"),
        html(dir, summary, windows, verdicts, &latency, &throughput).as_bytes(),
    )
}

fn html(
    dir: &Path,
    s: &Summary,
    windows: &[Window],
    verdicts: &[Verdict],
    latency: &str,
    throughput: &str,
) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>atoll-jepsen: {w} / {n}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}\
         .ok{{color:#197a19}}.bad{{color:#c21a1a;font-weight:bold}}.unk{{color:#b36b00}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}table{{border-collapse:collapse}}\
         pre{{background:#f6f6f6;padding:8px;overflow-x:auto}}</style></head><body>\
         <h1>atoll-jepsen run: workload <code>{w}</code>, nemesis <code>{n}</code></h1>",
        w = esc(&s.workload),
        n = esc(&if s.nemeses.is_empty() { "none".into() } else { s.nemeses.join(",") }),
    );
    let (class, word) = match s.valid {
        Some(true) => ("ok", "valid"),
        Some(false) => ("bad", "INVALID"),
        None => ("unk", "unknown"),
    };
    let _ = write!(
        h,
        "<p class=\"{class}\" id=\"verdict\">Verdict: {word}</p>\
         <table><tr><th>nodes</th><td>{}</td></tr><tr><th>clients</th><td>{}</td></tr>\
         <tr><th>duration</th><td>{:.1} s</td></tr><tr><th>network</th><td>{}</td></tr>\
         <tr><th>ops</th><td>{} (ok {}, fail {}, info {})</td></tr><tr><th>seed</th><td>{}</td></tr></table>",
        s.nodes, s.clients, s.seconds, esc(&s.network), s.ops, s.ok, s.fail, s.info, s.seed
    );
    for note in &s.notes {
        let _ = write!(h, "<p class=\"unk\">Note: {}</p>", esc(note));
    }
    h.push_str("<h2>Verdicts</h2>");
    for v in verdicts {
        let class = match v.valid {
            Some(true) => "ok",
            Some(false) => "bad",
            None => "unk",
        };
        let _ = write!(
            h,
            "<h3 class=\"{class}\">{}: valid = {}</h3><p>{}</p>",
            esc(&v.checker),
            v.word(),
            esc(&v.summary)
        );
        if !v.details.is_empty() {
            let _ = write!(h, "<pre>{}</pre>", esc(&v.details.join("\n")));
        }
    }
    let _ = write!(h, "<h2>Latency</h2><div id=\"latency\">{latency}</div>");
    let _ = write!(
        h,
        "<h2>Throughput</h2><div id=\"throughput\">{throughput}</div>"
    );
    h.push_str("<h2>Nemesis windows</h2><table><tr><th>start (s)</th><th>end (s)</th><th>nemesis</th><th>what</th><th>error</th></tr>");
    for w in windows {
        let _ = write!(
            h,
            "<tr><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            w.start as f64 / 1e9,
            w.end
                .map_or("-".into(), |e| format!("{:.1}", e as f64 / 1e9)),
            esc(&w.nemesis),
            esc(&w.what),
            esc(w.error.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</table><h2>Files</h2><ul><li><a href=\"history.jsonl\">history.jsonl</a> (one op per line: client, kind, call/ret in ns since the start, outcome)</li>\
        <li><a href=\"verdicts.json\">verdicts.json</a></li><li><a href=\"nemesis.json\">nemesis.json</a></li><li><a href=\"summary.json\">summary.json</a></li>");
    if let Ok(rd) = std::fs::read_dir(dir.join("nodes")) {
        let mut logs: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        logs.sort();
        for l in logs {
            let _ = write!(h, "<li><a href=\"nodes/{0}\">nodes/{0}</a></li>", esc(&l));
        }
    }
    h.push_str("</ul></body></html>\n");
    h
}
