//! The heap profiles of a run in words, and the one place that words them:
//! jemalloc's stacks that grew most with `--heap-profile` (the engine's
//! [`HeapReport`]), and a Go process's `net/http/pprof` profiles compared
//! ([`GoProfiles`]: its own call sites, bytes and goroutines per connection,
//! how its RSS grew beside its heap). The console, `report.md`, `demo.md`
//! and the demo's page all call these; the profiles themselves are written
//! as files by [`profiles`](super::profiles).

use std::io::{self, Write};

use super::html::escape;
use super::units::human_bytes;
use leaklab_engine::heap::go::GoProfiles;
use leaklab_engine::heap::{HeapGrowth, HeapReport};
use leaklab_engine::summary::{Side, Summary};

/// Each process's growth in `report`, the client first.
fn growths(report: &HeapReport) -> impl Iterator<Item = (Side, &HeapGrowth)> {
    [(Side::Client, report.client.as_ref()), (Side::Server, report.server.as_ref())]
        .into_iter()
        .filter_map(|(side, growth)| Some((side, growth?)))
}

/// Each process's Go profiles in `s`, compared, the client first.
pub(crate) fn go_profiles(s: &Summary) -> impl Iterator<Item = (Side, &GoProfiles)> {
    [(Side::Client, s.profiles.as_ref()), (Side::Server, s.server_profiles.as_ref())]
        .into_iter()
        .filter_map(|(side, profiles)| Some((side, profiles?)))
}

/// `n/a`, or the bytes.
fn bytes_or_na(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), human_bytes)
}

/// `, 83% of the allocator's`: how much of what the allocator counted the profile accounts for.
fn coverage(growth: &HeapGrowth, of: &str) -> String {
    growth.coverage.map(|c| format!(", {:.0}% of {of}", c * 100.0)).unwrap_or_default()
}

/// What the console says of the heap profiles and the Go profiles of `s`: each process's growth, its top
/// stacks and its own call sites.
pub(crate) fn console(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    for (side, growth) in s.heap_profile.iter().flat_map(growths) {
        writeln!(
            out,
            "  heap profile, {}: {} of growth{}; top stacks:",
            side.name(),
            human_bytes(growth.profiled_growth_bytes),
            coverage(growth, "the allocator's")
        )?;
        for stack in growth.top.iter().take(3) {
            let frame = stack.frames.first().map_or("", String::as_str);
            writeln!(out, "    {} ({:.0}%) {frame}", human_bytes(stack.bytes), stack.share * 100.0)?;
        }
        for site in &growth.call_sites {
            writeln!(
                out,
                "    own call site: {}, {} ({:.0}%)",
                site.function,
                human_bytes(site.bytes),
                site.share * 100.0
            )?;
        }
    }
    for (side, profiles) in go_profiles(s) {
        let per = profiles.bytes_per_connection.map(|b| {
            let rss = profiles.rss_per_connection.map(|r| format!(" (RSS {})", human_bytes(r))).unwrap_or_default();
            format!(", {} per connection{rss}", human_bytes(b))
        });
        writeln!(
            out,
            "  profiles, {}: {} grew{}; its own call sites:",
            side.name(),
            human_bytes(profiles.inuse_bytes_growth as f64),
            per.unwrap_or_default()
        )?;
        for site in &profiles.call_sites {
            let file = site.file_name();
            writeln!(out, "    {} at {file}:{}, {} objects", site.function, site.line, site.inuse_objects_growth)?;
        }
        if profiles.call_sites.is_empty() {
            writeln!(out, "    none: no function of its own holds any of the growth")?;
        }
    }
    Ok(())
}

/// The "where the memory is" section of a markdown report, its heading at `level` (2: `##`).
pub(crate) fn markdown(out: &mut dyn Write, report: &HeapReport, level: usize) -> io::Result<()> {
    write!(
        out,
        "{} Where the memory is\n\nThe allocation stacks whose in-use bytes grew most between the checkpoint after \
         warm-up and the one after the load, from jemalloc's sampling heap profiler (one sample per 128 KiB \
         allocated, unscaled as jeprof does), like `pprof -base`. The frames are the innermost ones outside the \
         standard library. `heap.pb.gz` (`heap.server.pb.gz`) holds the end profile for the pprof tools, and \
         `flamegraph.client.svg` (`flamegraph.server.svg`) draws it.\n",
        "#".repeat(level)
    )?;
    for (side, growth) in growths(report) {
        write!(out, "\n{} {}\n\n", "#".repeat(level + 1), side.name())?;
        markdown_stacks(out, growth)?;
        markdown_own_call_sites(out, side, growth)?;
    }
    Ok(())
}

