//! The command line: parses arguments, sets up logging, runs a subcommand and
//! maps its outcome to an exit status (0 ok, 1 a check failed, 2 bad input).

// Output that a reader gone away (`| head`, a closed `tee`) cannot turn into
// a panic: `println!` panics on a broken pipe, which would kill a rollout
// mid-step over its log; what is lost is only the display. Any other write
// error (a full disk under `--json > f`) fails the command at its end.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        $crate::cli::wrote(writeln!(std::io::stdout(), $($t)*));
    }};
}
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        $crate::cli::wrote(write!(std::io::stdout(), $($t)*));
    }};
}
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        $crate::cli::wrote(writeln!(std::io::stderr(), $($t)*));
    }};
}

/// The first write error other than a reader gone away: the command then
/// exits 1 saying so, as a document cut short must not pass for whole.
static WRITE_FAILED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[doc(hidden)]
pub fn wrote(r: std::io::Result<()>) {
    if let Err(e) = r
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        let _ = WRITE_FAILED.set(e.to_string());
    }
}

pub mod diff;
pub mod plan;
pub mod redis;
pub mod report;
pub mod rollout;
pub mod run;
pub mod sandbox;
pub mod shift;
pub mod status;
pub mod team;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueHint};

use crate::runbook::{self, Runbook};

