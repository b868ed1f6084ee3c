//! The progress display of `send`, `receive` and `dump` (`--progress`), on stderr.
//!
//! The work publishes its counters into a shared [`ReadProgress`] (the stream
//! reader does it for `receive` and `dump`, the relay for `send`); a ticker
//! thread reads them a few times a second and draws: an `indicatif` bar on a
//! terminal, one plain line a second with `--progress=always` when stderr is
//! not a terminal (a log), or with `--progress=json` one JSON object a second
//! and one at the end, for orchestrators. Nothing happens per command here,
//! so the display costs the work nothing measurable.
//!
//! The default, `auto`, draws only when stderr is a terminal and `-q` is not
//! given, so redirected output stays byte for byte what btrfs-progs prints.
//! Messages printed while a bar is drawn go through [`Suspender::run`], so
//! they do not land in the middle of the bar.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{BinaryBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rawsend_stream::{ProgressSnapshot, ReadProgress};

/// When to show progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum When {
    /// When stderr is a terminal and -q is not given.
    #[default]
    Auto,
    /// Always: a bar on a terminal, else a line a second.
    Always,
    /// Never.
    Never,
    /// One JSON object per line, about once a second and once at the end.
    Json,
}

/// `--progress[=WHEN]`.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct ProgressArg {
    /// Show progress on stderr: auto (when stderr is a terminal and -q is not
    /// given), always, never, or json (JSON Lines). A bare --progress means always.
    #[arg(
        long,
        value_enum,
        value_name = "WHEN",
        num_args = 0..=1,
        require_equals = true,
        default_value = "auto",
        default_missing_value = "always"
    )]
    pub progress: When,
}

/// `--progress` and `--size` of the commands that read a stream.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct InputProgress {
    #[command(flatten)]
    pub when: ProgressArg,
    /// The stream's size in bytes, for percent and ETA when it comes through a pipe
    /// (suffixes K, M, G, T, binary: 1K = 1024). Default: the size of -f FILE.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub size: Option<u64>,
}

impl InputProgress {
    /// The total to show: `--size`, else the size of the regular file `input`.
    pub fn total(&self, input: Option<&std::path::Path>) -> Option<u64> {
        self.size.or_else(|| {
            let metadata = std::fs::metadata(input?).ok()?;
            metadata.is_file().then_some(metadata.len())
        })
    }
}

/// Parses a byte count with an optional binary suffix (K, M, G, T; also KiB, ...).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &text[digits.len()..];
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KIB" => 10,
        "M" | "MIB" => 20,
        "G" | "GIB" => 30,
        "T" | "TIB" => 40,
        _ => return Err(format!("unknown suffix {suffix:?} (use K, M, G or T)")),
    };
    let number: u64 = digits.parse().map_err(|_| format!("{text:?} is not a number of bytes"))?;
    number.checked_mul(1 << shift).ok_or_else(|| format!("{text} is too large"))
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Bar,
    Lines,
    Json,
}

impl When {
    /// Whether progress is shown (with `-q` if `quiet`).
    pub fn shows(self, quiet: bool) -> bool {
        self.style(quiet).is_some()
    }

    fn style(self, quiet: bool) -> Option<Style> {
        let terminal = std::io::stderr().is_terminal();
        match self {
            When::Never => None,
            When::Auto => (terminal && !quiet).then_some(Style::Bar),
            When::Always if terminal => Some(Style::Bar),
            When::Always => Some(Style::Lines),
            When::Json => Some(Style::Json),
        }
    }
}

/// A running progress display; see the module docs. Finish it with [`Meter::finish`].
pub struct Meter {
    progress: Arc<ReadProgress>,
    bar: Option<ProgressBar>,
    stop: Option<Sender<()>>,
    ticker: Option<JoinHandle<()>>,
}

impl Meter {
    /// Starts showing progress as `when` (with `-q` if `quiet`) says, out of `total` bytes.
    pub fn start(when: When, quiet: bool, total: Option<u64>) -> Meter {
        let progress = Arc::new(ReadProgress::new());
        let Some(style) = when.style(quiet) else {
            return Meter { progress, bar: None, stop: None, ticker: None };
        };
        let view = View::new(style, total);
        let bar = match &view {
            View::Bar(bar) => Some(bar.clone()),
            _ => None,
        };
        let (stop, stopped) = mpsc::channel();
        let watched = Arc::clone(&progress);
        let ticker = std::thread::spawn(move || view.run(&watched, &stopped));
        Meter { progress, bar, stop: Some(stop), ticker: Some(ticker) }
    }

    /// The counters to publish into; `None` when nothing is shown (nothing to publish).
    pub fn progress(&self) -> Option<Arc<ReadProgress>> {
        self.ticker.is_some().then(|| Arc::clone(&self.progress))
    }

    /// What runs message printing with the bar out of the way.
    pub fn suspender(&self) -> Suspender {
        Suspender(self.bar.clone())
    }

    /// Shows the final state (for JSON, the last line) and stops.
    pub fn finish(mut self) {
        self.stop_ticker();
    }