/// How much grew, and the stacks that grew most.
fn markdown_stacks(out: &mut dyn Write, growth: &HeapGrowth) -> io::Result<()> {
    let profiled = human_bytes(growth.profiled_growth_bytes);
    match (growth.measured_growth_bytes, growth.coverage) {
        (Some(measured), Some(coverage)) => write!(
            out,
            "The profile accounts for {profiled} of growth; the allocator counted {} between the same checkpoints \
             ({:.0}%).\n\n",
            human_bytes(measured),
            coverage * 100.0
        )?,
        _ => write!(out, "The profile accounts for {profiled} of growth.\n\n")?,
    }
    write!(out, "| grew by | share | where (innermost first) |\n|---:|---:|---|\n")?;
    for stack in &growth.top {
        let frames: Vec<String> = stack.frames.iter().map(|frame| format!("`{}`", frame.replace('|', "\\|"))).collect();
        writeln!(out, "| {} | {:.1}% | {} |", human_bytes(stack.bytes), stack.share * 100.0, frames.join(" ← "))?;
    }
    Ok(())
}

/// Where the process's own code allocated what grew.
fn markdown_own_call_sites(out: &mut dyn Write, side: Side, growth: &HeapGrowth) -> io::Result<()> {
    let name = side.name();
    write!(
        out,
        "\nWhere the {name}'s own code allocated what grew (the innermost frame of leaklab's crates on each stack; \
         a closure counts in its function):\n\n"
    )?;
    if growth.call_sites.is_empty() {
        return writeln!(out, "No function of the {name}'s own holds 5% or more of the growth.");
    }
    write!(out, "| call site | bytes grown | share |\n|---|---:|---:|\n")?;
    for site in &growth.call_sites {
        writeln!(
            out,
            "| `{}` | {} | {:.1}% |",
            site.function.replace('|', "\\|"),
            human_bytes(site.bytes),
            site.share * 100.0
        )?;
    }
    Ok(())
}

/// "From the profile to the code": a Go process's profiles compared, as a markdown section at `level`.
pub(crate) fn go_markdown(out: &mut dyn Write, p: &GoProfiles, side: Side, level: usize) -> io::Result<()> {
    let name = side.name();
    let rate = p.sample_period_bytes.map_or_else(|| "unknown".to_owned(), |b| format!("one sample per {b} bytes"));
    write!(
        out,
        "{} From the profile to the code: the {name}\n\nThe {name}'s own heap and goroutine profiles, fetched \
         from {} when warm-up ended and when the load ended (`pprof-{name}-warmup.heap.pb.gz`, \
         `pprof-{name}-end.heap.pb.gz`…; `go tool pprof -base` reads them). Sampling: {rate}. In-use memory grew \
         by {} in {} objects, {} per connection the {name} kept open ({} connections); its RSS grew by {} per \
         connection over the same window.{}\n\n",
        "#".repeat(level),
        p.url,
        human_bytes(p.inuse_bytes_growth as f64),
        p.inuse_objects_growth,
        bytes_or_na(p.bytes_per_connection),
        p.connections_grown.map_or_else(|| "n/a".to_owned(), |n| n.to_string()),
        bytes_or_na(p.rss_per_connection),
        resident_mismatch(p).map(|s| format!(" {s}")).unwrap_or_default(),
    )?;
    go_markdown_growth(out, p)?;
    go_markdown_call_sites(out, p, name)?;
    go_markdown_goroutines(out, p)
}

/// What grew, by where it was allocated.
fn go_markdown_growth(out: &mut dyn Write, p: &GoProfiles) -> io::Result<()> {
    write!(
        out,
        "What grew, by where it was allocated:\n\n| allocated in | grew by | share | per connection |\n\
         |---|---:|---:|---:|\n"
    )?;
    for g in &p.growth {
        let name = match &g.known_as {
            Some(known) => format!("`{}` ({known})", g.function),
            None => format!("`{}`", g.function),
        };
        writeln!(
            out,
            "| {name} | {} | {:.1}% | {} |",
            human_bytes(g.inuse_bytes_growth as f64),
            g.share * 100.0,
            bytes_or_na(g.bytes_per_connection)
        )?;
    }
    Ok(())
}

