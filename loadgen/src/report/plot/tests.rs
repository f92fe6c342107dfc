//! The plot, drawn from a scripted run: its panels, its lines and their styles.

use super::lines::{self, Line, Weight};
use super::panels::phase_starts;
use super::*;
use leaklab_engine::fixtures::{scripted_report, scripted_report_with};
use leaklab_engine::sample::Phase;
use leaklab_engine::scenario::PolicyName;
use leaklab_engine::summary::Side;

#[test]
fn png_and_svg_are_drawn_with_their_legend_axes_and_verdict() {
    let (summary, samples) = scripted_report();
    let report = Report { summary, samples };
    let mut png = Vec::new();
    PngPlot.export(&report, &mut png).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = crate::report::to_string(&SvgPlot, &report).unwrap();
    assert!(svg.contains("client RSS") && svg.contains("server connections"), "legend missing");
    assert!(svg.contains("seconds since start") && svg.contains("MiB"), "axis titles missing");
    assert!(svg.contains("verdict: client LEAK") && svg.contains("(expected leak: met)"), "verdict line missing");
    assert!(!svg.contains("Server metrics"), "a panel for metrics no endpoint gave");
}

#[test]
fn scraped_server_metrics_get_a_panel_of_their_own() {
    let (summary, mut samples) = scripted_report();
    for (index, sample) in samples.iter_mut().enumerate() {
        sample.server_metrics.insert("go_goroutines".to_owned(), 10.0 + index as f64 * 3.0);
    }
    let (lines, _) = lines::metrics(&samples);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].points.last().map(|p| p.1), Some(100.0), "the peak is 100%");
    let svg =
        crate::report::to_string(&SvgPlot, &Report { summary: summary.clone(), samples: samples.clone() }).unwrap();
    assert!(svg.contains("Server metrics") && svg.contains("go_goroutines"), "metrics panel missing");
    // A client's counters share the panel, named as the client's.
    for (index, sample) in samples.iter_mut().enumerate() {
        sample.counters.insert("goroutines".to_owned(), 5 + index as u64 * 4);
    }
    let (lines, title) = lines::metrics(&samples);
    assert_eq!(title, "Client counters and server metrics, each as % of its peak");
    assert!(lines[0].label.starts_with("client goroutines"), "{}", lines[0].label);
    let svg = crate::report::to_string(&SvgPlot, &Report { summary, samples }).unwrap();
    assert!(svg.contains("Client counters and server metrics") && svg.contains("client goroutines"));
}

#[test]
fn open_streams_are_drawn_under_the_servers_stream_limit() {
    let (mut summary, samples) = scripted_report();
    summary.policy = Some(PolicyName::StreamLeak);
    let svg =
        crate::report::to_string(&SvgPlot, &Report { summary: summary.clone(), samples: samples.clone() }).unwrap();
    assert!(svg.contains("client streams") && svg.contains("server streams"), "stream lines missing");
    assert!(!svg.contains("stream limit"), "a limit the server does not have");
    summary.plan.as_mut().expect("a built-in run's plan").max_concurrent_streams = Some(300);
    summary.client.streams = Some(leaklab_verdict::stats::Span { start: 0, end: 300, peak: 300 });
    let svg =
        crate::report::to_string(&SvgPlot, &Report { summary: summary.clone(), samples: samples.clone() }).unwrap();
    assert!(svg.contains("stream limit (300)"), "the limit's line missing");
    summary.plan.as_mut().expect("a built-in run's plan").max_concurrent_streams = Some(1_000);
    summary.client.streams = Some(leaklab_verdict::stats::Span { start: 0, end: 40, peak: 40 });
    let svg = crate::report::to_string(&SvgPlot, &Report { summary, samples }).unwrap();
    assert!(!svg.contains("stream limit"), "a limit far above the streams flattens them");
}

#[test]
fn phases_start_where_their_first_sample_is() {
    let (_, samples) = scripted_report();
    let starts = phase_starts(&samples);
    let phases: Vec<Phase> = starts.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, [Phase::Baseline, Phase::Warmup, Phase::Load, Phase::Cooldown]);
}

/// The line labelled `label` among `lines`.
fn line<'a>(lines: &'a [Line], label: &str) -> &'a Line {
    lines.iter().find(|line| line.label == label).unwrap_or_else(|| panic!("no line {label:?}"))
}

#[test]
fn a_streams_line_is_dashed_because_it_is_the_servers() {
    let (_, samples) = scripted_report();
    let streams = lines::streams(&samples, Some(300));
    let processes: Vec<Option<Side>> = streams.iter().map(|line| line.process).collect();
    assert_eq!(processes, [Some(Side::Client), Some(Side::Server), None], "the limit is neither's");
    for line in &streams[..2] {
        assert_eq!(line.dashed, line.process == Some(Side::Server), "{}", line.label);
    }
    // Relabelled, a line keeps its process's style: the label says nothing of how it is drawn.
    let mut server = streams[1].clone();
    server.label = "client-side view of the server".into();
    assert!(server.dashed && server.process == Some(Side::Server));
}

