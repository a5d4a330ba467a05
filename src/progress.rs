//! Progress reporting for long commands: an indicatif bar when stderr is a terminal, plain
//! lines every 10 % otherwise (logs, CI).

use std::io::IsTerminal as _;

/// A progress bar on a terminal, plain lines every 10 % otherwise.
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: std::sync::atomic::AtomicU64,
    what: &'static str,
    unit: &'static str,
}

impl Progress {
    /// A progress report over `total` `unit`s of `what` (e.g. "landing", "objects").
    pub fn new(total: u64, what: &'static str, unit: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}} {{msg}}"
                ))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        Progress {
            bar,
            total,
            done: std::sync::atomic::AtomicU64::new(0),
            what,
            unit,
        }
    }

    /// Sets the done count to `done` (never backwards).
    pub fn set(&self, done: u64) {
        let before = self
            .done
            .fetch_max(done, std::sync::atomic::Ordering::Relaxed);
        if done <= before {
            return;
        }
        match &self.bar {
            Some(b) => b.set_position(done),
            None => {
                let step = (self.total / 10).max(1);
                if done / step != before / step || done == self.total {
                    eprintln!(
                        "{}: {done}/{} {} ({}%)",
                        self.what,
                        self.total,
                        self.unit,
                        done * 100 / self.total.max(1)
                    );
                }
            }
        }
    }

    /// One more unit done.
    pub fn inc(&self) {
        self.set(self.done.load(std::sync::atomic::Ordering::Relaxed) + 1);
    }

    /// Shows a short message next to the bar (terminal only).
    pub fn message(&self, msg: String) {
        if let Some(b) = &self.bar {
            b.set_message(msg);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
