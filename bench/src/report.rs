//! Results as data: every benchmark returns tables of samples (min / median / max and the
//! ratio to the baseline measured in the same run), printed as they come, saved as JSON,
//! and rendered into docs/PERFORMANCE.md, so that no figure reaches the docs by hand.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    /// One value per repetition, in the table's unit.
    pub samples: Vec<f64>,
    /// The figure the others are compared with (at most one per table).
    #[serde(default)]
    pub baseline: bool,
    /// E.g. "generator-limited".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Row {
    pub fn new(name: impl Into<String>, samples: Vec<f64>) -> Self {
        Row {
            name: name.into(),
            samples,
            baseline: false,
            note: String::new(),
        }
    }

    pub fn baseline(mut self) -> Self {
        self.baseline = true;
        self
    }

    fn sorted(&self) -> Vec<f64> {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        s
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// The median (the mean of the middle two for an even count).
    pub fn median(&self) -> f64 {
        let s = self.sorted();
        match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Table {
    /// Short and stable ("forwarding-1-flow"), for scripts reading the JSON.
    pub id: String,
    pub title: String,
    /// What reproduces it alone.
    pub command: String,
    /// What it measures and how (Markdown).
    pub about: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub rows: Vec<Row>,
    /// The goal in words, and whether this run met it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub goal: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub verdict: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn figure(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{:.0}", v)
    } else if v.abs() >= 10.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

impl Table {
    pub fn baseline_median(&self) -> Option<f64> {
        self.rows.iter().find(|r| r.baseline).map(Row::median)
    }

    /// A row's median over the baseline's ("2.9x").
    pub fn ratio(&self, row: &Row) -> String {
        match self.baseline_median() {
            Some(b) if b > 0.0 && !row.baseline => format!("{:.2}x", row.median() / b),
            Some(_) if row.baseline => "1.00x (baseline)".into(),
            _ => "-".into(),
        }
    }

    pub fn print(&self) {
        println!();
        println!(
            "== {} ({}; {})",
            self.title,
            self.unit,
            if self.higher_is_better {
                "higher is better"
            } else {
                "lower is better"
            }
        );
        let width = self
            .rows
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        println!(
            "{:<width$} {:>11} {:>11} {:>11} {:>18}  n",
            "", "min", "median", "max", "ratio"
        );
        for r in &self.rows {
            println!(
                "{:<width$} {:>11} {:>11} {:>11} {:>18}  {}{}",
                r.name,
                figure(r.min()),
                figure(r.median()),
                figure(r.max()),
                self.ratio(r),
                r.samples.len(),
                if r.note.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", r.note)
                }
            );
        }
        if !self.goal.is_empty() {
            println!("goal: {} -> {}", self.goal, self.verdict);
        }
        for n in &self.notes {
            println!("note: {n}");
        }
    }

    fn markdown(&self, out: &mut String) {
        let _ = writeln!(out, "## {}\n", self.title);
        let _ = writeln!(out, "```sh\n{}\n```\n", self.command);
        let _ = writeln!(out, "{}\n", self.about.trim());
        let _ = writeln!(
            out,
            "| {} | min | median | max | ratio | n |\n| --- | ---: | ---: | ---: | ---: | ---: |",
            self.unit
        );
        for r in &self.rows {
            let name = if r.note.is_empty() {
                r.name.clone()
            } else {
                format!("{} ({})", r.name, r.note)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                name,
                figure(r.min()),
                figure(r.median()),
                figure(r.max()),
                self.ratio(r),
                r.samples.len()
            );
        }
        out.push('\n');
        if !self.goal.is_empty() {
            let _ = writeln!(
                out,
                "Goal: {}. This run: **{}**.\n",
                self.goal, self.verdict
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub kernel: String,
    pub command: String,
    pub quick: bool,
    pub tables: Vec<Table>,
}

/// "2 x Intel(R) Xeon(R) ..., 24 GiB".
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    let cores = cpu.lines().filter(|l| l.starts_with("processor")).count();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    format!("{cores} x {model}, {} GiB", (mem_kib + (1 << 19)) >> 20)
}

pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Report {
    pub fn save_json(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Puts `tables` (measured by one benchmark alone) into the report in `dir`, each in
    /// place of the one with its id, and regenerates its Markdown: the rest of the run's
    /// figures stay as they were.
    pub fn merge_into(dir: &Path, tables: &[Table]) -> Result<()> {
        let json = dir.join("performance.json");
        let mut report = Self::load_json(&json)?;
        for t in tables {
            let mut t = t.clone();
            t.notes.push(format!(
                "Measured alone on {}, after the run above.",
                now_utc()
            ));
            match report.tables.iter_mut().find(|x| x.id == t.id) {
                Some(old) => *old = t,
                None => report.tables.push(t),
            }
        }
        report.save_json(&json)?;
        std::fs::write(dir.join("PERFORMANCE.md"), report.markdown())
            .with_context(|| format!("writing {}", dir.join("PERFORMANCE.md").display()))
    }

    /// Like `merge_into`, for a run of some rows only (`--stack`): each row of `tables`
    /// replaces the row of the same name in the stored table, with its notes (those that
    /// start with the row's name); the other rows, notes and the verdict stay.
    pub fn merge_rows_into(dir: &Path, tables: &[Table]) -> Result<()> {
        let json = dir.join("performance.json");
        let mut report = Self::load_json(&json)?;
        for t in tables {
            let Some(old) = report.tables.iter_mut().find(|x| x.id == t.id) else {
                report.tables.push(t.clone());
                continue;
            };
            for row in &t.rows {
                let prefix = format!("{}:", row.name);
                match old.rows.iter_mut().find(|r| r.name == row.name) {
                    Some(r) => *r = row.clone(),
                    None => old.rows.push(row.clone()),
                }
                old.notes.retain(|n| !n.starts_with(&prefix));
                old.notes
                    .extend(t.notes.iter().filter(|n| n.starts_with(&prefix)).cloned());
                old.notes.push(format!(
                    "{} measured again alone on {}.",
                    row.name,
                    now_utc()
                ));
            }
        }
        report.save_json(&json)?;
        std::fs::write(dir.join("PERFORMANCE.md"), report.markdown())
            .with_context(|| format!("writing {}", dir.join("PERFORMANCE.md").display()))
    }

    pub fn load_json(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Performance\n\n\
             Generated by `{}` from `docs/performance.json`; do not edit by hand (the analysis\n\
             and the history of changes live in [PERFORMANCE-NOTES.md](PERFORMANCE-NOTES.md);\n\
             the brain's anomaly detection is judged in [DETECTION.md](DETECTION.md)).\n\
             Every figure below was measured in this one run, each beside its baseline.\n\n\
             - Date: {}\n- Machine: {}\n- Kernel: {}\n- Run: {}\n\n\
             min / median / max are over the repetitions (n); the ratio is the median over the\n\
             baseline's median.\n",
            self.command,
            self.date,
            self.machine,
            self.kernel,
            if self.quick {
                "--quick (fewer repetitions)"
            } else {
                "full"
            }
        );
        for t in &self.tables {
            t.markdown(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_ratios_and_markdown() {
        let t = Table {
            id: "t".into(),
            title: "T".into(),
            command: "x0-bench t".into(),
            about: "about".into(),
            unit: "packets/s".into(),
            higher_is_better: true,
            rows: vec![
                Row::new("kernel", vec![3.0, 1.0, 2.0]).baseline(),
                Row {
                    note: "generator-limited".into(),
                    ..Row::new("x0", vec![4.0, 8.0, 6.0, 10.0])
                },
            ],
            goal: ">= 3x".into(),
            verdict: "met".into(),
            notes: vec![],
        };
        assert_eq!(t.rows[0].median(), 2.0);
        assert_eq!(t.rows[1].median(), 7.0);
        assert_eq!(t.ratio(&t.rows[1]), "3.50x");
        let mut md = String::new();
        t.markdown(&mut md);
        assert!(
            md.contains("| x0 (generator-limited) | 4.00 | 7.00 | 10.0 | 3.50x | 4 |"),
            "{md}"
        );
        let r = Report {
            date: "d".into(),
            machine: machine(),
            kernel: kernel(),
            command: "c".into(),
            quick: true,
            tables: vec![t],
        };
        let dir = std::env::temp_dir().join(format!("x0-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        r.save_json(&dir.join("r.json")).unwrap();
        let back = Report::load_json(&dir.join("r.json")).unwrap();
        assert_eq!(back.markdown(), r.markdown());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
