//! What a run's memory is judged against: its tolerance, and what its scenario expects.

/// Fewer rounds give the slope's confidence interval too few points to decide.
pub const MIN_ROUNDS: u32 = 6;

/// How the run's memory is judged, and what the scenario expects.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictPlan {
    /// Growth at or below this many bytes per request is not a leak.
    pub tolerance_bytes_per_request: f64,
    /// Growth at or below this many bytes per second is not a leak: a foreign
    /// client that reports no requests is judged against time.
    pub tolerance_bytes_per_second: f64,
    /// What the scenario expects of the load generator's memory.
    pub expect_client: Option<Expectation>,
    /// What the scenario expects of the server's memory.
    pub expect_server: Option<Expectation>,
    /// The most of the load's requests that may fail.
    pub max_failed_requests: Option<u64>,
}

crate::named! {
    /// What a scenario says a process's memory should do.
    pub enum Expectation, "expectation" {
        /// Grows with every request, without bound.
        Leak = "leak",
        /// Stays flat once warmed up.
        NoLeak = "no-leak",
        /// Grows at first, then levels off (a cache or pool filling up).
        Bounded = "bounded",
        /// Does not grow without bound: either of the two above.
        NotLeak = "not-leak",
    }
}

impl VerdictPlan {
    /// Whether the scenario expects anything: of either process's memory, or of its failed requests.
    pub fn sets_expectation(&self) -> bool {
        self.expect_client.is_some() || self.expect_server.is_some() || self.max_failed_requests.is_some()
    }
}
