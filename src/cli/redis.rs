//! `cutover redis copy` and `cutover redis verify`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::{Failure, GlobalArgs};
use crate::redis::copy::{self, CopyError, CopyOptions};
use crate::redis::progress::{CopyProgress, human_bytes};
use crate::redis::url::{ClientCert, Endpoint};
use crate::redis::verify::{self, VerifyOptions};
use crate::redis::{Mode, OnConflict, checkpoint};
use crate::store::audit::{AuditLine, AuditLog, Stage};

#[derive(Debug, Subcommand)]
pub enum RedisCommand {
    /// Copy keys (every type, with TTLs) from one Redis to another; resumable.
    /// Exit 0 done, 1 failed part-way (--resume continues), 2 refused or bad input.
    Copy(CopyArgs),
    /// Compare two Redis: key counts, then every key (or a sample). Exit 1 on any difference.
    Verify(VerifyArgs),
}

#[derive(Clone, Args)]
pub struct Ends {
    /// Source: redis://[:PASSWORD@]HOST:PORT[/DB], rediss:// for TLS, or
    /// redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER[/DB].
    #[arg(long)]
    pub from: String,
    /// Target, as --from.
    #[arg(long)]
    pub to: String,
    /// Take the source's password from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub from_password_env: Option<String>,
    /// Take the target's password from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub to_password_env: Option<String>,
    /// Take the password of the source's sentinels (their requirepass, not
    /// the master's) from this environment variable (redis+sentinel:// only).
    #[arg(long, value_name = "VAR")]
    pub from_sentinel_password_env: Option<String>,
    /// As --from-sentinel-password-env, for the target's sentinels.
    #[arg(long, value_name = "VAR")]
    pub to_sentinel_password_env: Option<String>,
    /// PEM file of the CA that signed the servers' certificates (rediss://).
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate shown to the servers (mutual TLS); needs --tls-key.
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub tls_key: Option<std::path::PathBuf>,
    /// Only keys matching this glob (SCAN MATCH).
    #[arg(long = "match", value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Keys per SCAN (and per pipeline batch). A copy into a cluster scans
    /// this many per shard of the target, up to 3 times as many, so that a
    /// batch from one server still gives each shard about this many.
    #[arg(long, default_value_t = 1000)]
    pub scan_count: usize,
    /// Read a cluster source on a replica of each shard (READONLY), sparing
    /// its primaries; a shard without a replica that answers is read on its
    /// primary, and the copy says so.
    #[arg(long)]
    pub from_replicas: bool,
}

// The command is logged with Debug: URLs are redacted there.
impl std::fmt::Debug for Ends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::redis::url::redact_text;
        f.debug_struct("Ends")
            .field("from", &redact_text(&self.from, None))
            .field("to", &redact_text(&self.to, None))
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    #[command(flatten)]
    pub ends: Ends,
    /// What to do with a key the target already has.
    #[arg(long, value_enum, default_value_t = OnConflict::Fail)]
    pub on_conflict: OnConflict,
    /// Continue an interrupted copy from its checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Forget an interrupted copy's checkpoint and start over.
    #[arg(long, conflicts_with = "resume")]
    pub restart: bool,
    /// Print what would be copied and what conflicts; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do it (headless changes need it).
    #[arg(long)]
    pub yes: bool,
    /// auto: DUMP/RESTORE unless the target cannot read the source's format.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// Keys bigger than this (bytes, MEMORY USAGE) are copied in chunks.
    #[arg(long, default_value_t = 32 << 20)]
    pub chunk_threshold: u64,
    /// DUMP every key whole, without asking its size (MEMORY USAGE) first:
    /// about a third less work for the source. Only for a source of small
    /// keys: a big key's DUMP blocks the source while it is serialised, and
    /// cutover holds every batch's values whole (--scan-count keys times
    /// --pipeline batches, with no 8 MB cap). Look before the window
    /// (`redis-cli --memkeys`, on a replica).
    #[arg(long, conflicts_with = "chunk_threshold")]
    pub no_size_check: bool,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 4)]
    pub pipeline: usize,
    /// At most this many keys per second (default: unlimited).
    #[arg(long, value_name = "KEYS_PER_S")]
    pub rate: Option<u64>,
    /// The final report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub ends: Ends,
    /// Check N keys (RANDOMKEY; with --match the first N SCAN returns).
    #[arg(long, value_name = "N", conflicts_with = "full")]
    pub sample: Option<u64>,
    /// Check every key (the default).
    #[arg(long)]
    pub full: bool,
    /// Largest TTL difference accepted, in ms.
    #[arg(long, default_value_t = 1000)]
    pub ttl_tolerance_ms: u64,
    /// Keys bigger than this (bytes, MEMORY USAGE) on either side are
    /// compared in chunks, never DUMPed whole.
    #[arg(long, default_value_t = 32 << 20)]
    pub chunk_threshold: u64,
    /// At most this many keys checked per second (default: unlimited).
    #[arg(long, value_name = "KEYS_PER_S")]
    pub rate: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

