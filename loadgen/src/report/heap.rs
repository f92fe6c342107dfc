//! The heap profiles of a run in words, and the one place that words them:
//! jemalloc's stacks that grew most with `--heap-profile` (the engine's
//! [`HeapReport`]). A process's own profiles are worded by
//! [`call_sites`](super::call_sites). The console, `report.md`, `demo.md`
//! and the demo's page all call these; the profiles themselves are written
//! as files by [`profiles`](super::profiles).

use std::io::{self, Write};

use super::html::escape;
use super::units::human_bytes;
use leaklab_engine::heap::{HeapGrowth, HeapReport};
use leaklab_engine::summary::{Side, Summary};

/// Each process's growth in `report`, the client first.
fn growths(report: &HeapReport) -> impl Iterator<Item = (Side, &HeapGrowth)> {
    [(Side::Client, report.client.as_ref()), (Side::Server, report.server.as_ref())]
        .into_iter()
        .filter_map(|(side, growth)| Some((side, growth?)))
}

/// `, 83% of the allocator's`: how much of what the allocator counted the profile accounts for.
fn coverage(growth: &HeapGrowth, of: &str) -> String {
    growth.coverage.map(|c| format!(", {:.0}% of {of}", c * 100.0)).unwrap_or_default()
}

/// What the console says of the heap profiles of `s`: each process's growth, its top stacks and its own
/// call sites.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
