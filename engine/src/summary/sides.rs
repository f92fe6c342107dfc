//! The two processes of a run, as one type: where a figure exists for the
//! client and, when it was measured, for the server, exporters print both
//! with one loop instead of picking out `client_…` and `server_…` pair by pair.

use leaklab_probe::ProcessSnapshot;
use leaklab_verdict::{ProcessVerdict, Verdicts};

use super::{Growth, ProcessSummary, Summary};
use crate::sample::Sample;

pub use leaklab_verdict::Side;

impl Sample {
    /// The `side` process in this sample; the server only when it was measured then.
    pub fn process(&self, side: Side) -> Option<&ProcessSnapshot> {
        match side {
            Side::Client => Some(&self.client),
            Side::Server => self.server.as_ref().map(|server| &server.process),
        }
    }
}

/// A figure of both processes: the client's, and the server's when it was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sides<T> {
    pub client: T,
    pub server: Option<T>,
}

impl<T> Sides<T> {
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Sides<U> {
        Sides { client: f(self.client), server: self.server.map(f) }
    }

    pub fn as_ref(&self) -> Sides<&T> {
        Sides { client: &self.client, server: self.server.as_ref() }
    }

    /// Each process, the client first, with the figure if the process has it.
    pub fn each(&self) -> [(Side, Option<&T>); 2] {
        [(Side::Client, Some(&self.client)), (Side::Server, self.server.as_ref())]
    }

    /// The processes that have the figure, the client first.
    pub fn iter(&self) -> impl Iterator<Item = (Side, &T)> {
        self.each().into_iter().filter_map(|(side, figure)| Some((side, figure?)))
    }

    /// The figure of `side`, if that process has it.
    pub fn get(&self, side: Side) -> Option<&T> {
        match side {
            Side::Client => Some(&self.client),
            Side::Server => self.server.as_ref(),
        }
    }
}

impl Summary {
    /// Both processes over the run.
    pub fn processes(&self) -> Sides<&ProcessSummary> {
        Sides { client: &self.client, server: self.server.as_ref() }
    }
}

impl Sides<&ProcessVerdict> {
    /// Both verdicts.
    pub fn of(verdicts: &Verdicts) -> Sides<&ProcessVerdict> {
        Sides { client: &verdicts.client, server: verdicts.server.as_ref() }
    }
}

/// One process's growth per request over the loaded window (see [`Growth`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrowthPerRequest {
    pub allocated_bytes: Option<f64>,
    pub rss_bytes: Option<f64>,
    pub rss_anon_bytes: Option<f64>,
    pub connections: Option<f64>,
    pub streams: Option<f64>,
}

impl Growth {
    /// Each process's growth per request.
    pub fn per_request(&self) -> Sides<GrowthPerRequest> {
        Sides {
            client: GrowthPerRequest {
                allocated_bytes: self.client_allocated_bytes_per_request,
                rss_bytes: self.client_rss_bytes_per_request,
                rss_anon_bytes: self.client_rss_anon_bytes_per_request,
                connections: self.client_connections_per_request,
                streams: self.client_streams_per_request,
            },
            server: Some(GrowthPerRequest {
                allocated_bytes: self.server_allocated_bytes_per_request,
                rss_bytes: self.server_rss_bytes_per_request,
                rss_anon_bytes: self.server_rss_anon_bytes_per_request,
                connections: self.server_connections_per_request,
                streams: self.server_streams_per_request,
            }),
        }
    }
}
