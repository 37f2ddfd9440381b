//! Issue 12, Route53: alias and mixed weighted groups, no lost update, the
//! live TTL, a timeout after sending, paging. Against the sandbox (moto behind
//! cutover's AWS-like proxy); records read back through the AWS SDK.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_sdk::route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecordSet, RrType};
use common::*;
use cutover::runbook::Runbook;
use cutover::sandbox::Sandbox;

/// A runbook file from runbooks/, `edit`ed, written to `dir`.
fn runbook_with(dir: &Path, file: &str, edit: impl FnOnce(String) -> String) -> (Runbook, PathBuf) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks").join(file)).unwrap();
    let text = edit(text);
    let path = dir.join(file);
    std::fs::write(&path, &text).unwrap();
    (cutover::runbook::parse(&path.display().to_string(), &text).unwrap(), path)
}

/// single-box-to-alb over a dual-stack group (A and AAAA listed), and the
/// same runbook listing A alone (in `a-only/`), both with a 1 s TTL.
fn dual_stack_and_a_only(dir: &Path) -> ((Runbook, PathBuf), (Runbook, PathBuf)) {
    let dual = runbook_with(dir, "single-box-to-alb.toml", |t| {
        t.replace("type = \"A\"\n", "type = [\"A\", \"AAAA\"]\n").replace("ttl = 60\n", "ttl = 1\n")
    });
    let a_only = dir.join("a-only");
    std::fs::create_dir_all(&a_only).unwrap();
    (dual, runbook_with(&a_only, "single-box-to-alb.toml", |t| t.replace("ttl = 60\n", "ttl = 1\n")))
}

/// single-box-to-alb with short waits, two steps and no metric gates (moto
/// has no percentiles).
fn single_box(dir: &Path) -> (Runbook, PathBuf) {
    runbook_with(dir, "single-box-to-alb.toml", |t| {
        let t = t
            .replace("ttl = 60\n", "ttl = 1\n")
            .replace("soak = \"5m\"", "soak = \"1s\"\ngate_interval = \"1s\"")
            .replace("bake = \"24h\"\n", "")
            .replace("steps = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]", "steps = [50, 100]");
        t.split("\n[[")
            .filter(|chunk| !chunk.starts_with("rollout.gates]]\nkind = \"metric\""))
            .collect::<Vec<_>>()
            .join("\n[[")
    })
}

/// The demo runbook with a 1 s TTL.
fn demo(dir: &Path) -> (Runbook, PathBuf) {
    runbook_with(dir, "demo.toml", |t| t.replace("ttl = 10\n", "ttl = 1\n"))
}

/// Every record of the runbook's name, as the SDK reads it.
async fn records(sb: &Sandbox, rb: &Runbook) -> Vec<ResourceRecordSet> {
    let name = format!("{}.", rb.dns.record.trim_end_matches('.'));
    zone_records(sb).await.into_iter().filter(|r| r.name() == name).collect()
}

/// Every record of the sandbox's zone, as the SDK reads it.
async fn zone_records(sb: &Sandbox) -> Vec<ResourceRecordSet> {
    let mut out = Vec::new();
    let mut start: Option<(String, RrType, Option<String>)> = None;
    for _ in 0..50 {
        let mut req = sb.clients.route53.list_resource_record_sets().hosted_zone_id(&sb.world.zone_id);
        if let Some((n, t, id)) = start.take() {
            req = req.start_record_name(n).start_record_type(t).set_start_record_identifier(id);
        }
        let resp = req.send().await.unwrap();
        out.extend(resp.resource_record_sets().iter().cloned());
        if !resp.is_truncated() {
            return out;
        }
        start = Some((
            resp.next_record_name().unwrap().to_string(),
            resp.next_record_type().unwrap().clone(),
            resp.next_record_identifier().map(str::to_string),
        ));
    }
    panic!("ListResourceRecordSets still truncated after 50 pages (a page that never moves on)");
}

fn by_id<'a>(rs: &'a [ResourceRecordSet], id: &str, t: &RrType) -> &'a ResourceRecordSet {
    rs.iter()
        .find(|r| r.set_identifier() == Some(id) && r.r#type() == t)
        .unwrap_or_else(|| panic!("no {t:?} record `{id}` in {rs:#?}"))
}

