//! `tracing` output for the Workers runtime: one `console.log` line per event.
//!
//! Workers have no stdout and no wall clock worth printing (the runtime timestamps each
//! console line itself), so the fmt layer writes without time into a line buffer that goes
//! to the console when the event is complete.

use std::io;
use std::sync::Once;

use tracing_subscriber::fmt::MakeWriter;

static INIT: Once = Once::new();

/// Installs the console subscriber once per isolate; `level` is `PILOT_LOG` (default `info`).
pub fn init(level: Option<&str>) {
    let level = match level.map(str::to_ascii_lowercase).as_deref() {
        Some("trace") => tracing::Level::TRACE,
        Some("debug") => tracing::Level::DEBUG,
        Some("warn") => tracing::Level::WARN,
        Some("error") => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    INIT.call_once(|| {
        // Another subscriber being installed already is fine: it keeps logging.
        let _ = tracing_subscriber::fmt()
            .without_time()
            .with_target(false)
            .with_max_level(level)
            .with_writer(Console)
            .try_init();
    });
}

struct Console;

/// The bytes of one formatted event; printed when the formatter drops it.
struct Line(Vec<u8>);

impl io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        worker::console_log!("{}", text.trim_end());
    }
}

impl<'a> MakeWriter<'a> for Console {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}
