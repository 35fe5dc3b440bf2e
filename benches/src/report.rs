//! The report both halves of the suite fill in: checks, sections of text and
//! tables, and plots; rendered to the terminal and to `BENCHMARKS.md` plus
//! PNG files.
//!
//! What a reader of BENCHMARKS.md sees, in order: how it was produced (the
//! command, the machine, crate versions, how busy the machine was), the
//! sections in the order the halves added them (in-process first, then
//! network), and the list of checks every contender passed or failed.
//!
//! A half records its results with [`Report::section`] (which returns the
//! [`Section`] to append text, [`Table`]s and [`Plot`]s to) and the outcome of
//! checking each contender's answers with [`Report::check`]. Nothing is
//! written until [`Report::write`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use plotters::prelude::*;

/// Everything the run produced.
#[derive(Debug, Default)]
pub struct Report {
    /// Sections in the order they were added.
    sections: Vec<Section>,
    /// One entry per check of one contender's answers.
    checks: Vec<Check>,
}

/// The outcome of checking one contender's answers in one scenario.
#[derive(Debug, Clone)]
pub struct Check {
    /// The half or group: `"in-process"`, `"network"`.
    pub group: String,
    /// The contender, as named in the tables.
    pub contender: String,
    /// What was checked (message type, scenario).
    pub what: String,
    /// `Err` says what was wrong.
    pub outcome: Result<(), String>,
}

/// A titled part of the report: paragraphs, tables and plots in order.
#[derive(Debug, Default)]
pub struct Section {
    /// Markdown heading text (rendered as `##`).
    pub title: String,
    blocks: Vec<Block>,
}

#[derive(Debug)]
enum Block {
    Text(String),
    Table(Table),
    Plot(Plot),
}

/// A table: a header row and rows of already-formatted cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Optional caption, rendered in bold above the table.
    pub caption: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// A line chart rendered to a PNG file.
#[derive(Debug, Clone)]
pub struct Plot {
    /// File name (no directory), e.g. `inproc-latency-u64.png`.
    pub file: String,
    /// Chart title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// How x values are laid out and labelled.
    pub x_axis: XAxis,
    /// Logarithmic y axis (all y values must be > 0).
    pub y_log: bool,
    /// One line per contender.
    pub series: Vec<Series>,
}

/// How a plot lays out and labels its x values.
#[derive(Debug, Clone)]
pub enum XAxis {
    /// Percentiles as "nines": x = -log10(1 - p), labelled 50%, 90%, 99%, …
    Nines,
    /// x = 0, 1, 2, … labelled with these names.
    Categories(Vec<String>),
}

/// One line of a plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(x, y)` points in x order.
    pub points: Vec<(f64, f64)>,
}

/// Where and how the report is written, and what the header says.
#[derive(Debug, Clone)]
pub struct Output {
    /// The markdown file to write.
    pub markdown: PathBuf,
    /// The directory for PNG files.
    pub plots_dir: PathBuf,
    /// Link prefix for images in the markdown (relative to the markdown
    /// file's directory), e.g. `benchmarks/`.
    pub plots_link: String,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new section and returns it for filling in.
    pub fn section(&mut self, title: impl Into<String>) -> &mut Section {
        self.sections.push(Section {
            title: title.into(),
            blocks: Vec::new(),
        });
        self.sections.last_mut().expect("just pushed")
    }

    /// Records the outcome of checking one contender's answers. A failure
    /// makes the whole run fail (non-zero exit) and is listed in the report.
    pub fn check(&mut self, group: &str, contender: &str, what: &str, outcome: Result<(), String>) {
        if let Err(e) = &outcome {
            eprintln!("CHECK FAILED: {group} / {contender} / {what}: {e}");
        }
        self.checks.push(Check {
            group: group.to_string(),
            contender: contender.to_string(),
            what: what.to_string(),
            outcome,
        });
    }

    /// All checks recorded so far.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// Distinct contenders checked, and how many of them failed any check.
    pub fn contender_counts(&self) -> (usize, usize) {
        let mut all: Vec<(&str, &str)> = self
            .checks
            .iter()
            .map(|c| (c.group.as_str(), c.contender.as_str()))
            .collect();
        all.sort_unstable();
        all.dedup();
        let mut failed: Vec<(&str, &str)> = self
            .checks
            .iter()
            .filter(|c| c.outcome.is_err())
            .map(|c| (c.group.as_str(), c.contender.as_str()))
            .collect();
        failed.sort_unstable();
        failed.dedup();
        (all.len(), failed.len())
    }