/// `after` holds exactly `before`'s records, each byte for byte the same but
/// for its weight, which is `weight(set identifier)`.
fn same_but_weights(before: &[ResourceRecordSet], after: &[ResourceRecordSet], weight: impl Fn(&str) -> i64) {
    assert_eq!(before.len(), after.len(), "records appeared or vanished: {before:#?} → {after:#?}");
    for b in before {
        let id = b.set_identifier().unwrap();
        let mut want = b.clone();
        want.weight = Some(weight(id));
        assert_eq!(by_id(after, id, b.r#type()), &want, "record `{id}` changed beyond its weight");
    }
}

/// What another client (a colleague) does: the record `id` with another weight, every other field kept.
async fn reweight_as_another_client(sb: &Sandbox, rb: &Runbook, id: &str, weight: i64) {
    let mut changes = Vec::new();
    for r in records(sb, rb).await.into_iter().filter(|r| r.set_identifier() == Some(id)) {
        let mut r = r;
        r.weight = Some(weight);
        changes.push(Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap());
    }
    send_changes_as_another_client(sb, changes).await;
}

fn audit(state: &Path, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join(format!("cutover/{name}.audit.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Point 1: the old box is a plain A record, the ALB an alias to its real DNS
/// name and canonical zone; a shift and a rollout change nothing but weights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_group_of_a_plain_record_and_an_alb_alias_shifts_and_rolls_out_changing_only_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = single_box(dir.path());
    let path = path.to_str().unwrap();
    let sb = sandbox(&rb, "eu-central-1").await;
    let lbs = sb.clients.elb.describe_load_balancers().names("shop-alb").send().await.unwrap();
    let lb = &lbs.load_balancers()[0];
    let before = records(&sb, &rb).await;
    let alb = by_id(&before, "alb", &RrType::A);
    let alias = alb.alias_target().unwrap_or_else(|| panic!("the ALB side is no alias: {alb:#?}"));
    assert_eq!(alias.hosted_zone_id(), lb.canonical_hosted_zone_id().unwrap());
    assert_eq!(alias.dns_name().trim_end_matches('.'), lb.dns_name().unwrap().trim_end_matches('.').to_lowercase());
    assert!(alias.evaluate_target_health());
    assert_eq!((alb.ttl(), alb.resource_records().len()), (None, 0));
    let bx = by_id(&before, "single-box", &RrType::A);
    assert!(bx.alias_target().is_none() && bx.ttl() == Some(1) && bx.resource_records().len() == 1, "{bx:#?}");

    let state = dir.path().join("state");
    let (code, out) = run_cutover_all(&sb, &rb, &state, &["shift", path, "--to", "30", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let after = records(&sb, &rb).await;
    same_but_weights(&before, &after, |id| if id == "alb" { 30 } else { 70 });

    let args = ["rollout", path, "--yes", "--adopt-live"];
    let run = run_cutover_all(&sb, &rb, &state, &args);
    let (code, out) = tokio::time::timeout(Duration::from_secs(120), run).await.expect("rollout within 120 s");
    assert_eq!(code, Some(0), "{out}");
    let after = records(&sb, &rb).await;
    same_but_weights(&before, &after, |id| if id == "alb" { 100 } else { 0 });
    sb.down().await;
}

/// Point 2: a record changed by someone else between the read and the send
/// makes the batch fail; nothing of theirs is overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_changed_between_plan_and_apply_is_refused_and_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, _) = demo(dir.path());
    let sb = sandbox(&rb, "us-west-2").await;
    let before = records(&sb, &rb).await;
    let plan = cutover::drive::shift::plan(sb.sides.dns(), &rb, (70, 30)).await.unwrap();
    // A colleague's change lands after our read.
    reweight_as_another_client(&sb, &rb, "staging", 5).await;
    let who = cutover::authority::authorise(
        cutover::authority::Scope::Runbook { rb: &rb, clients: &sb.sides, side: cutover::runbook::Side::Dns },
        false,
        "shift_weights",
        "changes",
    )
    .await
    .expect("the sandbox's account is the runbook's: authorised");
    let sent = cutover::drive::shift::apply(sb.sides.dns(), &who, &plan).await;
    let after = records(&sb, &rb).await;
    same_but_weights(&before, &after, |id| if id == "staging" { 5 } else { 100 });
    let e = sent.expect_err("a batch planned on a stale read was accepted");
    assert!(e.message.contains("InvalidChangeBatch"), "{e}");
    sb.down().await;
}

/// Route53 finishes a change whose client gave up: held longer than the
/// SDK waits (every attempt times out), it lands a moment after the call
/// failed. A first read back still sees the old records; reading again
/// while they read unchanged finds the change live, never "weights are
/// unchanged" with the new weights live a second later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_lands_after_the_call_gave_up_is_read_back_as_live() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = demo(dir.path());
    let sb = sandbox(&rb, "ap-northeast-3").await;
    sb.faults.hold_changes_ms.store(14_000, Ordering::SeqCst);
    let args = ["shift", path.to_str().unwrap(), "--to", "30", "--yes"];
    let run = run_cutover_all(&sb, &rb, dir.path(), &args);
    let (code, out) = tokio::time::timeout(Duration::from_secs(90), run).await.expect("shift ends within 90 s");
    // Landed by now, whatever the shift said.
    let start = Instant::now();
    while by_id(&records(&sb, &rb).await, "staging", &RrType::Cname).weight() != Some(30) {
        assert!(start.elapsed() < Duration::from_secs(20), "the held change never landed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!out.contains("weights are unchanged"), "said unchanged although the change is live: {out}");
    assert!(out.contains("read back") && out.contains("are live"), "{out}");
    assert_eq!(code, Some(0), "{out}");
    let lines = audit(dir.path(), "demo");
    assert_eq!(lines.last().unwrap()["stage"], "applied", "{lines:#?}");
    sb.down().await;
}

/// Point 4: ChangeResourceRecordSets applied but its reply lost (the SDK
/// times out): the records are read back and what is live is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_reply_is_lost_is_read_back_and_reported_as_live() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = demo(dir.path());
    let sb = sandbox(&rb, "us-east-2").await;
    sb.faults.drop_change_replies.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let args = ["shift", path.to_str().unwrap(), "--to", "30", "--yes"];
    let run = run_cutover_all(&sb, &rb, dir.path(), &args);
    let (code, out) = tokio::time::timeout(Duration::from_secs(60), run).await.expect("shift ends within 60 s");
    let took = started.elapsed();
    let live = records(&sb, &rb).await;
    assert_eq!(by_id(&live, "staging", &RrType::Cname).weight(), Some(30), "the change was applied in moto");
    assert!(!out.contains("weights are unchanged"), "said unchanged although the change is live: {out}");
    assert!(out.contains("read back") && out.contains("are live"), "{out}");
    assert_eq!(code, Some(0), "{out}");
    let lines = audit(dir.path(), "demo");
    let last = lines.last().unwrap();
    assert_eq!(last["stage"], "applied", "{lines:#?}");
    assert!(last["detail"].as_str().unwrap().contains("read back"), "{last}");
    eprintln!("shift with a lost reply took {took:?}:\n{out}");
    // The same through a checklist item (the rollout item's rollback,
    // shift_weights to 0): read back, it is applied, not "failed".
    let args = ["run", path.to_str().unwrap(), "traffic/rollout", "--rollback", "--yes"];
    let run = run_cutover_all(&sb, &rb, dir.path(), &args);
    let (code, out) = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the item ends within 60 s");
    let live = records(&sb, &rb).await;
    assert_eq!(by_id(&live, "staging", &RrType::Cname).weight(), Some(0), "{out}");
    assert_eq!(code, Some(0), "{out}");
    let lines = audit(dir.path(), "demo");
    let last = lines.last().unwrap();
    assert_eq!(last["stage"], "applied", "{lines:#?}");
    assert!(last["detail"].as_str().unwrap().contains("read back: the new weights are live"), "{last}");
    sb.down().await;
}

/// Point 3: resolvers hold the live records' TTL; a larger one than the
/// runbook's is what the rollout waits, and the dry run says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollout_waits_the_live_ttl_when_it_is_larger_than_the_runbooks() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = demo(dir.path());
    let sb = sandbox(&rb, "eu-west-3").await;
    let mut changes = Vec::new();
    for mut r in records(&sb, &rb).await {
        r.ttl = Some(4);
        changes.push(Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap());
    }
    send_changes_as_another_client(&sb, changes).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("TTL 4 s (the live records' TTL; the runbook says 1 s)"), "{out}");
    sb.down().await;
}

/// Point 6: a group longer than one page of ListResourceRecordSets (300
/// records, AWS's page) is read whole, paging by name, type and identifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_group_longer_than_one_page_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = demo(dir.path());
    let sb = sandbox(&rb, "ap-south-1").await;
    let ours = records(&sb, &rb).await;
    // 320 other weighted records of the same name and type, then ours again
    // (moto lists a group in the order it was written).
    let mut fillers = Vec::new();
    for i in 0..320 {
        let mut r = ours[0].clone();
        r.set_identifier = Some(format!("filler-{i:03}"));
        r.weight = Some(0);
        fillers.push(Change::builder().action(ChangeAction::Create).resource_record_set(r).build().unwrap());
    }
    let send = |changes: Vec<Change>| {
        sb.clients
            .route53
            .change_resource_record_sets()
            .hosted_zone_id(&sb.world.zone_id)
            .change_batch(ChangeBatch::builder().set_changes(Some(changes)).build().unwrap())
            .send()
    };
    let delete = ours.iter().map(|r| Change::builder().action(ChangeAction::Delete).resource_record_set(r.clone()));
    send(delete.map(|c| c.build().unwrap()).collect()).await.unwrap();
    send(fillers).await.unwrap();
    let create = ours.iter().map(|r| Change::builder().action(ChangeAction::Create).resource_record_set(r.clone()));
    send(create.map(|c| c.build().unwrap()).collect()).await.unwrap();
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["shift", path.to_str().unwrap(), "--to", "30", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let after = records(&sb, &rb).await;
    assert_eq!(after.len(), 322);
    assert_eq!(by_id(&after, "staging", &RrType::Cname).weight(), Some(30));
    assert_eq!(by_id(&after, "prod", &RrType::Cname).weight(), Some(70));
    let want = by_id(&ours, "prod", &RrType::Cname).clone().tap(319);
    assert_eq!(by_id(&after, "filler-319", &RrType::Cname), &want);
    sb.down().await;
}

trait Tap {
    fn tap(self, i: usize) -> Self;
}

impl Tap for ResourceRecordSet {
    /// This record as filler `i` (weight 0).
    fn tap(mut self, i: usize) -> Self {
        self.set_identifier = Some(format!("filler-{i:03}"));
        self.weight = Some(0);
        self
    }
}

/// Point 3 in a real rollout: a mixed group whose plain record has a larger
/// TTL than the runbook's; every step waits that TTL and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_waits_the_live_ttl_after_each_insync() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = single_box(dir.path());
    let sb = sandbox(&rb, "eu-north-1").await;
    let mut changes = Vec::new();
    for mut r in records(&sb, &rb).await.into_iter().filter(|r| r.ttl().is_some()) {
        r.ttl = Some(3);
        changes.push(Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap());
    }
    send_changes_as_another_client(&sb, changes).await;
    let started = Instant::now();
    let args = ["rollout", path.to_str().unwrap(), "--yes"];
    let run = run_cutover_all(&sb, &rb, dir.path(), &args);
    let (code, out) = tokio::time::timeout(Duration::from_secs(120), run).await.expect("rollout within 120 s");
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("each step waits TTL 3 s (the live records' TTL; the runbook says 1 s)"), "{out}");
    assert_eq!(out.matches("waiting one TTL (3s)").count(), 2, "{out}");
    // Two steps, each at least the 3 s TTL and the 1 s soak.
    assert!(took >= Duration::from_secs(8), "took {took:?}: {out}");
    eprintln!("two-step rollout with a 3 s live TTL took {took:?}");
    sb.down().await;
}

/// Point 2 end to end: another client changes a record after `cutover shift`
/// read it; the batch is refused, the output says so with a plan from the
/// live records, and the audit says failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shift_says_the_records_changed_and_replans_from_the_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = demo(dir.path());
    let sb = sandbox(&rb, "ca-central-1").await;
    let before = records(&sb, &rb).await;
    *sb.faults.reweight_before_change.lock().unwrap() = Some(("staging".into(), 7));
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["shift", path.to_str().unwrap(), "--to", "30", "--yes"]).await;
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("the records changed since they were read; re-planned from the live records: production (prod) 100 → 70, staging (staging) 7 → 30"),
        "{out}"
    );
    let after = records(&sb, &rb).await;
    same_but_weights(&before, &after, |id| if id == "staging" { 7 } else { 100 });
    let lines = audit(dir.path(), "demo");
    assert_eq!(lines.last().unwrap()["stage"], "failed", "{lines:#?}");
    eprintln!("{out}");
    sb.down().await;
}

