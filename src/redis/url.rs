//! Redis endpoints given on the command line: parsed, given their password
//! (from the URL or an environment variable), and shown only redacted.

use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

/// One Redis server. `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct Endpoint {
    /// "source" or "target", for messages.
    pub role: &'static str,
    url: url::Url,
    password: Option<String>,
    /// PEM of the CA that signed the server's certificate (rediss:// only).
    ca_pem: Option<Vec<u8>>,
    /// PEM certificate and key this client shows (mutual TLS).
    client_cert: Option<ClientCert>,
}

/// A client certificate and its key, PEM; `Debug` never shows the key.
#[derive(Clone)]
pub struct ClientCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({} {})", self.role, self.redacted())
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Endpoint {
    /// Parses `raw` (`redis://` or `rediss://`); the password comes from the
    /// variable `password_env` when given, else from the URL.
    pub fn parse(
        role: &'static str,
        raw: &str,
        password_env: Option<(&str, Option<String>)>,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<Self, String> {
        let flag = if role == "source" { "--from" } else { "--to" };
        let hint = format!("write it as redis://[:PASSWORD@]HOST:PORT[/DB] or rediss://… for TLS ({flag})");
        let mut url =
            url::Url::parse(raw).map_err(|e| format!("bad {role} URL {}: {e}; {hint}", redact_text(raw, None)))?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err(format!("bad {role} URL {}: scheme must be redis or rediss; {hint}", redact_text(raw, None)));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("bad {role} URL {}: no host; {hint}", redact_text(raw, None)));
        }
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(format!("bad {role} URL {}: database {db:?} is not a number; {hint}", redact_text(raw, None)));
        }
        let mut password = url.password().map(percent_decode);
        if let Some((var, value)) = password_env {
            match value {
                Some(v) if !v.is_empty() => password = Some(v),
                _ => return Err(format!("the {role} password variable {var} is not set; export it or drop the flag")),
            }
        }
        let _ = url.set_password(None);
        if ca_pem.is_some() && url.scheme() != "rediss" {
            // Harmless but a sign of a typo: the CA is only used with TLS.
            tracing::info!(role, "--tls-ca given but the URL is not rediss://");
        }
        Ok(Self { role, url, password, ca_pem, client_cert: None })
    }

    /// Shows `cert` to the server (mutual TLS; rediss:// only).
    pub fn with_client_cert(mut self, cert: ClientCert) -> Self {
        if !self.tls() {
            tracing::info!(role = self.role, "--tls-cert given but the URL is not rediss://");
        }
        self.client_cert = Some(cert);
        self
    }

    pub fn tls(&self) -> bool {
        self.url.scheme() == "rediss"
    }

    pub fn db(&self) -> u32 {
        self.url.path().trim_start_matches('/').parse().unwrap_or(0)
    }

    /// Which database this is, however the URL was written: `host:port/db`
    /// with the defaults filled in (port 6379, db 0), no scheme, user or
    /// password. Two endpoints with the same id are the same data.
    pub fn server_id(&self) -> String {
        let host = self.url.host_str().unwrap_or("").to_ascii_lowercase();
        format!("{host}:{}/{}", self.url.port().unwrap_or(6379), self.db())
    }

    /// `redis://:***@host:port/db` when there is a password, else the URL.
    pub fn redacted(&self) -> String {
        let mut u = self.url.clone();
        if self.password.is_some() {
            let _ = u.set_password(Some("***"));
        }
        u.to_string()
    }

    /// A message from the redis crate or a server with any secret removed.
    pub fn scrub(&self, text: &str) -> String {
        redact_text(text, self.password.as_deref())
    }

    fn connection_info(&self) -> Result<redis::ConnectionInfo, String> {
        let mut u = self.url.clone();
        if let Some(pw) = &self.password {
            u.set_password(Some(pw))
                .map_err(|_| format!("cannot put a password on the {role} URL", role = self.role))?;
        }
        redis::IntoConnectionInfo::into_connection_info(u.as_str()).map_err(|e| self.scrub(&e.to_string()))
    }

    /// A multiplexed connection; errors are one line saying what to fix.
    pub async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let info = self.connection_info()?;
        let client = if self.tls() && (self.ca_pem.is_some() || self.client_cert.is_some()) {
            let client_tls = self
                .client_cert
                .as_ref()
                .map(|c| redis::ClientTlsConfig { client_cert: c.cert_pem.clone(), client_key: c.key_pem.clone() });
            redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls, root_cert: self.ca_pem.clone() })
        } else {
            redis::Client::open(info)
        }
        .map_err(|e| format!("cannot use the {} {}: {}", self.role, self.redacted(), self.scrub(&e.to_string())))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(120)));
        let mut conn = match client.get_multiplexed_async_connection_with_config(&config).await {
            Ok(c) => c,
            Err(e) => return Err(self.connect_error(&e.to_string())),
        };
        // Auth problems may only show on the first command.
        redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| self.connect_error(&e.to_string()))?;
        Ok(conn)
    }

    fn connect_error(&self, raw: &str) -> String {
        let msg = self.scrub(raw);
        let who = format!("{} {}", self.role, self.redacted());
        let low = msg.to_ascii_lowercase();
        if low.contains("wrongpass") || low.contains("authentication failed") || low.contains("invalid password") {
            format!(
                "cannot log in to the {who}: wrong password; give the right one in the URL or its --*-password-env variable"
            )
        } else if low.contains("noauth") || low.contains("authentication required") {
            format!(
                "the {who} needs a password; put it in the URL (redis://:PASSWORD@host:port) or use --from-password-env / --to-password-env"
            )
        } else if low.contains("certificaterequired") {
            format!(
                "the {who} asks for a client certificate (mutual TLS); pass one its CA signed with --tls-cert FILE --tls-key FILE"
            )
        } else if low.contains("received fatal alert") && self.client_cert.is_some() {
            // The server sent the alert: it did not accept the certificate we showed.
            format!(
                "the {who} refused the client certificate ({}); pass one signed by the CA it trusts with --tls-cert FILE --tls-key FILE",
                msg.trim_start_matches("received fatal alert: ")
            )
        } else if low.contains("certificate") || low.contains("tls") || low.contains("handshake") {
            format!("TLS to the {who} failed: {msg}; pass the server's CA with --tls-ca PATH")
        } else {
            format!("cannot reach the {who}: {msg}; check host and port and that the server is up")
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Hides userinfo of any URL in `text`, and `secret` wherever it appears.
pub fn redact_text(text: &str, secret: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // Up to the end of the token, not the first `/`: a password may hold one unencoded.
        let end = tail.find(|c: char| c.is_whitespace() || c == '"' || c == '\'').unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str(":***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    match secret {
        Some(s) if !s.is_empty() => out.replace(s, "***"),
        _ => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_database_has_one_id_however_it_is_written() {
        let id = |u: &str| Endpoint::parse("source", u, None, None).unwrap().server_id();
        assert_eq!(id("redis://h:6379/0"), "h:6379/0");
        assert_eq!(id("redis://H"), id("redis://h:6379/0"));
        assert_eq!(id("rediss://user:pw@h:6379/"), id("redis://h:6379"));
        assert_ne!(id("redis://h:6379/1"), id("redis://h:6379/0"));
        assert_ne!(id("redis://h:6380"), id("redis://h:6379"));
    }

    #[test]
    fn the_password_never_shows() {
        let e = Endpoint::parse("source", "redis://:s3cret@127.0.0.1:6379/2", None, None).unwrap();
        assert_eq!(e.redacted(), "redis://:***@127.0.0.1:6379/2");
        assert_eq!(format!("{e} {e:?}").matches("s3cret").count(), 0);
        assert_eq!(e.db(), 2);
        assert_eq!(e.scrub("WRONGPASS s3cret at redis://u:s3cret@h:1"), "WRONGPASS *** at redis://:***@h:1");
        // A password with an unencoded `/` (the URL does not even parse) is hidden all the same.
        assert_eq!(redact_text("bad URL redis://:ab/cd@h:6379/0 here", None), "bad URL redis://:***@h:6379/0 here");
        assert_eq!(redact_text("redis://h:6379/0", None), "redis://h:6379/0");
    }

    #[test]
    fn the_password_variable_wins_and_must_be_set() {
        let e = Endpoint::parse("target", "rediss://:url@h:6380", Some(("PW", Some("env".into()))), None).unwrap();
        assert_eq!(e.password.as_deref(), Some("env"));
        assert!(e.tls());
        let err = Endpoint::parse("target", "redis://h:1", Some(("PW", None)), None).unwrap_err();
        assert_eq!(err, "the target password variable PW is not set; export it or drop the flag");
    }

    #[test]
    fn bad_urls_say_how_to_write_them_without_the_password() {
        let err = Endpoint::parse("source", "http://:pw@h:1", None, None).unwrap_err();
        assert!(err.contains("scheme must be redis or rediss") && err.contains("--from"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
        let err = Endpoint::parse("target", "redis://h:1/x", None, None).unwrap_err();
        assert!(err.contains("database \"x\" is not a number"), "{err}");
        assert!(Endpoint::parse("source", "nonsense", None, None).unwrap_err().starts_with("bad source URL nonsense"));
    }

    #[test]
    fn percent_encoded_passwords_are_decoded() {
        let e = Endpoint::parse("source", "redis://:a%40b@h:1", None, None).unwrap();
        assert_eq!(e.password.as_deref(), Some("a@b"));
        assert_eq!(e.scrub("x a@b y"), "x *** y");
    }
}