/// Where the process's own code allocated what grew, at its lines; what the table leaves out, and whether
/// the sampling was too coarse to rank them.
fn go_markdown_call_sites(out: &mut dyn Write, p: &GoProfiles, name: &str) -> io::Result<()> {
    write!(
        out,
        "\nWhere the {name}'s own code allocated what grew (the innermost frame of its own code on each stack):\n\n"
    )?;
    if p.call_sites.is_empty() {
        writeln!(out, "No call site of the {name}'s own code holds any of the growth.")?;
    } else {
        write!(out, "| call site | at | objects grown | bytes grown |\n|---|---|---:|---:|\n")?;
        for site in &p.call_sites {
            let file = site.file_name();
            writeln!(
                out,
                "| `{}` | `{file}:{}` | {} | {} |",
                site.function,
                site.line,
                site.inuse_objects_growth,
                human_bytes(site.inuse_bytes_growth as f64)
            )?;
        }
    }
    if p.smaller_call_sites > 0 {
        writeln!(
            out,
            "\n{} more of its functions hold {} together, each under 5% of what its own code allocated or under \
             32 samples' worth (requests in flight when a profile was taken).",
            p.smaller_call_sites,
            human_bytes(p.smaller_call_sites_bytes as f64)
        )?;
    }
    if p.too_coarse {
        writeln!(
            out,
            "\nOnly about {:.0} heap samples fell under these call sites: too few to rank them. Set a finer \
             `runtime.MemProfileRate` in the process (the Go peer's `-mem-profile-rate 1024`).",
            p.call_site_samples
        )?;
    }
    Ok(())
}

/// The goroutines that grew, by where they are parked.
fn go_markdown_goroutines(out: &mut dyn Write, p: &GoProfiles) -> io::Result<()> {
    if p.goroutines.is_empty() {
        return Ok(());
    }
    write!(
        out,
        "\nGoroutines grown, by where they are parked ({} per connection in all):\n\n\
         | parked in | grown | per connection |\n|---|---:|---:|\n",
        goroutines(p.goroutines_per_connection)
    )?;
    for g in &p.goroutines {
        writeln!(out, "| `{}` | {} | {} |", g.parked_in, g.grown, goroutines(g.per_connection))?;
    }
    Ok(())
}

/// Goroutines per connection: `3.00`, or `n/a`.
fn goroutines(per_connection: Option<f64>) -> String {
    per_connection.map_or_else(|| "n/a".to_owned(), |g| format!("{g:.2}"))
}

/// Why the profile's bytes per connection and the RSS's differ, when they differ by more than 15%.
fn resident_mismatch(p: &GoProfiles) -> Option<&'static str> {
    let ratio = p.rss_per_connection? / p.bytes_per_connection.filter(|b| *b > 0.0)?;
    if ratio < 0.85 {
        Some(
            "RSS grew less than the heap held: a buffer is in use from its allocation, but its pages become \
             resident only when written to, and a connection that carries small messages never writes most of \
             its 64 KiB write buffer.",
        )
    } else if ratio > 1.15 {
        Some(
            "RSS grew more than the heap held: goroutine stacks, garbage not yet collected and memory outside \
             the Go heap (cgo) are resident but not in a heap profile.",
        )
    } else {
        None
    }
}

/// Stacks listed per process in a page's "where the memory is" table.
const HTML_HEAP_ROWS: usize = 8;

/// "Where the memory is" on a page: each process's top stacks, named in the incident's words.
pub(crate) fn html(out: &mut dyn Write, report: &HeapReport) -> io::Result<()> {
    write!(
        out,
        "<h3>Where the memory is</h3>\n<p>The allocation stacks whose in-use bytes grew most during the measured \
         load, from jemalloc's sampling heap profiler (like <code>pprof -base</code>). The write and read buffers \
         of each HTTP/2 connection are Rust's counterparts of grpc-go's <code>newBufWriter</code> and \
         <code>bufio.NewReaderSize</code>.</p>\n"
    )?;
    for (side, growth) in growths(report) {
        write!(
            out,
            "<h3>{}: {} of growth profiled{}</h3>\n<table>\n<thead><tr><th class=\"n\">grew by</th>\
             <th class=\"n\">share</th><th>what it is</th><th>where (innermost frame first)</th></tr></thead>\n\
             <tbody>\n",
            side.name(),
            human_bytes(growth.profiled_growth_bytes),
            coverage(growth, "what the allocator counted")
        )?;
        for stack in growth.top.iter().take(HTML_HEAP_ROWS) {
            let frames: Vec<String> = stack.frames.iter().take(4).map(|frame| escape(frame)).collect();
            writeln!(
                out,
                "<tr><td class=\"n\">{}</td><td class=\"n\">{:.1}%</td><td>{}</td><td class=\"frames\">{}</td></tr>",
                human_bytes(stack.bytes),
                stack.share * 100.0,
                escape(what_it_is(&stack.frames).unwrap_or("")),
                frames.join(" ← ")
            )?;
        }
        write!(out, "</tbody>\n</table>\n")?;
    }
    Ok(())
}