/// A runbook listing A alone over a dual-stack group: its shift moves A
/// only, and the box keeps every IPv6 client through its AAAA record. A
/// stop of the box is refused while a type the runbook does not list
/// still gives it weight; listed and shifted, it goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_is_refused_while_a_record_type_the_runbook_does_not_list_still_sends_the_side_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let ((dual, dual_path), (rb, path)) = dual_stack_and_a_only(dir.path());
    let sb = sandbox(&dual, "ca-central-1").await;
    assert_eq!(records(&sb, &dual).await.len(), 4, "A and AAAA of each side");
    let p = path.to_str().unwrap();
    // A moved alone, by the A-only runbook's shift.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["shift", p, "--to", "100", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let now = records(&sb, &dual).await;
    assert_eq!(by_id(&now, "single-box", &RrType::A).weight(), Some(0));
    assert_eq!(by_id(&now, "single-box", &RrType::Aaaa).weight(), Some(100), "A moved alone");
    let stop = ["run", p, "retire/stop-box", "--dry-run"];
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("Route53 still sends single-box traffic (its weighted AAAA record `single-box` of")
            && out.contains("list AAAA in [dns] type"),
        "{out}"
    );
    // Listed and shifted: the AAAA record no longer holds the stop; only
    // the resolvers' answer from before the A shift does, for the alias's
    // 60 s TTL (checked after the record types).
    let dp = dual_path.to_str().unwrap();
    let (code, out) = run_cutover_all(&sb, &dual, dir.path(), &["shift", dp, "--to", "100", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(!out.contains("AAAA"), "{out}");
    assert!(
        out.contains("resolvers may still send single-box traffic: its share was taken by shift_weights to 100%"),
        "{out}"
    );
    sb.down().await;
}

/// Another client's change sent while cutover's is still being applied
/// (held by the sandbox, as Route53 finishing a request) waits its turn and
/// is checked against what cutover's left, as Route53 takes one batch at a
/// time: it is never undone by the records the sandbox puts back after
/// moto's DELETE of cutover's batch, as read before either landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_sent_while_another_is_held_is_applied_after_it_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let ((dual, _), (rb, path)) = dual_stack_and_a_only(dir.path());
    let sb = sandbox(&dual, "me-south-1").await;
    sb.faults.hold_changes_ms.store(3_000, Ordering::SeqCst);
    let args = ["shift", path.to_str().unwrap(), "--to", "100", "--yes"];
    let shift = run_cutover_all(&sb, &rb, dir.path(), &args);
    let other = async {
        // Cutover's batch is on its way once its intent is on record.
        let start = Instant::now();
        while !audit(dir.path(), &rb.name).iter().any(|l| l["stage"] == "intent") {
            assert!(start.elapsed() < Duration::from_secs(60), "no intent written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The other client's own change is not held.
        sb.faults.hold_changes_ms.store(0, Ordering::SeqCst);
        let mut aaaa = by_id(&records(&sb, &dual).await, "single-box", &RrType::Aaaa).clone();
        aaaa.weight = Some(40);
        let change = Change::builder().action(ChangeAction::Upsert).resource_record_set(aaaa).build().unwrap();
        send_changes_as_another_client(&sb, vec![change]).await;
    };
    let ((code, out), ()) = tokio::join!(shift, other);
    assert_eq!(code, Some(0), "{out}");
    let now = records(&sb, &dual).await;
    assert_eq!(by_id(&now, "single-box", &RrType::A).weight(), Some(0), "{out}");
    assert_eq!(by_id(&now, "alb", &RrType::A).weight(), Some(100), "{out}");
    assert_eq!(by_id(&now, "single-box", &RrType::Aaaa).weight(), Some(40), "the other client's change kept");
    sb.down().await;
}

/// A dual-stack group whose A records already sent every IPv4 client to the
/// ALB (moved by another client, out of the audit) while AAAA still sent
/// every IPv6 client to the box: the shift that takes the AAAA share keeps
/// each type's weights before it, and the box's stop waits out the TTL of
/// the answers resolvers hold from before it. With A's weights alone on
/// record (the box 0 → 0), the stop went through at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_taken_on_aaaa_alone_holds_a_stop_for_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let ((dual, dual_path), _) = dual_stack_and_a_only(dir.path());
    let sb = sandbox(&dual, "il-central-1").await;
    let mut changes = Vec::new();
    for mut r in records(&sb, &dual).await.into_iter().filter(|r| r.r#type() == &RrType::A) {
        r.weight = Some(if r.set_identifier() == Some("single-box") { 0 } else { 100 });
        changes.push(Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap());
    }
    send_changes_as_another_client(&sb, changes).await;
    let dp = dual_path.to_str().unwrap();
    let (code, out) = run_cutover_all(&sb, &dual, dir.path(), &["shift", dp, "--to", "100", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let lines = audit(dir.path(), &dual.name);
    let insync = lines.iter().rfind(|l| l["stage"] == "insync").unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(
        insync["before"],
        serde_json::json!({"A": {"single-box": 0, "alb": 100}, "AAAA": {"single-box": 100, "alb": 0}}),
        "{lines:#?}"
    );
    let (code, out) = run_cutover_all(&sb, &dual, dir.path(), &["run", dp, "retire/stop-box", "--dry-run"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("resolvers may still send single-box traffic: its share was taken by shift_weights to 100%"),
        "{out}"
    );
    sb.down().await;
}

/// `cutover shift` killed between its send and its `applied` line (a
/// laptop closed, an OOM kill) leaves its intent alone in the audit, yet
/// Route53 has the change: the box's stop waits out the TTL from that
/// intent, as from an `applied` line. It went through at once: no line said
/// a share was taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_killed_after_its_send_holds_a_stop_for_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let ((dual, dual_path), _) = dual_stack_and_a_only(dir.path());
    let sb = sandbox(&dual, "me-central-1").await;
    let dp = dual_path.to_str().unwrap();
    let mut killed = cutover_command(&sb, &dual, dir.path(), &["shift", dp, "--to", "100", "--yes"]);
    killed.env("CUTOVER_CRASH_AT", "shift:after-send");
    let out = tokio::process::Command::from(killed).output().await.unwrap();
    assert_eq!(out.status.code(), None, "killed at its crash point: {}", String::from_utf8_lossy(&out.stdout));
    let live = records(&sb, &dual).await;
    assert!(live.iter().all(|r| (r.set_identifier() == Some("single-box")) == (r.weight() == Some(0))), "{live:#?}");
    let lines = audit(dir.path(), &dual.name);
    assert_eq!(lines.last().map(|l| l["stage"].clone()), Some("intent".into()), "{lines:#?}");
    let (code, out) = run_cutover_all(&sb, &dual, dir.path(), &["run", dp, "retire/stop-box", "--dry-run"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(
            "resolvers may still send single-box traffic: its share was taken by shift_weights to 100% \
                      (intended at"
        ),
        "{out}"
    );
    assert!(out.contains("whether it was sent is not on record"), "{out}");
    sb.down().await;
}

/// A checklist shift killed between its send and its `applied` line, run
/// again: it finds its weights live and records itself applied. That line
/// keeps what the killed run moved from, so the box's stop still waits out
/// the TTL; written with the live weights (before = after), it concluded the
/// intent and no line said a share was taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checklist_shift_found_done_when_run_again_still_holds_a_stop_for_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = runbook_with(dir.path(), "single-box-to-alb.toml", |t| {
        let shift = "[[phases.items]]\nid = \"all-to-alb\"\ntitle = \"All traffic to the ALB\"\nkind = \"action\"\n\
                     action = \"shift_weights\"\nto = 100\n\n[[phases.items]]\nid = \"stop-box\"";
        t.replace("ttl = 60\n", "ttl = 1\n").replacen("[[phases.items]]\nid = \"stop-box\"", shift, 1)
    });
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "ap-southeast-4").await;
    let mut killed = cutover_command(&sb, &rb, dir.path(), &["run", p, "retire/all-to-alb", "--yes"]);
    killed.env("CUTOVER_CRASH_AT", "action:after-apply");
    let out = tokio::process::Command::from(killed).output().await.unwrap();
    assert_eq!(out.status.code(), None, "killed at its crash point: {}", String::from_utf8_lossy(&out.stdout));
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "retire/all-to-alb", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("recorded as applied: found done when run again"), "{out}");
    let lines = audit(dir.path(), &rb.name);
    let found = lines.last().unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!((&found["stage"], &found["before"]["single-box"]), (&"applied".into(), &100.into()), "{found:#?}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "retire/stop-box", "--dry-run"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("resolvers may still send single-box traffic: its share was taken by shift_weights"), "{out}");
    sb.down().await;
}