    fn stop_ticker(&mut self) {
        drop(self.stop.take());
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

/// Runs message printing with the bar (if any) out of the way.
#[derive(Clone)]
pub struct Suspender(Option<ProgressBar>);

impl Suspender {
    /// Runs `print`, the bar cleared while it runs.
    pub fn run<R>(&self, print: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

/// What the ticker draws into.
enum View {
    Bar(ProgressBar),
    Lines { total: Option<u64> },
    Json { total: Option<u64> },
}

impl View {
    fn new(style: Style, total: Option<u64>) -> View {
        match style {
            Style::Bar => View::Bar(new_bar(total)),
            Style::Lines => View::Lines { total },
            Style::Json => View::Json { total },
        }
    }

    /// How often to draw.
    fn interval(&self) -> Duration {
        match self {
            View::Bar(_) => Duration::from_millis(200),
            View::Lines { .. } | View::Json { .. } => Duration::from_secs(1),
        }
    }

    /// Draws every interval until `stopped` says so (or its sender is gone), then once more.
    fn run(self, progress: &ReadProgress, stopped: &mpsc::Receiver<()>) {
        let start = Instant::now();
        loop {
            let done = !matches!(stopped.recv_timeout(self.interval()), Err(RecvTimeoutError::Timeout));
            self.draw(&progress.snapshot(), start.elapsed(), done);
            if done {
                return;
            }
        }
    }

    fn draw(&self, now: &ProgressSnapshot, elapsed: Duration, done: bool) {
        match self {
            View::Bar(bar) => {
                bar.set_position(now.bytes);
                bar.set_message(describe_place(now));
                if done {
                    bar.finish();
                }
            }
            View::Lines { total } => write_stderr(&line(now, *total, elapsed)),
            View::Json { total } => write_stderr(&json(now, *total, elapsed, done)),
        }
    }
}

/// Two lines: amounts, then where the stream is (as long as the terminal is wide).
fn new_bar(total: Option<u64>) -> ProgressBar {
    let template = match total {
        Some(_) => {
            "{elapsed_precise} [{bar:24}] {binary_bytes}/{binary_total_bytes} ({percent}%) \
             {binary_bytes_per_sec} ETA {eta}\n{wide_msg}"
        }
        None => "{elapsed_precise} {binary_bytes} {binary_bytes_per_sec}\n{wide_msg}",
    };
    let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr_with_hz(5))
        .with_style(style.progress_chars("=> "))
}

/// "N commands, SUBVOLUME: PATH".
fn describe_place(now: &ProgressSnapshot) -> String {
    format!("{} commands, {}: {}", now.commands, now.subvolume, now.path)
}

/// Bytes per second since the start.
fn rate(now: &ProgressSnapshot, elapsed: Duration) -> u64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 { (now.bytes as f64 / seconds) as u64 } else { 0 }
}

/// The plain line of `--progress=always` when stderr is not a terminal.
fn line(now: &ProgressSnapshot, total: Option<u64>, elapsed: Duration) -> String {
    let rate = rate(now, elapsed);
    let amount = match total {
        Some(total) => {
            let percent = (now.bytes as f64 * 100.0 / total.max(1) as f64).min(100.0);
            let left = total.saturating_sub(now.bytes);
            let eta = match rate {
                0 => String::new(),
                _ => format!(", ETA {}", HumanDuration(Duration::from_secs(left.div_ceil(rate)))),
            };
            format!("{} of {} ({percent:.0}%){eta}", BinaryBytes(now.bytes), BinaryBytes(total))
        }
        None => BinaryBytes(now.bytes).to_string(),
    };
    format!(
        "rawsend: progress: {amount}, {}/s, {} elapsed, {}",
        BinaryBytes(rate),
        HumanDuration(elapsed),
        describe_place(now)
    )
}

/// One JSON object of `--progress=json`.
fn json(now: &ProgressSnapshot, total: Option<u64>, elapsed: Duration, done: bool) -> String {
    serde_json::json!({
        "bytes": now.bytes,
        "total": total,
        "commands": now.commands,
        "rate": rate(now, elapsed),
        "subvolume": now.subvolume,
        "path": now.path,
        "elapsed": (elapsed.as_millis() as f64) / 1000.0,
        "final": done,
    })
    .to_string()
}

/// Writes one line on stderr; a closed or failing stderr is ignored (progress is no reason to stop).
fn write_stderr(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("3m"), Ok(3 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("16777216T").is_err());
    }

    #[test]
    fn json_lines_carry_the_documented_fields() {
        let now = ProgressSnapshot { bytes: 3000, commands: 7, subvolume: "vol".into(), path: "d/f".into() };
        let value: serde_json::Value =
            serde_json::from_str(&json(&now, Some(6000), Duration::from_millis(1500), false)).unwrap();
        assert_eq!(value["bytes"], 3000);
        assert_eq!(value["total"], 6000);
        assert_eq!(value["commands"], 7);
        assert_eq!(value["rate"], 2000);
        assert_eq!(value["subvolume"], "vol");
        assert_eq!(value["path"], "d/f");
        assert_eq!(value["elapsed"], 1.5);
        let unknown: serde_json::Value =
            serde_json::from_str(&json(&now, None, Duration::ZERO, true)).unwrap();
        assert!(unknown["total"].is_null());
        assert_eq!(unknown["rate"], 0);
        assert_eq!(unknown["final"], true);
    }

    #[test]
    fn a_log_line_has_percent_and_eta_when_the_total_is_known() {
        let now = ProgressSnapshot { bytes: 1 << 20, commands: 9, subvolume: "vol".into(), path: "f".into() };
        let known = line(&now, Some(4 << 20), Duration::from_secs(1));
        assert!(known.contains("1.00 MiB of 4.00 MiB (25%), ETA 3 seconds"), "{known}");
        assert!(known.ends_with("9 commands, vol: f"), "{known}");
        assert!(!line(&now, None, Duration::from_secs(1)).contains('%'));
    }
}