    /// Renders the sections as markdown (without the header).
    fn body_markdown(&self, plots_link: &str) -> String {
        let mut out = String::new();
        for section in &self.sections {
            section.render(&mut out, plots_link);
        }
        out.push_str("## Checks\n\n");
        out.push_str(
            "Every contender's answers are checked before (and while) it is timed: each reader \
             verifies the count, the strict order and the integrity of every message, and \
             accounts for loss (lossy contenders must report what they dropped: \
             delivered + missed == published; blocking contenders must deliver everything). \
             A contender that fails is marked FAILED here and its numbers are not used in \
             ratios.\n\n",
        );
        let mut table = Table::new(&["group", "contender", "checked", "result"]);
        let mut rows: Vec<(String, String, Vec<String>, Vec<String>)> = Vec::new();
        for c in &self.checks {
            let key = (c.group.clone(), c.contender.clone());
            let i = match rows.iter().position(|r| (r.0.clone(), r.1.clone()) == key) {
                Some(i) => i,
                None => {
                    rows.push((key.0, key.1, Vec::new(), Vec::new()));
                    rows.len() - 1
                }
            };
            rows[i].2.push(c.what.clone());
            if let Err(e) = &c.outcome {
                rows[i].3.push(format!("{}: {e}", c.what));
            }
        }
        for (group, contender, whats, errors) in rows {
            table.row(vec![
                group,
                contender,
                format!("{} runs", whats.len()),
                if errors.is_empty() {
                    "ok".to_string()
                } else {
                    format!("FAILED: {}", errors.join("; "))
                },
            ]);
        }
        table.render(&mut out);
        out
    }

    /// Prints every section to stdout as plain markdown.
    pub fn print(&self) {
        println!("{}", self.body_markdown(""));
    }

    /// Writes the markdown file (header + body) and renders every plot.
    /// Returns the paths written.
    pub fn write(&self, output: &Output, header: &str) -> anyhow::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        std::fs::create_dir_all(&output.plots_dir)
            .with_context(|| format!("creating {}", output.plots_dir.display()))?;
        for section in &self.sections {
            for block in &section.blocks {
                if let Block::Plot(plot) = block {
                    let path = output.plots_dir.join(&plot.file);
                    plot.render(&path)
                        .with_context(|| format!("rendering {}", path.display()))?;
                    written.push(path);
                }
            }
        }
        let mut md = String::new();
        md.push_str(header);
        md.push_str(&self.body_markdown(&output.plots_link));
        if let Some(dir) = output.markdown.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        std::fs::write(&output.markdown, md)
            .with_context(|| format!("writing {}", output.markdown.display()))?;
        written.push(output.markdown.clone());
        Ok(written)
    }
}

impl Section {
    /// Appends a paragraph of markdown.
    pub fn text(&mut self, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Text(text.into()));
        self
    }

    /// Appends a table.
    pub fn table(&mut self, table: Table) -> &mut Self {
        self.blocks.push(Block::Table(table));
        self
    }

    /// Appends a plot (rendered to its PNG file and linked).
    pub fn plot(&mut self, plot: Plot) -> &mut Self {
        self.blocks.push(Block::Plot(plot));
        self
    }

    fn render(&self, out: &mut String, plots_link: &str) {
        let _ = writeln!(out, "## {}\n", self.title);
        for block in &self.blocks {
            match block {
                Block::Text(t) => {
                    out.push_str(t.trim_end());
                    out.push_str("\n\n");
                }
                Block::Table(t) => t.render(out),
                Block::Plot(p) => {
                    let _ = writeln!(out, "![{}]({plots_link}{})\n", p.title, p.file);
                }
            }
        }
    }
}

