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
    /// Found through Sentinel: `url` then names the first sentinel and the
    /// database, and the master's address replaces its host and port.
    sentinel: Option<SentinelGroup>,
    /// The sentinels' own password (their `requirepass`), when they ask
    /// for one; `password` is the master's.
    sentinel_password: Option<String>,
    /// How long one sentinel may take to connect and to answer each question.
    sentinel_timeout: Duration,
    /// The master is taken only from a majority of the listed sentinels
    /// (`with_sentinel_majority`).
    sentinel_majority: bool,
    /// Given as `redis+cluster://`: the nodes to ask for the cluster's shards.
    cluster: Option<Vec<String>>,
    /// A cluster is read from its replicas (`--from-replicas`), not its primaries.
    replica_reads: bool,
    /// Given by a runbook (`password_env`, no CA file or certificate), not
    /// by flags: error messages name the runbook's fields.
    in_runbook: bool,
}

/// The sentinels watching one master, and its name.
#[derive(Clone, Debug, PartialEq)]
pub struct SentinelGroup {
    /// `host:port` of each sentinel, in the order given.
    pub sentinels: Vec<String>,
    pub master: String,
}

/// How long one sentinel may take to answer, unless told otherwise
/// (`with_sentinel_timeout`).
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(2);

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
        if raw.starts_with("redis+sentinel://") || raw.starts_with("rediss+sentinel://") {
            return Self::parse_sentinel(role, raw, flag, password_env, ca_pem);
        }
        if raw.starts_with("redis+cluster://") || raw.starts_with("rediss+cluster://") {
            return Self::parse_cluster(role, raw, flag, password_env, ca_pem);
        }
        let hint = format!(
            "write it as redis://[:PASSWORD@]HOST:PORT[/DB], rediss://… for TLS, redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER[/DB] or redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT…] ({flag})"
        );
        let mut url =
            url::Url::parse(raw).map_err(|e| format!("bad {role} URL {}: {e}; {hint}", redact_text(raw, None)))?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err(format!(
                "bad {role} URL {}: scheme must be redis, rediss, redis+sentinel or redis+cluster; {hint}",
                redact_text(raw, None)
            ));
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
        Ok(Self::new(role, url, password, ca_pem))
    }

    /// One server at `url`, with no Sentinel, cluster, certificate or replica reads yet.
    fn new(role: &'static str, url: url::Url, password: Option<String>, ca_pem: Option<Vec<u8>>) -> Self {
        Self {
            role,
            url,
            password,
            ca_pem,
            client_cert: None,
            sentinel: None,
            sentinel_password: None,
            sentinel_timeout: SENTINEL_TIMEOUT,
            sentinel_majority: false,
            cluster: None,
            replica_reads: false,
            in_runbook: false,
        }
    }

    /// `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER[/DB]`
    /// (`rediss+sentinel://` for TLS to the sentinels and the master). The
    /// password is the master's; the sentinels are asked with theirs
    /// (`with_sentinel_password`), else without one.
    fn parse_sentinel(
        role: &'static str,
        raw: &str,
        flag: &str,
        password_env: Option<(&str, Option<String>)>,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<Self, String> {
        let shown = redact_text(raw, None);
        let bad = |why: String| {
            format!(
                "bad {role} URL {shown}: {why}; write it as redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER[/DB] ({flag})"
            )
        };
        let (scheme, rest) = raw.split_once("://").unwrap_or(("", raw));
        let tls = scheme == "rediss+sentinel";
        let HostList { user, password, hosts: sentinels, path } = host_list(rest, 26379, "sentinel", &bad)?;
        // Listed twice, a sentinel would count twice toward a majority.
        if let Some((_, twice)) = sentinels.iter().enumerate().find(|(i, s)| sentinels[..*i].contains(s)) {
            return Err(bad(format!("sentinel {twice} is listed twice")));
        }
        let mut parts = path.split('/');
        let master = parts.next().unwrap_or("").to_string();
        if master.is_empty() {
            return Err(bad("no master name after the sentinels".into()));
        }
        let db = parts.next().filter(|d| !d.is_empty()).unwrap_or("0");
        if db.parse::<u32>().is_err() || parts.next().is_some() {
            return Err(bad(format!("database {db:?} is not a number")));
        }
        let password = password_from_env(role, password_env, password)?;
        // A template for the master: its host and port are filled in when found.
        let mut url = url::Url::parse(&format!("{}://{}/{db}", if tls { "rediss" } else { "redis" }, sentinels[0]))
            .map_err(|e| bad(e.to_string()))?;
        if !user.is_empty() {
            let _ = url.set_username(user);
        }
        let sentinel = Some(SentinelGroup { sentinels, master });
        Ok(Self { sentinel, ..Self::new(role, url, password, ca_pem) })
    }

    /// `redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…][/0]`
    /// (`rediss+cluster://` for TLS): nodes of one Redis Cluster, asked in
    /// turn for its shards. A plain redis:// URL of a cluster node works too.
    fn parse_cluster(
        role: &'static str,
        raw: &str,
        flag: &str,
        password_env: Option<(&str, Option<String>)>,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<Self, String> {
        let shown = redact_text(raw, None);
        let bad = |why: String| {
            format!(
                "bad {role} URL {shown}: {why}; write it as redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT…] ({flag})"
            )
        };
        let (scheme, rest) = raw.split_once("://").unwrap_or(("", raw));
        let tls = scheme == "rediss+cluster";
        let HostList { user, password, hosts: nodes, path } = host_list(rest, 6379, "node", &bad)?;
        if !matches!(path, "" | "0") {
            return Err(bad(format!("database {path:?}: a Redis Cluster has only database 0")));
        }
        let password = password_from_env(role, password_env, password)?;
        let mut url = url::Url::parse(&format!("{}://{}/0", if tls { "rediss" } else { "redis" }, nodes[0]))
            .map_err(|e| bad(e.to_string()))?;
        if !user.is_empty() {
            let _ = url.set_username(user);
        }
        Ok(Self { cluster: Some(nodes), ..Self::new(role, url, password, ca_pem) })
    }

    /// The nodes given in a `redis+cluster://` URL.
    pub fn cluster_nodes(&self) -> Option<&[String]> {
        self.cluster.as_deref()
    }

    /// The sentinels and master name, when the master is found through Sentinel (and may move).
    pub fn sentinel(&self) -> Option<&SentinelGroup> {
        self.sentinel.as_ref()
    }

    /// Gives each sentinel `timeout` to connect and to answer when the master
    /// is looked for: a reading that must fit a short budget (the live pane's
    /// 2 s) gives less than the default 2 s, so one silent sentinel does not
    /// take the whole reading with it.
    pub fn with_sentinel_timeout(mut self, timeout: Duration) -> Self {
        self.sentinel_timeout = timeout;
        self
    }

    /// Takes the master only when more than half of the listed sentinels
    /// answer (a copy and a verify): one cut off from its peers may still
    /// name the master they failed over from, and its answer alone would
    /// send the writes there. A reading that shows what it can (the live
    /// pane) takes any answer.
    pub fn with_sentinel_majority(mut self) -> Self {
        self.sentinel_majority = true;
        self
    }

    /// Asks the sentinels with `password` (their `requirepass`); only for
    /// a `redis+sentinel://` endpoint.
    pub fn with_sentinel_password(mut self, password: String) -> Result<Self, String> {
        if self.sentinel.is_none() {
            return Err(format!(
                "a sentinel password is for a redis+sentinel:// URL, and the {} {} is not one; drop it, or name the \
                 sentinels in the URL",
                self.role,
                self.redacted()
            ));
        }
        self.sentinel_password = Some(password);
        Ok(self)
    }

    /// Shows `cert` to the server (mutual TLS; rediss:// only).
    pub fn with_client_cert(mut self, cert: ClientCert) -> Self {
        if !self.tls() {
            tracing::info!(role = self.role, "--tls-cert given but the URL is not rediss://");
        }
        self.client_cert = Some(cert);
        self
    }

    /// Marks an endpoint read from a runbook (see `in_runbook`).
    pub fn from_runbook(mut self) -> Self {
        self.in_runbook = true;
        self
    }

    /// Reads a cluster's keys on a replica of each shard (`--from-replicas`).
    pub fn reading_replicas(mut self) -> Self {
        self.replica_reads = true;
        self
    }

    pub fn reads_replicas(&self) -> bool {
        self.replica_reads
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
        // A Sentinel endpoint is its master's name and sentinels, not the
        // master's address of the moment: a resume after a failover finds it.
        if let Some(g) = &self.sentinel {
            let mut nodes = g.sentinels.clone();
            nodes.sort();
            return format!("sentinel:{}/{}/{}", nodes.join(","), g.master, self.db());
        }
        if let Some(nodes) = &self.cluster {
            let mut nodes = nodes.clone();
            nodes.sort();
            return format!("cluster:{}", nodes.join(","));
        }
        let host = self.url.host_str().unwrap_or("").to_ascii_lowercase();
        format!("{host}:{}/{}", self.url.port().unwrap_or(6379), self.db())
    }

    /// `redis://:***@host:port/db` when there is a password, else the URL.
    pub fn redacted(&self) -> String {
        if let Some(g) = &self.sentinel {
            let scheme = if self.tls() { "rediss+sentinel" } else { "redis+sentinel" };
            let user = match (self.url.username(), &self.password) {
                ("", None) => String::new(),
                (u, Some(_)) => format!("{u}:***@"),
                (u, None) => format!("{u}@"),
            };
            return format!("{scheme}://{user}{}/{}/{}", g.sentinels.join(","), g.master, self.db());
        }
        if let Some(nodes) = &self.cluster {
            let scheme = if self.tls() { "rediss+cluster" } else { "redis+cluster" };
            let user = match (self.url.username(), &self.password) {
                ("", None) => String::new(),
                (u, Some(_)) => format!("{u}:***@"),
                (u, None) => format!("{u}@"),
            };
            return format!("{scheme}://{user}{}", nodes.join(","));
        }
        let mut u = self.url.clone();
        if self.password.is_some() {
            let _ = u.set_password(Some("***"));
        }
        u.to_string()
    }

    /// A message from the redis crate or a server with any secret removed.
    pub fn scrub(&self, text: &str) -> String {
        // The longer first: one password may hold the other.
        let mut secrets: Vec<&str> =
            [&self.password, &self.sentinel_password].into_iter().flatten().map(String::as_str).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.into_iter().fold(redact_text(text, None), |t, s| redact_text(&t, Some(s)))
    }

    fn connection_info(&self, u: url::Url, password: Option<&str>) -> Result<redis::ConnectionInfo, String> {
        let info =
            redis::IntoConnectionInfo::into_connection_info(u.as_str()).map_err(|e| self.scrub(&e.to_string()))?;
        // Given as it is, never through the URL: redis-rs decodes a URL's
        // password, so a `%41` in one (an auth token may hold `%`) would
        // reach the server as `A`.
        Ok(match password {
            Some(pw) => {
                let settings = info.redis_settings().clone().set_password(pw);
                info.set_redis_settings(settings)
            }
            None => info,
        })
    }

    /// A multiplexed connection (with Sentinel, to the master); errors are
    /// one line saying what to fix.
    pub async fn connect(&self) -> Result<MultiplexedConnection, String> {
        Ok(self.open().await?.0)
    }

    /// A connection and the `host:port` it reached: with Sentinel, the
    /// master the sentinels name, checked to be one (`ROLE`).
    pub async fn open(&self) -> Result<(MultiplexedConnection, String), String> {
        if let Some(nodes) = &self.cluster {
            let mut failures = Vec::new();
            for addr in nodes {
                match self.open_at(addr).await {
                    Ok(c) => return Ok((c, addr.clone())),
                    Err(e) => failures.push(e),
                }
            }
            return Err(failures.join("; "));
        }
        let addr = self.locate().await?;
        Ok((self.open_at(&addr).await?, addr))
    }

    /// `host:port` of the server: with Sentinel, the master the sentinels
    /// name (`SENTINEL get-master-addr-by-name`), every sentinel asked at
    /// once. Where they disagree (one cut off from its peers still names the
    /// old master), the address named with the highest config epoch wins (a
    /// failover raises it), then the one most sentinels name, then the
    /// first. The master named is never passed over for another answer: a
    /// master that does not answer is waited for. With
    /// `with_sentinel_majority`, more than half of the group's sentinels must
    /// answer: of those listed, or of those the answering ones count in the
    /// group (`SENTINEL MASTER`), whichever is more: one sentinel listed
    /// alone is no majority of three.
    pub async fn locate(&self) -> Result<String, String> {
        let Some(g) = &self.sentinel else {
            return Ok(format!("{}:{}", self.url.host_str().unwrap_or(""), self.url.port().unwrap_or(6379)));
        };
        // One deadline per sentinel for all its questions: a slow one costs
        // the whole search no more than `sentinel_timeout`.
        let answers = futures::future::join_all(g.sentinels.iter().map(|node| async move {
            tokio::time::timeout(self.sentinel_timeout, self.ask_sentinel(node, &g.master))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} ms", self.sentinel_timeout.as_millis())))
        }))
        .await;
        let mut failures = Vec::new();
        // (address, highest config epoch, sentinels naming it), in the order first named.
        let mut named: Vec<(String, u64, usize)> = Vec::new();
        // The most sentinels an answering one counts in the group.
        let mut counted = 0;
        for (node, answer) in g.sentinels.iter().zip(answers) {
            match answer {
                Ok(Named { addr, epoch, group }) => {
                    counted = counted.max(group.unwrap_or(0));
                    match named.iter_mut().find(|n| n.0 == addr) {
                        Some(n) => (n.1, n.2) = (n.1.max(epoch), n.2 + 1),
                        None => named.push((addr, epoch, 1)),
                    }
                }
                Err(e) => failures.push(format!("{node}: {}", self.scrub(&e))),
            }
        }
        let answered: usize = named.iter().map(|n| n.2).sum();
        let listed = g.sentinels.len();
        let group = sentinel_group(listed, counted);
        if self.sentinel_majority && answered > 0 && answered * 2 <= group {
            let needed = group / 2 + 1;
            // A sentinel forgets no peer until `SENTINEL RESET`: one gone for
            // good (a new address, a group shrunk) is still counted.
            let reset = format!(
                " (if the group counts sentinels that no longer exist, `SENTINEL RESET {}` on each sentinel makes \
                 them count again)",
                g.master
            );
            let (size, fix) = if counted > listed && listed < needed {
                (
                    format!(" (the URL lists {listed}; the group has {counted}, as its sentinels count themselves)"),
                    format!("list at least {needed} of the group's sentinels in the URL{reset}"),
                )
            } else if counted > listed {
                (
                    format!(" (the group has {counted}, as its sentinels count themselves)"),
                    format!("bring the others back{reset}"),
                )
            } else if failures.iter().any(|f| f.contains("knows no master named")) {
                (
                    String::new(),
                    format!(
                        "drop from the URL the sentinels that know no master named {:?} (they watch another group), \
                         or bring the others back",
                        g.master
                    ),
                )
            } else {
                (String::new(), "bring the others back".to_string())
            };
            let failed = if failures.is_empty() { String::new() } else { format!(": {}", failures.join("; ")) };
            return Err(format!(
                "only {answered} of the {group} sentinels of the {} {} answered{size}{failed}; half or fewer may \
                 name a master the others have failed over from, so none is taken: {fix}",
                self.role,
                self.redacted(),
            ));
        }
        if let Some(best) = pick_master(&named) {
            return Ok(best);
        }
        // No password given (NOAUTH), or a wrong one (redis-rs: AuthenticationFailed).
        let refused =
            failures.iter().any(|f| ["NOAUTH", "WRONGPASS", "AuthenticationFailed"].iter().any(|w| f.contains(w)));
        let fix = match (refused, &self.sentinel_password) {
            (false, _) => "check the sentinels' addresses and the master name".to_string(),
            (true, Some(_)) => {
                "the sentinels refused their password: check it (or drop it if they ask for none)".to_string()
            }
            (true, None) => "the sentinels ask for a password of their own (their requirepass): name the variable \
                             holding it with --from-sentinel-password-env or --to-sentinel-password-env (in a \
                             runbook, sentinel_password_env)"
                .to_string(),
        };
        Err(format!(
            "no sentinel of the {} {} named its master: {}; {fix}",
            self.role,
            self.redacted(),
            failures.join("; ")
        ))
    }

    /// The master one sentinel names.
    async fn ask_sentinel(&self, node: &str, master: &str) -> Result<Named, String> {
        let mut conn = self.sentinel_connection(node, self.sentinel_timeout).await?;
        let reply: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let (host, port) = reply.ok_or_else(|| format!("knows no master named {master:?}"))?;
        let fields: Vec<String> =
            redis::cmd("SENTINEL").arg("MASTER").arg(master).query_async(&mut conn).await.unwrap_or_default();
        let field = |name: &str| fields.chunks(2).find(|kv| kv[0] == name).and_then(|kv| kv.get(1));
        let epoch = field("config-epoch").and_then(|v| v.parse().ok()).unwrap_or(0);
        let group = field("num-other-sentinels").and_then(|v| v.parse::<usize>().ok()).map(|n| n + 1);
        Ok(Named { addr: format!("{host}:{port}"), epoch, group })
    }

    /// A connection to the sentinel at `node` (`host:port`), logged in with
    /// the sentinels' password and this endpoint's TLS settings; `timeout`
    /// bounds the connection and each answer. The error is raw (unscrubbed).
    pub async fn sentinel_connection(&self, node: &str, timeout: Duration) -> Result<MultiplexedConnection, String> {
        let (host, port) = split_addr(node, "26379");
        let u = url::Url::parse(&format!("{}://{host}:{port}", self.url.scheme())).map_err(|e| e.to_string())?;
        let client = self.client(u, self.sentinel_password.as_deref())?;
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
        client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| e.to_string())
    }

    /// A client for `u` with this endpoint's TLS settings, logging in with
    /// `password` (the master's, or the sentinels').
    fn client(&self, u: url::Url, password: Option<&str>) -> Result<redis::Client, String> {
        let info = self.connection_info(u, password)?;
        if self.tls() && (self.ca_pem.is_some() || self.client_cert.is_some()) {
            let client_tls = self
                .client_cert
                .as_ref()
                .map(|c| redis::ClientTlsConfig { client_cert: c.cert_pem.clone(), client_key: c.key_pem.clone() });
            redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls, root_cert: self.ca_pem.clone() })
        } else {
            redis::Client::open(info)
        }
        .map_err(|e| format!("cannot use the {} {}: {}", self.role, self.redacted(), self.scrub(&e.to_string())))
    }

    /// Connects to the server at `addr` (`host:port`); with Sentinel it must be a master.
    pub async fn open_at(&self, addr: &str) -> Result<MultiplexedConnection, String> {
        let u = at_addr(&self.url, addr)
            .map_err(|e| format!("the {} named a bad server address {addr}: {e}", self.role))?;
        let mut conn = self.connect_url(u).await?;
        if let Some(g) = &self.sentinel {
            let role: Vec<redis::Value> =
                redis::cmd("ROLE").query_async(&mut conn).await.map_err(|e| self.connect_error(&e.to_string()))?;
            if !matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
                return Err(format!(
                    "the sentinels of the {} {} name {addr} as master {}, but it is not a master (a failover under way?); try again in a few seconds",
                    self.role,
                    self.redacted(),
                    g.master
                ));
            }
        }
        Ok(conn)
    }

    async fn connect_url(&self, u: url::Url) -> Result<MultiplexedConnection, String> {
        let client = self.client(u, self.password.as_deref())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(120)));
        let mut conn = match client.get_multiplexed_async_connection_with_config(&config).await {
            Ok(c) => c,
            Err(e) => return Err(self.connect_error(&e.to_string())),
        };
        // Auth problems may only show on the first command.
        match redis::cmd("PING").query_async::<String>(&mut conn).await {
            Ok(_) => {}
            // Logged in and answering, but refusing writes and PING since its
            // last save failed (stop-writes-on-bgsave-error): reads work; a
            // copy's preflight refuses such a target (`copy::takes_writes`).
            Err(e) if e.code() == Some("MISCONF") => {
                tracing::warn!(role = self.role, error = %self.scrub(&e.to_string()), "Redis refuses writes: its last save failed")
            }
            Err(e) => return Err(self.connect_error(&e.to_string())),
        }
        Ok(conn)
    }

    fn connect_error(&self, raw: &str) -> String {
        let msg = self.scrub(raw);
        let who = format!("{} {}", self.role, self.redacted());
        let low = msg.to_ascii_lowercase();
        let runbook = self.in_runbook;
        if low.contains("wrongpass") || low.contains("authentication failed") || low.contains("invalid password") {
            if runbook {
                format!("cannot log in to the {who}: wrong password; check the variable its password_env names")
            } else {
                format!(
                    "cannot log in to the {who}: wrong password; give the right one in the URL or its --*-password-env variable"
                )
            }
        } else if low.contains("noauth") || low.contains("authentication required") {
            if runbook {
                format!("the {who} needs a password; name the variable holding it in the endpoint's password_env")
            } else {
                format!(
                    "the {who} needs a password; put it in the URL (redis://:PASSWORD@host:port) or use --from-password-env / --to-password-env"
                )
            }
        } else if low.contains("not valid for name") || low.contains("notvalidforname") {
            // A CA file would not help: the certificate is trusted, for other names.
            format!(
                "TLS to the {who} failed: its certificate does not name the address connected to ({msg}); connect by \
                 a name the certificate holds, or give the server a certificate naming this address (an IP address \
                 needs an IP entry in its subjectAltName)"
            )
        } else if runbook && (low.contains("certificate") || low.contains("tls") || low.contains("handshake")) {
            format!("TLS to the {who} failed: {msg}; a runbook's endpoint is given no CA file or client certificate")
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
        } else if low.contains("received fatal alert: handshakefailure") {
            // Under TLS 1.2 a server that asks for a client certificate and
            // gets none ends the handshake so (TLS 1.3: CertificateRequired).
            format!(
                "the {who} ended the TLS handshake (HandshakeFailure): it most likely asks for a client certificate \
                 (mutual TLS); pass one its CA signed with --tls-cert FILE --tls-key FILE"
            )
        } else if low.contains("certificate") || low.contains("tls") || low.contains("handshake") {
            format!("TLS to the {who} failed: {msg}; pass the server's CA with --tls-ca PATH")
        } else {
            format!("cannot reach the {who}: {msg}; check host and port and that the server is up")
        }
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
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

/// What one sentinel says of the master it watches.
struct Named {
    /// `host:port` of the master.
    addr: String,
    /// Its config epoch (0 when `SENTINEL MASTER` is refused).
    epoch: u64,
    /// How many sentinels it counts in the group, itself included
    /// (`num-other-sentinels` + 1); None when `SENTINEL MASTER` is refused.
    group: Option<usize>,
}

/// The size of a Sentinel group that a majority is taken of: the sentinels
/// a URL lists, or those its sentinels count in the group
/// (`num-other-sentinels` + 1), whichever is more: one listed alone is no
/// majority of three, and one cut off from its peers names the master they
/// failed over from.
pub fn sentinel_group(listed: usize, counted: usize) -> usize {
    listed.max(counted)
}

/// What a `redis+sentinel://` and a `redis+cluster://` URL share after the
/// scheme: a user and password, a HOST:PORT list, and a path.
struct HostList<'a> {
    user: &'a str,
    password: Option<String>,
    /// `host:port`, lower-cased.
    hosts: Vec<String>,
    path: &'a str,
}