/// A shift changes its own records and nothing else: AAAA records beside an
/// A-only runbook's, and another name's records with the same set
/// identifiers, stay as they were (AWS's DELETE takes only the record of
/// its name, type and set identifier; moto's takes every record of the set
/// identifier, which the sandbox puts back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_leaves_other_names_and_types_with_its_set_identifiers_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let ((dual, _), (rb, path)) = dual_stack_and_a_only(dir.path());
    let sb = sandbox(&dual, "eu-west-3").await;
    let mut api = Vec::new();
    for (id, weight, value) in [("single-box", 100, "192.0.2.10"), ("alb", 0, "192.0.2.11")] {
        let set = ResourceRecordSet::builder()
            .name("api.example.org")
            .r#type(RrType::A)
            .set_identifier(id)
            .weight(weight)
            .ttl(60)
            .resource_records(aws_sdk::route53::types::ResourceRecord::builder().value(value).build().unwrap())
            .build()
            .unwrap();
        api.push(Change::builder().action(ChangeAction::Create).resource_record_set(set).build().unwrap());
    }
    send_changes_as_another_client(&sb, api).await;
    let key = |r: &ResourceRecordSet| {
        (r.name().to_string(), r.r#type().as_str().to_string(), r.set_identifier().map(str::to_string))
    };
    let others = |mut rs: Vec<ResourceRecordSet>| {
        rs.retain(|r| !(r.name() == "shop.example.org." && r.r#type() == &RrType::A));
        rs.sort_by_key(key);
        rs
    };
    let before = zone_records(&sb).await;
    let shop_a: Vec<_> =
        before.iter().filter(|r| r.name() == "shop.example.org." && r.r#type() == &RrType::A).cloned().collect();
    assert_eq!(shop_a.len(), 2, "{before:#?}");
    assert_eq!(others(before.clone()).iter().filter(|r| r.name() == "api.example.org.").count(), 2, "{before:#?}");
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["shift", path.to_str().unwrap(), "--to", "30", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let after = zone_records(&sb).await;
    assert_eq!(others(after.clone()), others(before), "records the shift does not name changed or vanished");
    let shop_a_after: Vec<_> =
        after.into_iter().filter(|r| r.name() == "shop.example.org." && r.r#type() == &RrType::A).collect();
    same_but_weights(&shop_a, &shop_a_after, |id| if id == "alb" { 30 } else { 70 });
    sb.down().await;
}

/// AWS refuses a batch that deletes one record twice, or creates one twice
/// (each change meets the zone as the changes before it left it), or names
/// a record outside the zone, and applies none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_deleting_or_creating_one_record_twice_is_refused_whole() {
    use aws_sdk::route53::error::ProvideErrorMetadata;
    let dir = tempfile::tempdir().unwrap();
    let (rb, _) = demo(dir.path());
    let sb = sandbox(&rb, "eu-north-1").await;
    let before = records(&sb, &rb).await;
    let staging = by_id(&before, "staging", &RrType::Cname).clone();
    let change = |action: ChangeAction, weight: i64| {
        let mut r = staging.clone();
        r.weight = Some(weight);
        Change::builder().action(action).resource_record_set(r).build().unwrap()
    };
    let w = staging.weight().unwrap();
    let batches = [
        ("one record deleted twice", vec![change(ChangeAction::Delete, w), change(ChangeAction::Delete, w)]),
        (
            "one record created twice",
            vec![change(ChangeAction::Delete, w), change(ChangeAction::Create, 5), change(ChangeAction::Create, 6)],
        ),
        // moto applied the first change, then refused the second: half a batch.
        (
            "a name outside the zone",
            vec![change(ChangeAction::Upsert, 5), {
                let mut r = staging.clone();
                r.name = "app.elsewhere.example.net.".into();
                Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap()
            }],
        ),
    ];
    for (what, changes) in batches {
        let batch = ChangeBatch::builder().set_changes(Some(changes)).build().unwrap();
        let sent = sb
            .clients
            .route53
            .change_resource_record_sets()
            .hosted_zone_id(&sb.world.zone_id)
            .change_batch(batch)
            .send()
            .await;
        let e = sent.expect_err(&format!("a batch with {what} was accepted"));
        assert_eq!(e.code(), Some("InvalidChangeBatch"), "{what}: {e:?}");
        assert_eq!(records(&sb, &rb).await, before, "{what}: the refused batch changed records");
    }
    sb.down().await;
}

/// A type the runbook does not list is shown where the weights are:
/// `status` names each AAAA record beside an A runbook's, its side, weight
/// and share. And it is judged as a listed type is: the box's AAAA at 0
/// while the only AAAA above 0 fails its health check gets every IPv6
/// client (Route53 answers with the records at 0), so its stop is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_type_the_runbook_does_not_list_is_shown_and_its_health_judged() {
    let dir = tempfile::tempdir().unwrap();
    let ((dual, _), (rb, path)) = dual_stack_and_a_only(dir.path());
    let sb = sandbox(&dual, "eu-north-1").await;
    let p = path.to_str().unwrap();
    // Each record as read, its weight (and health check) set by another client.
    let set = |want: Vec<(RrType, &'static str, i64, Option<String>)>| {
        let sb = &sb;
        let dual = &dual;
        async move {
            let mut changes = Vec::new();
            for mut r in records(sb, dual).await {
                let Some((_, _, w, check)) =
                    want.iter().find(|(t, id, _, _)| r.r#type() == t && r.set_identifier() == Some(*id))
                else {
                    continue;
                };
                r.weight = Some(*w);
                r.health_check_id = check.clone();
                changes.push(Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap());
            }
            send_changes_as_another_client(sb, changes).await;
        }
    };
    set(vec![(RrType::A, "alb", 100, None), (RrType::A, "single-box", 0, None)]).await;
    let status = status_json(&sb, &rb, dir.path(), &path).await;
    let said = status["traffic_unlisted_other_types"].as_str().unwrap_or_default();
    assert!(
        said.contains("AAAA `alb` (alb, weight 0, 0.0%)")
            && said.contains("`single-box` (single-box, weight 100, 100.0%)")
            && said.contains("a record type the runbook's [dns] type does not list"),
        "{status:#}"
    );
    // IPv6 moved to the load balancer, whose AAAA record fails its check.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let check = loopback_health_check(&sb, closed, "closed-port").await;
    set(vec![(RrType::Aaaa, "alb", 100, Some(check)), (RrType::Aaaa, "single-box", 0, None)]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "retire/stop-box", "--dry-run"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("Route53 still sends single-box traffic although its weighted AAAA record `single-box` of")
            && out.contains("every record weighted above 0 is unhealthy (`alb`: health check "),
        "{out}"
    );
    // Its check passing (none): the stop goes through.
    set(vec![(RrType::Aaaa, "alb", 100, None)]).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "retire/stop-box", "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    sb.down().await;
}

/// GetChange of an id Route53 never gave out is NoSuchChange, HTTP 404
/// (moto says INSYNC of any id); one it gave out is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_change_of_an_id_route53_never_gave_out_is_no_such_change() {
    use aws_sdk::route53::error::ProvideErrorMetadata;
    let dir = tempfile::tempdir().unwrap();
    let (rb, _) = demo(dir.path());
    let sb = sandbox(&rb, "eu-south-2").await;
    let r53 = &sb.clients.route53;
    let e = r53.get_change().id("C0NEVERGIVENOUT").send().await.expect_err("GetChange of an unknown id was answered");
    assert_eq!(e.code(), Some("NoSuchChange"), "{e:?}");
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404), "{e:?}");
    let mut staging = by_id(&records(&sb, &rb).await, "staging", &RrType::Cname).clone();
    staging.weight = Some(3);
    let change = Change::builder().action(ChangeAction::Upsert).resource_record_set(staging).build().unwrap();
    let sent = r53
        .change_resource_record_sets()
        .hosted_zone_id(&sb.world.zone_id)
        .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
        .send()
        .await
        .unwrap();
    let id = sent.change_info().unwrap().id();
    let got = r53.get_change().id(id).send().await.unwrap();
    let bare = |id: &str| id.trim_start_matches("/change/").to_string();
    assert_eq!(bare(got.change_info().unwrap().id()), bare(id));
    sb.down().await;
}

/// Point 1, dual stack: `type = ["A", "AAAA"]` reads both groups and changes
/// all four records in one batch, each kept whole but for its weight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dual_stack_group_changes_a_and_aaaa_together_keeping_every_other_field() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = runbook_with(dir.path(), "single-box-to-alb.toml", |t| {
        t.replace("type = \"A\"\n", "type = [\"A\", \"AAAA\"]\n").replace("ttl = 60\n", "ttl = 1\n")
    });
    assert_eq!(rb.dns.record_types, ["A", "AAAA"]);
    let sb = sandbox(&rb, "sa-east-1").await;
    let before = records(&sb, &rb).await;
    assert_eq!(before.len(), 4, "{before:#?}");
    assert!(by_id(&before, "alb", &RrType::Aaaa).alias_target().is_some());
    assert_eq!(by_id(&before, "single-box", &RrType::Aaaa).ttl(), Some(1));
    let changes_before = sb.faults.changes.load(Ordering::SeqCst);
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["shift", path.to_str().unwrap(), "--to", "40", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("on shop.example.org A+AAAA"), "{out}");
    assert_eq!(sb.faults.changes.load(Ordering::SeqCst) - changes_before, 1, "one batch for both types");
    same_but_weights(&before, &records(&sb, &rb).await, |id| if id == "alb" { 40 } else { 60 });
    // A dry run shows the whole batch: DELETE as read, then CREATE.
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["shift", path.to_str().unwrap(), "--to", "0", "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&out[out.find('{').unwrap()..out.rfind('}').unwrap() + 1]).unwrap();
    let actions: Vec<&str> =
        json["ChangeBatch"]["Changes"].as_array().unwrap().iter().map(|c| c["Action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["DELETE", "DELETE", "DELETE", "DELETE", "CREATE", "CREATE", "CREATE", "CREATE"]);
    let alias = &json["ChangeBatch"]["Changes"][6]["ResourceRecordSet"];
    assert_eq!((alias["SetIdentifier"].as_str(), alias["Weight"].as_i64()), (Some("alb"), Some(0)), "{json:#}");
    assert!(alias["AliasTarget"]["DNSName"].is_string() && alias.get("TTL").is_none(), "{json:#}");
    // AAAA hand-edited to other weights than A (the box at 0 there), then
    // the box stopped: a shift that keeps its A share but raises its AAAA
    // one is refused, judged type by type.
    let mut aaaa = Vec::new();
    for mut r in records(&sb, &rb).await.into_iter().filter(|r| r.r#type() == &RrType::Aaaa) {
        r.weight = Some(if r.set_identifier() == Some("alb") { 100 } else { 0 });
        aaaa.push(Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap());
    }
    send_changes_as_another_client(&sb, aaaa).await;
    // The A pair alone no longer tells the split: status says so, and a
    // rollout is neither started nor adopted over it.
    let differ = "the record types weigh the sides differently (A single-box 60, alb 40; AAAA single-box 0, alb 100)";
    let status = status_json(&sb, &rb, dir.path(), &path).await;
    assert!(
        status["traffic_types_differ"].as_str().is_some_and(|d| d.starts_with(differ)),
        "{}",
        status["traffic_types_differ"]
    );
    let (_, text, _) = run_cutover(&sb, &rb, dir.path(), &["status", path.to_str().unwrap()]).await;
    assert!(text.contains(&format!("WEIGHTS DIFFER BY TYPE: {differ}")), "{text}");
    for extra in [&[][..], &["--adopt-live"]] {
        let args = [&["rollout", path.to_str().unwrap(), "--yes"][..], extra].concat();
        let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &args).await;
        assert_eq!(code, Some(2), "{extra:?}: {out}");
        assert!(out.contains("nothing was sent: set every type alike with `cutover shift`"), "{extra:?}: {out}");
    }
    let (_, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--dry-run"]).await;
    assert!(out.contains(&format!("would refuse: {differ}")), "the preview says so: {out}");
    let the_box = sb.world.instances.iter().find(|i| i.environment == "single-box").unwrap().id.clone();
    sb.clients.ec2.stop_instances().instance_ids(&the_box).send().await.unwrap();
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["shift", path.to_str().unwrap(), "--to", "40", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!(
            "raising single-box's AAAA weight from 0 to 60 would send that traffic to its instances, none of which is running ({the_box} stopped)"
        )),
        "{out}"
    );
    // An AAAA record the runbook does not list: the rows are A's, so status
    // says who else gets the IPv6 answers.
    let mut maint = by_id(&records(&sb, &rb).await, "single-box", &RrType::Aaaa).clone();
    maint.set_identifier = Some("maint".into());
    maint.weight = Some(100);
    let create = Change::builder().action(ChangeAction::Create).resource_record_set(maint).build().unwrap();
    send_changes_as_another_client(&sb, vec![create]).await;
    let status = status_json(&sb, &rb, dir.path(), &path).await;
    let unlisted = status["traffic_unlisted_other_types"].as_str().unwrap_or_default();
    assert!(unlisted.contains("Route53 also answers AAAA `maint` (weight 100, 50.0%)"), "{status:#}");
    assert!(
        status["traffic"]["value"].as_array().unwrap().iter().all(|s| s["set_identifier"] != "maint"),
        "A rows only"
    );
    sb.down().await;
}

/// `cutover status --json` for a runbook file: the traffic sides.
async fn status_json(sb: &Sandbox, rb: &Runbook, state: &Path, path: &Path) -> serde_json::Value {
    let (_, json, err) = run_cutover(sb, rb, state, &["status", path.to_str().unwrap(), "--json"]).await;
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json} {err}"))
}