/// A heap stack in the words of the incident, for the stacks a leaked connection is made of.
fn what_it_is(frames: &[String]) -> Option<&'static str> {
    let innermost = frames.first()?;
    let anywhere = |needle: &str| frames.iter().any(|frame| frame.contains(needle));
    Some(if innermost.contains("FramedWrite") {
        "the connection's write buffer (grpc-go: newBufWriter)"
    } else if innermost.contains("ReadFrame") {
        "the connection's read buffer (grpc-go: bufio.NewReaderSize)"
    } else if innermost.contains("FrameDecoder") {
        "the connection's HTTP/2 frame decoder"
    } else if innermost.contains("mpsc") && anywhere("tower::buffer") {
        "the channel's request queue (tower Buffer)"
    } else if innermost.contains("hyper::client::dispatch") || innermost.contains("mpsc") && anywhere("hyper::client") {
        "the connection's request dispatch queue (hyper)"
    } else if innermost.contains("slab::Slab") {
        "HTTP/2 stream state"
    } else if innermost.contains("hpack") {
        "the connection's HTTP/2 header table (HPACK)"
    } else if innermost.contains("http2::Builder") && innermost.contains("handshake") {
        "the connection's HTTP/2 state (hyper handshake)"
    } else if innermost.contains("tokio::runtime::task") || anywhere("tokio::task::spawn") {
        "the connection's task"
    } else {
        return None;
    })
}

/// "From the profile to the code" on a page: a Go client's profiles compared, the call sites of its own
/// code that created what grew, and what each leaked connection holds.
pub(crate) fn go_html(out: &mut dyn Write, p: &GoProfiles) -> io::Result<()> {
    let rate =
        p.sample_period_bytes.map_or_else(|| "an unknown rate".to_owned(), |b| format!("one sample per {b} bytes"));
    write!(
        out,
        "<h3>From the profile to the code</h3>\n<p>The client's own heap profiles from <code>net/http/pprof</code>, \
         after warm-up and at the end ({rate}): in-use memory grew by {}, {} per connection it kept open (its RSS: {} \
         per connection). The write and read buffers hold most of it, but gRPC's own goroutines allocate them, with \
         no frame of the service on their stacks. What <code>grpc.Dial</code> allocates before it returns carries \
         the caller's frames, and so names the lines that dial:</p>\n",
        human_bytes(p.inuse_bytes_growth as f64),
        bytes_or_na(p.bytes_per_connection),
        bytes_or_na(p.rss_per_connection),
    )?;
    go_html_call_sites(out, p)?;
    go_html_per_connection(out, p)
}

/// The call sites of the client's own code, at their lines.
fn go_html_call_sites(out: &mut dyn Write, p: &GoProfiles) -> io::Result<()> {
    write!(
        out,
        "<table>\n<thead><tr><th>call site</th><th>at</th><th class=\"n\">objects grown</th>\
         <th class=\"n\">bytes grown</th></tr></thead>\n<tbody>\n"
    )?;
    for site in &p.call_sites {
        let file = site.file_name();
        writeln!(
            out,
            "<tr><td><code>{}</code></td><td><code>{}:{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&site.function),
            escape(&file),
            site.line,
            site.inuse_objects_growth,
            human_bytes(site.inuse_bytes_growth as f64)
        )?;
    }
    if p.call_sites.is_empty() {
        writeln!(
            out,
            "<tr><td colspan=\"4\">No call site of the client's own code holds any of the growth.</td></tr>"
        )?;
    }
    write!(out, "</tbody>\n</table>\n")
}

