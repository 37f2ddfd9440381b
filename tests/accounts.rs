//! Runbooks spanning accounts and regions, rehearsed on the sandbox: moto
//! keeps each assumed role's resources in the role's account, so a read or a
//! change through the wrong side finds nothing. What is where is checked
//! with the SDK alone (STS AssumeRole by hand), never through cutover.

mod common;

use std::collections::BTreeMap;

use common::*;
use cutover::sandbox::Sandbox;

const DNS_ACCOUNT: &str = "111111111111";
const OLD_ACCOUNT: &str = "222222222222";
const NEW_ACCOUNT: &str = "333333333333";

/// An SDK config in `account` and `region` of the sandbox, through a role
/// assumed by hand from the sandbox's dummy credentials.
async fn in_account(sb: &Sandbox, account: &str, region: &str) -> aws_config::SdkConfig {
    let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&sb.endpoint)
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(aws_sdk::sts::config::Credentials::new("sandbox", "sandbox", None, None, "test"))
        .load()
        .await;
    let sts = aws_sdk::sts::Client::new(&base);
    let role = format!("arn:aws:iam::{account}:role/test-reader");
    let c = sts.assume_role().role_arn(role).role_session_name("test").send().await.unwrap();
    let c = c.credentials().unwrap();
    let creds = aws_sdk::sts::config::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        "test",
    );
    base.into_builder().credentials_provider(aws_sdk::sts::config::SharedCredentialsProvider::new(creds)).build()
}

/// Hosted zones named `name` in a config's account.
async fn zones_named(conf: &aws_config::SdkConfig, name: &str) -> Vec<String> {
    let r53 = aws_sdk::route53::Client::new(conf);
    let zones = r53.list_hosted_zones().send().await.unwrap();
    zones.hosted_zones().iter().filter(|z| z.name().trim_end_matches('.') == name).map(|z| z.id().to_string()).collect()
}

/// Set identifier → weight of the weighted group, read in a config's account.
async fn weights_in(conf: &aws_config::SdkConfig, zone: &str) -> BTreeMap<String, i64> {
    let r53 = aws_sdk::route53::Client::new(conf);
    let id = zones_named(conf, zone).await.into_iter().next().expect("the hosted zone");
    let sets = r53.list_resource_record_sets().hosted_zone_id(id).send().await.unwrap();
    sets.resource_record_sets().iter().filter_map(|r| Some((r.set_identifier()?.to_string(), r.weight()?))).collect()
}

async fn load_balancers_named(conf: &aws_config::SdkConfig, name: &str) -> usize {
    let elb = aws_sdk::elasticloadbalancingv2::Client::new(conf);
    let all = elb.describe_load_balancers().send().await.unwrap();
    all.load_balancers().iter().filter(|l| l.load_balancer_name() == Some(name)).count()
}