async fn status_sides(sb: &Sandbox, rb: &Runbook, state: &Path, path: &Path) -> Vec<serde_json::Value> {
    let j = status_json(sb, rb, state, path).await;
    j["traffic"]["value"].as_array().unwrap_or_else(|| panic!("no traffic: {j:#}")).clone()
}

/// The runbook check `item` of a status reading.
fn check<'a>(status: &'a serde_json::Value, item: &str) -> &'a serde_json::Value {
    status["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["item"] == item))
        .unwrap_or_else(|| panic!("no check {item} in {status:#}"))
}

fn side<'a>(sides: &'a [serde_json::Value], env: &str) -> &'a serde_json::Value {
    sides.iter().find(|s| s["environment"] == env).unwrap_or_else(|| panic!("no {env} in {sides:#?}"))
}

/// A record of the weighted group that the runbook does not list (a `maint`
/// record someone left at 100) takes its share of the traffic: the shares
/// shown count it, and status says who gets that traffic, not 100% to
/// production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_record_the_runbook_does_not_list_is_counted_in_the_shares_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = demo(dir.path());
    let sb = sandbox(&rb, "ap-southeast-2").await;
    let prod = by_id(&records(&sb, &rb).await, "prod", &RrType::Cname).clone();
    let mut maint = prod.clone();
    maint.set_identifier = Some("maint".into());
    maint.weight = Some(100);
    let create = Change::builder().action(ChangeAction::Create).resource_record_set(maint).build().unwrap();
    send_changes_as_another_client(&sb, vec![create]).await;

    let sides = status_sides(&sb, &rb, dir.path(), &path).await;
    assert_eq!(side(&sides, "production")["share_percent"], 50.0, "{sides:#?}");
    let maint = sides.iter().find(|s| s["set_identifier"] == "maint").unwrap_or_else(|| panic!("{sides:#?}"));
    assert_eq!((maint["environment"].clone(), maint["share_percent"].clone()), (serde_json::Value::Null, 50.0.into()));
    assert_eq!(maint["effective_share_percent"], 50.0, "{sides:#?}");
    let (_, text, _) = run_cutover(&sb, &rb, dir.path(), &["status", path.to_str().unwrap()]).await;
    assert!(text.contains("NOT IN THE RUNBOOK: Route53 also sends traffic to `maint` (weight 100, 50.0%)"), "{text}");
    assert!(text.lines().any(|l| l.contains("not listed") && l.contains("maint") && l.contains("50.0%")), "{text}");
    // A shift says what its weights will give each side, `maint` untouched.
    let (_, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["shift", path.to_str().unwrap(), "--to", "100", "--dry-run"]).await;
    assert!(
        out.contains("`maint` at 100 (not in the runbook) stays unchanged: staging will get 50.0% of the traffic, production 0.0%"),
        "{out}"
    );
    sb.down().await;
}

