//! The run's metrics: one JSON object per line in `metrics.jsonl` (a
//! training step: `{"step","loss","lr_encoder","lr_head","grad_norm",
//! "sentences_per_s","elapsed_s"}`; a dev evaluation: `{"step","dev":
//! {"precision","recall","f1",...}}`), and `curve.svg`, the training loss
//! and dev F1 against the step.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use kogner_tensor::safetensors_io::write_atomic;
use kogner_tensor::{Error, Result};

pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Open `path` for appending, first dropping every line of a step after
    /// `keep_through` (lines a killed run wrote after its last checkpoint),
    /// or everything when `keep_through` is `None` (a fresh run).
    pub fn open(path: &Path, keep_through: Option<usize>) -> Result<MetricsLog> {
        let kept = match (keep_through, path.is_file()) {
            (Some(step), true) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
                let mut kept = String::new();
                // A line cut by the kill does not parse: it is dropped too.
                for line in text.lines() {
                    let s = serde_json::from_str::<Value>(line).ok().and_then(|v| v["step"].as_u64());
                    if s.is_some_and(|s| s as usize <= step) {
                        kept.push_str(line);
                        kept.push('\n');
                    }
                }
                kept
            }
            _ => String::new(),
        };
        write_atomic(path, kept.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path).map_err(|e| Error::file(path, e))?;
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    pub fn append(&mut self, record: &Value) -> Result<()> {
        writeln!(self.file, "{record}").map_err(|e| Error::file(&self.path, e))
    }

    /// Flush to disk (before a checkpoint names these lines as written).
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::file(&self.path, e))
    }

    /// Every record so far.
    pub fn records(&self) -> Result<Vec<Value>> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| Error::file(&self.path, e))?;
        Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
    }
}

/// An SVG plot of the training loss (left axis, a moving average over 1%
/// of the steps) and the dev F1 (right axis, 0–100) against the step.
pub fn curve_svg(records: &[Value]) -> String {
    let losses: Vec<(f64, f64)> = records.iter().filter_map(|r| Some((r["step"].as_f64()?, r["loss"].as_f64()?))).collect();
    let f1s: Vec<(f64, f64)> = records.iter().filter_map(|r| Some((r["step"].as_f64()?, 100.0 * r["dev"]["f1"].as_f64()?))).collect();
    let window = (losses.len() / 100).max(1);
    let smooth: Vec<(f64, f64)> = (0..losses.len())
        .map(|i| {
            let lo = i.saturating_sub(window - 1);
            let mean = losses[lo..=i].iter().map(|p| p.1).sum::<f64>() / (i + 1 - lo) as f64;
            (losses[i].0, mean)
        })
        .collect();
    let (w, h, left, right, top, bottom) = (800.0, 400.0, 70.0, 60.0, 30.0, 50.0);
    let max_step = losses.iter().chain(&f1s).map(|p| p.0).fold(1.0, f64::max);
    let max_loss = smooth.iter().map(|p| p.1).fold(f64::MIN_POSITIVE, f64::max);
    let x = |s: f64| left + (w - left - right) * s / max_step;
    let y_loss = |l: f64| top + (h - top - bottom) * (1.0 - l / max_loss);
    let y_f1 = |f: f64| top + (h - top - bottom) * (1.0 - f / 100.0);
    let mut svg = String::new();
    let _ = writeln!(svg, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#);
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(svg, r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, h - bottom, w - right, h - bottom);
    let _ = writeln!(svg, r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#, h - bottom);
    let _ = writeln!(svg, r#"<line x1="{}" y1="{top}" x2="{}" y2="{}" stroke="black"/>"#, w - right, w - right, h - bottom);
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">{:.0}</text>"#, x(f * max_step), h - bottom + 18.0, f * max_step);
        let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="end" fill="steelblue">{:.3}</text>"#, left - 6.0, y_loss(f * max_loss) + 4.0, f * max_loss);
        let _ = writeln!(svg, r#"<text x="{}" y="{}" fill="darkorange">{:.0}</text>"#, w - right + 6.0, y_f1(100.0 * f) + 4.0, 100.0 * f);
    }
    let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">step</text>"#, (left + w - right) / 2.0, h - 12.0);
    let _ = writeln!(svg, r#"<text x="{left}" y="18" fill="steelblue">training loss (moving average)</text>"#);
    let _ = writeln!(svg, r#"<text x="{}" y="18" text-anchor="end" fill="darkorange">dev F1 (%)</text>"#, w - right);
    let polyline = |pts: &[(f64, f64)], y: &dyn Fn(f64) -> f64, color: &str| {
        let points: Vec<String> = pts.iter().map(|&(s, v)| format!("{:.1},{:.1}", x(s), y(v))).collect();
        format!(r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#, points.join(" "))
    };
    let _ = writeln!(svg, "{}", polyline(&smooth, &y_loss, "steelblue"));
    let _ = writeln!(svg, "{}", polyline(&f1s, &y_f1, "darkorange"));
    for &(s, f) in &f1s {
        let _ = writeln!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="darkorange"/>"#, x(s), y_f1(f));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reopening_drops_lines_after_the_checkpoint_and_cut_lines() {
        let dir = std::env::temp_dir().join(format!("kogner-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, None).unwrap();
        for s in 1..=5 {
            log.append(&json!({"step": s, "loss": 1.0 / s as f64})).unwrap();
        }
        log.append(&json!({"step": 4, "dev": {"f1": 0.5}})).unwrap();
        drop(log);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"step\": 6, \"lo"); // a line the kill cut
        std::fs::write(&path, text).unwrap();
        let log = MetricsLog::open(&path, Some(4)).unwrap();
        let steps: Vec<u64> = log.records().unwrap().iter().map(|r| r["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, vec![1, 2, 3, 4, 4]);
        let svg = curve_svg(&log.records().unwrap());
        assert!(svg.starts_with("<svg") && svg.contains("<polyline") && svg.contains("<circle"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
