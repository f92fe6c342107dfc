//! What `loadgen` writes to its terminal: a document on stdout through its exporter, errors on stderr,
//! and a finished run's console text with the exit code it ends with.

use std::io::Write;

use crate::exit;
use crate::report::console::{RunConsole, RunText};
use crate::report::{Exporter, Reported, Written};

/// Prints a finished run and picks its exit code.
pub(crate) fn finish(reported: &Reported, console: RunConsole<'_>, bisect: bool) -> u8 {
    print_with(&RunText, &console);
    errors(&reported.written.errors);
    let regressed = console.baseline.is_some_and(|b| b.regressed);
    exit::Ending::of_run(console.summary, regressed, !reported.written.errors.is_empty()).code(bisect)
}

pub(crate) fn print(text: &str) -> u8 {
    print!("{text}");
    exit::OK
}

/// Writes `document` to stdout with `exporter`, then every output that could not be written, on stderr.
pub(crate) fn print_and_report<D: ?Sized>(exporter: &dyn Exporter<D>, document: &D, written: &Written) {
    print_with(exporter, document);
    errors(&written.errors);
}

/// Writes `document` to stdout with `exporter`.
pub(crate) fn print_with<D: ?Sized>(exporter: &dyn Exporter<D>, document: &D) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = exporter.export(document, &mut stdout).and_then(|()| Ok(stdout.flush()?)) {
        eprintln!("Error: writing to stdout: {error:#}");
    }
}

pub(crate) fn errors(errors: &[anyhow::Error]) {
    for error in errors {
        eprintln!("Error: {error:#}");
    }
}