/// The buffers the incident named and the goroutines, per leaked connection.
fn go_html_per_connection(out: &mut dyn Write, p: &GoProfiles) -> io::Result<()> {
    let buffers: Vec<String> = p
        .growth
        .iter()
        .filter_map(|g| {
            Some(format!(
                "{} {:.0}% ({} per connection)",
                g.known_as.as_deref()?,
                g.share * 100.0,
                bytes_or_na(g.bytes_per_connection)
            ))
        })
        .collect();
    if buffers.is_empty() && p.goroutines_per_connection.is_none() {
        return Ok(());
    }
    let goroutines = p
        .goroutines_per_connection
        .map(|g| format!("; {g:.2} goroutines per connection grew with them"))
        .unwrap_or_default();
    writeln!(out, "<p>Of all that grew: {}{goroutines}.</p>", escape(&buffers.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `write` writes, as text.
    fn text(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut bytes = Vec::new();
        write(&mut bytes).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_profiles_bytes_per_connection_are_set_beside_the_rss_and_a_gap_is_explained() {
        let go = leaklab_engine::fixtures::go_profiles;
        let close = text(|out| go_markdown(out, &go(120_000.0, 126_000.0), Side::Server, 2));
        assert!(close.starts_with("## From the profile to the code: the server"), "{close}");
        assert!(
            close.contains("120.0 KB per connection the server kept open (100 connections); its RSS grew by 126.0 KB")
        );
        assert!(!close.contains("RSS grew less") && !close.contains("RSS grew more"), "{close}");
        assert!(text(|out| go_markdown(out, &go(110_000.0, 86_000.0), Side::Client, 2)).contains("RSS grew less"));
        assert!(text(|out| go_markdown(out, &go(110_000.0, 140_000.0), Side::Client, 2)).contains("RSS grew more"));
    }

    #[test]
    fn heap_stacks_are_named_in_the_incidents_words() {
        let stack = |frames: &[&str]| frames.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        let what = |frames: &[&str]| what_it_is(&stack(frames));
        assert_eq!(
            what(&[
                "h2::codec::framed_write::FramedWrite<T,B>::new",
                "hyper::client::conn::http2::Builder<Ex>::handshake"
            ]),
            Some("the connection's write buffer (grpc-go: newBufWriter)")
        );
        assert_eq!(
            what(&["<tokio_util::codec::framed_impl::ReadFrame as core::default::Default>::default"]),
            Some("the connection's read buffer (grpc-go: bufio.NewReaderSize)")
        );
        assert_eq!(
            what(&["tokio::sync::mpsc::chan::channel", "tower::buffer::service::Buffer<Req,F>::pair"]),
            Some("the channel's request queue (tower Buffer)")
        );
        let hyper_queue = Some("the connection's request dispatch queue (hyper)");
        assert_eq!(what(&["hyper::client::dispatch::channel", "hyper::client::conn::http2::handshake"]), hyper_queue);
        assert_eq!(what(&["tokio::sync::mpsc::chan::channel", "hyper::client::conn::http2::handshake"]), hyper_queue);
        assert_eq!(what(&["main"]), None);
        assert_eq!(what(&[]), None);
    }

    #[test]
    fn a_go_clients_call_sites_are_tabled_with_their_lines() {
        let html = text(|out| go_html(out, &leaklab_engine::fixtures::go_profiles(120_000.0, 126_000.0)));
        assert!(html.contains("<code>main.chargePayment</code></td><td><code>app_payments.go:14</code>"), "{html}");
        assert!(html.contains("120.0 KB per connection it kept open (its RSS: 126.0 KB"), "{html}");
    }

    #[test]
    fn the_console_and_the_report_word_a_process_s_profiles_the_same() {
        let (mut summary, _) = leaklab_engine::fixtures::scripted_report();
        summary.server_profiles = Some(leaklab_engine::fixtures::go_profiles(120_000.0, 126_000.0));
        let console = text(|out| console(out, &summary));
        assert_eq!(
            console,
            "  profiles, server: 12.0 MB grew, 120.0 KB per connection (RSS 126.0 KB); its own call sites:\n    \
             main.chargePayment at app_payments.go:14, 40000 objects\n"
        );
        let sides: Vec<Side> = go_profiles(&summary).map(|(side, _)| side).collect();
        assert_eq!(sides, [Side::Server], "the server's profiles are the server's");
    }
}