fn bad(m: impl Into<String>) -> Failure {
    Failure::bad_input(m)
}

fn endpoints(e: &Ends) -> Result<(Endpoint, Endpoint), Failure> {
    let ca = match &e.tls_ca {
        Some(p) => Some(std::fs::read(p).map_err(|err| {
            bad(format!("cannot read --tls-ca {}: {err}; give the PEM file of the servers' CA", p.display()))
        })?),
        None => None,
    };
    fn pw(v: &Option<String>) -> Option<(&str, Option<String>)> {
        v.as_deref().map(|name| (name, std::env::var(name).ok()))
    }
    let client_cert = client_cert(e)?;
    let mut from = Endpoint::parse("source", &e.from, pw(&e.from_password_env), ca.clone()).map_err(bad)?;
    let mut to = Endpoint::parse("target", &e.to, pw(&e.to_password_env), ca).map_err(bad)?;
    if let Some(c) = client_cert {
        from = from.with_client_cert(c.clone());
        to = to.with_client_cert(c);
    }
    let sentinel_password = |var: &str, end: &str| {
        std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
            bad(format!("the {end} sentinels' password variable {var} is not set; export it or drop the flag"))
        })
    };
    if let Some(var) = &e.from_sentinel_password_env {
        from = from.with_sentinel_password(sentinel_password(var, "source")?).map_err(bad)?;
    }
    if let Some(var) = &e.to_sentinel_password_env {
        to = to.with_sentinel_password(sentinel_password(var, "target")?).map_err(bad)?;
    }
    if e.from_replicas {
        from = from.reading_replicas();
    }
    if let Some(p) = &e.pattern {
        crate::redis::check_pattern(p).map_err(bad)?;
    }
    if e.scan_count == 0 {
        return Err(bad("--scan-count must be at least 1"));
    }
    if from.server_id() == to.server_id() {
        return Err(bad(format!("--from and --to are the same Redis ({from}); give two different servers")));
    }
    Ok((from, to))
}

/// `--tls-cert` and `--tls-key`, both or neither, read and checked to be PEM.
fn client_cert(e: &Ends) -> Result<Option<ClientCert>, Failure> {
    let read = |flag: &str, p: &std::path::Path, marker: &str, what: &str| {
        let body = std::fs::read(p)
            .map_err(|err| bad(format!("cannot read {flag} {}: {err}; give the PEM file of {what}", p.display())))?;
        if !body.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            return Err(bad(format!(
                "{flag} {}: not a PEM file of {what} (no \"{marker}\" line); give the PEM file of {what}",
                p.display()
            )));
        }
        Ok(body)
    };
    match (&e.tls_cert, &e.tls_key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(bad("--tls-cert needs --tls-key: give the client certificate's private key too")),
        (None, Some(_)) => Err(bad("--tls-key needs --tls-cert: give the client certificate too")),
        (Some(c), Some(k)) => Ok(Some(ClientCert {
            cert_pem: read("--tls-cert", c, "-----BEGIN CERTIFICATE-----", "the client certificate")?,
            key_pem: read("--tls-key", k, "PRIVATE KEY-----", "the client certificate's private key")?,
        })),
    }
}