/// Splits `rest` (the URL after `://`); `what` names a host in errors
/// (`sentinel`, `node`), `bad` words them.
fn host_list<'a>(
    rest: &'a str,
    default_port: u16,
    what: &str,
    bad: &dyn Fn(String) -> String,
) -> Result<HostList<'a>, String> {
    // The last `@` ends the user and password (a password may hold `/` or `@`).
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut out = Vec::new();
    for h in hosts.split(',') {
        let (host, port) = match h.rsplit_once(':') {
            Some((host, port)) => {
                (host, port.parse::<u16>().map_err(|_| bad(format!("{what} port {port:?} is not a number")))?)
            }
            None => (h, default_port),
        };
        if host.is_empty() || host.contains(['[', ']', ' ']) {
            return Err(bad(format!("{what} {h:?} is not HOST:PORT")));
        }
        out.push(format!("{}:{port}", host.to_ascii_lowercase()));
    }
    let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        Some((user, pw)) => (user, (!pw.is_empty()).then(|| percent_decode(pw))),
        None => ("", None),
    };
    Ok(HostList { user, password, hosts: out, path })
}

/// The password from `--*-password-env` when given (it must be set), else the URL's.
fn password_from_env(
    role: &str,
    password_env: Option<(&str, Option<String>)>,
    password: Option<String>,
) -> Result<Option<String>, String> {
    match password_env {
        None => Ok(password),
        Some((_, Some(v))) if !v.is_empty() => Ok(Some(v)),
        Some((var, _)) => Err(format!("the {role} password variable {var} is not set; export it or drop the flag")),
    }
}

