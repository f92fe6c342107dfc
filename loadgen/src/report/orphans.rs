//! grpc-java's own reports of the incident's bug, in words: how many channels
//! it reported as dropped without `shutdown()`, against the connections that
//! grew, and the service's code that asked for them.

use std::io::{self, Write};

use leaklab_engine::heap::orphans::{OrphanReport, OrphanSite};
use leaklab_engine::heap::own::CodeRuntime;
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

/// The sentence and the sites it tells, when grpc-java reported any channel. The sites are left to
/// "From the profile to the code" when the run has it (see `call_sites`): they are its call sites.
fn told(s: &Summary) -> Option<(String, &[OrphanSite])> {
    let report: &OrphanReport = s.client.orphaned_channels.as_ref()?;
    let tabled_there = s.profiles.as_ref().is_some_and(|p| p.runtime == CodeRuntime::Jvm);
    Some((sentence(s)?, if tabled_there { &[] } else { &report.call_sites }))
}

/// A site as every rendering shows it: its function, `file:line`, channels and share.
fn cells(site: &OrphanSite) -> [String; 4] {
    let at = format!("{}:{}", site.file, site.line);
    [site.function.clone(), at, thousands(site.channels), format!("{:.0}%", site.share * 100.0)]
}

/// The console's lines: the sentence, then the first three sites.
pub(crate) fn console(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    let Some((sentence, sites)) = told(s) else { return Ok(()) };
    writeln!(out, "  client orphaned channels: {sentence}.")?;
    for [function, at, channels, share] in sites.iter().take(3).map(cells) {
        writeln!(out, "    {function} ({at}) {channels} channels, {share}")?;
    }
    Ok(())
}

/// The report's section: the sentence and every site in a table.
pub(crate) fn markdown(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    let Some((sentence, sites)) = told(s) else { return Ok(()) };
    if sites.is_empty() {
        return writeln!(out, "\n{sentence}.");
    }
    writeln!(out, "\n{sentence}. The service's code that asked for them:\n")?;
    writeln!(out, "| function | file:line | channels | share |\n|---|---|---:|---:|")?;
    for [function, at, channels, share] in sites.iter().map(cells) {
        writeln!(out, "| `{function}` | {at} | {channels} | {share} |")?;
    }
    Ok(())
}

/// The demo page's section: the sentence and every site in a table.
pub(crate) fn html(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    use super::html::escape;
    let Some((sentence, sites)) = told(s) else { return Ok(()) };
    if sites.is_empty() {
        return writeln!(out, "<h3>The runtime's own words</h3>\n<p>{}.</p>", escape(&sentence));
    }
    write!(
        out,
        "<h3>The runtime's own words</h3>\n<p>{}. The service's code that asked for them:</p>\n<table>\n<thead><tr>\
         <th>function</th><th>at</th><th class=\"n\">channels</th><th class=\"n\">share</th></tr></thead>\n<tbody>\n",
        escape(&sentence)
    )?;
    for [function, at, channels, share] in sites.iter().map(cells) {
        let (function, at) = (escape(&function), escape(&at));
        writeln!(
            out,
            "<tr><td><code>{function}</code></td><td><code>{at}</code></td><td class=\"n\">{channels}</td>\
             <td class=\"n\">{share}</td></tr>"
        )?;
    }
    writeln!(out, "</tbody>\n</table>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fixtures::scripted_report;

    #[test]
    fn the_reports_are_told_against_the_connections_with_their_sites() {
        let (mut s, _) = scripted_report();
        let text = |s: &Summary, write: fn(&mut dyn Write, &Summary) -> io::Result<()>| {
            let mut out = Vec::new();
            write(&mut out, s).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(&s, markdown), "", "nothing without reports");
        let site = |function: &str, line, channels, share| OrphanSite {
            function: function.into(),
            file: "Orders.java".into(),
            line,
            channels,
            share,
            through: None,
        };
        s.client.orphaned_channels = Some(OrphanReport {
            reported: 2841,
            call_sites: vec![
                site("com.shop.Orders.place", 42, 2100, 0.74),
                site("com.shop.Orders.refund", 77, 741, 0.26),
            ],
        });
        let grown = s.client.connections.map(|c| c.end - c.start).unwrap();
        let markdown = text(&s, markdown);
        assert!(
            markdown.contains(&format!(
                "reported 2,841 channels dropped without shutdown() by the end, against {} connections",
                thousands(grown)
            )),
            "{markdown}"
        );
        assert!(markdown.contains("| `com.shop.Orders.place` | Orders.java:42 | 2,100 | 74% |"), "{markdown}");
        let console = text(&s, console);
        assert!(console.contains("    com.shop.Orders.refund (Orders.java:77) 741 channels, 26%"), "{console}");
        let html = text(&s, html);
        assert!(
            html.contains("<td><code>Orders.java:42</code></td>") && html.contains("only once a collection"),
            "{html}"
        );
        // With the JVM's profiles, its call sites are told there, once.
        let mut jvm = leaklab_engine::fixtures::go_profiles(1.0, 1.0);
        jvm.runtime = CodeRuntime::Jvm;
        s.profiles = Some(jvm);
        let told = text(&s, super::console);
        assert!(told.contains("reported 2,841 channels") && !told.contains("741 channels"), "{told}");
        assert!(!text(&s, super::markdown).contains("| function |"));
    }
}