fn audit_log() -> AuditLog {
    AuditLog::for_runbook("redis")
}

pub fn run(cmd: RedisCommand, g: &GlobalArgs) -> Result<u8, Failure> {
    match cmd {
        RedisCommand::Copy(a) => {
            super::team::install_state_flag(g)?;
            run_copy(a, g)
        }
        RedisCommand::Verify(a) => run_verify(a),
    }
}

fn run_copy(a: CopyArgs, g: &GlobalArgs) -> Result<u8, Failure> {
    let (from, to) = endpoints(&a.ends)?;
    if a.pipeline == 0 {
        return Err(bad("--pipeline must be at least 1"));
    }
    if a.rate == Some(0) {
        return Err(bad("--rate must be at least 1 key/s (leave it out for no limit)"));
    }
    if a.chunk_threshold == 0 {
        return Err(bad("--chunk-threshold must be at least 1 byte"));
    }
    let action = format!("redis_copy {from} → {to}");
    let log = audit_log();
    let line = |stage: Stage, before: serde_json::Value, after: serde_json::Value, detail: String| AuditLine {
        time: crate::time::rfc3339(std::time::SystemTime::now()),
        operator: crate::store::operator(),
        account: None,
        region: String::new(),
        runbook: String::new(),
        action: action.clone(),
        stage,
        change: None,
        step: None,
        aws_ahead_ms: None,
        before,
        after,
        detail,
    };
    let rt = super::runtime()?;
    // A dry run writes nothing; anything else is authorised first (refusals audited).
    let who = if a.dry_run {
        None
    } else {
        let scope = crate::authority::Scope::RedisUrls { log: &log };
        Some(rt.block_on(crate::authority::authorise(scope, g.read_only, &action, "writing to Redis"))?)
    };
    if !a.dry_run && !a.yes {
        return Err(bad(format!(
            "refused: copying into {to} needs --yes (try --dry-run first to see what it would do); nothing was written"
        )));
    }
    let place = checkpoint::place_for(&from.server_id(), &to.server_id(), a.ends.pattern.as_deref());
    let lock = if a.dry_run {
        None
    } else {
        let lock = checkpoint::CopyLock::try_take(&place, &action, &mut |m| errln!("{m}"))
            .map_err(|e| Failure { status: 1, message: e })?;
        Some(lock.map_err(|by| {
            bad(format!(
                "refused: a copy from {from} to {to} is already running ({by}); wait for it or stop it; nothing was written"
            ))
        })?)
    };
    let existing = if a.restart {
        checkpoint::forget(&place).map_err(bad)?;
        None
    } else {
        checkpoint::load(&place).map_err(bad)?
    };
    let resume = match (a.resume, existing) {
        (true, None) => {
            return Err(bad(format!(
                "--resume: no interrupted copy from {from} to {to}{} to resume; run without --resume",
                a.ends.pattern.as_deref().map(|p| format!(" matching {p}")).unwrap_or_default()
            )));
        }
        (true, Some(cp)) => {
            if cp.on_conflict != a.on_conflict {
                return Err(bad(format!(
                    "--resume: the interrupted copy used --on-conflict {}; resume with the same policy",
                    cp.on_conflict.name()
                )));
            }
            Some(cp)
        }
        (false, Some(cp)) if !a.restart => {
            return Err(bad(format!(
                "an interrupted copy from {from} to {to} has a checkpoint ({} keys copied{}, {}); \
                 continue it with --resume, or start over with --restart",
                cp.counters.copied,
                if cp.done { ", the whole source scanned" } else { "" },
                cp.updated
            )));
        }
        (false, _) => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let opts = CopyOptions {
        from,
        to,
        pattern: a.ends.pattern.clone(),
        on_conflict: a.on_conflict,
        mode: a.mode,
        chunk_threshold: (!a.no_size_check).then_some(a.chunk_threshold),
        scan_count: a.ends.scan_count,
        pipeline: a.pipeline,
        rate: a.rate,
        checkpoint: Some(place.clone()),
        checkpoint_every: checkpoint::interval(),
        lease: lock.as_ref().and_then(|l| l.lease()),
        resume,
        stop: stop.clone(),
        after_scan: None,
        run_by: copy::RunBy::Command,
    };
    rt.block_on(async {
        let (mut conns, pf) = copy::preflight(&opts).await.map_err(copy_failure)?;
        let shards = |n: usize| if n > 0 { format!(" in {n} cluster shards") } else { String::new() };
        let what = format!(
            "copy {} → {}{}: ~{} source keys{}, target has {} keys{}; {}{}; on conflict: {}",
            opts.from,
            opts.to,
            opts.pattern.as_deref().map(|p| format!(" (keys matching {p})")).unwrap_or_default(),
            pf.source_keys,
            shards(pf.source_shards.len()),
            pf.target_keys,
            shards(pf.target_shards.len()),
            pf.mode_reason,
            if opts.chunk_threshold.is_none() && pf.mode == Mode::Dump { "; no size check: every key DUMPed whole" } else { "" },
            opts.on_conflict.name()
        );
        errln!("{what}");
        if opts.from.reads_replicas() {
            let on: Vec<String> = pf.source_shards.iter().map(|s| format!("{} on {}", s.slots, s.read_on)).collect();
            errln!("reading the source's shards on replicas: {}", on.join(", "));
        }
        for n in &pf.source_notes {
            errln!("{n}");
        }
        if let Some(cp) = &opts.resume {
            let r = pf.resume_of(cp);
            for w in &r.why {
                errln!("{w}");
            }
            if !pf.source_shards.is_empty() {
                let done = r.places.iter().filter(|p| p.done).count();
                errln!(
                    "resuming {} shards ({done} already scanned; {} keys already copied)",
                    r.places.len(),
                    r.copied()
                );
            } else if r.places[0].done {
                errln!(
                    "the interrupted copy had scanned the whole source ({} keys copied) and stopped before it \
                     removed its checkpoint: nothing is left to copy",
                    r.copied()
                );
            } else if r.why.is_empty() {
                errln!("resuming at SCAN cursor {} ({} keys already copied)", r.places[0].cursor, r.copied());
            }
        }
        // A resume does not look again: the keys it copied are on the target.
        // It compares each key it meets there with the source's instead, and
        // stops on one held otherwise, as a fresh copy stops on one that
        // appears during it.
        let mut precheck = a.dry_run || (opts.on_conflict == OnConflict::Fail && opts.resume.is_none());
        // An empty target has nothing to conflict with: the scan would only
        // cost the time of a second pass over the source. A dry run still
        // scans, to say how many keys match.
        let empty = |e: String| Failure { status: 1, message: format!("{e}; nothing was written") };
        if precheck && !a.dry_run && conns.target_empty(&opts.to).await.map_err(empty)? {
            errln!(
                "the target is empty: no conflict to look for; a key that appears on it during the copy stops the copy"
            );
            precheck = false;
        }
        if precheck {
            errln!("checking which keys the target already has (reads only)…");
            let c = copy::find_conflicts(&opts, &mut conns)
                .await
                .map_err(|e| Failure { status: 1, message: format!("{e}; nothing was written") })?;
            let first = if c.first.is_empty() { String::new() } else { format!(" (first: {})", c.first.join(", ")) };
            if a.dry_run {
                let fate = match opts.on_conflict {
                    _ if c.count == 0 => "no conflict: the copy would go ahead",
                    OnConflict::Fail => "the copy would stop before writing anything",
                    OnConflict::Replace => "they would be overwritten",
                    OnConflict::Skip => "they would be left alone and counted",
                };
                outln!(
                    "dry run: nothing was written. {} keys match on the source; {} already exist on the target{first}: {fate}",
                    c.scanned, c.count
                );
                return Ok(0);
            }
            if c.count > 0 {
                return Err(bad(format!(
                    "refused: {} of {} keys already exist on the target{first}; nothing was written. \
                     Choose --on-conflict replace or skip, or empty the target",
                    c.count, c.scanned
                )));
            }
        }
        let Some(who) = who else { return Err(bad("a dry run writes nothing")) };
        let before = serde_json::json!({"target_keys": pf.target_keys, "target_expiring": pf.target_expiring});
        let plan = serde_json::json!({
            "source_keys": pf.source_keys, "match": opts.pattern, "on_conflict": opts.on_conflict.name(),
            "mode": pf.mode, "resume": opts.resume.is_some(),
            "size_check": opts.chunk_threshold.is_some(), "chunk_threshold": opts.chunk_threshold,
        });
        log.append(&line(Stage::Intent, before.clone(), plan, what.clone()))
            .map_err(|e| Failure { status: 1, message: format!("{e}; nothing was written") })?;
        let watcher = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
                stop.store(true, Ordering::SeqCst);
                errln!("\nstopping after the batches in flight…");
            }
        });
        tracing::info!(from = %opts.from, to = %opts.to, mode = ?pf.mode, "redis copy starting");
        let mut view = ProgressView::new();
        let result = copy::copy(&who, &opts, conns.clone_pair(), &pf, |p| view.update(p)).await;
        view.finish();
        watcher.abort();
        let mut after_counts = conns.target_counts(&opts.to).await.ok();
        if after_counts.is_none() && opts.to.sentinel().is_some() {
            // The master moved during the copy: count on the new one, as a
            // majority of the sentinels name it (one cut off names an old one).
            if let Ok(mut c) = opts.to.clone().with_sentinel_majority().connect().await {
                after_counts = crate::redis::query::key_counts(&opts.to, &mut c).await.ok();
            }
        }
        let after = |report: serde_json::Value| {
            serde_json::json!({
                "target_keys": after_counts.map(|c| c.0), "target_expiring": after_counts.map(|c| c.1), "report": report,
            })
        };
        match result {
            Ok(r) => {
                tracing::info!(total = ?r.total, interrupted = r.interrupted, "redis copy ended");
                let rj = serde_json::to_value(&r).unwrap_or_default();
                let stage = if r.interrupted { Stage::Interrupted } else { Stage::Applied };
                log.append(&line(stage, before, after(rj.clone()), String::new()))
                    .map_err(|e| Failure { status: 1, message: e })?;
                let t = &r.total;
                let summary = format!(
                    "copied {} keys ({}), skipped {} expired and {} existing, {} in chunks; this run {} keys in {:.1} s ({:.0} keys/s)",
                    t.copied,
                    human_bytes(t.bytes),
                    t.skipped_expired,
                    t.skipped_conflict,
                    t.chunked,
                    r.run.copied,
                    r.seconds,
                    r.run.done() as f64 / r.seconds.max(1e-9)
                );
                if a.json {
                    outln!("{rj}");
                } else {
                    outln!("{summary}");
                    if r.run.copied > t.copied {
                        outln!(
                            "this run counts every write: keys written again after a scan started over count twice in it, once in the total"
                        );
                    }
                    if t.seen_twice > 0 {
                        outln!(
                            "{} keys came twice from SCAN (it may, while the source's table is resized) and were already on the target as on the source",
                            t.seen_twice
                        );
                    }
                    if t.skipped_temporary > 0 {
                        outln!("{}", copy::temporary_left(t.skipped_temporary));
                    }
                    for f in &r.followed {
                        outln!("{f}");
                    }
                }
                if r.interrupted {
                    errln!(
                        "interrupted: the checkpoint keeps the place; continue with the same command and --resume (in place of --restart, if given)"
                    );
                    return Ok(1);
                }
                Ok(0)
            }
            Err(e) => {
                tracing::warn!(error = e.message(), "redis copy failed");
                let _ = log.append(&line(Stage::Failed, before, after(serde_json::Value::Null), e.message().to_string()));
                Err(copy_failure(e))
            }
        }
    })
}

