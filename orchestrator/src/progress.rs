//! Progress on stderr: one indicatif spinner per host on a terminal, plain lines
//! otherwise (CI logs). Machine output never goes here.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub struct Progress {
    multi: Option<MultiProgress>,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
    start: Instant,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let tty = std::io::stderr().is_terminal() && !quiet;
        Progress {
            multi: tty.then(MultiProgress::new),
            bars: Mutex::new(BTreeMap::new()),
            start: Instant::now(),
            quiet,
        }
    }

    /// Reports that `who` (a role or "run") is now doing `what`.
    pub fn step(&self, who: &str, what: &str) {
        if let Some(m) = &self.multi {
            let Ok(mut bars) = self.bars.lock() else {
                return;
            };
            let bar = bars.entry(who.to_string()).or_insert_with(|| {
                let b = m.add(ProgressBar::new_spinner());
                b.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:>10} [{elapsed:>4}] {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.set_prefix(who.to_string());
                b.enable_steady_tick(Duration::from_millis(120));
                b
            });
            bar.set_message(what.to_string());
        } else if !self.quiet {
            self.line(&format!(
                "[{:>6.1}s] {who}: {what}",
                self.start.elapsed().as_secs_f64()
            ));
        }
    }

    pub fn done(&self, who: &str, what: &str) {
        if let Some(_m) = &self.multi {
            if let Ok(bars) = self.bars.lock() {
                if let Some(b) = bars.get(who) {
                    b.finish_with_message(what.to_string());
                    return;
                }
            }
        }
        if !self.quiet {
            self.line(&format!(
                "[{:>6.1}s] {who}: {what}",
                self.start.elapsed().as_secs_f64()
            ));
        }
    }

    /// A line that must stay visible (warnings), printed above the spinners.
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => self.line(line),
        }
    }

    /// A plain line on stderr. Never a panic: stderr may be a closed pipe
    /// (`kdelta … 2>&1 | head -1`), and progress is not worth dying for.
    fn line(&self, text: &str) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{text}");
    }

    pub fn finish(&self) {
        if let Ok(bars) = self.bars.lock() {
            for b in bars.values() {
                if !b.is_finished() {
                    b.finish();
                }
            }
        }
    }
}