/// A third environment of the runbook (a `dr` record carrying the traffic
/// during an incident) takes its share as an unlisted record does: a shift
/// from 0/0 to 50/50 beside it raises both sides from nothing to a quarter,
/// so the raised side's targets are checked, and the plan names `dr`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_environments_record_is_counted_when_a_shift_judges_the_share_it_raises() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = runbook_with(dir.path(), "demo.toml", |t| {
        t.replace("ttl = 10\n", "ttl = 1\n")
            .replace(
                "set_identifiers = { production = \"prod\", staging = \"staging\" }",
                "set_identifiers = { production = \"prod\", staging = \"staging\", dr = \"dr\" }",
            )
            .replace(
                "initial_weights = { production = 100, staging = 0 }",
                "initial_weights = { production = 100, staging = 0, dr = 0 }",
            )
            .replace(
                "[dns]",
                "[environments.dr]\ninstances = { tags = { App = \"demo\", Environment = \"dr\" } }\n\n[dns]",
            )
    });
    let sb = sandbox(&rb, "eu-west-1").await;
    set_weights_as_another_client(&sb, &rb, &[("prod", 0), ("staging", 0), ("dr", 100)]).await;
    let staging: Vec<String> =
        sb.world.instances.iter().filter(|i| i.name.starts_with("staging-")).map(|i| i.id.clone()).collect();
    sb.clients.ec2.stop_instances().set_instance_ids(Some(staging)).send().await.unwrap();
    let shift = ["shift", path.to_str().unwrap(), "--to", "50", "--dry-run"];
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &shift).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(
            "raising staging's weight from 0 to 50 would send that traffic to target group demo-staging-web, which \
             has no target in service"
        ),
        "{out}"
    );
    // Onto production alone, the plan says what `dr` leaves each side.
    let shift = ["shift", path.to_str().unwrap(), "--to", "0", "--dry-run"];
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &shift).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "`dr` at 100 (dr's record) stays unchanged: staging will get 0.0% of the traffic, production 50.0%"
        ),
        "{out}"
    );
    sb.down().await;
}

/// Point 5: a record whose health check fails gets no traffic whatever its
/// weight; status shows the check and the effective share, and no gate
/// passes that side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_whose_health_check_fails_gets_no_traffic_and_no_gate_passes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = demo(dir.path());
    let sb = sandbox(&rb, "us-west-1").await;
    // staging-web-2's /health answers 503 until its Redis path is opened.
    let port = sb.world.instances.iter().find(|i| i.name == "staging-web-2").unwrap().app_port;
    let hc = loopback_health_check(&sb, port, "staging-web-2").await;
    let mut changes = Vec::new();
    for mut r in records(&sb, &rb).await {
        if r.set_identifier() == Some("staging") {
            r.health_check_id = Some(hc.clone());
        }
        r.weight = Some(50);
        changes.push(Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap());
    }
    let batch = ChangeBatch::builder().set_changes(Some(changes)).build().unwrap();
    let send = sb.clients.route53.change_resource_record_sets().hosted_zone_id(&sb.world.zone_id).change_batch(batch);
    send.send().await.unwrap();

    let sides = status_sides(&sb, &rb, dir.path(), &path).await;
    let staging = side(&sides, "staging");
    assert_eq!(staging["share_percent"], 50.0, "{staging:#}");
    assert_eq!(staging["health_check"]["id"], hc.as_str(), "{staging:#}");
    assert_eq!(staging["health_check"]["healthy"], false, "{staging:#}");
    assert_eq!(staging["effective_share_percent"], 0.0, "{staging:#}");
    assert_eq!(side(&sides, "production")["effective_share_percent"], 100.0, "{sides:#?}");

    // A gate on staging does not pass while staging gets no traffic.
    let snap = first_snapshot(&rb, &sb).await;
    let gate = cutover::runbook::GateKind::HealthyTargets { environment: "staging".into(), min: 1 };
    let m = cutover::drive::gates::from_snapshot(&rb, &gate, &snap);
    assert!(
        matches!(&m, Some(cutover::engine::Measurement::Fail(why)) if why.contains("no traffic")),
        "a gate passed a side that gets no traffic: {m:?}"
    );
    // Nor a hit-rate gate, which a rollout measures apart (a cache the other
    // side shares keeps its hit rate while this side gets nothing).
    let mut live = session(&rb, &sb);
    live.first_round(&rb, Duration::from_secs(30)).await;
    let now = std::time::SystemTime::now();
    let hit =
        cutover::runbook::GateKind::RedisHitRate { redis: "staging-cache".into(), min_percent: 0.0, min_lookups: 0 };
    let hit_snap = cutover::status::snapshot(&rb, &live.state, &sb.region, now);
    let m = cutover::drive::gates::hit_rate_gate(&rb, &hit, &live.state, &hit_snap, None).map(|(m, _)| m);
    assert!(
        matches!(&m, Some(cutover::engine::Measurement::Fail(why)) if why.contains("no traffic")),
        "a hit-rate gate passed a side that gets no traffic: {m:?}"
    );

    // Disabled, Route53 counts the failing check healthy: staging gets its half.
    let update = || sb.clients.route53.update_health_check().health_check_id(&hc);
    update().disabled(true).send().await.unwrap();
    let sides = status_sides(&sb, &rb, dir.path(), &path).await;
    assert_eq!(side(&sides, "staging")["health_check"]["healthy"], true, "{sides:#?}");
    assert_eq!(side(&sides, "staging")["effective_share_percent"], 50.0, "{sides:#?}");
    // Disabled and inverted: unhealthy, AWS's way to stop routing to a record.
    update().inverted(true).send().await.unwrap();
    let sides = status_sides(&sb, &rb, dir.path(), &path).await;
    assert_eq!(side(&sides, "staging")["health_check"]["healthy"], false, "{sides:#?}");
    assert_eq!(side(&sides, "staging")["effective_share_percent"], 0.0, "{sides:#?}");
    update().disabled(false).inverted(false).send().await.unwrap();

    // Fixed: the check passes and staging gets its half.
    sb.authorize_ingress("staging-redis", "staging-batch", 6379).await.unwrap();
    let sides = eventually(Duration::from_secs(30), "the health check to pass", || async {
        let sides = status_sides(&sb, &rb, dir.path(), &path).await;
        (side(&sides, "staging")["health_check"]["healthy"] == true).then_some(sides)
    })
    .await;
    assert_eq!(side(&sides, "staging")["effective_share_percent"], 50.0, "{sides:#?}");

    // Inverted, the passing check is a failing one to Route53: staging gets
    // nothing.
    update().inverted(true).send().await.unwrap();
    let sides = status_sides(&sb, &rb, dir.path(), &path).await;
    let staging = side(&sides, "staging");
    assert_eq!(staging["health_check"]["healthy"], false, "{staging:#}");
    assert!(staging["health_check"]["status"].as_str().is_some_and(|s| s.starts_with("inverted")), "{staging:#}");
    assert_eq!(staging["effective_share_percent"], 0.0, "{sides:#?}");
    let snap = first_snapshot(&rb, &sb).await;
    let m = cutover::drive::gates::from_snapshot(&rb, &gate, &snap);
    assert!(
        matches!(&m, Some(cutover::engine::Measurement::Fail(why)) if why.contains("no traffic")),
        "a gate passed a side whose inverted check Route53 counts failing: {m:?}"
    );
    update().inverted(false).send().await.unwrap();

    // A stale traffic reading (a throttled read, say) is no evidence that
    // staging gets traffic, nor is a record gone from Route53.
    let fine = first_snapshot(&rb, &sb).await;
    assert!(!matches!(
        cutover::drive::gates::from_snapshot(&rb, &gate, &fine),
        Some(cutover::engine::Measurement::Error(_))
    ));
    let mut stale = fine.clone();
    stale.traffic.stale = true;
    stale.traffic.error = Some("Route53 ListResourceRecordSets: Throttling: Rate exceeded".into());
    let m = cutover::drive::gates::from_snapshot(&rb, &gate, &stale);
    assert!(
        matches!(&m, Some(cutover::engine::Measurement::Error(why)) if why.contains("whether staging gets traffic (Route53): Route53 ListResourceRecordSets: Throttling")),
        "a gate judged a stale traffic reading: {m:?}"
    );
    let mut gone = fine.clone();
    gone.traffic.value.as_mut().unwrap().iter_mut().find(|s| s.is("staging")).unwrap().weight = None;
    let m = cutover::drive::gates::from_snapshot(&rb, &gate, &gone);
    assert!(
        matches!(&m, Some(cutover::engine::Measurement::Error(why)) if why.contains("its weighted record `staging` is not in Route53")),
        "{m:?}"
    );

    // The health check's status refused (a reading role without
    // route53:GetHealthCheckStatus): whether staging gets traffic is
    // unknown, and no gate passes it.
    sb.faults.deny_health_check_status.store(true, std::sync::atomic::Ordering::SeqCst);
    let snap = first_snapshot(&rb, &sb).await;
    let m = cutover::drive::gates::from_snapshot(&rb, &gate, &snap);
    assert!(
        matches!(&m, Some(cutover::engine::Measurement::Error(why)) if why.contains("cannot tell whether staging gets traffic")),
        "a gate passed a side whose health check could not be judged: {m:?}"
    );
    let sides = status_sides(&sb, &rb, dir.path(), &path).await;
    let unknown = side(&sides, "staging")["traffic_unknown"].as_str().unwrap_or_default().to_string();
    assert!(unknown.contains("could not be judged") && unknown.contains("AccessDenied"), "{sides:#?}");
    sb.down().await;
}