#[derive(Debug, Parser)]
#[command(name = "cutover", version, about = "A terminal cockpit for moving live traffic between AWS environments")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// AWS profile (default: the usual AWS_PROFILE / default chain).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// AWS region (overrides the runbook's; `sandbox up` writes CUTOVER_REGION).
    #[arg(long, global = true, env = "CUTOVER_REGION", value_parser = region_arg)]
    pub region: Option<String>,
    /// Refuse every change to AWS or Redis.
    #[arg(long, global = true)]
    pub read_only: bool,
    /// Log file (default: $XDG_STATE_HOME/cutover/cutover.log).
    #[arg(long, global = true, value_hint = ValueHint::FilePath)]
    pub log_file: Option<PathBuf>,
    /// Where the rollout's state, lease, requests, checklist and audit live:
    /// `s3://bucket/prefix` (team mode) or `local`; another than a runbook's
    /// `[team] state` only with --read-only.
    #[arg(long, global = true, env = "CUTOVER_STATE")]
    pub state: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a runbook and report every problem as file:line:col.
    Validate {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
    },
    /// Print the runbook's phases, rollout steps and gates.
    Plan {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
    },
    /// Snapshot of targets, instances, Redis, weights, alarms, metrics and checks.
    /// Exit 0 if every blocking check passes, 1 if one does not, 2 on bad input.
    Status {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        /// Stable JSON (schema in README); one object per line with --watch.
        #[arg(long)]
        json: bool,
        /// Refresh until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Seconds between refreshes with --watch (1 to 86400).
        #[arg(long, default_value_t = 5, requires = "watch", value_parser = clap::value_parser!(u64).range(1..=86_400))]
        interval: u64,
    },
    /// Compare the rollout's two sides live (load balancer, listeners, target
    /// groups, instances, security groups by role, alarms, Redis). Exit 0
    /// without drift, 1 with drift, 2 on bad input; `[parity] allow` lists
    /// the expected differences.
    Diff {
        runbook: PathBuf,
        /// Stable JSON (schema in README).
        #[arg(long)]
        json: bool,
    },
    /// Put N% of the traffic on the rollout's `to` side (100−N on `from`): both
    /// records in one change batch, then wait for INSYNC. Audited.
    Shift {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        /// Percent of traffic for the `to` side.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        to: u8,
        /// Do it (headless changes need it).
        #[arg(long)]
        yes: bool,
        /// Print the change batch; send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Step through the runbook's rollout behind its gates; resumes after an
    /// interruption. Exit 0 done, 1 aborted (rolled back), 3 paused, 2 refused.
    Rollout {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        #[arg(long)]
        yes: bool,
        /// Continue from the live weights when they differ from the saved state.
        #[arg(long)]
        adopt_live: bool,
        /// Refuse, sending nothing, unless the live weights are exactly
        /// FROM/TO (e.g. 70/30): the weights a person looked at and confirmed.
        #[arg(long, value_name = "FROM/TO", value_parser = parse_weights)]
        expect_live: Option<(u8, u8)>,
        /// Forget the saved rollout state and start over.
        #[arg(long)]
        restart: bool,
        /// Print the plan, the live weights, the saved state and the next
        /// change batch; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Resume a rollout whose lease expired (its holder stopped: killed,
        /// laptop closed); refused while the lease is live.
        #[arg(long)]
        take_over: bool,
    },
    /// Roll back to the last step whose gates all passed (or the initial weights).
    Abort {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        reason: Option<String>,
        /// Print the rollback that would be sent; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Ask the running rollout to pause (it stops for a person; `cutover
    /// rollout` resumes it).
    Pause {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Ask the running rollout to skip the rest of the current step's soak
    /// and move on (needs --yes: it skips the gates' remaining evidence).
    Promote {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        #[arg(long)]
        yes: bool,
    },
    /// Run one checklist action (phase/item), or its rollback: planned from live
    /// data, shown before → after, confirmed with --yes, audited.
    Run {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        /// phase/item, as `cutover plan` lists them.
        item: String,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        dry_run: bool,
        /// Run the item's rollback instead.
        #[arg(long)]
        rollback: bool,
        /// The environment's name: required with --yes by actions that cannot
        /// be undone (terminate_instances, delete_security_groups).
        #[arg(long, value_name = "ENVIRONMENT")]
        confirm_name: Option<String>,
    },
    /// Tick a manual checklist item (phase/item) for everyone, or untick it,
    /// or note on it. Audited; refused under --read-only.
    Tick {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        /// phase/item, as `cutover plan` lists them.
        item: String,
        /// Untick it.
        #[arg(long)]
        undo: bool,
        /// A note on the item (an empty one removes it).
        #[arg(long)]
        note: Option<String>,
        /// Say what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the checklist: every item, who ticked it and when, and its notes.
    Checklist {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        /// Stable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the audit log of a runbook.
    Audit {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        /// A timeline fit for a postmortem.
        #[arg(long)]
        markdown: bool,
    },
    /// Write a postmortem of the rollout's window as one self-contained HTML
    /// file: each side's weight, requests, 5xx and latency, each gate's
    /// readings against its threshold, and the audit timeline.
    Report {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        /// The HTML file to write.
        #[arg(long, value_hint = ValueHint::FilePath)]
        html: PathBuf,
        /// Window start, RFC 3339 (default: the first audit line's time).
        #[arg(long)]
        since: Option<String>,
        /// Window end, RFC 3339 (default: the last audit line's time).
        #[arg(long)]
        until: Option<String>,
    },
    /// Copy Redis data between servers (resumable, TTLs kept) and verify it.
    #[command(subcommand)]
    Redis(Box<redis::RedisCommand>),
    /// Rehearse a runbook on a local sandbox (moto, redis-server, app servers).
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Open the cockpit on a runbook (also: `cutover <runbook>`).
    Tui {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
    },
    /// Start the sandbox from runbooks/demo.toml and open the cockpit on it.
    Demo {
        #[arg(long, default_value = "runbooks/demo.toml", value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        /// Print a refreshing text status instead of the full-screen cockpit.
        #[arg(long)]
        plain: bool,
    },
    /// Print a shell completion script (subcommands, flags, runbook paths).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
    /// Print the JSON Schema of the runbook format, for editors that check TOML.
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Start the sandbox and stay in the foreground until Ctrl-C or SIGTERM.
    Up {
        #[arg(value_hint = ValueHint::FilePath)]
        runbook: PathBuf,
        /// Write AWS_ENDPOINT_URL, credentials, region and Redis URLs here once ready.
        #[arg(long, value_hint = ValueHint::FilePath)]
        env_file: Option<PathBuf>,
        /// Use this moto server instead of starting one.
        #[arg(long)]
        moto_endpoint: Option<String>,
    },
    /// Print short-lived credentials from a running sandbox, as a
    /// `credential_process` does: they expire after --seconds (the sandbox
    /// then answers ExpiredToken), so refresh and expiry can be rehearsed.
    Credentials {
        /// How long they last (1 to 43200, AWS's longest role session).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=43_200))]
        seconds: u64,
        /// The role to assume (its account is theirs; default: the sandbox's own account).
        #[arg(long)]
        role_arn: Option<String>,
        /// The sandbox's endpoint (default: AWS_ENDPOINT_URL).
        #[arg(long)]
        endpoint: Option<String>,
    },
}

/// A failure the user can act on, with the exit status it maps to.
#[derive(Debug)]
pub struct Failure {
    pub status: u8,
    pub message: String,
}

impl Failure {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self { status: 2, message: message.into() }
    }
}

impl From<runbook::RunbookError> for Failure {
    /// Printed on stderr: coloured when that is a terminal (and NO_COLOR is unset).
    fn from(e: runbook::RunbookError) -> Self {
        use std::io::IsTerminal;
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Failure::bad_input(e.render(color))
    }
}

/// The multi-threaded runtime every async subcommand runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure { status: 1, message: format!("cannot start the async runtime: {e}") })
}

/// The global flags as the default reach of every side.
pub fn flags(g: &GlobalArgs) -> crate::aws::Reach {
    crate::aws::Reach { region: g.region.clone(), profile: g.profile.clone(), ..Default::default() }
}

/// AWS clients for each side of a runbook, and the runbook's own region
/// (`--region` wins over the runbook's; a side's own `region` wins over both).
pub async fn aws_clients(rb: &Runbook, g: &GlobalArgs) -> (crate::aws::SideClients, String) {
    let clients = crate::aws::SideClients::load(rb, &flags(g)).await;
    let region = clients.runbook().region.clone();
    (clients, region)
}

/// What a read-only path (a dry run) works with: clients, region and the
/// account of the side it would change, refusing (exit 2) an account other
/// than that side's. Paths that change something use `authorised` instead.
pub struct Acting {
    pub clients: crate::aws::SideClients,
    pub region: String,
    pub account: String,
}

pub async fn acting(rb: &Runbook, g: &GlobalArgs, side: &crate::runbook::Side) -> Result<Acting, Failure> {
    let (clients, region) = aws_clients(rb, g).await;
    let reach = clients.reach(side);
    let identity = crate::aws::sts::identity(clients.side(side)).await.map_err(|e| Failure {
        status: 1,
        message: crate::authority::unknown_account(rb, side, &reach.describe(), &e),
    })?;
    if let Some(message) = crate::authority::account_mismatch(rb, side, &identity.account, &reach.describe()) {
        return Err(Failure::bad_input(message));
    }
    Ok(Acting { clients, region, account: identity.account })
}

impl From<crate::authority::Refusal> for Failure {
    fn from(r: crate::authority::Refusal) -> Self {
        Failure { status: r.status, message: r.message }
    }
}

/// For paths that change something: clients, region and the `Actor` that
/// `authority::authorise` grants for `side` (refusing, audited, under
/// --read-only or in another account than the side's).
pub async fn authorised(
    rb: &Runbook,
    g: &GlobalArgs,
    side: crate::runbook::Side,
    action: &str,
    what: &str,
) -> Result<(crate::aws::SideClients, String, crate::authority::Actor), Failure> {
    let (clients, region) = aws_clients(rb, g).await;
    let scope = crate::authority::Scope::Runbook { rb, clients: &clients, side };
    let who = crate::authority::authorise(scope, g.read_only, action, what).await?;
    Ok((clients, region, who))
}

pub use crate::authority::{RegionCheck, region_check};

/// `--region` (or CUTOVER_REGION) as a region is written: a typo would
/// otherwise reach an endpoint that does not exist, or read nothing.
fn region_arg(s: &str) -> Result<String, String> {
    match runbook::is_region(s) {
        true => Ok(s.to_string()),
        false => Err(format!("`{s}` is not an AWS region: write it like eu-west-1 or us-east-1")),
    }
}

/// For paths that change something: refuses (exit 2) a runbook for another
/// region, and fails (exit 1) when the region cannot be checked. Not asked of
/// `shift` and `abort`, which change only Route53 (global) and must never be
/// blocked by a regional read.
pub async fn in_runbook_region(clients: &crate::aws::SideClients, rb: &Runbook, region: &str) -> Result<(), Failure> {
    region_refusal(region_check(clients, rb, region).await)
}

/// A region check's answer for the command line: a refusal (exit 2), or a
/// failure (exit 1) when it could not be asked.
pub fn region_refusal(check: RegionCheck) -> Result<(), Failure> {
    match check {
        RegionCheck::Here => Ok(()),
        RegionCheck::Elsewhere(message) => Err(Failure::bad_input(message)),
        RegionCheck::Unknown(e) => {
            Err(Failure { status: 1, message: format!("cannot check the runbook's region: {e}") })
        }
    }
}

/// The global flags, for `load_runbook` (set once, by `main`).
static GLOBAL: std::sync::OnceLock<GlobalArgs> = std::sync::OnceLock::new();

/// Loads the runbook, and sets up its webhook (`[notify]`) and its store
/// (`--state` or `[team] state`) for this process.
pub fn load_runbook(path: &Path) -> Result<Runbook, Failure> {
    let rb = runbook::load(path)?;
    crate::notify::install(crate::notify::webhook_url(&rb)).map_err(Failure::bad_input)?;
    if let Some(g) = GLOBAL.get() {
        team::install_store(&rb, g)?;
    }
    Ok(rb)
}

/// Logs to `--log-file` or the default file. One the person named that
/// cannot be written, or a `CUTOVER_LOG` that is no filter, is an error (a
/// cutover without the log they asked for); the default file unwritable is
/// said on stderr, and the run goes on without a log.
fn init_logging(global: &GlobalArgs) -> Result<Option<PathBuf>, String> {
    let path = global.log_file.clone().unwrap_or_else(crate::paths::default_log_file);
    let filter = match std::env::var("CUTOVER_LOG") {
        Ok(f) => tracing_subscriber::EnvFilter::try_new(&f).map_err(|e| {
            format!("CUTOVER_LOG={f} is not a log filter ({e}); give levels such as `info` or `debug,aws_config=warn`")
        })?,
        Err(_) => tracing_subscriber::EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn"),
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path)
    };
    let file = match file {
        Ok(f) => f,
        Err(e) if global.log_file.is_some() => {
            return Err(format!("cannot write the log file {} ({e}); give a writable --log-file", path.display()));
        }
        Err(e) => {
            errln!("cutover: cannot write the log file {} ({e}); running without a log", path.display());
            return Ok(None);
        }
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(installed.ok().map(|()| path))
}

/// `cutover <runbook.toml>` means `cutover tui <runbook.toml>`.
fn args() -> Vec<std::ffi::OsString> {
    with_implicit_tui(std::env::args_os().collect())
}

/// `tui` put before the first word that is no flag nor a global flag's
/// value, when that word is a runbook (`cutover --profile p demo.toml`).
fn with_implicit_tui(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const VALUED: [&str; 4] = ["--profile", "--region", "--log-file", "--state"];
    let mut i = 1;
    while let Some(a) = args.get(i).map(|a| a.to_string_lossy().into_owned()) {
        if VALUED.contains(&a.as_str()) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            if a.ends_with(".toml") {
                args.insert(i, "tui".into());
            }
            break;
        }
    }
    args
}

pub fn main() -> ExitCode {
    let cli = Cli::parse_from(args());
    let _ = color_eyre::install();
    let log = match init_logging(&cli.global) {
        Ok(log) => log,
        Err(message) => {
            errln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut global = cli.global.clone();
    global.log_file = log.clone();
    let _ = GLOBAL.set(global.clone());
    let cli = Cli { global, command: cli.command };
    tracing::info!(command = ?cli.command, "cutover starting");
    let result = run(cli);
    // Posts still queued get a moment, never more: the work is done already.
    let unsent = crate::notify::flush(std::time::Duration::from_secs(2));
    if unsent > 0 {
        errln!(
            "warning: {unsent} webhook notification(s) not delivered: the webhook did not answer in time (the changes \
             they told of are in the audit log)"
        );
    }
    let result = match (result, WRITE_FAILED.get()) {
        (Ok(_), Some(e)) => Err(Failure { status: 1, message: format!("cannot write the output: {e}") }),
        (r, _) => r,
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(f) => {
            errln!("{}", f.message);
            if f.status != 2
                && let Some(log) = log
            {
                errln!("(log: {})", log.display());
            }
            ExitCode::from(f.status)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Validate { runbook } => {
            let rb = load_runbook(&runbook)?;
            let items: usize = rb.phases.iter().map(|p| p.items.len()).sum();
            outln!(
                "{}: ok ({} environments, {} steps, {} gates, {} phases, {} items)",
                runbook.display(),
                rb.environments.len(),
                rb.rollout.steps.len(),
                rb.rollout.gates.len(),
                rb.phases.len(),
                items
            );
            if rb.has_side_access() {
                for line in plan::side_mapping(&rb) {
                    outln!("  {line}");
                }
            }
            Ok(0)
        }
        Command::Plan { runbook } => {
            let rb = load_runbook(&runbook)?;
            out!("{}", plan::render_plan(&rb));
            Ok(0)
        }
        Command::Status { runbook, json, watch, interval } => {
            let rb = load_runbook(&runbook)?;
            let args = status::StatusArgs { json, watch, interval: std::time::Duration::from_secs(interval) };
            status::run(rb, &cli.global, args)
        }
        Command::Diff { runbook, json } => {
            let rb = load_runbook(&runbook)?;
            diff::run(rb, &cli.global, json)
        }
        Command::Shift { runbook, to, yes, dry_run } => {
            let rb = load_runbook(&runbook)?;
            shift::run(rb, &cli.global, shift::ShiftArgs { percent: to, yes, dry_run })
        }
        Command::Rollout { runbook, yes, adopt_live, expect_live, restart, dry_run, take_over } => {
            let rb = load_runbook(&runbook)?;
            rollout::run(
                rb,
                &cli.global,
                rollout::RolloutArgs { yes, adopt_live, expect_live, restart, dry_run, take_over },
            )
        }
        Command::Tick { runbook, item, undo, note, dry_run } => {
            let rb = load_runbook(&runbook)?;
            team::tick(&rb, &cli.global, &item, undo, note, dry_run)
        }
        Command::Checklist { runbook, json } => {
            let rb = load_runbook(&runbook)?;
            team::show(&rb, json)
        }
        Command::Abort { runbook, yes, reason, dry_run } => {
            let rb = load_runbook(&runbook)?;
            rollout::abort(rb, &cli.global, yes, reason, dry_run)
        }
        Command::Pause { runbook, reason } => {
            let rb = load_runbook(&runbook)?;
            rollout::pause(rb, &cli.global, reason)
        }
        Command::Promote { runbook, yes } => {
            let rb = load_runbook(&runbook)?;
            rollout::promote(rb, &cli.global, yes)
        }
        Command::Run { runbook, item, yes, dry_run, rollback, confirm_name } => {
            let rb = load_runbook(&runbook)?;
            run::run(rb, &cli.global, run::RunArgs { item, yes, dry_run, rollback, confirm_name })
        }
        Command::Audit { runbook, markdown } => {
            let rb = load_runbook(&runbook)?;
            let log = crate::store::audit::AuditLog::for_runbook(&rb.name);
            let lines = log.read().map_err(|e| Failure { status: 1, message: e })?;
            if markdown {
                out!("{}", crate::store::audit::markdown(&rb.name, &lines));
            } else {
                for l in &lines {
                    outln!(
                        "{} {} {} {} [{}] {} → {} {}",
                        l.time,
                        l.operator,
                        l.account.as_deref().unwrap_or("?"),
                        l.action,
                        l.stage,
                        l.before,
                        l.after,
                        l.detail
                    );
                }
                if lines.is_empty() {
                    outln!("no audit lines yet ({})", log.describe());
                }
            }
            Ok(0)
        }
        Command::Report { runbook, html, since, until } => {
            let rb = load_runbook(&runbook)?;
            report::run(rb, &cli.global, report::ReportArgs { html, since, until })
        }
        Command::Redis(cmd) => redis::run(*cmd, &cli.global),
        Command::Sandbox(SandboxCommand::Up { runbook, env_file, moto_endpoint }) => {
            let rb = load_runbook(&runbook)?;
            sandbox::up(rb, &cli.global, env_file, moto_endpoint)
        }
        Command::Sandbox(SandboxCommand::Credentials { seconds, role_arn, endpoint }) => {
            sandbox::credentials(seconds, role_arn, endpoint)
        }
        Command::Tui { runbook } => {
            let rb = load_runbook(&runbook)?;
            tui(rb, &cli.global)
        }
        Command::Demo { runbook, plain } => {
            let rb = load_runbook(&runbook)?;
            sandbox::demo(rb, &cli.global, plain)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cutover", &mut script);
            print_out(&script)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| Failure { status: 1, message: format!("cannot render the man page: {e}") })?;
            print_out(&page)
        }
        Command::Schema => {
            let schema = serde_json::to_string_pretty(&runbook::json_schema()).expect("a JSON value serialises");
            print_out(format!("{schema}\n").as_bytes())
        }
    }
}

/// Writes generated text to stdout; a reader that stops early (`| head`) is no failure.
fn print_out(bytes: &[u8]) -> Result<u8, Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(Failure { status: 1, message: format!("cannot write to stdout: {e}") }),
    }
}

fn tui(rb: Runbook, g: &GlobalArgs) -> Result<u8, Failure> {
    runtime()?.block_on(async {
        let (clients, region) = aws_clients(&rb, g).await;
        let ctx = crate::live::workers::WorkerContext::new(rb, clients, crate::live::probe::ProbePolicy::from_env());
        let opts = crate::tui::TuiOptions {
            profile: g.profile.clone(),
            state: g.state.clone(),
            read_only: g.read_only,
            log_file: g.log_file.clone(),
        };
        crate::tui::run(ctx, region, opts).await.map_err(|m| Failure { status: 1, message: m })?;
        Ok(0)
    })
}

/// `FROM/TO` weights, e.g. `70/30` (each 0 to 255, as Route53 takes).
fn parse_weights(s: &str) -> Result<(u8, u8), String> {
    let bad = || format!("`{s}` is not FROM/TO weights (e.g. 70/30, each 0 to 255)");
    let (from, to) = s.split_once('/').ok_or_else(bad)?;
    Ok((from.trim().parse().map_err(|_| bad())?, to.trim().parse().map_err(|_| bad())?))
}

#[cfg(test)]
mod tests {
    use super::with_implicit_tui;

    fn words(line: &str) -> Vec<String> {
        let args = line.split_whitespace().map(std::ffi::OsString::from).collect();
        with_implicit_tui(args).into_iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn a_runbook_alone_opens_the_cockpit_after_any_global_flag() {
        assert_eq!(words("cutover demo.toml"), ["cutover", "tui", "demo.toml"]);
        assert_eq!(words("cutover --profile p demo.toml"), ["cutover", "--profile", "p", "tui", "demo.toml"]);
        assert_eq!(
            words("cutover --read-only --region r x.toml"),
            ["cutover", "--read-only", "--region", "r", "tui", "x.toml"]
        );
        assert_eq!(
            words("cutover --log-file l.toml status x.toml"),
            ["cutover", "--log-file", "l.toml", "status", "x.toml"]
        );
        assert_eq!(words("cutover status demo.toml"), ["cutover", "status", "demo.toml"]);
        assert_eq!(words("cutover --profile=p demo.toml"), ["cutover", "--profile=p", "tui", "demo.toml"]);
    }
}
