//! Progress bars for pulls on a terminal; nothing when stderr is not one.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars drawn on stderr when it is a terminal and `quiet` is off; hidden otherwise.
    pub fn new(quiet: bool) -> Bars {
        let target = if !quiet && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn short(digest: &str) -> &str {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        hex.get(..12).unwrap_or(hex)
    }
}

impl lazyrun::pull::Progress for Bars {
    fn start(&self, digest: &str, size: u64) {
        let bar = self.multi.add(ProgressBar::new(size));
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(Self::short(digest).to_owned());
        if let Ok(mut m) = self.bars.lock() {
            m.insert(digest.to_owned(), bar);
        }
    }

    fn advance(&self, digest: &str, n: u64) {
        if let Some(b) = self.bars.lock().ok().and_then(|m| m.get(digest).cloned()) {
            b.inc(n);
        }
    }

    fn finish(&self, digest: &str, cached: bool) {
        if cached {
            let _ = self
                .multi
                .println(format!("{} already present", Self::short(digest)));
            return;
        }
        if let Some(b) = self.bars.lock().ok().and_then(|mut m| m.remove(digest)) {
            b.finish_with_message("done");
        }
    }
}
