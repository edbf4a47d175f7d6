//! Training progress: a bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use taskmoe_train::{Progress, StepLog};

/// Shows step, loss, tokens/s and ETA.
pub struct Bar {
    bar: Option<ProgressBar>,
    every: u64,
    tokens_per_s: f64,
}

impl Bar {
    /// A bar when stderr is a terminal; otherwise a plain line every `every` steps.
    pub fn new(every: u64) -> Self {
        Bar {
            bar: None,
            every: every.max(1),
            tokens_per_s: 0.0,
        }
    }
}

impl Progress for Bar {
    fn start(&mut self, total: u64, done: u64) {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total).with_position(done);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
                )
                .expect("valid template"),
            );
            self.bar = Some(bar);
        } else if done > 0 {
            eprintln!("resuming at step {done} of {total}");
        }
    }

    fn step(&mut self, log: &StepLog) {
        // Smoothed throughput.
        self.tokens_per_s = if self.tokens_per_s == 0.0 {
            log.tokens_per_s
        } else {
            0.9 * self.tokens_per_s + 0.1 * log.tokens_per_s
        };
        let msg = format!(
            "loss {:.4}  lr {:.2e}  {:.0} tok/s",
            log.loss, log.lr, self.tokens_per_s
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(log.step);
                bar.set_message(msg);
            }
            None if log.step % self.every == 0 || log.step == 1 => {
                eprintln!("step {}: {msg}", log.step)
            }
            None => {}
        }
    }

    fn message(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
