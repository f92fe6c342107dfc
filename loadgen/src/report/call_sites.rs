//! "From the profile to the code", and the one place that words it: a process's own profiles compared
//! ([`Profiles`]: what grew, the call sites of its own code, bytes and goroutines per connection, how its
//! RSS grew beside its heap), in the words of the runtime they came from: Go's `net/http/pprof`, a Rust
//! service's jemalloc profile, V8's sampling heap profiler or `tracemalloc` through leaklab's agent,
//! grpc-java's orphan reports and class histograms. The console, `report.md`, `demo.md` and the demo's
//! page all call these.

use std::io::{self, Write};

use super::html::escape;
use super::units::human_bytes;
use leaklab_engine::heap::own::CodeRuntime;
use leaklab_engine::heap::profiles::Profiles;
use leaklab_engine::heap::sites::CallSite;
use leaklab_engine::summary::{Side, Summary};

/// Each process's profiles in `s`, compared, the client first.
pub(crate) fn compared(s: &Summary) -> impl Iterator<Item = (Side, &Profiles)> {
    [(Side::Client, s.profiles.as_ref()), (Side::Server, s.server_profiles.as_ref())]
        .into_iter()
        .filter_map(|(side, profiles)| Some((side, profiles?)))
}

/// `n/a`, or the bytes.
fn bytes_or_na(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), human_bytes)
}

/// What a call site's count counts: objects, or grpc-java's reported channels.
fn counted(p: &Profiles) -> &'static str {
    if p.runtime == CodeRuntime::Jvm { "channels" } else { "objects" }
}

/// The shared helper the listed call sites went through, when they all went through the same one.
fn common_helper(sites: &[CallSite]) -> Option<&str> {
    let first = sites.first()?.through.as_deref()?;
    sites.iter().all(|site| site.through.as_deref() == Some(first)).then_some(first)
}

/// A call site's function, and the helper it went through when the sites do not share one.
fn site_name(site: &CallSite, common: Option<&str>) -> String {
    match (&site.through, common) {
        (Some(helper), None) => format!("{} (through {helper})", site.function),
        _ => site.function.clone(),
    }
}

/// What the console says of each process's profiles: what grew, and its own call sites.
pub(crate) fn console(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    for (side, profiles) in compared(s) {
        let per = profiles.bytes_per_connection.map(|b| {
            let rss = profiles.rss_per_connection.map(|r| format!(" (RSS {})", human_bytes(r))).unwrap_or_default();
            format!(", {} per connection{rss}", human_bytes(b))
        });
        let through = common_helper(&profiles.call_sites).map(|h| format!(" (through {h})")).unwrap_or_default();
        // grpc-java's reports alone (no class histograms) say where, not how much.
        let grew = match profiles.runtime == CodeRuntime::Jvm && profiles.growth.is_empty() {
            true => "grpc-java's reports".to_owned(),
            false => format!("{} grew{}", human_bytes(profiles.inuse_bytes_growth as f64), per.unwrap_or_default()),
        };
        writeln!(out, "  profiles, {}: {grew}; its own call sites{through}:", side.name())?;
        let common = common_helper(&profiles.call_sites);
        for site in &profiles.call_sites {
            let (file, name) = (site.file_name(), site_name(site, common));
            let count = format!("{} {}", site.inuse_objects_growth, counted(profiles));
            writeln!(out, "    {name} at {file}:{}, {count}", site.line)?;
        }
        if profiles.call_sites.is_empty() {
            writeln!(out, "    none: no function of its own holds any of the growth")?;
        }
    }
    Ok(())
}

