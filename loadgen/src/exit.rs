//! Exit codes of `loadgen run`, `watch`, `compare` and `demo`, also listed in
//! the README. They are distinct so that CI and `git bisect run` can tell the
//! outcomes apart.

use leaklab_engine::halt::StopReason;
use leaklab_engine::summary::Summary;
use leaklab_verdict::Outcome;

/// Every verdict meets its expectation (or the scenario sets none).
pub(crate) const OK: u8 = 0;
/// A verdict contradicts its expectation, or bytes per request grew beyond a baseline's tolerance
/// (`compare` and `demo`: also a scenario that could not run).
pub(crate) const CONTRADICTED: u8 = 1;
/// Bad command line, scenario file, story or baseline name; nothing ran.
pub(crate) const USAGE: u8 = 2;
/// No contradiction, but a verdict with an expectation is inconclusive.
pub(crate) const INCONCLUSIVE: u8 = 3;
/// The run failed (the server did not start, a report could not be written…).
pub(crate) const FAILED: u8 = 4;
/// The load stopped at a cap or a limit of the machine; the report, verdict included, is complete.
pub(crate) const STOPPED_AT_LIMIT: u8 = 5;
/// `--bisect`: inconclusive, or the run failed; `git bisect run`'s "skip" (neither good nor bad).
pub(crate) const BISECT_SKIP: u8 = 125;
/// Interrupted (Ctrl-C, SIGTERM); the report covers the run up to then.
pub(crate) const INTERRUPTED: u8 = 130;

/// How a run, a comparison or a demo ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ending {
    /// An output could not be written.
    pub export_failed: bool,
    /// The user stopped it.
    pub interrupted: bool,
    /// Its verdicts against their expectations (a regressed baseline counting as a contradiction).
    pub outcome: Outcome,
    /// The load stopped at a cap or a limit of the machine.
    pub at_limit: bool,
}

impl Ending {
    /// How a run ended: its summary, whether its baseline regressed, whether an output could not be written.
    pub(crate) fn of_run(summary: &Summary, regressed: bool, export_failed: bool) -> Ending {
        Ending {
            export_failed,
            interrupted: summary.stopped_by == StopReason::Interrupted,
            outcome: summary.outcome.with_regression(regressed),
            at_limit: summary.stopped_by.at_limit(),
        }
    }

    /// How a comparison or a demo of several runs ended (each run's own caps are in its row).
    pub(crate) fn of_several(written: &crate::report::Written, interrupted: bool, outcome: Outcome) -> Ending {
        Ending { export_failed: !written.errors.is_empty(), interrupted, outcome, at_limit: false }
    }

    /// The exit code: a report that could not be written outranks an
    /// interruption, which outranks a contradicted expectation, which
    /// outranks a stop at a limit, which outranks an inconclusive verdict.
    /// With `bisect`, a failed report and an inconclusive verdict are `git bisect run`'s skip.
    pub(crate) fn code(&self, bisect: bool) -> u8 {
        if self.export_failed {
            return if bisect { BISECT_SKIP } else { FAILED };
        }
        if self.interrupted {
            return INTERRUPTED;
        }
        match self.outcome {
            Outcome::Contradicted => CONTRADICTED,
            _ if self.at_limit => STOPPED_AT_LIMIT,
            Outcome::Met => OK,
            Outcome::Inconclusive if bisect => BISECT_SKIP,
            Outcome::Inconclusive => INCONCLUSIVE,
        }
    }
}

/// An error that ends the program, with the exit code it ends with.
pub(crate) type Failure = (u8, anyhow::Error);

pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Failure {
    (USAGE, error.into())
}

pub(crate) fn failed(error: impl Into<anyhow::Error>) -> Failure {
    (FAILED, error.into())
}

/// The exit code of a run that failed before its report (the server did not start…).
pub(crate) fn run_failed(bisect: bool) -> u8 {
    if bisect { BISECT_SKIP } else { FAILED }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(outcome: Outcome) -> Ending {
        Ending { export_failed: false, interrupted: false, outcome, at_limit: false }
    }

    #[test]
    fn outcomes_map_to_their_codes_in_order_of_precedence() {
        assert_eq!(ending(Outcome::Met).code(false), OK);
        assert_eq!(ending(Outcome::Inconclusive).code(false), INCONCLUSIVE);
        assert_eq!(ending(Outcome::Inconclusive).code(true), BISECT_SKIP);
        assert_eq!(ending(Outcome::Contradicted).code(true), CONTRADICTED);
        let at_limit = Ending { at_limit: true, ..ending(Outcome::Met) };
        assert_eq!(at_limit.code(false), STOPPED_AT_LIMIT);
        assert_eq!(Ending { at_limit: true, ..ending(Outcome::Contradicted) }.code(false), CONTRADICTED);
        assert_eq!(Ending { interrupted: true, ..ending(Outcome::Contradicted) }.code(false), INTERRUPTED);
        let unwritten = Ending { export_failed: true, interrupted: true, ..ending(Outcome::Met) };
        assert_eq!((unwritten.code(false), unwritten.code(true)), (FAILED, BISECT_SKIP));
    }
}
