//! A scenario's `[call]`: a method of any service, and where each of its keys was set.

use std::num::NonZeroU64;
use std::path::Path;

use super::Validator;
use crate::scenario::ScenarioError;
use crate::scenario::file::CallSection;
use crate::scenario::plan::{CallData, CallOrigins, CallSpec};

impl Validator<'_> {
    pub(super) fn call(&self, call: &CallSection) -> Result<CallSpec, ScenarioError> {
        for key in ["payload_bytes", "response_bytes", "delay_ms", "delay_every"] {
            let key = format!("load.{key}");
            if self.is_set(&key) {
                return Err(
                    self.invalid(&key, "shapes the toy server's Echo request; with [call] the request is call.data")
                );
            }
        }
        let Some(method) = call.method.as_deref() else {
            return Err(self.invalid("call.method", "missing: the method to call, like package.Service/Method"));
        };
        let (service, method) = split_method(method).map_err(|reason| self.invalid("call.method", reason))?;
        let base = self.path.parent().unwrap_or(Path::new(""));
        let paths = |key: &str, paths: &Option<Vec<String>>| -> Result<Vec<std::path::PathBuf>, ScenarioError> {
            let paths = paths.as_deref().unwrap_or_default();
            if let Some(empty) = paths.iter().position(|path| path.trim().is_empty()) {
                return Err(self.invalid(key, format!("entry {empty} is empty")));
            }
            Ok(paths.iter().map(|path| base.join(path)).collect())
        };
        let protos = paths("call.proto", &call.proto)?;
        let import_paths = paths("call.import_paths", &call.import_paths)?;
        if !import_paths.is_empty() && protos.is_empty() {
            return Err(self.invalid("call.import_paths", "needs call.proto: reflection needs no import paths"));
        }
        let data = match (&call.data, &call.data_file) {
            (Some(_), Some(_)) => {
                return Err(self.invalid("call.data_file", "not with call.data: give one or the other"));
            }
            (Some(json), None) => CallData::Inline(json.clone()),
            (None, Some(file)) if file.trim().is_empty() => {
                return Err(self.invalid("call.data_file", "must not be empty"));
            }
            (None, Some(file)) => CallData::File(base.join(file)),
            (None, None) => CallData::Inline("{}".to_owned()),
        };
        let stream_messages = call
            .stream_messages
            .map(|n| self.range("call.stream_messages", Some(n), 0, 1, i64::MAX))
            .transpose()?
            .map(|n| NonZeroU64::new(n as u64).expect("checked at least 1"));
        let data_key = if call.data_file.is_some() { "call.data_file" } else { "call.data" };
        Ok(CallSpec {
            service: service.to_owned(),
            method: method.to_owned(),
            protos,
            import_paths,
            data,
            metadata: call.metadata.clone().unwrap_or_default(),
            stream_messages,
            origins: CallOrigins {
                method: self.origin("call.method"),
                proto: self.origin("call.proto"),
                data: self.origin(data_key),
                metadata: self.origin("call.metadata"),
            },
        })
    }
}

/// `package.Service/Method` or `package.Service.Method` as (`package.Service`, `Method`).
fn split_method(text: &str) -> Result<(&str, &str), String> {
    let text = text.trim().trim_start_matches('/');
    let (service, method) = match text.split_once('/') {
        Some(split) => split,
        None => text.rsplit_once('.').ok_or_else(|| format!("{text:?} is not package.Service/Method"))?,
    };
    let identifier = |name: &str| {
        !name.is_empty()
            && name.split('.').all(|part| {
                part.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    };
    if !identifier(service) || !identifier(method) || method.contains('.') {
        return Err(format!("{text:?} is not package.Service/Method"));
    }
    Ok((service, method))
}