/// Where the profiles came from and what their files are, in the runtime's words.
fn provenance(p: &Profiles, name: &str) -> String {
    let rate = p.sample_period_bytes.map_or_else(|| "unknown".to_owned(), |b| format!("one sample per {b} bytes"));
    let files =
        format!("`pprof-{name}-warmup.heap.pb.gz`, `pprof-{name}-end.heap.pb.gz`; `go tool pprof -base` reads them");
    match p.runtime {
        CodeRuntime::Go => format!(
            "The {name}'s own heap and goroutine profiles, fetched from {} when warm-up ended and at the last \
             checkpoint of the load ({files}). Sampling: {rate}.",
            p.url
        ),
        CodeRuntime::Rust => format!(
            "The {name}'s jemalloc heap profiles (bytes alone, as `jemalloc_pprof` serves them), fetched from {} \
             when warm-up ended and at the last checkpoint of the load ({files}). Sampling: {rate}.",
            p.url
        ),
        CodeRuntime::V8 => format!(
            "V8's sampling heap profiles of the {name}, taken by {} after a collection when warm-up ended and at the last checkpoint of the load: the live objects' allocation stacks, {rate} \
             (`profile-{name}-end.heapprofile` opens in Chrome DevTools' Memory panel; {files}).",
            p.url
        ),
        CodeRuntime::Cpython => format!(
            "`tracemalloc` snapshots of the {name}, taken by {} after a collection when warm-up ended and as the \
             process exited (or the watch ended): every Python allocation still alive, by traceback \
             ({files}). grpcio keeps a channel's connection and buffers in gRPC C-core, outside Python's heap, \
             where tracemalloc cannot see them; the Python objects each channel creates at its caller's line \
             name the call sites, and the RSS says what each costs.",
            p.url
        ),
        CodeRuntime::Jvm => format!(
            "grpc-java's own reports of channels dropped without `shutdown()` name the {name}'s call sites, with \
             their allocation stacks; the class histograms ({}, after a full collection, when warm-up ended \
             and at the last checkpoint of the load: `histogram-{name}-warmup.txt`, `histogram-{name}-end.txt`) \
             say what grew, by class.",
            p.url
        ),
    }
}

/// "From the profile to the code": a process's profiles compared, as a markdown section at `level`.
pub(crate) fn markdown(out: &mut dyn Write, p: &Profiles, side: Side, level: usize) -> io::Result<()> {
    let name = side.name();
    // Per connection only where connections grew: grpc-js and grpcio share one among their channels.
    let per_connection = match p.connections_grown.filter(|n| *n > 0) {
        Some(grown) => format!(
            ", {} per connection the {name} kept open ({grown} connections); its RSS grew by {} per connection over \
             the same window",
            bytes_or_na(p.bytes_per_connection),
            bytes_or_na(p.rss_per_connection),
        ),
        None => String::new(),
    };
    write!(
        out,
        "{} From the profile to the code: the {name}\n\n{} What was kept grew by {} in {} objects{per_connection}.{}\n\n",
        "#".repeat(level),
        provenance(p, name),
        human_bytes(p.inuse_bytes_growth as f64),
        p.inuse_objects_growth,
        resident_mismatch(p).map(|s| format!(" {s}")).unwrap_or_default(),
    )?;
    markdown_growth(out, p)?;
    markdown_call_sites(out, p, name)?;
    markdown_goroutines(out, p)
}

