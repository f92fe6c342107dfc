//! The two ends of a run as a scenario sets them: the toy server (its settings, read through
//! `leaklab_wire::SERVER_OPTIONS`, and its TLS), the built-in client's connections and TLS, and an
//! attack on the server beside the load.

use leaklab_wire::settings::{Kind, SERVER_OPTIONS, ServerSettings, Value};

use super::Validator;
use crate::scenario::ScenarioError;
use crate::scenario::attack::{AttackKind, AttackSpec, MAX_DURATION as MAX_ATTACK_DURATION};
use crate::scenario::client::{
    ClientKeepalive, ClientPlan, ClientTlsPlan, DEFAULT_STREAM_INTERVAL, Identity, MAX_STREAM_INTERVAL, TlsOrigins,
    Transport, Trust,
};
use crate::scenario::file::{AttackSection, ClientSection, ClientTlsSection, ServerSection, ServerTlsSection};
use crate::scenario::plan::{ChannelPolicy, ServerPlan, ServerTlsPlan};

impl Validator<'_> {
    /// The toy server's settings, each key read by its option of `SERVER_OPTIONS`, and its TLS.
    pub(super) fn server(&self, server: &ServerSection) -> Result<ServerPlan, ScenarioError> {
        let mut settings = ServerSettings::default();
        for (name, written) in &server.settings {
            let key = format!("server.{name}");
            let Some(option) = SERVER_OPTIONS.iter().find(|option| option.name == name) else {
                let known: Vec<String> = SERVER_OPTIONS.iter().map(|option| format!("`{}`", option.name)).collect();
                return Err(
                    self.invalid(&key, format!("unknown field `{name}`, expected one of {}, `tls`", known.join(", ")))
                );
            };
            let value = match written {
                toml::Value::Integer(number) => option.number(*number),
                toml::Value::String(text) => option.parse(text),
                toml::Value::Boolean(on) if option.kind == Kind::Switch => Ok(Value::Switch(*on)),
                _ => Err(expected(option.kind).to_owned()),
            };
            option.set(&mut settings, value.map_err(|reason| self.invalid(&key, reason))?);
        }
        if let Some((option, needed, why)) = settings.unmet_need() {
            return Err(self.invalid(&format!("server.{}", option.name), format!("needs server.{needed}: {why}")));
        }
        Ok(ServerPlan { settings, tls: server.tls.as_ref().map(|tls| self.server_tls(tls)).transpose()? })
    }

    pub(super) fn server_tls(&self, tls: &ServerTlsSection) -> Result<ServerTlsPlan, ScenarioError> {
        if tls.generate == Some(true) {
            for (key, set) in [("cert", &tls.cert), ("key", &tls.key), ("client_ca", &tls.client_ca)] {
                if set.is_some() {
                    return Err(self.invalid(
                        &format!("server.tls.{key}"),
                        "not with server.tls.generate: the files are made at run time",
                    ));
                }
            }
            return Ok(ServerTlsPlan::Generated { client_auth: tls.client_auth.unwrap_or(false) });
        }
        if tls.client_auth.is_some() {
            return Err(self.invalid(
                "server.tls.client_auth",
                "needs server.tls.generate; with files, client_ca requires client certificates",
            ));
        }
        match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => Ok(ServerTlsPlan::Files {
                cert: self.file_path(cert),
                key: self.file_path(key),
                client_ca: tls.client_ca.as_deref().map(|ca| self.file_path(ca)),
            }),
            (Some(_), None) => Err(self.invalid("server.tls.key", "missing: server.tls.cert needs its key")),
            (None, _) => Err(self.invalid("server.tls.cert", "missing: give cert and key, or generate = true")),
        }
    }

    /// The client's TLS: its own table, or the throwaway CA of a generated server TLS.
    pub(super) fn client_tls(
        &self,
        tls: Option<&ClientTlsSection>,
        server: Option<&ServerTlsPlan>,
    ) -> Result<Option<ClientTlsPlan>, ScenarioError> {
        let generated = match server {
            Some(ServerTlsPlan::Generated { client_auth }) => Some(*client_auth),
            _ => None,
        };
        let section = match tls {
            Some(section) if section.enabled == Some(false) => return Ok(None),
            Some(section) => section.clone(),
            None if generated.is_some() => ClientTlsSection::default(),
            None => return Ok(None),
        };
        let insecure = section.insecure.unwrap_or(false);
        let trust = match (&section.cacert, insecure, generated) {
            (Some(_), true, _) => {
                return Err(
                    self.invalid("client.tls.insecure", "not with client.tls.cacert: insecure verifies nothing")
                );
            }
            (Some(ca), false, _) => Trust::CaFile(self.file_path(ca)),
            (None, true, _) => Trust::Insecure,
            (None, false, Some(_)) => Trust::Generated,
            (None, false, None) => Trust::MozillaRoots,
        };
        let identity = match (&section.cert, &section.key) {
            (Some(cert), Some(key)) => Some(Identity::Files { cert: self.file_path(cert), key: self.file_path(key) }),
            (Some(_), None) => {
                let cert = self.origin("client.tls.cert");
                return Err(self.invalid("client.tls.key", format!("missing: {cert} needs its key (--key)")));
            }
            (None, Some(_)) => {
                let key = self.origin("client.tls.key");
                return Err(
                    self.invalid("client.tls.cert", format!("missing: {key} is the key of a certificate (--cert)"))
                );
            }
            (None, None) if generated == Some(true) => Some(Identity::Generated),
            (None, None) => None,
        };
        if section.cname.as_deref().is_some_and(|name| name.trim().is_empty()) {
            return Err(self.invalid("client.tls.cname", "must not be empty"));
        }
        Ok(Some(ClientTlsPlan {
            trust,
            identity,
            server_name: section.cname.clone(),
            origins: TlsOrigins {
                cacert: self.origin("client.tls.cacert"),
                cert: self.origin("client.tls.cert"),
                key: self.origin("client.tls.key"),
                cname: self.origin("client.tls.cname"),
            },
        }))
    }

    pub(super) fn client(
        &self,
        client: &ClientSection,
        policy: ChannelPolicy,
        server_tls: Option<&ServerTlsPlan>,
    ) -> Result<ClientPlan, ScenarioError> {
        let interval = self.optional("client.keepalive_interval", client.keepalive_interval)?;
        let timeout = self.optional("client.keepalive_timeout", client.keepalive_timeout)?;
        let keepalive = match interval {
            Some(interval) => {
                Some(ClientKeepalive { interval, timeout, while_idle: client.keepalive_while_idle.unwrap_or(false) })
            }
            None if timeout.is_some() => {
                return Err(self.invalid(
                    "client.keepalive_timeout",
                    "needs client.keepalive_interval: without pings there is nothing to time out",
                ));
            }
            None if client.keepalive_while_idle.is_some() => {
                return Err(self.invalid(
                    "client.keepalive_while_idle",
                    "needs client.keepalive_interval: without pings there is nothing to send while idle",
                ));
            }
            None => None,
        };
        let transport = client.transport.unwrap_or_default();
        if transport == Transport::H2 && policy != ChannelPolicy::Reused {
            return Err(self.invalid(
                "client.transport",
                format!(
                    "\"h2\" carries one connection, so it only applies to policy \"reused\", not {:?}",
                    policy.name()
                ),
            ));
        }
        if transport == Transport::H2 && keepalive.is_some() {
            return Err(self.invalid(
                "client.transport",
                "\"h2\" sends no keepalive pings: drop client.keepalive_interval or use transport \"channel\"",
            ));
        }
        if client.stream_interval.is_some() && !policy.streams() {
            return Err(self.invalid(
                "client.stream_interval",
                format!("only applies to policies \"stream-leak\" and \"stream-cancel\", not {:?}", policy.name()),
            ));
        }
        let stream_interval = self.positive(
            "client.stream_interval",
            client.stream_interval,
            DEFAULT_STREAM_INTERVAL,
            MAX_STREAM_INTERVAL,
        )?;
        Ok(ClientPlan {
            connect_timeout: self.optional("client.connect_timeout", client.connect_timeout)?,
            keepalive,
            tcp_keepalive: self.optional("client.tcp_keepalive", client.tcp_keepalive)?,
            transport,
            tls: self.client_tls(client.tls.as_ref(), server_tls)?,
            stream_interval,
        })
    }

    pub(super) fn attack(&self, attack: &AttackSection) -> Result<AttackSpec, ScenarioError> {
        let kind = attack.kind.ok_or_else(|| {
            let names: Vec<_> = AttackKind::ALL.iter().map(|kind| kind.name()).collect();
            self.invalid("attack.kind", format!("missing: one of {}", names.join(", ")))
        })?;
        let bytes = |key: &str, value: Option<u64>, default: u32| -> Result<u32, ScenarioError> {
            let bytes = value.unwrap_or(default.into());
            u32::try_from(bytes).map_err(|_| self.invalid(key, format!("must be at most 4GiB, got {bytes} bytes")))
        };
        let count = |key: &str, value: i64| -> Result<u64, ScenarioError> {
            u64::try_from(value).map_err(|_| self.invalid(key, format!("must be at least 1, got {value}")))
        };
        let response_bytes = bytes("attack.response_bytes", attack.response_bytes, 1 << 20)?;
        let declared_bytes = bytes("attack.declared_bytes", attack.declared_bytes, 4 << 20)?;
        let spec = AttackSpec {
            kind,
            connections: u32::try_from(count("attack.connections", attack.connections.unwrap_or(20))?)
                .unwrap_or(u32::MAX),
            max_streams: match attack.max_streams {
                Some(n) => count("attack.max_streams", n)?,
                None => AttackSpec::default_max_streams(kind, response_bytes, declared_bytes),
            },
            streams_per_second: attack.streams_per_second,
            response_bytes,
            declared_bytes,
            duration: attack.duration.unwrap_or(MAX_ATTACK_DURATION),
        };
        spec.check().map_err(|error| self.invalid(&format!("attack.{}", error.field), error.reason))?;
        Ok(spec)
    }
}

/// What a `[server]` key of `kind` takes, for a value of another type.
fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Count => "expected a whole number",
        Kind::CountLimit | Kind::SizeLimit | Kind::DurationLimit => {
            "expected a limit: a number, a string like \"5s\" or \"16MiB\", or \"off\""
        }
        Kind::Duration => "expected a duration like \"5s\"",
        Kind::Switch => "expected true or false",
    }
}