/// Of the masters sentinels named (address, highest config epoch, how many
/// named it; in the order first named): the highest epoch, then the most
/// named, then the first.
fn pick_master(named: &[(String, u64, usize)]) -> Option<String> {
    // `max_by_key` keeps the last of equals: look from the end for the first.
    named.iter().rev().max_by_key(|n| (n.1, n.2)).map(|n| n.0.clone())
}

/// `host:port` as servers name one (a MOVED redirect, CLUSTER NODES, a
/// sentinel's master address): an IPv6 host comes unbracketed
/// (`2001:db8::1:7000`), which a URL takes only in brackets.
fn split_addr<'a>(addr: &'a str, default_port: &'a str) -> (String, &'a str) {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, default_port));
    match host.contains(':') && !host.starts_with('[') {
        true => (format!("[{host}]"), port),
        false => (host.to_string(), port),
    }
}

/// `url` pointed at the server `addr` names (with Sentinel the master, in a
/// cluster any node), everything else kept.
fn at_addr(url: &url::Url, addr: &str) -> Result<url::Url, String> {
    let mut u = url.clone();
    let (host, port) = split_addr(addr, "6379");
    let same = u.host_str().zip(u.port()).is_some_and(|(h, p)| h == host && p.to_string() == port);
    if !same {
        u.set_host(Some(&host)).map_err(|e| e.to_string())?;
        u.set_port(Some(port.parse().map_err(|_| format!("port {port:?} is not a number"))?))
            .map_err(|_| "the URL takes no port".to_string())?;
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    /// A server named by address (a MOVED redirect, a sentinel's master)
    /// over IPv6 comes unbracketed; the URL connected to brackets it.
    #[test]
    fn an_ipv6_server_address_is_bracketed_in_the_url() {
        let url = url::Url::parse("rediss://user:pw@cache.internal:6379/0").unwrap();
        let at = |addr: &str| super::at_addr(&url, addr).map(|u| u.to_string());
        assert_eq!(at("2001:db8::1:7000").unwrap(), "rediss://user:pw@[2001:db8::1]:7000/0");
        assert_eq!(at("[2001:db8::1]:7000").unwrap(), "rediss://user:pw@[2001:db8::1]:7000/0");
        assert_eq!(at("10.0.0.7:6380").unwrap(), "rediss://user:pw@10.0.0.7:6380/0");
        assert_eq!(at("cache.internal:6379").unwrap(), "rediss://user:pw@cache.internal:6379/0");
        assert!(at("10.0.0.7:port").is_err());
    }

    use super::*;

    #[test]
    fn a_runbooks_endpoint_is_told_to_fix_its_runbook_fields_whatever_its_role() {
        let noauth = "NOAUTH: Authentication required.";
        let flags = Endpoint::parse("source", "redis://h:1", None, None).unwrap();
        assert!(flags.connect_error(noauth).contains("--from-password-env"));
        // A checklist action's copy: a source, from the runbook.
        let action = flags.clone().from_runbook();
        let told = action.connect_error(noauth);
        assert!(told.contains("password_env") && !told.contains("--from-password-env"), "{told}");
    }

    #[test]
    fn scrub_hides_both_passwords_even_when_one_holds_the_other() {
        let e = Endpoint::parse("target", "redis+sentinel://:abc@s1/m", None, None)
            .unwrap()
            .with_sentinel_password("abc123".into())
            .unwrap();
        assert_eq!(e.scrub("sentinel said abc123, master abc"), "sentinel said ***, master ***");
    }

    #[test]
    fn the_master_named_with_the_highest_epoch_then_by_most_sentinels_wins() {
        let n = |addr: &str, epoch, votes| (addr.to_string(), epoch, votes);
        // One sentinel cut off from its peers still names the old master.
        assert_eq!(pick_master(&[n("old:6379", 3, 1), n("new:6379", 4, 2)]), Some("new:6379".into()));
        assert_eq!(pick_master(&[n("new:6379", 4, 1), n("old:6379", 3, 2)]), Some("new:6379".into()));
        assert_eq!(pick_master(&[n("a:1", 0, 1), n("b:1", 0, 3)]), Some("b:1".into()));
        assert_eq!(pick_master(&[n("a:1", 2, 1), n("b:1", 2, 1)]), Some("a:1".into()), "the first of equals");
        assert_eq!(pick_master(&[]), None);
    }

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
        assert!(
            err.contains("scheme must be redis, rediss, redis+sentinel or redis+cluster") && err.contains("--from"),
            "{err}"
        );
        assert!(!err.contains("pw@"), "{err}");
        let err = Endpoint::parse("target", "redis://h:1/x", None, None).unwrap_err();
        assert!(err.contains("database \"x\" is not a number"), "{err}");
        assert!(Endpoint::parse("source", "nonsense", None, None).unwrap_err().starts_with("bad source URL nonsense"));
    }

    #[test]
    fn sentinel_urls_name_the_master_and_the_sentinels_not_an_address() {
        let e = Endpoint::parse("target", "redis+sentinel://:s3cret@H1:26379,h2:26380/mymaster/2", None, None).unwrap();
        let g = e.sentinel().unwrap();
        assert_eq!(g.sentinels, ["h1:26379", "h2:26380"]);
        assert_eq!(g.master, "mymaster");
        assert_eq!((e.db(), e.tls(), e.password.as_deref()), (2, false, Some("s3cret")));
        assert_eq!(e.redacted(), "redis+sentinel://:***@h1:26379,h2:26380/mymaster/2");
        assert_eq!(format!("{e} {e:?}").matches("s3cret").count(), 0);
        // The checkpoint's key: the same group however its sentinels are listed.
        let other = Endpoint::parse("target", "redis+sentinel://h2:26380,h1/mymaster/2", None, None).unwrap();
        assert_eq!(e.server_id(), "sentinel:h1:26379,h2:26380/mymaster/2");
        assert_eq!(other.server_id(), e.server_id());
        assert_ne!(
            Endpoint::parse("target", "redis+sentinel://h1/other", None, None).unwrap().server_id(),
            e.server_id()
        );
        let tls = Endpoint::parse("source", "rediss+sentinel://u:p@h:1/m", None, None).unwrap();
        assert!(tls.tls());
        assert_eq!(tls.redacted(), "rediss+sentinel://u:***@h:1/m/0");
        assert_eq!(tls.db(), 0);
        // A cluster's seed nodes may repeat (only sentinels are counted).
        assert!(Endpoint::parse("target", "redis+cluster://n1:7000,N1:7000", None, None).is_ok());
    }

    #[test]
    fn bad_sentinel_urls_say_how_to_write_them() {
        let err = |u: &str| Endpoint::parse("target", u, None, None).unwrap_err();
        for (u, why) in [
            ("redis+sentinel://h:1", "no master name"),
            ("redis+sentinel://h:1/", "no master name"),
            ("redis+sentinel://h:x/m", "sentinel port \"x\" is not a number"),
            ("redis+sentinel://h:1,/m", "sentinel \"\" is not HOST:PORT"),
            ("redis+sentinel://h:26379,H/m", "sentinel h:26379 is listed twice"),
            ("redis+sentinel://h:1/m/x", "database \"x\" is not a number"),
            ("redis+sentinel://:pw@h:1/m/1/2", "is not a number"),
        ] {
            let e = err(u);
            assert!(
                e.contains(why) && e.contains("redis+sentinel://[:PASSWORD@]HOST:PORT") && e.contains("--to"),
                "{u}: {e}"
            );
            assert!(!e.contains(":pw@"), "{e}");
        }
    }

    #[test]
    fn cluster_urls_list_nodes_and_only_database_0() {
        let e = Endpoint::parse("source", "redis+cluster://:s3cret@H1:7000,h2", None, None).unwrap();
        assert_eq!(e.cluster_nodes().unwrap(), ["h1:7000", "h2:6379"]);
        assert_eq!((e.db(), e.tls(), e.password.as_deref()), (0, false, Some("s3cret")));
        assert_eq!(e.redacted(), "redis+cluster://:***@h1:7000,h2:6379");
        assert_eq!(e.server_id(), "cluster:h1:7000,h2:6379");
        let other = Endpoint::parse("source", "redis+cluster://h2:6379,h1:7000/0", None, None).unwrap();
        assert_eq!(other.server_id(), e.server_id(), "the same cluster however its nodes are listed");
        assert!(Endpoint::parse("target", "rediss+cluster://h:1", None, None).unwrap().tls());
        for (u, why) in [
            ("redis+cluster://h:1/2", "a Redis Cluster has only database 0"),
            ("redis+cluster://h:x", "node port \"x\" is not a number"),
            ("redis+cluster://:pw@h:1,", "node \"\" is not HOST:PORT"),
        ] {
            let err = Endpoint::parse("target", u, None, None).unwrap_err();
            assert!(
                err.contains(why) && err.contains("redis+cluster://[:PASSWORD@]HOST:PORT") && err.contains("--to"),
                "{err}"
            );
            assert!(!err.contains(":pw@"), "{err}");
        }
    }

    #[test]
    fn percent_encoded_passwords_are_decoded() {
        let e = Endpoint::parse("source", "redis://:a%40b@h:1", None, None).unwrap();
        assert_eq!(e.password.as_deref(), Some("a@b"));
        assert_eq!(e.scrub("x a@b y"), "x *** y");
        // A `%` before a character of several bytes (it panicked slicing
        // inside it), or before a sign, is taken as it stands.
        for (url, pw) in [("redis://:p%C3%A9@h:1", "pé"), ("redis://:%aé@h:1", "%aé"), ("redis://:%+1@h:1", "%+1")] {
            let e = Endpoint::parse("source", url, None, None).unwrap();
            assert_eq!(e.password.as_deref(), Some(pw), "{url}");
        }
        let e = Endpoint::parse("source", "redis+sentinel://:%aé@h:26379/m", None, None).unwrap();
        assert_eq!(e.password.as_deref(), Some("%aé"));
    }

    /// The password a connection logs in with is the one given: from a
    /// variable as it stands, from a URL decoded once. Put back into the
    /// URL, `%41` reached the server as `A` (redis-rs decodes it again).
    #[test]
    fn a_password_holding_percent_signs_logs_in_as_given() {
        let login = |e: &Endpoint| {
            let u = url::Url::parse("redis://h:1").unwrap();
            e.connection_info(u, e.password.as_deref()).unwrap().redis_settings().password().map(str::to_string)
        };
        let from_env = Endpoint::parse("source", "redis://h:1", Some(("PW", Some("Ab%41cd".into()))), None).unwrap();
        assert_eq!(login(&from_env).as_deref(), Some("Ab%41cd"));
        let from_url = Endpoint::parse("source", "redis://:Ab%2541cd@h:1", None, None).unwrap();
        assert_eq!(login(&from_url).as_deref(), Some("Ab%41cd"));
        let plain = Endpoint::parse("source", "redis://:a%40b@h:1", None, None).unwrap();
        assert_eq!(login(&plain).as_deref(), Some("a@b"));
    }
}
