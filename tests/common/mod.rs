//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use cutover::runbook::{self, Runbook};
use cutover::sandbox::{Sandbox, SandboxOptions};

pub mod cluster;
pub mod redis_values;
pub mod reliability;
pub mod sentinel;
pub mod tmux;
#[allow(unused_imports)]
pub use reliability::{clip, record};

pub fn runbook(name: &str) -> Runbook {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks").join(name);
    runbook::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A sandbox with its own moto, in a region of the test's choosing.
pub async fn sandbox(rb: &Runbook, region: &str) -> Sandbox {
    let opts = SandboxOptions {
        region: region.to_string(),
        moto_endpoint: None,
        traffic: Default::default(),
        team_state: None,
    };
    Sandbox::up(rb, opts).await.unwrap_or_else(|e| panic!("sandbox up: {e:#}"))
}

/// Polls `f` until it returns Some or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The process's state letter in /proc (`R`, `S`, `T` stopped, `Z`
/// zombie, …); None when it is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// True when the process is gone or a zombie.
pub fn process_gone(pid: u32) -> bool {
    process_state(pid).is_none_or(|s| s == 'Z')
}

/// True when the process is stopped (SIGSTOP, as `CUTOVER_STOP_AT` does).
pub fn process_stopped(pid: u32) -> bool {
    process_state(pid) == Some('T')
}

/// Direct children of a process (all its threads).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// The first complete snapshot of a sandbox, through cutover's own workers.
pub async fn first_snapshot(rb: &Runbook, sb: &Sandbox) -> cutover::status::Snapshot {
    let mut session = session(rb, sb);
    session.first_round(rb, Duration::from_secs(30)).await;
    assert!(session.state.complete(rb), "every source reported within 30 s");
    cutover::status::snapshot(rb, &session.state, &sb.region, std::time::SystemTime::now())
}

/// cutover's workers pointed at a sandbox, as `cutover demo` runs them.
pub fn session(rb: &Runbook, sb: &Sandbox) -> cutover::live::Session {
    use cutover::live::probe::ProbePolicy;
    use cutover::live::workers::WorkerContext;
    let mut ctx = WorkerContext::new(rb.clone(), sb.sides.clone(), ProbePolicy::LoopbackOnly);
    ctx.vars.extend(sb.env_vars(rb));
    cutover::live::Session::start(std::sync::Arc::new(ctx))
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing
/// test leaves nothing running.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl KillOnDrop {
    pub fn get(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("child present until taken")
    }
    pub fn take(&mut self) -> std::process::Child {
        self.0.take().expect("child present until taken")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sets weighted records the way another client (a colleague's script) would,
/// with the runbook's TTL.
pub async fn set_weights_as_another_client(sb: &Sandbox, rb: &Runbook, weights: &[(&str, i64)]) {
    let records: Vec<(&str, i64, u32)> = weights.iter().map(|(id, w)| (*id, *w, rb.dns.ttl)).collect();
    upsert_records_as_another_client(sb, rb, &records).await;
}

/// The records of the runbook's weighted name, as Route53 lists them.
pub async fn group_records(sb: &Sandbox, rb: &Runbook) -> Vec<aws_sdk::route53::types::ResourceRecordSet> {
    let name = format!("{}.", rb.dns.record.trim_end_matches('.'));
    let listed = sb.clients.route53.list_resource_record_sets().hosted_zone_id(&sb.world.zone_id).send().await.unwrap();
    assert!(!listed.is_truncated(), "the sandbox's zone fits a page");
    listed.resource_record_sets().iter().filter(|r| r.name() == name).cloned().collect()
}

/// Sets the weights of the records with these set identifiers as another
/// client would (the console), every other field of each record kept. Not
/// audited: to cutover, a change made long ago.
pub async fn reweight_as_another_client(sb: &Sandbox, rb: &Runbook, weights: &[(&str, i64)]) {
    use aws_sdk::route53::types::{Change, ChangeAction};
    let changes: Vec<Change> = group_records(sb, rb)
        .await
        .iter()
        .filter_map(|r| {
            let (_, w) = weights.iter().find(|(id, _)| r.set_identifier() == Some(*id))?;
            let mut r = r.clone();
            r.weight = Some(*w);
            Some(Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap())
        })
        .collect();
    assert_eq!(changes.len(), weights.len() * rb.dns.types().len(), "every record named");
    send_changes_as_another_client(sb, changes).await;
}

/// Takes `env`'s instances out of each of its target groups, as another
/// client would, with no deregistration delay: drained at once, so a stop
/// no load balancer could send requests to is not refused for them.
pub async fn drained_out_of_target_groups(sb: &Sandbox, env: &str) {
    use aws_sdk::elasticloadbalancingv2::types::{TargetDescription, TargetGroupAttribute};
    let elb = &sb.clients.elb;
    for tg in sb.world.target_groups.get(env).into_iter().flatten() {
        let delay = TargetGroupAttribute::builder().key("deregistration_delay.timeout_seconds").value("0").build();
        elb.modify_target_group_attributes().target_group_arn(&tg.arn).attributes(delay).send().await.unwrap();
        let health = elb.describe_target_health().target_group_arn(&tg.arn).send().await.unwrap();
        let targets: Vec<TargetDescription> = health
            .target_health_descriptions()
            .iter()
            .filter_map(|d| d.target())
            .map(|t| TargetDescription::builder().set_id(t.id().map(str::to_string)).set_port(t.port()).build())
            .collect();
        if !targets.is_empty() {
            elb.deregister_targets().target_group_arn(&tg.arn).set_targets(Some(targets)).send().await.unwrap();
        }
    }
}

/// Upserts weighted records (set identifier, weight, TTL) in one batch.
pub async fn upsert_records_as_another_client(sb: &Sandbox, rb: &Runbook, records: &[(&str, i64, u32)]) {
    use aws_sdk::route53::types::{Change, ChangeAction, ResourceRecord, ResourceRecordSet, RrType};
    let changes: Vec<Change> = records
        .iter()
        .map(|(id, w, ttl)| {
            let set = ResourceRecordSet::builder()
                .name(&rb.dns.record)
                .r#type(RrType::from(rb.dns.record_type.as_str()))
                .set_identifier(*id)
                .weight(*w)
                .ttl(i64::from(*ttl))
                .resource_records(ResourceRecord::builder().value(format!("{id}.example.test")).build().unwrap())
                .build()
                .unwrap();
            Change::builder().action(ChangeAction::Upsert).resource_record_set(set).build().unwrap()
        })
        .collect();
    send_changes_as_another_client(sb, changes).await;
}

/// Sends `changes` to the sandbox's zone in one batch, as another client would.
pub async fn send_changes_as_another_client(sb: &Sandbox, changes: Vec<aws_sdk::route53::types::Change>) {
    let batch = aws_sdk::route53::types::ChangeBatch::builder().set_changes(Some(changes)).build().unwrap();
    sb.clients
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(&sb.world.zone_id)
        .change_batch(batch)
        .send()
        .await
        .unwrap();
}

/// Stops a process (SIGSTOP: moto frozen, as AWS unreachable) until the
/// value is dropped, which continues it even when an assertion fails meanwhile.
pub struct Frozen(i32);

pub fn freeze(pid: u32) -> Frozen {
    // SAFETY: a signal to a pid the test started; no memory involved.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    Frozen(pid as i32)
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as in `freeze`.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// `cutover sandbox up runbooks/demo.toml` as a child process, once its env file exists.
pub fn spawn_sandbox_up(
    dir: &std::path::Path,
    region: &str,
    stdout: std::process::Stdio,
) -> (KillOnDrop, std::path::PathBuf) {
    let env_file = dir.join("sandbox.env");
    let log = dir.join("log");
    let mut child = KillOnDrop(Some(
        std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["--log-file", &log.display().to_string(), "--region", region, "sandbox", "up", "runbooks/demo.toml"])
            .args(["--env-file", &env_file.display().to_string()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(stdout)
            .spawn()
            .unwrap(),
    ));
    let start = Instant::now();
    while !env_file.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "sandbox did not get ready");
        assert!(child.get().try_wait().unwrap().is_none(), "cutover exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, env_file)
}

/// The cutover binary pointed at a sandbox, with its own state dir and log.
pub fn cutover_command(sb: &Sandbox, rb: &Runbook, state: &Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("XDG_STATE_HOME", state)
        .env("CUTOVER_OPERATOR", "on-call")
        .env_remove("AWS_PROFILE")
        .envs(sb.env_vars(rb))
        .args(["--log-file", &state.join("log").display().to_string()])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// Runs it to the end: exit code, stdout, stderr.
pub async fn run_cutover(sb: &Sandbox, rb: &Runbook, state: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::from(cutover_command(sb, rb, state, args)).output().await.unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// As `run_cutover`, with stdout and stderr together.
pub async fn run_cutover_all(sb: &Sandbox, rb: &Runbook, state: &Path, args: &[&str]) -> (Option<i32>, String) {
    let (code, out, err) = run_cutover(sb, rb, state, args).await;
    (code, format!("{out}{err}"))
}

/// Runs cutover until it stops at the crashpoint `point` (`CUTOVER_STOP_AT`:
/// a confirmed plan waiting in its popup, say), awaits `meanwhile` (the
/// world changed behind its back), continues it and runs it to the end:
/// exit code, stdout and stderr together.
pub async fn run_cutover_changed_at(
    sb: &Sandbox,
    rb: &Runbook,
    state: &Path,
    args: &[&str],
    point: &str,
    meanwhile: impl std::future::Future<Output = ()>,
) -> (Option<i32>, String) {
    let mut command = cutover_command(sb, rb, state, args);
    command.env("CUTOVER_STOP_AT", point);
    let waiting = tokio::process::Command::from(command).kill_on_drop(true).spawn().unwrap();
    let pid = waiting.id().unwrap();
    eventually(Duration::from_secs(60), &format!("cutover stopped at {point}"), || async {
        process_stopped(pid).then_some(())
    })
    .await;
    meanwhile.await;
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    let ended = tokio::time::timeout(Duration::from_secs(60), waiting.wait_with_output()).await.unwrap().unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&ended.stdout), String::from_utf8_lossy(&ended.stderr));
    (ended.status.code(), out)
}

/// A new target group `name` in load balancer `lb`'s VPC, and a second
/// listener on port 8081 forwarding to it, as another team's service
/// behind the same load balancer: the group's ARN and the listener's.
pub async fn route_a_second_listener_to_a_new_group(sb: &Sandbox, lb: &str, name: &str) -> (String, String) {
    use aws_sdk::elasticloadbalancingv2::types::{Action, ActionTypeEnum, ProtocolEnum};
    let elb = &sb.clients.elb;
    let lb = elb.describe_load_balancers().names(lb).send().await.unwrap().load_balancers()[0].clone();
    let group = elb
        .create_target_group()
        .name(name)
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(lb.vpc_id().unwrap())
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string();
    let listener = elb
        .create_listener()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .protocol(ProtocolEnum::Http)
        .port(8081)
        .default_actions(Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&group).build())
        .send()
        .await
        .unwrap()
        .listeners()[0]
        .listener_arn()
        .unwrap()
        .to_string();
    (group, listener)
}

/// Replaces staging-redis's rule from staging-app with one naming a new
/// managed prefix list that holds both staging instances' addresses (/32), as
/// another client would; returns the list's id.
pub async fn replace_staging_redis_rule_with_a_prefix_list(sb: &cutover::sandbox::Sandbox) -> String {
    use aws_sdk::ec2::types::{AddPrefixListEntry, IpPermission, PrefixListId, UserIdGroupPair};
    let ec2 = &sb.clients.ec2;
    let mut req =
        ec2.create_managed_prefix_list().prefix_list_name("staging-web").address_family("IPv4").max_entries(10);
    for i in sb.world.instances.iter().filter(|i| i.environment == "staging") {
        let cidr = format!("{}/32", i.private_ip.as_deref().unwrap());
        req = req.entries(AddPrefixListEntry::builder().cidr(cidr).description(&i.name).build());
    }
    let pl = req.send().await.unwrap().prefix_list().unwrap().prefix_list_id().unwrap().to_string();
    let redis = &sb.world.groups["staging-redis"];
    let from_app = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(6379)
        .to_port(6379)
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(&sb.world.groups["staging-app"]).build())
        .build();
    ec2.revoke_security_group_ingress().group_id(redis).ip_permissions(from_app).send().await.unwrap();
    let from_list = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(6379)
        .to_port(6379)
        .prefix_list_ids(PrefixListId::builder().prefix_list_id(&pl).build())
        .build();
    ec2.authorize_security_group_ingress().group_id(redis).ip_permissions(from_list).send().await.unwrap();
    pl
}

/// A sandbox in which every staging instance reaches Redis (the demo's
/// missing rule applied), so gates on Redis can pass.
pub async fn fixed_sandbox(rb: &Runbook, region: &str) -> Sandbox {
    let sb = sandbox(rb, region).await;
    // The Redis gate needs every staging instance to reach Redis: apply the fix first.
    sb.authorize_ingress("staging-redis", "staging-batch", 6379).await.unwrap();
    // As an operator would: wait until the fixed instance really reaches Redis.
    let url = sb.world.instances.iter().find(|i| i.name == "staging-web-2").unwrap().health_url.clone();
    eventually(Duration::from_secs(15), "staging-web-2 to reach Redis", || async {
        reqwest::get(&url).await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    sb
}

/// The sum of an `AWS/ApplicationELB` metric over the last ten minutes, per
/// minute, asked for with the caller's own literal dimensions (never
/// cutover's table), straight from the sandbox's CloudWatch.
pub async fn alb_metric_sum(sb: &Sandbox, name: &str, dimensions: Vec<aws_sdk::cloudwatch::types::Dimension>) -> f64 {
    use aws_sdk::cloudwatch::types::{Metric, MetricDataQuery, MetricStat};
    let metric =
        Metric::builder().namespace("AWS/ApplicationELB").metric_name(name).set_dimensions(Some(dimensions)).build();
    let query = MetricDataQuery::builder()
        .id("q")
        .metric_stat(MetricStat::builder().metric(metric).period(60).stat("Sum").build())
        .build();
    let now = std::time::SystemTime::now();
    let r = sb
        .clients
        .cloudwatch
        .get_metric_data()
        .metric_data_queries(query)
        .start_time((now - Duration::from_secs(600)).into())
        .end_time((now + Duration::from_secs(60)).into())
        .send()
        .await
        .unwrap();
    r.metric_data_results().iter().flat_map(|m| m.values()).sum()
}

/// The EC2 states of the instances tagged `Environment = environment`, read
/// back with the SDK.
pub async fn instance_states(sb: &Sandbox, environment: &str) -> Vec<String> {
    let r = sb
        .clients
        .ec2
        .describe_instances()
        .filters(aws_sdk::ec2::types::Filter::builder().name("tag:Environment").values(environment).build())
        .send()
        .await
        .unwrap();
    r.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| i.state().unwrap().name().unwrap().as_str().to_string())
        .collect()
}

/// Every weighted record's weight by set identifier, read with the SDK.
pub async fn weights(sb: &Sandbox) -> std::collections::BTreeMap<String, i64> {
    let sets = sb.clients.route53.list_resource_record_sets().hosted_zone_id(&sb.world.zone_id).send().await.unwrap();
    sets.resource_record_sets().iter().filter_map(|r| Some((r.set_identifier()?.to_string(), r.weight()?))).collect()
}

/// The demo runbook's weights as `weights` reads them.
pub fn w(prod: i64, staging: i64) -> std::collections::BTreeMap<String, i64> {
    std::collections::BTreeMap::from([("prod".to_string(), prod), ("staging".to_string(), staging)])
}

/// An HTTP Route53 health check of `/health` on a loopback port (the
/// sandbox answers its status from a real request there); its id.
pub async fn loopback_health_check(sb: &Sandbox, port: u16, name: &str) -> String {
    use aws_sdk::route53::types::{HealthCheckConfig, HealthCheckType};
    let config = HealthCheckConfig::builder()
        .ip_address("127.0.0.1")
        .port(i32::from(port))
        .r#type(HealthCheckType::Http)
        .resource_path("/health")
        .build()
        .unwrap();
    let hc = sb.clients.route53.create_health_check().caller_reference(name).health_check_config(config);
    hc.send().await.unwrap().health_check().unwrap().id().to_string()
}

/// A self-signed certificate for `names` (the first is its subject), valid
/// for `days`, made by openssl and imported into the sandbox's ACM, which
/// keeps it ISSUED as AWS does an imported one. Returns its ARN.
#[allow(dead_code)]
pub async fn import_certificate(sb: &Sandbox, names: &[&str], days: u32) -> String {
    use aws_sdk::acm::primitives::Blob;
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", &days.to_string()])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", &format!("/CN={}", names[0]), "-addext", &format!("subjectAltName={}", san.join(","))])
        .output()
        .expect("openssl (./scripts/test installs it)");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    let r = sb
        .clients
        .acm
        .import_certificate()
        .certificate(Blob::new(std::fs::read(&cert).unwrap()))
        .private_key(Blob::new(std::fs::read(&key).unwrap()))
        .send()
        .await
        .unwrap();
    r.certificate_arn().unwrap().to_string()
}

/// A security group `name` in `vpc`, admitting TCP 6379 from anywhere (a
/// namesake or decoy a lookup must never take for the endpoint's own), as
/// another team would make it; returns its id.
#[allow(dead_code)]
pub async fn a_group_open_to_everyone(ec2: &aws_sdk::ec2::Client, name: &str, vpc: &str) -> String {
    let id = ec2
        .create_security_group()
        .group_name(name)
        .description("another team's group, open to everyone")
        .vpc_id(vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&id)
        .ip_permissions(tcp_with(6379, "0.0.0.0/0"))
        .send()
        .await
        .unwrap();
    id
}

/// TCP `port` to or from `cidr`, as a security-group permission.
#[allow(dead_code)]
pub fn tcp_with(port: i32, cidr: &str) -> aws_sdk::ec2::types::IpPermission {
    use aws_sdk::ec2::types::{IpPermission, IpRange};
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port)
        .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
        .build()
}

/// `group` lets out only `rule`: AWS's default outbound rule (all traffic to
/// 0.0.0.0/0) revoked, `rule` added, as a hardened group is made.
#[allow(dead_code)]
pub async fn let_only_this_out(ec2: &aws_sdk::ec2::Client, group: &str, rule: aws_sdk::ec2::types::IpPermission) {
    use aws_sdk::ec2::types::{IpPermission, IpRange};
    let everything =
        IpPermission::builder().ip_protocol("-1").ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build()).build();
    ec2.revoke_security_group_egress().group_id(group).ip_permissions(everything).send().await.unwrap();
    ec2.authorize_security_group_egress().group_id(group).ip_permissions(rule).send().await.unwrap();
}

/// Waits until `health_url` answers 2xx (`ok`) or anything else: what the
/// sandbox's firewall lets the instance's app reach of its Redis.
#[allow(dead_code)]
pub async fn health_becomes(health_url: &str, ok: bool, what: &str) {
    eventually(Duration::from_secs(15), what, || async {
        let r = reqwest::get(health_url).await.ok()?;
        (r.status().is_success() == ok).then_some(())
    })
    .await;
}

/// Each instance of `environment` as the sandbox registered it in its target
/// groups (on `TARGET_PORT`), to deregister or register again.
#[allow(dead_code)]
pub fn registered_targets(
    sb: &Sandbox,
    environment: &str,
) -> Vec<aws_sdk::elasticloadbalancingv2::types::TargetDescription> {
    use aws_sdk::elasticloadbalancingv2::types::TargetDescription;
    let port = cutover::sandbox::provision::TARGET_PORT;
    sb.world
        .instances
        .iter()
        .filter(|i| i.environment == environment)
        .map(|i| TargetDescription::builder().id(&i.id).port(port).build())
        .collect()
}