/// What grew, by where it was allocated (or by class).
fn markdown_growth(out: &mut dyn Write, p: &Profiles) -> io::Result<()> {
    if p.growth.is_empty() {
        return Ok(());
    }
    let by = if p.runtime == CodeRuntime::Jvm { "class" } else { "allocated in" };
    write!(
        out,
        "What grew, by where it was allocated:\n\n| {by} | grew by | share | per connection |\n|---|---:|---:|---:|\n"
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

/// Where the process's own code allocated what grew, at its lines; the helper the callers went through,
/// what the table leaves out, and whether the sampling was too coarse to rank them.
fn markdown_call_sites(out: &mut dyn Write, p: &Profiles, name: &str) -> io::Result<()> {
    let rule = "the innermost frame of its own code on each stack, or the caller of a helper several of its \
                functions share";
    write!(out, "\nWhere the {name}'s own code created what grew ({rule}):\n\n")?;
    let common = common_helper(&p.call_sites);
    if p.call_sites.is_empty() {
        writeln!(out, "No call site of the {name}'s own code holds any of the growth.")?;
    } else if p.runtime == CodeRuntime::Jvm {
        write!(out, "| call site | at | channels reported | share |\n|---|---|---:|---:|\n")?;
        for site in &p.call_sites {
            let (file, function) = (site.file_name(), site_name(site, common));
            let share = site.share * 100.0;
            writeln!(out, "| `{function}` | `{file}:{}` | {} | {share:.1}% |", site.line, site.inuse_objects_growth)?;
        }
    } else {
        write!(out, "| call site | at | objects grown | bytes grown |\n|---|---|---:|---:|\n")?;
        for site in &p.call_sites {
            let (file, function) = (site.file_name(), site_name(site, common));
            let bytes = human_bytes(site.inuse_bytes_growth as f64);
            writeln!(out, "| `{function}` | `{file}:{}` | {} | {bytes} |", site.line, site.inuse_objects_growth)?;
        }
    }
    if let Some(helper) = common {
        writeln!(
            out,
            "\nEach went through `{helper}`, the helper they share to build a client: the callers are the sites, \
             since every caller of the helper, leaking or not, has its frame."
        )?;
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
        let finer = match p.runtime {
            CodeRuntime::Go => {
                "a finer `runtime.MemProfileRate` in the process (the Go peer's `-mem-profile-rate 1024`)"
            }
            CodeRuntime::Rust => "a finer `lg_prof_sample` in the process's `MALLOC_CONF`",
            _ => "a finer sampling interval (`LEAKLAB_PROFILE_INTERVAL`, bytes)",
        };
        writeln!(
            out,
            "\nOnly about {:.0} heap samples fell under these call sites: too few to rank them. Set {finer}.",
            p.call_site_samples
        )?;
    }
    Ok(())
}

/// The goroutines that grew, by where they are parked.
fn markdown_goroutines(out: &mut dyn Write, p: &Profiles) -> io::Result<()> {
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

/// Why a Go profile's bytes per connection and the RSS's differ, when they differ by more than 15%.
fn resident_mismatch(p: &Profiles) -> Option<&'static str> {
    if p.runtime != CodeRuntime::Go {
        return None;
    }
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

/// "From the profile to the code" on a page: a client's profiles compared, the call sites of its own code
/// that created what grew, and what each leaked connection holds.
pub(crate) fn html(out: &mut dyn Write, p: &Profiles) -> io::Result<()> {
    write!(out, "<h3>From the profile to the code</h3>\n<p>{}", code_spans(&provenance(p, "client")))?;
    match p.runtime {
        CodeRuntime::Go => writeln!(
            out,
            " In-use memory grew by {}, {} per connection it kept open (its RSS: {} per connection). The write and \
             read buffers hold most of it, but gRPC's own goroutines allocate them, with no frame of the service \
             on their stacks. What <code>grpc.Dial</code> allocates before it returns carries the caller's frames, \
             and so names the lines that dial:</p>",
            human_bytes(p.inuse_bytes_growth as f64),
            bytes_or_na(p.bytes_per_connection),
            bytes_or_na(p.rss_per_connection),
        )?,
        _ => writeln!(
            out,
            " What was kept grew by {}{}. What the client built when it made each channel carries its caller's \
             frames, and so names the lines:</p>",
            human_bytes(p.inuse_bytes_growth as f64),
            p.rss_per_connection
                .map(|rss| format!("; its RSS by {} per connection", human_bytes(rss)))
                .unwrap_or_default(),
        )?,
    }
    html_call_sites(out, p)?;
    html_per_connection(out, p)
}

/// `text` escaped for a page, its `code` spans (backquoted, as in markdown) as `<code>`.
fn code_spans(text: &str) -> String {
    escape(text)
        .split('`')
        .enumerate()
        .map(|(index, part)| if index % 2 == 1 { format!("<code>{part}</code>") } else { part.to_owned() })
        .collect()
}

/// The call sites of the client's own code, at their lines.
fn html_call_sites(out: &mut dyn Write, p: &Profiles) -> io::Result<()> {
    let (count, bytes) = match p.runtime {
        CodeRuntime::Jvm => ("channels reported", "share"),
        _ => ("objects grown", "bytes grown"),
    };
    write!(
        out,
        "<table>\n<thead><tr><th>call site</th><th>at</th><th class=\"n\">{count}</th>\
         <th class=\"n\">{bytes}</th></tr></thead>\n<tbody>\n"
    )?;
    let common = common_helper(&p.call_sites);
    for site in &p.call_sites {
        let last = match p.runtime {
            CodeRuntime::Jvm => format!("{:.1}%", site.share * 100.0),
            _ => human_bytes(site.inuse_bytes_growth as f64),
        };
        writeln!(
            out,
            "<tr><td><code>{}</code></td><td><code>{}:{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&site_name(site, common)),
            escape(&site.file_name()),
            site.line,
            site.inuse_objects_growth,
            last
        )?;
    }
    if p.call_sites.is_empty() {
        writeln!(
            out,
            "<tr><td colspan=\"4\">No call site of the client's own code holds any of the growth.</td></tr>"
        )?;
    }
    write!(out, "</tbody>\n</table>\n")?;
    if let Some(helper) = common {
        writeln!(
            out,
            "<p>Each went through <code>{}</code>, the helper they share to build a client.</p>",
            escape(helper)
        )?;
    }
    Ok(())
}

/// The buffers the incident named (or the channels and transports) and the goroutines, per leaked connection.
fn html_per_connection(out: &mut dyn Write, p: &Profiles) -> io::Result<()> {
    let buffers: Vec<String> = p
        .growth
        .iter()
        .filter_map(|g| {
            let per =
                g.bytes_per_connection.map(|b| format!(" ({} per connection)", human_bytes(b))).unwrap_or_default();
            Some(format!("{} {:.0}%{per}", g.known_as.as_deref()?, g.share * 100.0))
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
        let close = text(|out| markdown(out, &go(120_000.0, 126_000.0), Side::Server, 2));
        assert!(close.starts_with("## From the profile to the code: the server"), "{close}");
        assert!(
            close.contains("120.0 KB per connection the server kept open (100 connections); its RSS grew by 126.0 KB")
        );
        assert!(!close.contains("RSS grew less") && !close.contains("RSS grew more"), "{close}");
        assert!(text(|out| markdown(out, &go(110_000.0, 86_000.0), Side::Client, 2)).contains("RSS grew less"));
        assert!(text(|out| markdown(out, &go(110_000.0, 140_000.0), Side::Client, 2)).contains("RSS grew more"));
    }

    #[test]
    fn a_go_clients_call_sites_are_tabled_with_their_lines() {
        let html = text(|out| html(out, &leaklab_engine::fixtures::go_profiles(120_000.0, 126_000.0)));
        assert!(html.contains("(<code>pprof-client-warmup.heap.pb.gz</code>") && !html.contains('`'), "{html}");
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
        let sides: Vec<Side> = compared(&summary).map(|(side, _)| side).collect();
        assert_eq!(sides, [Side::Server], "the server's profiles are the server's");
    }

    #[test]
    fn a_helper_is_named_once_and_a_jvm_counts_channels() {
        let mut p = leaklab_engine::fixtures::go_profiles(120_000.0, 126_000.0);
        let site = |function: &str, count| CallSite {
            function: function.into(),
            file: "/srv/shop/Payments.java".into(),
            line: 17,
            inuse_bytes_growth: 0,
            inuse_objects_growth: count,
            share: 0.5,
            through: Some("shop.Clients.newChannel".into()),
        };
        p.runtime = CodeRuntime::Jvm;
        p.call_sites = vec![site("shop.Payments.charge", 400), site("shop.Inventory.reserve", 200)];
        let md = text(|out| markdown(out, &p, Side::Client, 2));
        assert!(md.contains("| `shop.Payments.charge` | `Payments.java:17` | 400 | 50.0% |"), "{md}");
        assert_eq!(md.matches("shop.Clients.newChannel").count(), 1, "named once: {md}");
        assert!(md.contains("grpc-java's own reports"), "{md}");
        // Callers that went through different helpers each say which.
        p.call_sites[1].through = Some("shop.Clients.cached".into());
        let md = text(|out| markdown(out, &p, Side::Client, 2));
        assert!(md.contains("`shop.Inventory.reserve (through shop.Clients.cached)`"), "{md}");
    }
}