impl Table {
    /// A table with these column headings.
    pub fn new(header: &[&str]) -> Self {
        Self {
            caption: String::new(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Sets the caption.
    pub fn caption(mut self, caption: impl Into<String>) -> Self {
        self.caption = caption.into();
        self
    }

    /// Appends a row (as many cells as headings).
    pub fn row(&mut self, cells: Vec<String>) -> &mut Self {
        debug_assert_eq!(cells.len(), self.header.len(), "row width");
        self.rows.push(cells);
        self
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn render(&self, out: &mut String) {
        if !self.caption.is_empty() {
            let _ = writeln!(out, "**{}**\n", self.caption);
        }
        let _ = writeln!(out, "| {} |", self.header.join(" | "));
        // A column is right-aligned when every cell in it starts like a
        // number (a digit, a sign, a dash for "none").
        let numeric = |i: usize| {
            i > 0
                && self.rows.iter().all(|r| {
                    r.get(i)
                        .filter(|c| !matches!(c.as_str(), "n/a" | "FAILED"))
                        .and_then(|c| c.chars().next())
                        .is_none_or(|c| c.is_ascii_digit() || "–-+≈".contains(c))
                })
        };
        let _ = writeln!(
            out,
            "|{}",
            (0..self.header.len())
                .map(|i| if numeric(i) { " ---: |" } else { " --- |" })
                .collect::<String>()
        );
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out.push('\n');
    }
}

/// Registers the embedded DejaVu Sans font for plot text, once. plotters'
/// `ab_glyph` feature draws text from registered font bytes, so plots need
/// no fontconfig or freetype on the machine.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_err()
        {
            eprintln!("warning: the embedded font did not load; plot text will be missing");
        }
    });
}

/// Distinct colours for up to ten series.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0xd6, 0x27, 0x28), // ringcast first: red
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

impl Plot {
    /// Renders the plot to `path` (PNG, 960x600).
    pub fn render(&self, path: &Path) -> anyhow::Result<()> {
        register_font();
        let root = BitMapBackend::new(path, (960, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            if !self.y_log || y > 0.0 {
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0.0, 1.0, 1.0, 10.0);
        }
        if let XAxis::Categories(names) = &self.x_axis {
            x0 = -0.3;
            x1 = names.len() as f64 - 0.7;
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let (y0, y1) = if self.y_log {
            (y0.max(1e-3) / 1.5, y1.max(y0 * 1.01) * 1.5)
        } else {
            (0.0, y1.max(1e-9) * 1.1)
        };
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&self.title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(80);
        let x_axis = self.x_axis.clone();
        let x_fmt = move |v: &f64| -> String {
            match &x_axis {
                XAxis::Nines => {
                    if (v - v.round()).abs() > 1e-6 {
                        return String::new();
                    }
                    let p = 100.0 * (1.0 - 10f64.powf(-v.round()));
                    let s = format!("{p:.4}");
                    let s = s.trim_end_matches('0').trim_end_matches('.');
                    format!("{s}%")
                }
                XAxis::Categories(names) => {
                    let i = v.round();
                    if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                        names[i as usize].clone()
                    } else {
                        String::new()
                    }
                }
            }
        };
        let x_labels = match &self.x_axis {
            XAxis::Categories(names) => names.len() * 4 + 1,
            XAxis::Nines => ((x1 - x0).round() as usize).max(1) * 2 + 1,
        };
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(self.x_label.as_str())
                    .y_desc(self.y_label.as_str())
                    .x_labels(x_labels)
                    .x_label_formatter(&x_fmt)
                    .y_label_formatter(&|v: &f64| compact(*v))
                    .label_style(("sans-serif", 15))
                    .axis_desc_style(("sans-serif", 17))
                    .draw()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                for (i, s) in self.series.iter().enumerate() {
                    let color = PALETTE[i % PALETTE.len()];
                    let style = ShapeStyle::from(&color).stroke_width(if i == 0 { 3 } else { 2 });
                    let pts: Vec<(f64, f64)> = s
                        .points
                        .iter()
                        .copied()
                        .filter(|&(_, y)| !self.y_log || y > 0.0)
                        .collect();
                    chart
                        .draw_series(LineSeries::new(pts.clone(), style))
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                        });
                    if pts.len() <= 16 {
                        chart
                            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                    }
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 15))
                    .draw()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }};
        }
        if self.y_log {
            draw!(builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(|e| anyhow::anyhow!("{e}"))?);
        } else {
            draw!(builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

/// A number for an axis label: 3 significant digits, k/M suffixes.
fn compact(v: f64) -> String {
    let (v, suffix) = if v.abs() >= 1e6 {
        (v / 1e6, "M")
    } else if v.abs() >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{suffix}")
}

/// Repeated measurements of one quantity.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    /// Adds one measurement.
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    /// Whether there are no measurements.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (the mean of the middle two for an even count); NaN if empty.
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// Smallest measurement; NaN if empty.
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    /// Largest measurement; NaN if empty.
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// `(max - min) / median`, in percent: how far apart the runs were.
    pub fn spread_pct(&self) -> f64 {
        100.0 * (self.max() - self.min()) / self.median()
    }

    /// `median [min–max]` with `fmt` for each.
    pub fn show_range(&self, fmt: impl Fn(f64) -> String) -> String {
        if self.is_empty() {
            return "–".to_string();
        }
        if self.0.len() == 1 {
            return fmt(self.median());
        }
        format!(
            "{} [{}–{}]",
            fmt(self.median()),
            fmt(self.min()),
            fmt(self.max())
        )
    }

    /// `median (±spread%)` with `fmt` for the median.
    pub fn show(&self, fmt: impl Fn(f64) -> String) -> String {
        if self.is_empty() {
            return "–".to_string();
        }
        if self.0.len() == 1 {
            return fmt(self.median());
        }
        let half = self.spread_pct() / 2.0;
        if half > 999.0 {
            format!("{} (±>999%)", fmt(self.median()))
        } else {
            format!("{} (±{half:.0}%)", fmt(self.median()))
        }
    }
}

/// `12.3 M/s`-style rate.
pub fn fmt_rate(per_sec: f64) -> String {
    if !per_sec.is_finite() {
        return "–".into();
    }
    if per_sec >= 1e6 {
        format!("{:.2} M/s", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1} k/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0} /s")
    }
}