fn audit(state: &std::path::Path, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join(format!("cutover/{name}.audit.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn w(old: i64, new: i64) -> BTreeMap<String, i64> {
    BTreeMap::from([("old".to_string(), old), ("new".to_string(), new)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_dns_account_runbook_reads_each_side_through_its_role_and_changes_each_in_its_own_account() {
    let rb = runbook("shared-dns-account.toml");
    let sb = sandbox(&rb, "eu-west-1").await;
    let zone = rb.dns.zone.clone();
    let dns = in_account(&sb, DNS_ACCOUNT, "eu-west-1").await;
    let old = in_account(&sb, OLD_ACCOUNT, "eu-west-1").await;
    let new = in_account(&sb, NEW_ACCOUNT, "eu-central-1").await;
    let new_in_old_region = in_account(&sb, NEW_ACCOUNT, "eu-west-1").await;
    let default = sb.clients.route53.list_hosted_zones().send().await.unwrap();

    // The sandbox put each side where the runbook says.
    assert_eq!(zones_named(&dns, &zone).await.len(), 1, "the zone is in the networking account");
    assert!(default.hosted_zones().is_empty(), "no zone in the credentials' own account");
    assert!(zones_named(&old, &zone).await.is_empty() && zones_named(&new, &zone).await.is_empty());
    assert_eq!(load_balancers_named(&old, "old-prod-alb").await, 1);
    assert_eq!(load_balancers_named(&new, "new-prod-alb").await, 1);
    assert_eq!(load_balancers_named(&new_in_old_region, "new-prod-alb").await, 0, "new production is in eu-central-1");
    assert_eq!(load_balancers_named(&new, "old-prod-alb").await, 0);

    // status reads every side through its own role: each value is found.
    let dir = tempfile::tempdir().unwrap();
    let path = "runbooks/shared-dns-account.toml";
    let (code, json, err) = run_cutover(&sb, &rb, dir.path(), &["status", path, "--json"]).await;
    assert_ne!(code, Some(2), "{json}{err}");
    let j: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}{err}"));
    assert_eq!(j["identity"]["value"]["account"], DNS_ACCOUNT, "{}", j["identity"]);
    println!("traffic: {}", j["traffic"]);
    let traffic: BTreeMap<String, i64> = j["traffic"]["value"]
        .as_array()
        .unwrap_or_else(|| panic!("traffic: {}", j["traffic"]))
        .iter()
        .map(|s| (s["environment"].as_str().unwrap().to_string(), s["weight"].as_i64().unwrap()))
        .collect();
    assert_eq!(traffic, w(100, 0));
    for env in j["environments"].as_array().unwrap() {
        let name = env["name"].as_str().unwrap();
        let aws = &env["aws"];
        assert_eq!(aws["error"], serde_json::Value::Null, "{name}: {aws}");
        assert_eq!(aws["value"]["load_balancer"]["name"], format!("{name}-prod-alb"), "{name}");
        assert_eq!(
            aws["value"]["instances"].as_array().map(Vec::len),
            Some(2),
            "{name}: {}",
            aws["value"]["instances"]
        );
    }
    // Each side's account, region, credentials and identity.
    let sides: Vec<(String, String, String, bool)> = j["sides"]
        .as_array()
        .unwrap_or_else(|| panic!("sides: {}", j["sides"]))
        .iter()
        .map(|s| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
            (text(&s["side"]), text(&s["identity"]["value"]["account"]), text(&s["region"]), s["account_ok"] == true)
        })
        .collect();
    let side = |s: &str, a: &str, r: &str| (s.to_string(), a.to_string(), r.to_string(), true);
    assert_eq!(
        sides,
        [
            side("[dns]", DNS_ACCOUNT, "eu-west-1"),
            side("[environments.new]", NEW_ACCOUNT, "eu-central-1"),
            side("[environments.old]", OLD_ACCOUNT, "eu-west-1")
        ]
    );
    assert_eq!(j["sides"][0]["via"], "the default credentials, role arn:aws:iam::111111111111:role/cutover-dns");
    let (_, text, _) = run_cutover(&sb, &rb, dir.path(), &["status", path]).await;
    assert!(
        text.contains("[environments.new]       account 333333333333 (arn:aws:sts::333333333333:assumed-role/cutover/cutover)  region eu-central-1  via the default credentials, role arn:aws:iam::333333333333:role/cutover"),
        "{text}"
    );
    let alarms = j["alarms"]["value"].as_array().unwrap_or_else(|| panic!("{}", j["alarms"]));
    assert_eq!(alarms[0]["name"], "new-prod-5xx");
    assert_ne!(alarms[0]["state"], "MISSING", "the alarm is read in new production's account: {}", alarms[0]);

    // plan and validate show the mapping the runbook asks for.
    let (code, plan, _) = run_cutover(&sb, &rb, dir.path(), &["plan", path]).await;
    assert_eq!(code, Some(0));
    assert!(
        plan.contains("Accounts and regions\n  [dns]                    account 111111111111  region eu-west-1 (the runbook's; --region overrides)  via --profile or the standard chain, then role arn:aws:iam::111111111111:role/cutover-dns with an external id\n"),
        "{plan}"
    );
    let (_, valid, _) = run_cutover(&sb, &rb, dir.path(), &["validate", path]).await;
    assert!(valid.contains("[environments.new]       account 333333333333  region eu-central-1  via"), "{valid}");

    // A shift changes the records in the networking account, and only there.
    let (code, out, err) = run_cutover(&sb, &rb, dir.path(), &["shift", path, "--to", "50", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("account {DNS_ACCOUNT} region eu-west-1: shift")), "{out}");
    assert_eq!(weights_in(&dns, &zone).await, w(50, 50));

    // An action on new production changes its account and region.
    let (code, out, err) = run_cutover(&sb, &rb, dir.path(), &["run", path, "prepare/stickiness", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("account {NEW_ACCOUNT} region eu-central-1")), "{out}");
    let elb = aws_sdk::elasticloadbalancingv2::Client::new(&new);
    let tg = elb.describe_target_groups().names("new-prod-web").send().await.unwrap();
    let arn = tg.target_groups()[0].target_group_arn().unwrap();
    let attrs = elb.describe_target_group_attributes().target_group_arn(arn).send().await.unwrap();
    let sticky = attrs.attributes().iter().find(|a| a.key() == Some("stickiness.enabled")).and_then(|a| a.value());
    assert_eq!(sticky, Some("true"));

    // The audit names the account of each change.
    let lines = audit(dir.path(), &rb.name);
    let accounts: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (s("action"), s("account"), s("region"))
        })
        .collect();
    println!("audit: {accounts:#?}");
    assert!(!accounts.is_empty());
    for (action, account, region) in &accounts {
        if action.starts_with("shift_weights") {
            assert_eq!((account.as_str(), region.as_str()), (DNS_ACCOUNT, "eu-west-1"), "{action}");
        } else {
            assert!(action.starts_with("set_stickiness"), "{action}");
            assert_eq!((account.as_str(), region.as_str()), (NEW_ACCOUNT, "eu-central-1"), "{action}");
        }
    }
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_across_accounts_reads_its_gates_in_new_production_and_shifts_in_the_networking_account() {
    let rb = runbook("shared-dns-account.toml");
    let sb = sandbox(&rb, "eu-west-1").await;
    let dns = in_account(&sb, DNS_ACCOUNT, "eu-west-1").await;
    let dir = tempfile::tempdir().unwrap();
    let path = "runbooks/shared-dns-account.toml";
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", path, "--yes"]).await;
    println!("{out}");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("rollout complete: new has 100%"), "{out}");
    assert_eq!(weights_in(&dns, &rb.dns.zone).await, w(0, 100));
    let lines = audit(dir.path(), &rb.name);
    assert!(lines.iter().any(|l| l["stage"] == "insync"), "{lines:?}");
    for l in &lines {
        assert_eq!(l["account"], DNS_ACCOUNT, "{l}");
    }
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_reached_with_another_accounts_credentials_is_refused_in_one_line_naming_the_side_and_the_fix() {
    let rb = runbook("shared-dns-account.toml");
    let sb = sandbox(&rb, "eu-west-1").await;
    let dns = in_account(&sb, DNS_ACCOUNT, "eu-west-1").await;
    let dir = tempfile::tempdir().unwrap();
    // [dns] without its role: the sandbox's own credentials are in 123456789012.
    let text = std::fs::read_to_string(format!("{}/runbooks/shared-dns-account.toml", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace(
            "role_arn = \"arn:aws:iam::111111111111:role/cutover-dns\"\nexternal_id = \"cutover-shared-dns\"\n",
            "",
        );
    let path = dir.path().join("no-dns-role.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    for args in
        [vec!["shift", &path, "--to", "50", "--yes"], vec!["rollout", &path, "--yes"], vec!["abort", &path, "--yes"]]
    {
        let (code, out, err) = run_cutover(&sb, &rb, dir.path(), &args).await;
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!(
                "refused: [dns] of runbook {path} is in account {DNS_ACCOUNT} but its credentials (the default credentials) are for account 123456789012; set `profile` or `role_arn` under [dns]"
            )),
            "{args:?}: {err}"
        );
    }
    assert_eq!(weights_in(&dns, &rb.dns.zone).await, w(100, 0), "nothing was changed");
    let refused = audit(dir.path(), &rb.name);
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(refused.iter().all(|l| l["stage"] == "refused" && l["account"] == "123456789012"), "{refused:?}");
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_whose_credentials_cannot_be_got_is_one_line_naming_the_side_its_profile_and_the_fix() {
    let rb = runbook("shared-dns-account.toml");
    let sb = sandbox(&rb, "eu-west-1").await;
    let dir = tempfile::tempdir().unwrap();
    // New production reached through a profile no config file holds.
    let text = std::fs::read_to_string(format!("{}/runbooks/shared-dns-account.toml", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace("region = \"eu-central-1\"\n", "region = \"eu-central-1\"\nprofile = \"new-prod\"\n");
    let path = dir.path().join("missing-profile.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    let mut c = cutover_command(&sb, &rb, dir.path(), &["run", &path, "prepare/stickiness", "--yes"]);
    c.env("AWS_CONFIG_FILE", dir.path().join("no-config")).env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"));
    let out = tokio::process::Command::from(c).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("cannot tell which account [environments.new] is in: GetCallerIdentity: cannot get credentials: ")
            && first.contains(
                "fix how [environments.new] is reached (profile new-prod, role arn:aws:iam::333333333333:role/cutover): the profile must exist"
            )
            && first.ends_with("nothing was changed"),
        "{err}"
    );
    assert!(!err.contains("cannot reach AWS"), "a credentials failure is not AWS being down: {err}");
    sb.down().await;
}

/// A stop first asks Route53, through `[dns]`, whether the environment still
/// gets traffic. `[dns]` reached in another account (its role left out, so
/// the default credentials' account; or a profile for another account) may
/// hold a zone of the same name with the environment at weight 0 while the
/// real zone sends it everything: the stop is refused, naming `[dns]`'s
/// account and the fix, and nothing is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_never_trusts_weights_read_through_dns_reached_in_another_account() {
    use aws_sdk::route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
    // The sandbox's default credentials' account.
    const WRONG: &str = "123456789012";
    let rb = runbook("shared-dns-account.toml");
    let sb = sandbox(&rb, "eu-west-1").await;
    let dir = tempfile::tempdir().unwrap();
    // A zone of the same name in the wrong account: old production at 0.
    let r53 = aws_sdk::route53::Client::new(&in_account(&sb, WRONG, "eu-west-1").await);
    let zone = r53.create_hosted_zone().name(&rb.dns.zone).caller_reference("a copy").send().await.unwrap();
    let zone = zone.hosted_zone().unwrap().id().to_string();
    let mut batch = ChangeBatch::builder();
    for (id, weight) in [("old", 0), ("new", 100)] {
        let set = ResourceRecordSet::builder()
            .name(&rb.dns.record)
            .r#type(RrType::Cname)
            .set_identifier(id)
            .weight(weight)
            .ttl(5)
            .resource_records(ResourceRecord::builder().value(format!("{id}.elsewhere.test")).build().unwrap())
            .build()
            .unwrap();
        batch = batch.changes(Change::builder().action(ChangeAction::Upsert).resource_record_set(set).build().unwrap());
    }
    r53.change_resource_record_sets().hosted_zone_id(zone).change_batch(batch.build().unwrap()).send().await.unwrap();
    let stop = "[[phases]]\nid = \"decommission\"\ntitle = \"Decommission\"\n\n[[phases.items]]\nid = \"stop-old\"\n\
                title = \"Stop old production\"\nkind = \"action\"\naction = \"stop_instances\"\nenvironment = \"old\"\n\
                rollback = { action = \"start_instances\", environment = \"old\" }\n\n[sandbox]";
    let text = std::fs::read_to_string(format!("{}/runbooks/shared-dns-account.toml", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace(
            "role_arn = \"arn:aws:iam::111111111111:role/cutover-dns\"\nexternal_id = \"cutover-shared-dns\"\n",
            "",
        )
        .replacen("[sandbox]", stop, 1);
    let path = dir.path().join("no-dns-role.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    let (code, out, err) = run_cutover(&sb, &rb, dir.path(), &["run", &path, "decommission/stop-old", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains(&format!(
            "whether Route53 still sends old traffic cannot be read: [dns] of runbook {path} is in account \
             {DNS_ACCOUNT} but its credentials (the default credentials) are for account {WRONG}"
        )),
        "{err}"
    );
    // Old production still runs, and the real zone still sends it everything.
    let ec2 = aws_sdk::ec2::Client::new(&in_account(&sb, OLD_ACCOUNT, "eu-west-1").await);
    let found = ec2.describe_instances().send().await.unwrap();
    let states: Vec<String> = found
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()))
        .collect();
    assert_eq!(states, ["running", "running"], "nothing stopped");
    assert_eq!(weights_in(&in_account(&sb, DNS_ACCOUNT, "eu-west-1").await, &rb.dns.zone).await, w(100, 0));
    sb.down().await;
}

/// New production's role left out: its credentials are the sandbox's own
/// account's, where a staging copy could carry its load balancer's and
/// alarms' names, idle and healthy. A rollout judged there is refused before
/// anything is sent (its dry run too), naming the side and the fix; a shift
/// raising new production says its target health was NOT CHECKED rather
/// than reading the namesake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_whose_gates_would_read_another_account_is_refused_before_anything_is_sent() {
    const WRONG: &str = "123456789012";
    let rb = runbook("shared-dns-account.toml");
    let sb = sandbox(&rb, "eu-west-1").await;
    let dns = in_account(&sb, DNS_ACCOUNT, "eu-west-1").await;
    let dir = tempfile::tempdir().unwrap();
    let role = "role_arn = \"arn:aws:iam::333333333333:role/cutover\"\n";
    let text =
        std::fs::read_to_string(format!("{}/runbooks/shared-dns-account.toml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert!(text.contains(role));
    let path = dir.path().join("no-new-role.toml");
    std::fs::write(&path, text.replace(role, "")).unwrap();
    let path = path.display().to_string();
    let refusal = format!(
        "the rollout's gates read [environments.new] of runbook {path}, which is in account {NEW_ACCOUNT}, but its \
         credentials (the default credentials) are for account {WRONG}"
    );
    let (code, out, err) = run_cutover(&sb, &rb, dir.path(), &["rollout", &path, "--dry-run"]).await;
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains(&format!("would refuse: {refusal}")), "{out}{err}");
    let (code, out, err) = run_cutover(&sb, &rb, dir.path(), &["rollout", &path, "--yes"]).await;
    assert_eq!(code, Some(2), "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("refused: {refusal}")) && err.contains("set `profile` or `role_arn`"), "{err}");
    assert_eq!(weights_in(&dns, &rb.dns.zone).await, w(100, 0), "nothing was sent");
    let lines = audit(dir.path(), &rb.name);
    assert!(lines.iter().any(|l| l["stage"] == "refused" && l["action"] == "rollout start"), "{lines:?}");

    let (code, out, err) = run_cutover(&sb, &rb, dir.path(), &["shift", &path, "--to", "50", "--yes"]).await;
    assert_eq!(code, Some(0), "a weight change stays possible: {out}{err}");
    assert!(
        format!("{out}{err}").contains(&format!(
            "NOT CHECKED: whether new can take the share this raises (its credentials (the default credentials) are \
             for account {WRONG}, not {NEW_ACCOUNT})"
        )),
        "{out}{err}"
    );
    assert_eq!(weights_in(&dns, &rb.dns.zone).await, w(50, 50));
    sb.down().await;
}

/// New production also uses old production's Redis (a shared one), whose
/// groups are in old's account. New's account holds a namesake open to
/// everyone: read through new's credentials it would pass new's path and
/// take authorize's rule. Old's groups are read through old's side instead:
/// new's path is judged on them (closed), and new's authorize, which cannot
/// change old's account, refuses rather than leave it closed unsaid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_redis_in_another_account_is_judged_on_its_owners_groups_never_a_namesake_in_the_users_account() {
    use cutover::analysis::reachability::{SgPath, sg_path_named};
    let mut rb = runbook("shared-dns-account.toml");
    let sb = sandbox(&rb, "eu-west-1").await;
    let new = in_account(&sb, NEW_ACCOUNT, "eu-central-1").await;
    let elb = aws_sdk::elasticloadbalancingv2::Client::new(&new);
    let lbs = elb.describe_load_balancers().names("new-prod-alb").send().await.unwrap();
    let new_vpc = lbs.load_balancers()[0].vpc_id().unwrap().to_string();
    let ec2 = aws_sdk::ec2::Client::new(&new);
    let namesake = a_group_open_to_everyone(&ec2, "old-redis", &new_vpc).await;
    let old = aws_sdk::ec2::Client::new(&in_account(&sb, OLD_ACCOUNT, "eu-west-1").await);
    let found = old
        .describe_security_groups()
        .filters(aws_sdk::ec2::types::Filter::builder().name("group-name").values("old-redis").build())
        .send()
        .await
        .unwrap();
    let olds: Vec<&str> = found.security_groups().iter().filter_map(|g| g.group_id()).collect();
    assert_eq!(olds.len(), 1, "{olds:?}");
    rb.environments.get_mut("new").unwrap().uses_redis.push("old-cache".into());

    let sides = cutover::aws::SideClients::sandbox(&rb, &sb.endpoint, "eu-west-1").await;
    let data = cutover::live::fetch::environment(&sides, &rb, rb.environment("new").unwrap()).await.unwrap();
    let ids: Vec<&str> = data.redis_groups["old-cache"].iter().map(|g| g.id.as_str()).collect();
    println!("old-cache's groups seen from new: {ids:?} (old's {olds:?}, namesake {namesake})");
    assert_eq!(ids, olds, "read in old's account, never new's namesake");
    assert_eq!(data.redis_groups_elsewhere["old-cache"], "old");
    assert!(!data.redis_groups["new-cache"].is_empty(), "new's own Redis is still read");
    // Old's rule names old-app: named as old's side describes it, and new's
    // own groups keep their names beside it.
    let named: Vec<&str> = data.group_names.values().map(String::as_str).collect();
    assert!(named.contains(&"old-app") && named.contains(&"new-app"), "{named:?}");
    assert!(!data.instances.is_empty());
    for i in &data.instances {
        let src = i.source();
        let path = sg_path_named(&src, &data.redis_groups["old-cache"], 6379, &data.group_names);
        assert!(matches!(path, SgPath::Blocked { .. }), "{}: {}", i.id, path.describe());
    }

    // Parity reads the same groups, never the namesake.
    let shapes = cutover::live::parity::shapes(&sides, &rb, |_| None).await.unwrap();
    let shape = &shapes["new"];
    assert!(shape.redis_groups.iter().any(|g| g == olds[0]), "{:?}", shape.redis_groups);
    assert!(!shape.redis_groups.contains(&namesake), "{:?}", shape.redis_groups);
    // Old's rule names old-app, described in old's account, so compared by name.
    let names: Vec<&str> = shape.groups.iter().map(|g| g.name.as_str()).collect();
    assert!(names.contains(&"old-app"), "{names:?}");

    // New's own path is open (the sandbox's rule); old's rule is not new's to add.
    let action = cutover::runbook::Action::AuthorizeRedisIngress { environment: "new".into() };
    let err = cutover::drive::actions::plan(&sides, &rb, &action).await.map(|p| p.before).unwrap_err().to_string();
    println!("{err}");
    assert!(err.contains("closed: i-") && err.contains(" → old-cache on port 6379 (old's groups)"), "{err}");
    assert!(err.contains("reached with other credentials or another region") && err.contains("nothing was changed"));
    sb.down().await;
}