fn copy_failure(e: CopyError) -> Failure {
    match e {
        CopyError::Refused(m) => bad(m),
        CopyError::Failed(m) => Failure { status: 1, message: m },
    }
}

/// A progress bar on a terminal, else a plain line every second (stderr).
struct ProgressView {
    bar: Option<indicatif::ProgressBar>,
    last: Option<Instant>,
    done: bool,
}

impl ProgressView {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/~{len} keys {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Self { bar, last: None, done: false }
    }

    fn update(&mut self, p: &CopyProgress) {
        match &self.bar {
            Some(b) => {
                b.set_length(p.estimate.max(p.total.done()));
                b.set_position(p.total.done());
                let eta = p.eta().map_or_else(|| "-".into(), |d| format!("{} s", d.as_secs()));
                b.set_message(format!(
                    "{:.0} keys/s {}/s ETA {eta}",
                    p.keys_per_s(),
                    human_bytes(p.bytes_per_s() as u64)
                ));
            }
            None => {
                if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) || (p.finished && !self.done) {
                    errln!("{}", p.line());
                    self.last = Some(Instant::now());
                    self.done = p.finished;
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

fn run_verify(a: VerifyArgs) -> Result<u8, Failure> {
    let (from, to) = endpoints(&a.ends)?;
    if a.sample == Some(0) {
        return Err(bad("--sample must be at least 1 (or use --full)"));
    }
    if a.rate == Some(0) {
        return Err(bad("--rate must be at least 1 key/s (leave it out for no limit)"));
    }
    if a.chunk_threshold == 0 {
        return Err(bad("--chunk-threshold must be at least 1 byte"));
    }
    let opts = VerifyOptions {
        from,
        to,
        pattern: a.ends.pattern.clone(),
        sample: if a.full { None } else { a.sample },
        ttl_tolerance_ms: a.ttl_tolerance_ms,
        scan_count: a.ends.scan_count,
        rate: a.rate,
        chunk_threshold: a.chunk_threshold,
    };
    super::runtime()?.block_on(async {
        let (src, _, src_cluster) = copy::open_side(&opts.from).await.map_err(bad)?;
        let (dst, _, dst_cluster) = copy::open_side(&opts.to).await.map_err(bad)?;
        let r = verify::verify_with(&opts, src, src_cluster, dst, dst_cluster)
            .await
            .map_err(|e| Failure { status: 1, message: e })?;
        if a.json {
            outln!("{}", serde_json::to_string(&r).unwrap_or_default());
        } else {
            outln!(
                "keys without expiry: source {}, target {}{} (all keys: source {}, target {})",
                r.source_persistent,
                r.target_persistent,
                if r.counts_match() { "" } else { " MISMATCH" },
                r.source_keys,
                r.target_keys
            );
            let sampled = match r.sampled {
                Some(n) => format!(
                    " (a sample of {n}, repeats possible; keys only the target has were not looked for: verify \
                     without --sample for that)"
                ),
                None => String::new(),
            };
            outln!(
                "checked {} keys{sampled}: {} missing, {} on target only, {} type mismatch, {} value mismatch, {} TTL \
                 mismatch ({} expired while checked, {} compared in chunks)",
                r.checked,
                r.missing,
                r.extra,
                r.type_mismatch,
                r.value_mismatch,
                r.ttl_mismatch,
                r.vanished,
                r.compared_in_chunks
            );
            for d in &r.first {
                outln!("  {d}");
            }
            if r.checked == 0 {
                let matching = a.ends.pattern.as_deref().map(|p| format!(" matching {p}")).unwrap_or_default();
                if r.vanished > 0 {
                    outln!(
                        "NOTHING COMPARED: every key the source gave{matching} ({}) expired or was deleted while \
                         checked; run it again when the source holds keys that live longer",
                        r.vanished
                    );
                } else {
                    outln!(
                        "NOTHING COMPARED: the source gave no key{matching} to compare; check its URL's database \
                         (/{}) and --match",
                        opts.from.db()
                    );
                }
            } else {
                outln!("{}", if r.ok() { "OK" } else { "DIFFERENT" });
            }
        }
        Ok(if r.ok() { 0 } else { 1 })
    })
}
