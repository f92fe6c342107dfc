//! The live progress line: elapsed time, phase, requests, rate, and the
//! memory and connections of both processes. On a terminal it redraws in
//! place (indicatif), or draws the charts of `--dashboard`; otherwise it
//! prints a plain line every few seconds.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::dashboard::Dashboard;
use crate::report::units::format_mib;
use leaklab_engine::sample::{Observer, Phase, Sample};

/// Time between two plain lines when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(2);
/// Least time between two redraws of the dashboard: each sample is drawn at the
/// scenarios' 100 ms interval, and a faster one is thinned to about 11 a second.
const REDRAW_EVERY: Duration = Duration::from_millis(90);

/// What a run shows while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// Nothing.
    Quiet,
    /// One line, redrawn in place on a terminal.
    Line,
    /// Charts of memory and connections, redrawn in place (a plain line when not on a terminal).
    Dashboard,
}

/// The dashboard on the terminal: its history, how many lines it drew last, and when.
#[derive(Debug, Default)]
struct Live {
    dashboard: Dashboard,
    drawn: usize,
    last_draw: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    /// The charts, when `--dashboard` is on a terminal.
    dashboard: Option<Live>,
    /// The latest line, left on screen when the bar goes.
    last_line: String,
    last_plain: Option<Instant>,
    /// (elapsed seconds, requests) over about the last second, for the rate.
    recent: VecDeque<(f64, u64)>,
}

impl Progress {
    /// A progress display on stderr.
    pub(crate) fn stderr(view: View) -> Option<Self> {
        if view == View::Quiet {
            return None;
        }
        let terminal = std::io::stderr().is_terminal();
        let dashboard = (view == View::Dashboard && terminal).then(|| {
            eprint!("\x1b[?25l"); // the cursor would flicker over the charts
            Live::default()
        });
        let bar = (terminal && dashboard.is_none()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(8));
            // wide_msg truncates to the terminal's width, so the line never wraps.
            bar.set_style(ProgressStyle::with_template("{spinner} {wide_msg}").expect("static template is valid"));
            bar
        });
        Some(Self { bar, dashboard, last_line: String::new(), last_plain: None, recent: VecDeque::new() })
    }

    pub(crate) fn into_observer(mut self) -> Observer {
        Box::new(move |sample| self.observe(sample))
    }

    /// Shows `sample`, the latest of the run.
    pub(crate) fn observe(&mut self, sample: &Sample) {
        let requests = sample.requests();
        self.recent.push_back((sample.elapsed_s, requests));
        while self.recent.len() > 2 && sample.elapsed_s - self.recent[1].0 >= 1.0 {
            self.recent.pop_front();
        }
        let rps = rate(&self.recent);
        if let Some(live) = &mut self.dashboard {
            live.dashboard.push(sample);
            if live.last_draw.is_some_and(|at| at.elapsed() < REDRAW_EVERY) && sample.phase != Phase::Cooldown {
                return;
            }
            let width = console::Term::stderr().size_checked().map_or(100, |(_, columns)| usize::from(columns));
            let lines = live.dashboard.render(sample, rps, width);
            live.drawn = redraw(live.drawn, &lines);
            live.last_draw = Some(Instant::now());
            return;
        }
        let line = line(sample, rps);
        match &self.bar {
            Some(bar) => {
                bar.set_message(line.clone());
                bar.tick();
                self.last_line = line;
            }
            None => {
                let due = self.last_plain.is_none_or(|at| at.elapsed() >= PLAIN_EVERY);
                if due
                    || sample.phase == Phase::Cooldown
                        && self.last_plain.is_some_and(|at| at.elapsed() >= PLAIN_EVERY / 2)
                {
                    eprintln!("{line}");
                    self.last_plain = Some(Instant::now());
                }
            }
        }
    }
}

/// Draws `lines` over the `drawn` lines above the cursor, in one write so the view does not flicker.
fn redraw(drawn: usize, lines: &[String]) -> usize {
    let mut frame = String::new();
    if drawn > 0 {
        frame += &format!("\x1b[{drawn}F");
    }
    for line in lines {
        frame += line;
        frame += "\x1b[K\n";
    }
    for _ in lines.len()..drawn {
        frame += "\x1b[K\n";
    }
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(frame.as_bytes());
    let _ = stderr.flush();
    lines.len().max(drawn)
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.dashboard.is_some() {
            eprint!("\x1b[?25h");
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            eprintln!("{}", self.last_line);
        }
    }
}

fn rate(recent: &VecDeque<(f64, u64)>) -> f64 {
    match (recent.front(), recent.back()) {
        (Some((t0, r0)), Some((t1, r1))) if t1 > t0 => (r1.saturating_sub(*r0)) as f64 / (t1 - t0),
        _ => 0.0,
    }
}

pub(crate) fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Baseline => "baseline",
        Phase::Warmup => "warm-up",
        Phase::Load => "load",
        Phase::Cooldown => "cool-down",
    }
}

/// One progress line.
pub(crate) fn line(sample: &Sample, rps: f64) -> String {
    let phase = phase_name(sample.phase);
    let mut line = format!(
        "{:5.1}s {:<9} {:>7} req {:>6.0}/s | client {} {} conn",
        sample.elapsed_s,
        phase,
        sample.requests(),
        rps,
        format_mib(sample.client.rss_bytes),
        sample.client.open_connections().unwrap_or(0)
    );
    if let Some(server) = &sample.server {
        line.push_str(&format!(" | server {}", format_mib(server.process.rss_bytes)));
        if let Some(open) = server.process.open_connections() {
            line.push_str(&format!(" {open} conn"));
        }
    }
    if sample.requests_failed > 0 {
        line.push_str(&format!(" | {} failed", sample.requests_failed));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fixtures::scripted_report;

    #[test]
    fn line_carries_both_processes() {
        let (_, samples) = scripted_report();
        let text = line(&samples[5], 812.0);
        assert!(text.contains("load") && text.contains("812/s"), "{text}");
        assert!(text.contains("client ") && text.contains("server "), "{text}");
    }

    #[test]
    fn rate_is_requests_over_the_window() {
        let recent: VecDeque<_> = [(1.0, 100), (1.5, 400), (2.0, 700)].into_iter().collect();
        assert!((rate(&recent) - 600.0).abs() < 1e-9);
        assert_eq!(rate(&VecDeque::new()), 0.0);
    }
}