#[test]
fn each_process_s_own_lines_are_drawn_in_its_style() {
    let (_, samples) = scripted_report();
    let memory = lines::memory(&samples);
    let labels: Vec<&str> = memory.iter().map(|line| line.label.as_str()).collect();
    assert_eq!(labels, ["client RSS", "client allocated (jemalloc)", "server RSS", "server allocated (jemalloc)"]);
    let width = |line: &Line| line.style().stroke_width;
    // The client's drawn wider than the server's, so where the two coincide both show.
    assert_eq!(width(line(&memory, "client RSS")), 5);
    assert_eq!(width(line(&memory, "client allocated (jemalloc)")), 4);
    assert_eq!(width(line(&memory, "server RSS")), 2);
    assert_eq!(width(line(&memory, "server allocated (jemalloc)")), 2);
    for line in &memory {
        assert_eq!(line.process, Some(if line.label.starts_with("client") { Side::Client } else { Side::Server }));
    }
}

#[test]
fn a_process_without_an_allocator_shows_the_parts_of_its_rss_instead() {
    let (_, samples) = scripted_report_with(|samples| {
        for sample in samples.iter_mut() {
            sample.client.jemalloc = None;
            let rss = sample.client.rss_bytes;
            sample.client.rss_parts =
                Some(leaklab_probe::procfs::RssParts { anon_bytes: rss / 2, file_bytes: rss / 2, shmem_bytes: 0 });
        }
    });
    let memory = lines::memory(&samples);
    let labels: Vec<&str> = memory.iter().map(|line| line.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "client RSS",
            "client anonymous (RssAnon)",
            "client file-backed (RssFile)",
            "server RSS",
            "server allocated (jemalloc)"
        ]
    );
    let file = line(&memory, "client file-backed (RssFile)");
    assert_eq!((file.process, file.weight, file.dashed), (Some(Side::Client), Weight::Thin, false));
    assert_eq!(line(&memory, "client anonymous (RssAnon)").style().stroke_width, 4);
}

#[test]
fn a_runtime_s_live_heap_is_drawn_at_its_readings_beside_the_parts_of_its_rss() {
    use leaklab_probe::{GcRuntime, RuntimeHeap};
    let (_, samples) = scripted_report_with(|samples| {
        for (at, sample) in samples.iter_mut().enumerate() {
            sample.client.jemalloc = None;
            let rss = sample.client.rss_bytes;
            sample.client.rss_parts =
                Some(leaklab_probe::procfs::RssParts { anon_bytes: rss / 2, file_bytes: rss / 2, shmem_bytes: 0 });
            // A reading every third sample, as a heap watch slower than the sampler gives them.
            sample.client.runtime_heap = (at % 3 == 0).then_some(RuntimeHeap {
                runtime: GcRuntime::Jvm,
                live_bytes: 8 << 20,
                committed_bytes: 64 << 20,
                native_bytes: (at >= 3).then_some(12 << 20),
            });
        }
    });
    let memory = lines::memory(&samples);
    let live = line(&memory, "client live heap (after full GC)");
    assert_eq!((live.process, live.weight, live.dashed), (Some(Side::Client), Weight::Own, false));
    assert_eq!(live.points.len(), samples.len().div_ceil(3), "one point per reading, none between");
    assert!(live.points.iter().all(|&(_, mib)| mib == 8.0), "{:?}", live.points);
    assert!(line(&memory, "client heap committed").dashed);
    // Outside the heap where a reading has it: not the first, whose runtime did not say.
    let native = line(&memory, "client outside the heap");
    assert_eq!((native.weight, native.points.len()), (Weight::Own, samples.len().div_ceil(3) - 1));
    assert!(native.points.iter().all(|&(_, mib)| mib == 12.0), "{:?}", native.points);
    assert!(!memory.iter().any(|line| line.label.starts_with("server") && line.label.contains("heap")));
}

#[test]
fn a_merged_run_s_load_generators_are_drawn_under_their_sum() {
    let (_, samples) = scripted_report_with(|samples| {
        for sample in samples.iter_mut() {
            for segment in ["1/2", "2/2"] {
                let segment = leaklab_engine::scenario::Segment::parse(segment).unwrap();
                let client = sample.client;
                let part = leaklab_engine::sample::SegmentSample { requests_ok: 0, requests_failed: 0, client };
                sample.segments.insert(segment, part);
            }
        }
    });
    let connections = lines::connections(&samples, false);
    let labels: Vec<&str> = connections.iter().map(|line| line.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "client connections, sum of 2",
            "client connections, segment 1/2",
            "client connections, segment 2/2",
            "client fds",
            "server connections",
            "server fds"
        ]
    );
    let widths: Vec<u32> = connections[1..3].iter().map(|line| line.style().stroke_width).collect();
    assert_eq!(widths, [4, 3], "the first load generator widest");
}
