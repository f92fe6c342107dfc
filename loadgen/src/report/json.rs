//! JSON files: a document's record, pretty-printed — `summary.json` of a run,
//! `compare.json`, `demo.json`.

use std::io::Write;

use serde::Serialize;

use super::{Exporter, Report};
use leaklab_engine::summary::Summary;

/// Writes the part of a document `D` that the function picks, as pretty JSON.
pub(crate) struct Json<D: 'static, T: 'static>(pub fn(&D) -> &T);

impl<D, T> std::fmt::Debug for Json<D, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Json")
    }
}

impl<D, T: Serialize> Exporter<D> for Json<D, T> {
    fn export(&self, document: &D, out: &mut dyn Write) -> anyhow::Result<()> {
        serde_json::to_writer_pretty(&mut *out, (self.0)(document))?;
        out.write_all(b"\n")?;
        Ok(())
    }
}

/// `summary.json`: the run's [`Summary`].
pub(crate) const SUMMARY_JSON: Json<Report, Summary> = Json(|report| &report.summary);

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fixtures::scripted_report;

    #[test]
    fn the_file_reads_back_as_the_summary() {
        let (summary, samples) = scripted_report();
        let report = Report { summary, samples };
        let text = crate::report::to_string(&SUMMARY_JSON, &report).unwrap();
        assert!(text.ends_with("}\n"));
        let back: leaklab_engine::summary::Summary = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report.summary);
    }
}
