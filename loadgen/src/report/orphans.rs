//! grpc-java's own reports of the incident's bug, in words: how many channels
//! it reported as dropped without `shutdown()`, against the connections that
//! grew, and the service's code that asked for them.

use std::io::{self, Write};

use leaklab_engine::heap::orphans::OrphanReport;
use leaklab_engine::summary::Summary;

use super::units::thousands;

/// The sentence on the reports: `grpc-java reported 2,836 channels … against 3,000 connections that grew`.
pub(crate) fn sentence(s: &Summary) -> Option<String> {
    let report = s.client.orphaned_channels.as_ref()?;
    let grown = s.client.connections.map(|c| c.end.saturating_sub(c.start));
    let against = grown.map_or(String::new(), |grown| format!(", against {} connections that grew", thousands(grown)));
    Some(format!(
        "grpc-java reported {} channels dropped without shutdown() by the end{against}. It reports a channel only \
         once a collection has freed it and the next channel is built: the last ones go unreported",
        thousands(report.reported)
    ))
}

/// The console's lines: the sentence, then the first three sites.
pub(crate) fn console(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    let (Some(sentence), Some(report)) = (sentence(s), s.client.orphaned_channels.as_ref()) else { return Ok(()) };
    writeln!(out, "  client orphaned channels: {sentence}.")?;
    for site in report.call_sites.iter().take(3) {
        let share = site.share * 100.0;
        writeln!(
            out,
            "    {} ({}:{}) {} channels, {share:.0}%",
            site.function,
            site.file,
            site.line,
            thousands(site.channels)
        )?;
    }
    Ok(())
}

/// The report's section: the sentence and every site in a table.
pub(crate) fn markdown(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    let (Some(sentence), Some(OrphanReport { call_sites, .. })) = (sentence(s), s.client.orphaned_channels.as_ref())
    else {
        return Ok(());
    };
    writeln!(out, "\n{sentence}. The service's code that asked for them:\n")?;
    writeln!(out, "| function | file:line | channels | share |\n|---|---|---:|---:|")?;
    for site in call_sites {
        let share = site.share * 100.0;
        writeln!(
            out,
            "| `{}` | {}:{} | {} | {share:.0}% |",
            site.function,
            site.file,
            site.line,
            thousands(site.channels)
        )?;
    }
    Ok(())
}