/// Nanoseconds, with a unit that keeps 3 significant digits.
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        return "–".into();
    }
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns >= 10.0 {
        format!("{ns:.0} ns")
    } else {
        format!("{ns:.1} ns")
    }
}

/// Bytes as B / KiB / MiB.
pub fn fmt_bytes(b: f64) -> String {
    if !b.is_finite() {
        return "–".into();
    }
    let a = b.abs();
    if a >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else if a >= 10.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// A ratio `a / b` as `1.23×`.
pub fn fmt_ratio(r: f64) -> String {
    if r.is_finite() && r > 0.0 && r < 0.1 {
        format!("1/{:.0}", 1.0 / r)
    } else if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "–".into()
    }
}

/// Facts about the machine, for the report header.
pub fn machine_info() -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let virt = if flags.contains(" hypervisor") {
        " (virtual machine)"
    } else {
        ""
    };
    let mem = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let clocksource = read("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    vec![
        ("CPUs (nproc)".into(), nproc),
        ("CPU model".into(), format!("{model}{virt}")),
        ("memory".into(), mem),
        (
            "kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().to_string(),
        ),
        ("clock source".into(), clocksource.trim().to_string()),
        ("rustc".into(), env!("BENCH_RUSTC_VERSION").to_string()),
        (
            "cache-line round trip between two threads (at report time)".into(),
            format!("{:.0} ns", crate::probe::core_round_trip_ns(200_000)),
        ),
    ]
}

/// Locked versions of the compared crates (from `Cargo.lock`, read at build
/// time by `build.rs`).
pub fn crate_versions() -> Vec<(String, String)> {
    env!("BENCH_CRATE_VERSIONS")
        .split(';')
        .filter_map(|s| {
            let (n, v) = s.split_once(' ')?;
            Some((n.to_string(), v.to_string()))
        })
        .collect()
}

/// Measures how much CPU time *other* processes used while the benchmarks
/// ran: the machine's busy time (from `/proc/stat`) minus this process's
/// own (from `/proc/self/stat`). It is the honest noise figure for a shared
/// machine.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    busy: u64,
    steal: u64,
    own: u64,
    at: std::time::Instant,
}

/// What [`CpuMeter`] measured.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// Wall-clock time of the run.
    pub wall: Duration,
    /// CPU seconds used by this process.
    pub own_secs: f64,
    /// CPU seconds used by everything else (other processes, interrupts).
    pub others_secs: f64,
    /// CPU seconds the hypervisor stole.
    pub steal_secs: f64,
}

impl CpuMeter {
    /// Takes the starting reading.
    pub fn start() -> Self {
        let (busy, steal) = Self::machine();
        Self {
            busy,
            steal,
            own: Self::own(),
            at: std::time::Instant::now(),
        }
    }

    /// Clock ticks per second of `/proc` times (USER_HZ, 100 on Linux).
    const HZ: f64 = 100.0;

    fn machine() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
            return (0, 0);
        };
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal guest guest_nice;
        // guest time is already counted in user.
        let get = |i: usize| v.get(i).copied().unwrap_or(0);
        let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
        (busy, get(7))
    }

    fn own() -> u64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15 overall, i.e. 12 and 13 after it.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        field(11) + field(12)
    }

    /// CPU use since [`start`](Self::start).
    pub fn stop(&self) -> CpuUse {
        let (busy, steal) = Self::machine();
        let own = Self::own().saturating_sub(self.own);
        let busy = busy.saturating_sub(self.busy);
        CpuUse {
            wall: self.at.elapsed(),
            own_secs: own as f64 / Self::HZ,
            others_secs: busy.saturating_sub(own) as f64 / Self::HZ,
            steal_secs: steal.saturating_sub(self.steal) as f64 / Self::HZ,
        }
    }
}

impl CpuUse {
    /// One sentence for the report.
    pub fn describe(&self) -> String {
        let wall = self.wall.as_secs_f64();
        format!(
            "{wall:.0} s of wall-clock time; this process used {:.0} CPU-s, other processes \
             {:.0} CPU-s (on average {:.2} of the {} cores busy with other work), hypervisor \
             steal {:.1} CPU-s",
            self.own_secs,
            self.others_secs,
            self.others_secs / wall.max(1e-9),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            self.steal_secs,
        )
    }
}