/// Point 5 for aliases: the ALB alias evaluates target health; with no
/// healthy target behind the ALB it gets no traffic whatever its weight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_to_an_alb_with_no_healthy_target_gets_no_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = single_box(dir.path());
    let sb = sandbox(&rb, "eu-south-1").await;
    reweight_as_another_client(&sb, &rb, "alb", 30).await;
    let sides = status_sides(&sb, &rb, dir.path(), &path).await;
    assert_eq!(side(&sides, "alb")["effective_share_percent"].as_f64().map(f64::round), Some(23.0), "{sides:#?}");
    assert!(side(&sides, "alb").get("traffic_unknown").is_none(), "{sides:#?}");
    // An alias to a load balancer the runbook does not name: cutover cannot
    // judge whether Route53 sends it anything, so the side's traffic is
    // unknown (every gate an error), never taken as flowing.
    let mut elsewhere = Vec::new();
    for r in records(&sb, &rb).await.into_iter().filter(|r| r.set_identifier() == Some("alb")) {
        let mut r = r;
        r.alias_target.as_mut().unwrap().dns_name =
            "dualstack.other-alb-1234567890.eu-south-1.elb.amazonaws.com.".into();
        elsewhere.push(Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap());
    }
    send_changes_as_another_client(&sb, elsewhere).await;
    let sides = status_sides(&sb, &rb, dir.path(), &path).await;
    let alb = side(&sides, "alb");
    assert!(alb["traffic_unknown"].as_str().is_some_and(|w| w.contains("not alb's load balancer shop-alb")), "{alb:#}");
    let mut back = Vec::new();
    for r in records(&sb, &rb).await.into_iter().filter(|r| r.set_identifier() == Some("alb")) {
        let mut r = r;
        let lb_dns = sb.clients.elb.describe_load_balancers().names("shop-alb").send().await.unwrap().load_balancers()
            [0]
        .dns_name()
        .unwrap()
        .to_string();
        r.alias_target.as_mut().unwrap().dns_name = lb_dns;
        back.push(Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap());
    }
    send_changes_as_another_client(&sb, back).await;
    let tg = &sb.world.target_groups["alb"][0].arn;
    let targets = registered_targets(&sb, "alb");
    let deregister = sb.clients.elb.deregister_targets().target_group_arn(tg).set_targets(Some(targets.clone()));
    deregister.send().await.unwrap();
    let sides = status_sides(&sb, &rb, dir.path(), &path).await;
    let alb = side(&sides, "alb");
    assert_eq!(alb["weight"], 30, "{alb:#}");
    assert_eq!(alb["effective_share_percent"], 0.0, "{alb:#}");
    assert!(alb["no_traffic"].as_str().is_some_and(|w| w.contains("no healthy target")), "{alb:#}");
    assert_eq!(side(&sides, "single-box")["effective_share_percent"], 100.0, "{sides:#?}");
    // The box at weight 0 still gets every user: Route53 answers with the
    // records at 0 when each above 0 is unhealthy. Stopping it is refused.
    reweight_as_another_client(&sb, &rb, "single-box", 0).await;
    let sides = status_sides(&sb, &rb, dir.path(), &path).await;
    assert_eq!(side(&sides, "single-box")["effective_share_percent"], 100.0, "the pane agrees: {sides:#?}");
    let runbook = path.to_str().unwrap();
    let stop_box = ["run", runbook, "retire/stop-box", "--yes"];
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop_box).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("Route53 still sends single-box traffic although its weighted A record `single-box` of shop.example.org has weight 0")
            // Its deregistered targets are draining for the group's delay.
            && out.contains("`alb`: an alias to shop-alb evaluating target health, whose target group shop-web has no healthy target"),
        "{out}"
    );
    assert_eq!(box_state(&sb).await, "running", "nothing stopped");
    sb.clients.elb.register_targets().target_group_arn(tg).set_targets(Some(targets)).send().await.unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop_box).await;
    assert_eq!(code, Some(0), "the ALB healthy again, the box gets nothing: {out}");
    assert_eq!(box_state(&sb).await, "stopped");
    // Its weight back onto the stopped box (no target group: its instance
    // serves) would send every user to a dead address: refused.
    for extra in ["--yes", "--dry-run"] {
        let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["shift", runbook, "--to", "0", extra]).await;
        assert_eq!(code, Some(2), "{extra}: {out}");
        assert!(
            out.contains("raising single-box's weight from 0 to 100 would send that traffic to its instances, none of which is running (i-")
                && out.contains(" stopped); start them, or wait until they run"),
            "{extra}: {out}"
        );
    }
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["run", runbook, "retire/stop-box", "--rollback", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["shift", runbook, "--to", "0", "--yes"]).await;
    assert_eq!(code, Some(0), "the box running again takes its weight back: {out}");

    // Route53 judges the ALB by every target group it routes to: one the
    // runbook does not list (a second listener's) makes its health unknown,
    // and so does a DNS failover threshold, which AWS applies zone by zone.
    use aws_sdk::elasticloadbalancingv2::types::TargetGroupAttribute;
    let (api, listener) = route_a_second_listener_to_a_new_group(&sb, "shop-alb", "shop-api").await;
    let status = status_json(&sb, &rb, dir.path(), &path).await;
    let alb = side(status["traffic"]["value"].as_array().unwrap(), "alb");
    assert!(
        alb["traffic_unknown"].as_str().is_some_and(|w| w.contains(
            "load balancer shop-alb: it also routes to target group shop-api, which the runbook does not list"
        )),
        "{alb:#}"
    );
    // The targets check is judged where the requests go: shop-api's (none)
    // answer the second listener with 503s, which shop-web's health hides.
    let targets = check(&status, "targets");
    assert_eq!(targets["outcome"], "unknown", "{targets:#}");
    assert!(
        targets["detail"].as_str().unwrap().contains(
            "load balancer shop-alb routes requests to target group shop-api, which alb's target_groups do not list"
        ),
        "{targets:#}"
    );
    sb.clients.elb.delete_listener().listener_arn(&listener).send().await.unwrap();
    sb.clients.elb.delete_target_group().target_group_arn(&api).send().await.unwrap();
    let status = status_json(&sb, &rb, dir.path(), &path).await;
    assert!(side(status["traffic"]["value"].as_array().unwrap(), "alb").get("traffic_unknown").is_none(), "{status:#}");
    assert_eq!(check(&status, "targets")["outcome"], "pass", "{status:#}");
    let threshold = TargetGroupAttribute::builder()
        .key("target_group_health.dns_failover.minimum_healthy_targets.count")
        .value("2")
        .build();
    sb.clients.elb.modify_target_group_attributes().target_group_arn(tg).attributes(threshold).send().await.unwrap();
    let sides = status_sides(&sb, &rb, dir.path(), &path).await;
    let alb = side(&sides, "alb");
    assert!(
        alb["traffic_unknown"]
            .as_str()
            .is_some_and(|w| w.contains("target group shop-web sets a DNS failover threshold (count 2)")),
        "{alb:#}"
    );
    // A terminated box is never given the weight back either (EC2 still lists it).
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["shift", runbook, "--to", "100", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let the_box = sb.world.instances.iter().find(|i| i.environment == "single-box").unwrap().id.clone();
    sb.clients.ec2.terminate_instances().instance_ids(&the_box).send().await.unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["shift", runbook, "--to", "0", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("none of which is running ({the_box} terminated)")), "{out}");
    sb.down().await;
}

/// The EC2 state of the single box (selected by its Role tag, not Environment).
async fn box_state(sb: &Sandbox) -> String {
    let id = &sb.world.instances.iter().find(|i| i.environment == "single-box").unwrap().id;
    let r = sb.clients.ec2.describe_instances().instance_ids(id).send().await.unwrap();
    r.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str().to_string()
}

/// Point 4 in a rollout: a step's change applied but its reply lost stays in
/// flight (as after a crash in that window); the next run confirms it and
/// finishes, never sending over it blind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_step_whose_reply_is_lost_is_read_back_and_confirmed_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = single_box(dir.path());
    let sb = sandbox(&rb, "ap-northeast-2").await;
    sb.faults.drop_change_replies.store(true, Ordering::SeqCst);
    let args = ["rollout", path.to_str().unwrap(), "--yes"];
    let run = run_cutover_all(&sb, &rb, dir.path(), &args);
    let (code, out) = tokio::time::timeout(Duration::from_secs(60), run).await.expect("first run ends");
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("read back: the new weights are live"), "{out}");
    assert!(!out.contains("weights unchanged"), "{out}");
    assert_eq!(by_id(&records(&sb, &rb).await, "alb", &RrType::A).weight(), Some(50));
    sb.faults.drop_change_replies.store(false, Ordering::SeqCst);
    let run = run_cutover_all(&sb, &rb, dir.path(), &args);
    let (code, out) = tokio::time::timeout(Duration::from_secs(120), run).await.expect("second run ends");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("is live but its change was never recorded"), "{out}");
    let lines = audit(dir.path(), "single-box-to-alb");
    let stages: Vec<String> =
        lines.iter().map(|l| format!("{} [{}]", l["action"].as_str().unwrap(), l["stage"].as_str().unwrap())).collect();
    assert_eq!(
        stages[..4],
        [
            "rollout step 1/2 (50%) [intent]",
            "rollout step 1/2 (50%) [applied]",
            "rollout step 1/2 (50%) [intent]",
            "rollout step 1/2 (50%) [applied]"
        ],
        "{stages:#?}"
    );
    assert!(lines[1]["detail"].as_str().unwrap().contains("read back"), "{}", lines[1]);
    assert_eq!(by_id(&records(&sb, &rb).await, "alb", &RrType::A).weight(), Some(100));
    sb.down().await;
}

/// The sandbox's Route53 health checkers judge as AWS's do (moto says
/// Success to every check): a search string must be in the body, a TCP
/// check connects, and an address other than 127.0.0.1 is not reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_health_checks_match_search_strings_connect_tcp_and_reach_only_loopback() {
    use aws_sdk::route53::types::{HealthCheckConfig, HealthCheckType};
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-southeast-1").await;
    let port = i32::from(sb.world.instances.iter().find(|i| i.name == "staging-web-1").unwrap().app_port);
    let status_of = |config: HealthCheckConfig, name: &'static str| {
        let r53 = sb.clients.route53.clone();
        async move {
            let hc = r53.create_health_check().caller_reference(name).health_check_config(config).send().await.unwrap();
            let id = hc.health_check().unwrap().id().to_string();
            let got = r53.get_health_check_status().health_check_id(id).send().await.unwrap();
            got.health_check_observations()[0].status_report().unwrap().status().unwrap().to_string()
        }
    };
    let matching = |search: &str| {
        HealthCheckConfig::builder()
            .ip_address("127.0.0.1")
            .port(port)
            .r#type(HealthCheckType::HttpStrMatch)
            .resource_path("/health")
            .search_string(search)
            .build()
            .unwrap()
    };
    let missing = status_of(matching("no such words"), "str-missing").await;
    assert!(missing.starts_with("Failure") && missing.contains("search string"), "{missing}");
    let found = status_of(matching("redis"), "str-found").await;
    assert!(found.starts_with("Success"), "{found}");
    let tcp =
        HealthCheckConfig::builder().ip_address("127.0.0.1").port(port).r#type(HealthCheckType::Tcp).build().unwrap();
    let tcp = status_of(tcp, "tcp").await;
    assert!(tcp.starts_with("Success"), "{tcp}");
    let far = HealthCheckConfig::builder()
        .ip_address("10.0.0.1")
        .port(80)
        .r#type(HealthCheckType::Http)
        .resource_path("/health")
        .build()
        .unwrap();
    let far = status_of(far, "far").await;
    assert!(far.starts_with("Failure"), "never reached, never a success: {far}");
    sb.down().await;
}

/// Targets in service serve nothing their load balancer does not route to
/// them. Staging's listener forwards to a new, empty group the runbook does
/// not list: a shift raising staging says it did not check that staging's
/// targets get the share. A default answering a fixed 503, staging's group
/// behind a path rule only: the same. Without the routing read, the shift
/// said nothing. (moto keeps a group associated with its load balancer once
/// forwarded to, so the refusal for a listed group that gets no request,
/// which AWS's DescribeTargetGroups shows, cannot be set up here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_onto_a_load_balancer_that_routes_the_record_elsewhere_says_it_is_not_checked() {
    use aws_sdk::elasticloadbalancingv2::types::{
        Action, ActionTypeEnum, FixedResponseActionConfig, PathPatternConditionConfig, RuleCondition,
    };
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = demo(dir.path());
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "ap-east-2").await;
    let elb = &sb.clients.elb;
    let listeners =
        elb.describe_listeners().load_balancer_arn(&sb.world.load_balancers["staging"]).send().await.unwrap();
    let listener = listeners.listeners()[0].listener_arn().unwrap().to_string();
    let vpc = elb
        .describe_target_groups()
        .target_group_arns(&sb.world.target_groups["staging"][0].arn)
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .vpc_id()
        .unwrap()
        .to_string();
    let v2 = elb
        .create_target_group()
        .name("demo-staging-web-v2")
        .protocol(aws_sdk::elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id(vpc)
        .send()
        .await
        .unwrap();
    let v2 = v2.target_groups()[0].target_group_arn().unwrap().to_string();
    let forward = |arn: &str| Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(arn).build();
    elb.modify_listener().listener_arn(&listener).default_actions(forward(&v2)).send().await.unwrap();
    let state = dir.path().join("state");
    let (code, out) = run_cutover_all(&sb, &rb, &state, &["shift", p, "--to", "30", "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("NOT CHECKED: whether staging's targets get the share"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("HTTP 80 forwards to demo-staging-web-v2"), "{line}");
    // A fixed 503 by default; the listed group only behind /api/*.
    let fixed = Action::builder()
        .r#type(ActionTypeEnum::FixedResponse)
        .fixed_response_config(FixedResponseActionConfig::builder().status_code("503").build())
        .build();
    elb.modify_listener().listener_arn(&listener).default_actions(fixed).send().await.unwrap();
    elb.delete_target_group().target_group_arn(&v2).send().await.unwrap();
    let api = RuleCondition::builder()
        .field("path-pattern")
        .path_pattern_config(PathPatternConditionConfig::builder().values("/api/*").build())
        .build();
    elb.create_rule()
        .listener_arn(&listener)
        .priority(10)
        .conditions(api)
        .actions(forward(&sb.world.target_groups["staging"][0].arn))
        .send()
        .await
        .unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, &state, &["shift", p, "--to", "30", "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("NOT CHECKED: whether staging's targets get the share this raises"), "{out}");
    sb.down().await;
}
