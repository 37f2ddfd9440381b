//! Raw runbook → validated model. Collects every problem, each located at the
//! value at fault and phrased as `what is wrong; how to fix it`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::duration::parse_duration;
use super::error::{Diagnostic, Locator, RunbookError};
use super::model::*;
use super::raw::*;

use super::kinds::{ACTIONS, CHECKS, GATES, TREATMENTS};

const FORMAT_REF: &str = "see \"Runbook format\" in README.md";

pub fn parse(file: &str, text: &str) -> Result<Runbook, RunbookError> {
    let loc = Locator::new(file, text);
    let raw: RawRunbook = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            return Err(RunbookError { diagnostics: vec![toml_diagnostic(&loc, text, &e)], source: Some(text.into()) });
        }
    };
    let mut v = Validator { loc, diags: Vec::new(), first_step: None, secrets: Vec::new() };
    v.control_characters(text);
    let runbook = v.runbook(file, raw);
    v.mask_secrets();
    if v.diags.is_empty() {
        Ok(runbook)
    } else {
        v.diags.sort_by_key(|d| (d.line, d.col));
        v.diags.dedup();
        Err(RunbookError { diagnostics: v.diags, source: Some(text.into()) })
    }
}

/// The highest `max` a TargetResponseTime gate takes, in seconds: above an
/// ALB's default idle timeout it is a figure in milliseconds.
const MAX_RESPONSE_SECONDS: f64 = 60.0;

/// An alarm gate without its own `lag` waits for its slowest alarm: a request
/// served at the soak's end lands in a period that closes up to one period
/// later, whose datapoint arrives 1-3 minutes after that and is evaluated
/// within the next minute. DEFAULT_ALARM_LAG covers one-minute periods. An
/// alarm of `evaluation_periods` N goes off on N breaching periods (M of N,
/// M = N as the runbook declares it): errors starting at the soak's end set
/// it off N periods later.
fn lengthen_default_lags(rollout: &mut Rollout, raw_gates: &[S<RawGate>], alarms: &[Alarm]) {
    // Gates that failed validation are left out of `rollout.gates`; the
    // runbook is refused then, so there is nothing to pair.
    if raw_gates.len() != rollout.gates.len() {
        return;
    }
    let period = |name: &str| -> Duration {
        crate::runbook::metric_alarms_under(alarms, name)
            .iter()
            .map(|a| a.period.saturating_mul(a.evaluation_periods))
            .max()
            .unwrap_or(Duration::ZERO)
    };
    for (gate, raw) in rollout.gates.iter_mut().zip(raw_gates) {
        if let (GateKind::AlarmOk { alarms: names, lag, .. }, None) = (&mut gate.kind, &raw.get_ref().lag) {
            let longest = names.iter().map(|n| period(n)).max().unwrap_or(Duration::ZERO);
            *lag = (*lag).max(longest + DEFAULT_ALARM_LAG - Duration::from_secs(60));
        }
    }
}

const TOP_TABLES: [&str; 4] = ["runbook", "environments", "dns", "rollout"];

/// The keys whose value is a duration written as a string (`"30s"`).
const DURATION_KEYS: [&str; 10] =
    ["soak", "bake", "gate_interval", "interval", "lag", "settle", "lease", "period", "duration", "wait"];

/// How often CloudWatch evaluates an alarm of a minute or more: the longest
/// an `alarm_ok` gate may go between readings without missing an ALARM.
const ALARM_EVALUATED_EVERY: Duration = Duration::from_secs(60);

/// The longest composite alarm rule AWS takes (PutCompositeAlarm, AlarmRule).
const MAX_ALARM_RULE: usize = 10_240;

fn toml_diagnostic(loc: &Locator, text: &str, e: &toml::de::Error) -> Diagnostic {
    let message = e
        .message()
        .trim()
        .replace('\n', " ")
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number");
    if let Some(field) = message.strip_prefix("missing field ") {
        let name = field.trim_matches('`');
        if TOP_TABLES.contains(&name) && e.span().is_none_or(|s| s.start == 0) {
            return loc.whole_file(format!("missing table [{name}]"), format!("add a [{name}] table; {FORMAT_REF}"));
        }
    }
    if message.starts_with("duplicate key")
        && let Some(span) = e.span()
        && let Some(key) = text.get(span.clone())
    {
        return loc.at(
            span,
            format!("duplicate key `{}`", key.trim()),
            "each key may appear once per table; remove the repeat",
        );
    }
    // The key on the error's line, for a hint in its own terms.
    let key = e.span().and_then(|span| {
        let start = text[..span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
        let line = text[start..].lines().next()?;
        let (k, _) = line.split_once('=')?;
        Some(k.trim().trim_start_matches('{').trim().to_string())
    });
    let duration_key = key.as_deref().is_some_and(|k| DURATION_KEYS.contains(&k));
    let hint = if message.starts_with("invalid type: integer") && duration_key {
        let n = message
            .strip_prefix("invalid type: integer ")
            .and_then(|m| m.split(',').next())
            .map(|n| n.trim_matches('`'))
            .unwrap_or("30");
        format!("a duration is a string with its unit: write \"{n}s\" (or \"5m\", \"1h\")")
    } else if message.contains("as i128") || message.contains("number too large") {
        "the number is too large for this key; give one in its range".to_string()
    } else if message.starts_with("unknown field") {
        "remove the key or fix its spelling (the keys allowed here are listed)".to_string()
    } else if message.starts_with("missing field") {
        format!("add it to this table; {FORMAT_REF}")
    } else if message.starts_with("invalid type") {
        format!("give a value of the expected type; {FORMAT_REF}")
    } else if message.starts_with("duplicate key") {
        "each key may appear once per table; remove the repeat".to_string()
    } else {
        "fix the TOML syntax here (strings need quotes, tables need [brackets])".to_string()
    };
    // A misspelt key whose line holds a URL (`webhook_url = "https://…"`,
    // a Redis URL with its password) may hold a secret: the error points at
    // the value, shown masked, never echoed.
    let secret_value = e.span().and_then(|span| {
        let start = text[..span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = &text[start..end];
        if !line.contains("://") {
            return None;
        }
        let value = line.find('=').map_or(0, |i| i + 1);
        let value = value + (line.len() - value - line[value..].trim_start().len());
        Some(start + value..start + line.trim_end().len().max(value))
    });
    match (e.span(), secret_value) {
        (Some(_), Some(value)) => Diagnostic { secret: true, ..loc.at(value, message, hint) },
        (Some(span), None) => loc.at(span, message, hint),
        (None, _) => loc.whole_file(message, hint),
    }
}

/// Whether `undo` undoes `action` (Ok), or why not: a rollback is run in an
/// emergency without a second look, so one that repeats the change, changes
/// another environment, or keeps or raises the new side's share after a
/// rollout would make the emergency worse. (A `shift_weights` item's share
/// before it is not known here: its rollback need only differ.)
fn undoes(action: &Action, undo: &Action, first_step: Option<u8>) -> Result<(), (String, String)> {
    use Action::*;
    let (env, undo_env) = match (action, undo) {
        (ShiftWeights { to }, ShiftWeights { to: back }) if to == back => {
            return Err((
                format!("the rollback shifts to {back}%, as the item itself does: it would undo nothing"),
                "give the share of traffic the item's change is undone to (the share before it, e.g. to = 0)".into(),
            ));
        }
        (ShiftWeights { .. }, ShiftWeights { .. }) => return Ok(()),
        (Rollout, ShiftWeights { to: back }) => {
            return match first_step {
                Some(first) if *back >= first => Err((
                    format!(
                        "the rollout's rollback shifts to {back}%, at or above its first step ({first}%): it would \
                         keep or raise the new side's share instead of taking it back"
                    ),
                    format!("roll back to the share before the rollout, below {first}% (e.g. to = 0)"),
                )),
                _ => Ok(()),
            };
        }
        (RegisterTargets { environment: e }, DeregisterTargets { environment: u })
        | (DeregisterTargets { environment: e }, RegisterTargets { environment: u })
        | (SetStickiness { environment: e, .. }, DisableStickiness { environment: u })
        | (DisableStickiness { environment: e }, SetStickiness { environment: u, .. })
        | (AuthorizeRedisIngress { environment: e }, RevokeRedisIngress { environment: u })
        | (RevokeRedisIngress { environment: e }, AuthorizeRedisIngress { environment: u })
        | (StopInstances { environment: e }, StartInstances { environment: u })
        | (StartInstances { environment: e }, StopInstances { environment: u }) => (e, u),
        // Back to the stickiness it had before.
        (SetStickiness { environment: e, duration: d }, SetStickiness { environment: u, duration: back })
            if d != back =>
        {
            (e, u)
        }
        _ => {
            let how = match (action, inverse_of(action)) {
                (Action::ShiftWeights { .. } | Action::Rollout, _) => {
                    "undo it with `shift_weights` to the share before it (e.g. to = 0)".to_string()
                }
                (_, Some(inverse)) => format!("undo it with `{inverse}` on the same environment"),
                (_, None) => format!("remove the rollback: no action undoes `{}`", action.kind()),
            };
            return Err((format!("`{}` does not undo `{}`", undo.summary(), action.summary()), how));
        }
    };
    if env != undo_env {
        return Err((
            format!("the rollback `{}` acts on `{undo_env}`, but the item changes `{env}`", undo.summary()),
            format!("undo the change where it was made: environment = \"{env}\""),
        ));
    }
    Ok(())
}

/// The action kind that undoes `action`'s kind, if one does.
fn inverse_of(action: &Action) -> Option<&'static str> {
    Some(match action {
        Action::ShiftWeights { .. } | Action::Rollout => "shift_weights",
        Action::RegisterTargets { .. } => "deregister_targets",
        Action::DeregisterTargets { .. } => "register_targets",
        Action::SetStickiness { .. } => "disable_stickiness",
        Action::DisableStickiness { .. } => "set_stickiness",
        Action::AuthorizeRedisIngress { .. } => "revoke_redis_ingress",
        Action::RevokeRedisIngress { .. } => "authorize_redis_ingress",
        Action::StopInstances { .. } => "start_instances",
        Action::StartInstances { .. } => "stop_instances",
        _ => return None,
    })
}

/// `url` with the password in its user info (`redis://:pw@host`) masked,
/// for messages.
fn masked_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((userinfo, hosts)) = rest.rsplit_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, pw)) if !pw.is_empty() => format!("{scheme}://{user}:***@{hosts}"),
        _ => url.to_string(),
    }
}

/// A load balancer's or target group's name, given as a name or an ARN
/// (`…:loadbalancer/app/NAME/ID`, `…:targetgroup/NAME/ID`).
fn resource_name<'s>(given: &'s str, kind: &str) -> &'s str {
    match given.split_once(kind) {
        Some((_, rest)) if given.starts_with("arn:") => {
            let rest = rest.strip_prefix("app/").or_else(|| rest.strip_prefix("net/")).unwrap_or(rest);
            rest.split('/').next().unwrap_or(rest)
        }
        _ => given,
    }
}

/// Whether `gate` measures environment `env` (a compare gate measures both
/// sides; an alarm not declared for an environment may watch either).
fn gate_watches(gate: &GateKind, env: &str, environments: &BTreeMap<String, Environment>, alarms: &[Alarm]) -> bool {
    match gate {
        GateKind::Compare { .. } => true,
        GateKind::HealthyTargets { environment, .. }
        | GateKind::HttpHealth { environment }
        | GateKind::RedisReachable { environment }
        | GateKind::Metric { environment, .. } => environment == env,
        GateKind::RedisHitRate { redis, .. } => environments
            .get(env)
            .is_some_and(|e| e.uses_redis.iter().any(|r| r == redis) || e.redis.iter().any(|r| &r.name == redis)),
        GateKind::AlarmOk { alarms: names, .. } => names.iter().any(|n| alarm_watches(alarms, n, env, &mut Vec::new())),
    }
}

/// Whether alarm `name` goes off on trouble in `env` alone: a metric alarm
/// declared for it (or for no environment), one not declared (it may), or
/// a composite whose rule holds with those of its alarms in ALARM and the
/// rest OK. A composite over the other side's alarm, or needing both
/// sides' (`AND`), never goes off once that side takes no traffic.
/// `path`: the composites above it (a cycle is cut).
fn alarm_watches(alarms: &[Alarm], name: &str, env: &str, path: &mut Vec<String>) -> bool {
    let Some(a) = alarms.iter().find(|a| a.name == name) else { return true };
    let Some(rule) = a.rule.as_deref() else { return a.environment.as_deref().is_none_or(|e| e == env) };
    if path.iter().any(|s| s == name) {
        return false;
    }
    path.push(name.to_string());
    let watching: Vec<String> = crate::runbook::alarm_rule_names(rule)
        .unwrap_or_default()
        .into_iter()
        .filter(|child| alarm_watches(alarms, child, env, path))
        .collect();
    path.pop();
    crate::runbook::alarm_rule_holds_with(rule, &|n| watching.iter().any(|w| w == n)) == Some(true)
}

struct Validator<'a> {
    loc: Locator<'a>,
    diags: Vec<Diagnostic>,
    /// The rollout's first step, once read: its rollback must return below it.
    first_step: Option<u8>,
    /// Secrets written in the runbook (span, text, text shown instead).
    secrets: Vec<(std::ops::Range<usize>, String, String)>,
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_env_var(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else { return false };
    ip.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32)
}

/// Whether `s` is written as an AWS region is (`eu-west-1`, `us-gov-west-1`).
pub fn is_region(s: &str) -> bool {
    s.split('-').count() >= 3
        && s.split('-').all(|part| !part.is_empty())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.rsplit('-').next().is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.chars().all(|c| c.is_ascii_digit())
}

fn trim_dot(s: &str) -> &str {
    s.trim_end_matches('.')
}

fn one_of(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let v: Vec<String> = names.into_iter().map(|n| format!("`{}`", n.as_ref())).collect();
    if v.is_empty() { "(none are declared)".into() } else { v.join(", ") }
}

/// What validation needs to know about names declared elsewhere in the file.
struct Names {
    envs: BTreeSet<String>,
    /// Environments with a load balancer and target groups.
    lb_envs: BTreeSet<String>,
    /// Environments whose instances use some Redis.
    redis_envs: BTreeSet<String>,
    /// Each environment's target groups, as listed.
    target_groups: BTreeMap<String, Vec<String>>,
    alarms: BTreeSet<String>,
    redis: BTreeSet<String>,
    /// Redis endpoints that are ElastiCache replication groups.
    elasticache: BTreeSet<String>,
    /// Each environment's used Redis endpoints that name no security groups
    /// (whose path no rule can be judged, or added, on).
    groupless_redis: BTreeMap<String, Vec<String>>,
    /// Environments reached otherwise than the runbook's own alarms (a role,
    /// profile, external id or region of their own).
    reached_otherwise: BTreeSet<String>,
    /// Each alarm declared for an environment, and that environment.
    alarm_environments: BTreeMap<String, String>,
}

impl<'a> Validator<'a> {
    /// Text with a control character (other than a line break or tab), as
    /// TOML's escapes allow (`"\u001b[2K\r ok"`): a terminal acts on it, so
    /// a title could erase a line of `plan` and print "ALL CHECKS PASSED"
    /// in its place, or hide the rest. Refused wherever it is, keys too.
    fn control_characters(&mut self, text: &str) {
        fn walk(v: &toml::de::DeValue, span: std::ops::Range<usize>, out: &mut Vec<(std::ops::Range<usize>, char)>) {
            // A line break written as CRLF is a line break.
            let bad = |s: &str| s.replace("\r\n", "\n").chars().find(|c| c.is_control() && *c != '\n' && *c != '\t');
            match v {
                toml::de::DeValue::String(s) => out.extend(bad(s).map(|c| (span, c))),
                toml::de::DeValue::Array(a) => a.iter().for_each(|x| walk(x.get_ref(), x.span(), out)),
                toml::de::DeValue::Table(t) => {
                    for (k, x) in t.iter() {
                        out.extend(bad(k.get_ref()).map(|c| (k.span(), c)));
                        walk(x.get_ref(), x.span(), out);
                    }
                }
                _ => {}
            }
        }
        let Ok(doc) = toml::de::DeTable::parse(text) else { return };
        let mut found = Vec::new();
        walk(&toml::de::DeValue::Table(doc.get_ref().clone()), doc.span(), &mut found);
        for (span, c) in found {
            self.err(
                span,
                format!("this text holds the control character U+{:04X}, which a terminal would act on", c as u32),
                "remove it (and any escape such as \\u001b): a title or note is shown as it is written",
            );
        }
    }

    fn err(&mut self, span: std::ops::Range<usize>, msg: impl Into<String>, hint: impl Into<String>) {
        let d = self.loc.at(span, msg, hint);
        self.diags.push(d);
    }

    fn duration(&mut self, s: &S<String>, what: &str) -> Option<Duration> {
        match parse_duration(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                let (msg, hint) = e.split_once("; ").unwrap_or((&e, ""));
                self.err(s.span(), format!("{what}: {msg}"), hint.to_string());
                None
            }
        }
    }

    fn env_ref(&mut self, names: &Names, s: &S<String>) -> String {
        if !names.envs.contains(s.get_ref()) {
            self.err(
                s.span(),
                format!("unknown environment `{}`", s.get_ref()),
                format!("use one of {} (declared under [environments])", one_of(&names.envs)),
            );
        }
        s.get_ref().clone()
    }

    /// Reports an environment that lacks what `kind` works on.
    fn needs(&mut self, names: &Names, e: &S<String>, kind: &str, lb: bool) {
        let env = e.get_ref();
        if !names.envs.contains(env) {
            return;
        }
        if lb && !names.lb_envs.contains(env) {
            self.err(
                e.span(),
                format!("`{kind}` needs a load balancer and target groups, but environment `{env}` has none"),
                "point it at an environment with load_balancer and target_groups, or remove it",
            );
        }
        if !lb && !names.redis_envs.contains(env) {
            self.err(
                e.span(),
                format!("`{kind}` needs Redis, but environment `{env}` uses none"),
                "add a redis entry or uses_redis to the environment, or remove it",
            );
        }
        if kind == "authorize_redis_ingress"
            && let Some(groupless) = names.groupless_redis.get(env).filter(|g| !g.is_empty())
        {
            self.err(
                e.span(),
                format!(
                    "`{kind}` adds rules on the security groups of the Redis environment `{env}` uses, but {} names none",
                    groupless.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
                "add security_groups = [\"…\"] to that redis entry (the groups its path is judged and opened on), or remove the item",
            );
        }
    }

    fn redis_ref(&mut self, names: &Names, s: &S<String>) -> String {
        if !names.redis.contains(s.get_ref()) {
            self.err(
                s.span(),
                format!("unknown Redis endpoint `{}`", s.get_ref()),
                format!("use one of {} (the `name` of an environment's redis entry)", one_of(&names.redis)),
            );
        }
        s.get_ref().clone()
    }

    fn region(&mut self, region: &S<String>) {
        if !is_region(region.get_ref()) {
            self.err(
                region.span(),
                format!("`{}` is not an AWS region", region.get_ref()),
                "write it like eu-west-1 or us-east-1",
            );
        }
    }

    fn account_id(&mut self, acct: &S<String>) -> bool {
        let ok = is_account_id(acct.get_ref());
        if !ok {
            self.err(
                acct.span(),
                format!("account_id `{}` is not a 12-digit AWS account id", acct.get_ref()),
                "write the account id as a quoted 12-digit string, e.g. \"123456789012\"",
            );
        }
        ok
    }

    /// A side's access keys (`[environments.NAME]` or `[dns]`).
    fn access(&mut self, a: RawAccess<'_>) -> Access {
        if let Some(r) = a.region {
            self.region(r);
        }
        let account_ok = a.account_id.is_some_and(|acct| self.account_id(acct));
        if let Some(p) = a.profile
            && (p.get_ref().trim().is_empty() || p.get_ref().chars().any(char::is_whitespace))
        {
            self.err(
                p.span(),
                format!("profile `{}` is not a profile name", p.get_ref()),
                "name a profile of ~/.aws/config (no spaces), or remove the key to use --profile",
            );
        }
        if let Some(role) = a.role_arn {
            match role_account(role.get_ref()) {
                None => self.err(
                    role.span(),
                    format!("role_arn `{}` is not an IAM role ARN", role.get_ref()),
                    "write it like \"arn:aws:iam::123456789012:role/cutover\"",
                ),
                Some(in_role) => {
                    if let Some(acct) = a.account_id.filter(|a| account_ok && a.get_ref() != in_role) {
                        self.err(
                            acct.span(),
                            format!("account_id {} is not the account of role_arn ({in_role})", acct.get_ref()),
                            "an assumed role's credentials are in the role's account: fix one of the two, or remove account_id",
                        );
                    }
                }
            }
        }
        if let Some(x) = a.external_id {
            let v = x.get_ref();
            let chars_ok = v.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c));
            if a.role_arn.is_none() {
                self.err(
                    x.span(),
                    "external_id without role_arn",
                    "an external id is sent when assuming a role: add role_arn, or remove external_id",
                );
            } else if !(2..=1224).contains(&v.len()) || !chars_ok {
                self.err(
                    x.span(),
                    format!("external_id `{v}` is not a valid external id"),
                    "use 2–1224 letters, digits or +=,.@:/-_",
                );
            }
        }
        let get = |v: Option<&S<String>>| v.map(|v| v.get_ref().clone());
        Access {
            account_id: get(a.account_id),
            region: get(a.region),
            profile: get(a.profile),
            role_arn: get(a.role_arn),
            external_id: get(a.external_id),
        }
    }

    fn ident(&mut self, s: &S<String>, what: &str) {
        if !is_ident(s.get_ref()) {
            self.err(
                s.span(),
                format!("{what} `{}` is not a valid name", s.get_ref()),
                "use 1–64 letters, digits, `-` or `_`",
            );
        }
    }

    fn runbook(&mut self, file: &str, raw: RawRunbook) -> Runbook {
        let header = raw.runbook.get_ref();
        self.ident(&header.name, "runbook name");
        if let Some(region) = &header.region {
            self.region(region);
        }
        if let Some(acct) = &header.account_id {
            self.account_id(acct);
        }

        let mut names = Names {
            envs: raw.environments.get_ref().keys().map(|k| k.get_ref().clone()).collect(),
            lb_envs: raw
                .environments
                .get_ref()
                .iter()
                .filter(|(_, e)| e.get_ref().load_balancer.is_some() && !e.get_ref().target_groups.is_empty())
                .map(|(k, _)| k.get_ref().clone())
                .collect(),
            redis_envs: raw
                .environments
                .get_ref()
                .iter()
                .filter(|(_, e)| {
                    !e.get_ref().redis.is_empty() || e.get_ref().uses_redis.as_ref().is_some_and(|u| !u.is_empty())
                })
                .map(|(k, _)| k.get_ref().clone())
                .collect(),
            target_groups: raw
                .environments
                .get_ref()
                .iter()
                .map(|(k, e)| {
                    (k.get_ref().clone(), e.get_ref().target_groups.iter().map(|t| t.get_ref().clone()).collect())
                })
                .collect(),
            alarms: BTreeSet::new(),
            redis: BTreeSet::new(),
            elasticache: BTreeSet::new(),
            groupless_redis: {
                let envs = raw.environments.get_ref();
                let groupless: BTreeSet<&str> = envs
                    .values()
                    .flat_map(|e| &e.get_ref().redis)
                    .filter(|r| r.get_ref().security_groups.is_empty())
                    .map(|r| r.get_ref().name.get_ref().as_str())
                    .collect();
                envs.iter()
                    .map(|(k, e)| {
                        let e = e.get_ref();
                        let used: Vec<&str> = match &e.uses_redis {
                            Some(list) => list.iter().map(|r| r.get_ref().as_str()).collect(),
                            None => e.redis.iter().map(|r| r.get_ref().name.get_ref().as_str()).collect(),
                        };
                        let none: Vec<String> =
                            used.into_iter().filter(|n| groupless.contains(n)).map(str::to_string).collect();
                        (k.get_ref().clone(), none)
                    })
                    .collect()
            },
            reached_otherwise: BTreeSet::new(),
            alarm_environments: BTreeMap::new(),
        };
        names.reached_otherwise = raw
            .environments
            .get_ref()
            .iter()
            .filter(|(_, e)| {
                let a = e.get_ref().access();
                let region = |r: &S<String>| Some(r.get_ref()) != header.region.as_ref().map(|h| h.get_ref());
                a.role_arn.is_some() || a.profile.is_some() || a.external_id.is_some() || a.region.is_some_and(region)
            })
            .map(|(k, _)| k.get_ref().clone())
            .collect();
        names.alarm_environments = raw
            .alarms
            .iter()
            .filter_map(|a| {
                Some((a.get_ref().name.get_ref().clone(), a.get_ref().environment.as_ref()?.get_ref().clone()))
            })
            .collect();
        if raw.environments.get_ref().len() < 2 {
            self.err(raw.environments.span(), "a runbook needs at least two environments", "declare the side traffic leaves and the side it goes to, e.g. [environments.production] and [environments.staging]");
        }
        let mut seen_redis: BTreeMap<String, std::ops::Range<usize>> = BTreeMap::new();
        for env in raw.environments.get_ref().values() {
            for r in &env.get_ref().redis {
                let n = &r.get_ref().name;
                if seen_redis.contains_key(n.get_ref()) {
                    self.err(
                        n.span(),
                        format!("duplicate Redis endpoint name `{}`", n.get_ref()),
                        "give every redis entry a name unique in the runbook",
                    );
                } else {
                    seen_redis.insert(n.get_ref().clone(), n.span());
                }
                if r.get_ref().elasticache.is_some() {
                    names.elasticache.insert(n.get_ref().clone());
                }
            }
        }
        names.redis = seen_redis.keys().cloned().collect();
        let mut seen_alarms = BTreeSet::new();
        for a in &raw.alarms {
            let n = &a.get_ref().name;
            if !seen_alarms.insert(n.get_ref().clone()) {
                self.err(
                    n.span(),
                    format!("duplicate alarm `{}`", n.get_ref()),
                    "declare each alarm once under [[alarms]]",
                );
            }
        }
        names.alarms = seen_alarms;

        let environments = raw
            .environments
            .get_ref()
            .iter()
            .map(|(k, e)| (k.get_ref().clone(), self.environment(&names, k, e.get_ref())))
            .collect();
        let rollout = self.rollout(&names, raw.rollout.get_ref());
        self.first_step = rollout.steps.first().copied();
        if raw.rollout.get_ref().gates.is_empty() {
            // Nothing measured: every step passes on its soak time alone.
            self.err(
                raw.rollout.span(),
                "the rollout has no gates",
                "add at least one [[rollout.gates]] (healthy_targets, alarm_ok, metric, ...); without one every step \
                 passes on its soak time alone, whatever the new side answers",
            );
        }
        let dns = self.dns(&names, raw.dns.get_ref(), &rollout);
        let alarms: Vec<Alarm> = raw.alarms.iter().map(|a| self.alarm(&names, a.get_ref())).collect();
        let mut rollout = rollout;
        lengthen_default_lags(&mut rollout, &raw.rollout.get_ref().gates, &alarms);
        self.failure_limits_reachable(&rollout, &raw.rollout.get_ref().gates);
        self.sides_apart(raw.environments.get_ref(), &rollout);
        let watched = rollout.gates.iter().any(|g| gate_watches(&g.kind, &rollout.to, &environments, &alarms));
        // Said only of a rollout whose sides and gates are otherwise sound.
        let sound = rollout.from != rollout.to
            && environments.contains_key(&rollout.to)
            && environments.contains_key(&rollout.from)
            && raw.rollout.get_ref().gates.len() == rollout.gates.len();
        if !rollout.gates.is_empty() && sound && !watched {
            // Gates on the side being drained say nothing of the side taking the traffic.
            self.err(
                raw.rollout.span(),
                format!("no rollout gate measures `{}`, the side the traffic moves to", rollout.to),
                format!(
                    "add a gate on `{to}`: healthy_targets, http_health or metric with environment = \"{to}\", an \
                     alarm_ok gate on an alarm declared with environment = \"{to}\", or a compare gate",
                    to = rollout.to
                ),
            );
        }
        // Without a load balancer, its gates on ALB metrics are refused already.
        if sound && names.lb_envs.contains(&rollout.to) {
            self.load_balancer_5xx_watched(&raw.rollout.get_ref().gates, &rollout, &alarms);
        }
        let phases = self.phases(&names, &raw.phases);
        let sandbox = raw.sandbox.as_ref().map(|s| self.sandbox(&names, raw.environments.get_ref(), s));
        let parity_allow = raw.parity.as_ref().map(|p| self.parity(p.get_ref())).unwrap_or_default();
        if let Some(a) = raw.sandbox.as_ref().and_then(|s| s.get_ref().alias_records.as_ref())
            && !a.get_ref().is_empty()
            && dns.record_types.iter().any(|t| t == "CNAME")
        {
            self.err(
                a.span(),
                "alias records are of type A or AAAA; [dns] type is CNAME",
                "set [dns] type = \"A\" (or [\"A\", \"AAAA\"]) to rehearse alias records",
            );
        }

        let notify = raw.notify.as_ref().map(|n| {
            let var = &n.get_ref().webhook_url_env;
            if !is_env_var(var.get_ref()) {
                // A URL here is the secret itself: never echoed back.
                let url = var.get_ref().contains("://") || var.get_ref().contains('/');
                let what = if url { "a URL".to_string() } else { format!("`{}`", var.get_ref()) };
                let mut d = self.loc.at(
                    var.span(),
                    format!("{what} is not an environment variable name"),
                    "name the variable that holds the webhook URL (upper-case letters, digits and `_`, e.g. CUTOVER_SLACK_WEBHOOK); the URL itself is a secret and stays out of the runbook",
                );
                d.secret = url;
                self.diags.push(d);
            }
            Notify { webhook_url_env: var.get_ref().clone() }
        });

        let team = raw.team.as_ref().map(|t| {
            let t = t.get_ref();
            if let Err(e) = parse_state_url(t.state.get_ref()) {
                self.err(
                    t.state.span(),
                    &e,
                    "write it as s3://bucket/prefix (the bucket must exist; the prefix may be empty)",
                );
            }
            let lease = t.lease.as_ref().and_then(|l| self.duration(l, "lease")).unwrap_or(DEFAULT_LEASE);
            if let Some(l) = &t.lease
                && lease < std::time::Duration::from_secs(3)
            {
                self.err(
                    l.span(),
                    "lease is shorter than 3 s",
                    "give the holder time to renew it: 10s or more (default 30s)",
                );
            }
            if let Some(r) = &t.region {
                self.region(r);
            }
            Team { state: t.state.get_ref().clone(), lease, region: t.region.as_ref().map(|r| r.get_ref().clone()) }
        });

        Runbook {
            source: file.to_string(),
            name: header.name.get_ref().clone(),
            title: header.title.clone().unwrap_or_else(|| header.name.get_ref().clone()),
            description: header.description.clone().unwrap_or_default(),
            region: header.region.as_ref().map(|r| r.get_ref().clone()),
            production: header.production,
            account_id: header.account_id.as_ref().map(|a| a.get_ref().clone()),
            environments,
            dns,
            rollout,
            alarms,
            phases,
            sandbox,
            notify,
            parity_allow,
            team,
        }
    }

    fn parity(&mut self, p: &RawParity) -> Vec<ParityAllowance> {
        use crate::analysis::parity::{PATHS, is_path};
        let mut out: Vec<ParityAllowance> = Vec::new();
        // Where each kept allowance's `what` is, for errors between them.
        let mut spans = Vec::new();
        for a in &p.allow {
            let what = &a.get_ref().what;
            if !is_path(what.get_ref()) {
                // Paths of the same part (`target_group.…`) first: the likely meant ones.
                let head = what.get_ref().split('.').next().unwrap_or_default().trim_end_matches('s');
                let near: Vec<&str> = PATHS.iter().map(|(p, _)| *p).filter(|p| p.starts_with(head)).collect();
                let hint = if near.is_empty() || head.is_empty() {
                    format!("use one of {} (listed under \"Parity\" in README.md)", one_of(PATHS.map(|(p, _)| p)))
                } else {
                    format!("use one of {} (every path is listed under \"Parity\" in README.md)", one_of(near))
                };
                self.err(what.span(), format!("`{}` is not a parity path", what.get_ref()), hint);
                continue;
            }
            let reason = match &a.get_ref().reason {
                Some(r) if !r.get_ref().trim().is_empty() => r.get_ref().trim().to_string(),
                Some(r) => {
                    self.err(r.span(), "the reason is empty", "say why this difference is expected");
                    continue;
                }
                None => {
                    self.err(
                        a.span(),
                        format!("allowing `{}` needs a reason", what.get_ref()),
                        "add reason = \"…\": why the sides may differ here",
                    );
                    continue;
                }
            };
            let a = a.get_ref();
            let mut narrowed = |v: &Option<S<String>>, field: &str| -> Option<String> {
                let v = v.as_ref()?;
                let hint = format!(
                    "{} as `cutover diff` shows it, or leave `{field}` out",
                    if field == "subject" { "name the subject" } else { "give the side's value" }
                );
                if v.get_ref().trim().is_empty() {
                    self.err(v.span(), format!("`{field}` is empty"), hint);
                } else if v.get_ref().trim() != v.get_ref() {
                    // Compared exactly: it would never match, and the difference stay drift unexplained.
                    self.err(
                        v.span(),
                        format!("`{field}` has spaces at its ends, which `cutover diff` never shows"),
                        hint,
                    );
                }
                Some(v.get_ref().clone())
            };
            let allowance = ParityAllowance {
                what: what.get_ref().clone(),
                subject: narrowed(&a.subject, "subject"),
                from: narrowed(&a.from, "from"),
                to: narrowed(&a.to, "to"),
                reason,
            };
            let same = |o: &ParityAllowance| {
                (&o.what, &o.subject, &o.from, &o.to)
                    == (&allowance.what, &allowance.subject, &allowance.from, &allowance.to)
            };
            if out.iter().any(same) {
                self.err(
                    what.span(),
                    format!("`{}` is allowed twice for the same differences", what.get_ref()),
                    "allow each difference once, with one reason (`subject`, `from` and `to` narrow an allowance)",
                );
                continue;
            }
            out.push(allowance);
            spans.push(what.span());
        }
        // A whole allowance expects every difference of its path: beside it,
        // a narrowed one (which the README tells people to write) does nothing.
        for (a, span) in out.iter().zip(&spans) {
            let narrowed = a.subject.is_some() || a.from.is_some() || a.to.is_some();
            let whole =
                |o: &ParityAllowance| o.what == a.what && o.subject.is_none() && o.from.is_none() && o.to.is_none();
            if narrowed && out.iter().any(whole) {
                self.err(
                    span.clone(),
                    format!("`{}` is also allowed whole, which expects every difference of it: this narrowing changes nothing", a.what),
                    "remove the allowance without subject, from or to (the narrowed ones say what is expected), or this one",
                );
            }
        }
        out
    }

    fn environment(&mut self, names: &Names, key: &S<String>, e: &RawEnvironment) -> Environment {
        self.ident(key, "environment");
        for (i, tg) in e.target_groups.iter().enumerate() {
            self.elb_name(tg, "target group", "targetgroup");
            if e.target_groups[..i].iter().any(|t| t.get_ref() == tg.get_ref()) {
                self.err(tg.span(), format!("target group `{}` is listed twice", tg.get_ref()), "list it once");
            }
        }
        if let Some(lb) = &e.load_balancer {
            self.elb_name(lb, "load balancer", "loadbalancer");
        }
        let sel = e.instances.get_ref();
        let instances = match (&sel.tags, &sel.ids) {
            (Some(tags), None) if !tags.is_empty() => {
                // EC2's filters read `*` and `?` in a value as wildcards: a
                // side would select every instance matching, another
                // application's too, and stop or terminate them with its own.
                for (k, v) in tags.iter().filter(|(_, v)| v.contains(['*', '?'])) {
                    self.err(
                        e.instances.span(),
                        format!(
                            "the value of instance tag `{k}` (`{v}`) holds `*` or `?`, which EC2 reads as a \
                                 wildcard: it would select other instances than this environment's"
                        ),
                        "give the tag's exact value, or select the instances by `ids`",
                    );
                }
                InstanceSelector::Tags(tags.clone())
            }
            (None, Some(ids)) if !ids.is_empty() => {
                for id in ids {
                    if !id.get_ref().starts_with("i-") {
                        self.err(
                            id.span(),
                            format!("`{}` is not an instance id", id.get_ref()),
                            "instance ids look like i-0123456789abcdef0",
                        );
                    }
                }
                InstanceSelector::Ids(ids.iter().map(|i| i.get_ref().clone()).collect())
            }
            _ => {
                self.err(
                    e.instances.span(),
                    "instances must be selected by `tags` or by `ids`, exactly one of them, not empty",
                    "write instances = { tags = { Environment = \"staging\" } } or instances = { ids = [\"i-…\"] }",
                );
                InstanceSelector::Ids(Vec::new())
            }
        };
        let redis: Vec<RedisEndpoint> = e.redis.iter().map(|r| self.redis(key.get_ref(), r.get_ref())).collect();
        let uses_redis = match &e.uses_redis {
            Some(list) => list.iter().map(|r| self.redis_ref(names, r)).collect(),
            None => redis.iter().map(|r| r.name.clone()).collect(),
        };
        for (k, url) in &e.health_urls {
            if k.get_ref().is_empty() {
                self.err(k.span(), "empty instance key in health_urls", "key health URLs by instance id or Name tag");
            }
            self.http_url(url, "health URL");
        }
        if let Some(t) = &e.health_url_template {
            self.http_url(t, "health_url_template");
            let mut rest = t.get_ref().as_str();
            while let Some(start) = rest.find('{') {
                let end = rest[start..].find('}').map(|e| e + start);
                let Some(end) = end else {
                    self.err(
                        t.span(),
                        "unclosed `{` in health_url_template",
                        "close the placeholder, e.g. {instance_id}",
                    );
                    break;
                };
                let name = &rest[start + 1..end];
                if !["instance_id", "name", "private_ip"].contains(&name) {
                    self.err(
                        t.span(),
                        format!("unknown placeholder `{{{name}}}` in health_url_template"),
                        "use {instance_id}, {name} or {private_ip}",
                    );
                }
                rest = &rest[end + 1..];
            }
        }
        if let Some(tag) = &e.health_url_tag
            && tag.get_ref().trim().is_empty()
        {
            self.err(
                tag.span(),
                "health_url_tag is empty",
                format!(
                    "name the instance tag that holds the health URL, or leave it out for `{DEFAULT_HEALTH_URL_TAG}`"
                ),
            );
        }
        Environment {
            name: key.get_ref().clone(),
            label: e.label.clone().unwrap_or_else(|| key.get_ref().clone()),
            load_balancer: e.load_balancer.as_ref().map(|l| l.get_ref().clone()),
            target_groups: e.target_groups.iter().map(|t| t.get_ref().clone()).collect(),
            instances,
            redis,
            uses_redis,
            health_url_tag: e
                .health_url_tag
                .as_ref()
                .map_or_else(|| DEFAULT_HEALTH_URL_TAG.to_string(), |t| t.get_ref().clone()),
            health_urls: e.health_urls.iter().map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone())).collect(),
            health_url_template: e.health_url_template.as_ref().map(|t| t.get_ref().clone()),
            access: self.access(e.access()),
        }
    }

    fn elb_name(&mut self, s: &S<String>, what: &str, arn_part: &str) {
        let v = s.get_ref();
        if v.starts_with("arn:") {
            if !v.starts_with("arn:aws") || !v.contains(&format!(":{arn_part}/")) {
                self.err(
                    s.span(),
                    format!("`{v}` is not a {what} ARN"),
                    format!("give the {what} name, or an ARN containing `:{arn_part}/`"),
                );
            }
        } else if v.is_empty()
            || v.len() > 32
            || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || v.starts_with('-')
            || v.ends_with('-')
        {
            self.err(
                s.span(),
                format!("`{v}` is not a valid {what} name"),
                "names are 1–32 letters, digits or inner hyphens; or give the full ARN",
            );
        }
    }

    fn http_url(&mut self, s: &S<String>, what: &str) {
        let v = s.get_ref();
        if !(v.starts_with("http://") || v.starts_with("https://")) {
            self.err(
                s.span(),
                format!("{what} `{v}` is not an http(s) URL"),
                "write it like http://127.0.0.1:8080/health",
            );
        }
    }

    /// Endpoint `r`'s secrets, masked in every diagnostic at the end: a
    /// password written in its URL, and a value given where a variable's
    /// name belongs (`password_env = "hunter2"`, a URL in `url_env`), which
    /// may be the secret itself.
    fn note_redis_secrets(&mut self, r: &RawRedis) {
        if let Some(u) = r.url.as_ref().filter(|u| masked_url(u.get_ref()) != *u.get_ref()) {
            self.secrets.push((u.span(), u.get_ref().clone(), masked_url(u.get_ref())));
        }
        for var in [&r.url_env, &r.password_env, &r.sentinel_password_env].into_iter().flatten() {
            if !is_env_var(var.get_ref()) {
                self.secrets.push((var.span(), var.get_ref().clone(), "***".into()));
            }
        }
    }

    /// No diagnostic echoes a secret noted: its text is masked in the
    /// message, and its span in any excerpt that shows its line.
    fn mask_secrets(&mut self) {
        for d in &mut self.diags {
            for (span, text, masked) in &self.secrets {
                if text.is_empty() {
                    continue;
                }
                // A URL is replaced wherever it is; a value written where a
                // variable's name belongs (it may be a name used elsewhere,
                // `blue`) only in the message about it.
                d.message = match masked.as_str() {
                    "***" if d.span.as_ref() == Some(span) => d.message.replace(&format!("`{text}`"), "`***`"),
                    "***" => d.message.clone(),
                    _ => d.message.replace(text.as_str(), masked),
                };
                if d.span.as_ref() == Some(span) {
                    d.secret = true;
                } else {
                    d.hidden.push(span.clone());
                }
            }
        }
    }

    fn redis(&mut self, env: &str, r: &RawRedis) -> RedisEndpoint {
        self.note_redis_secrets(r);
        self.ident(&r.name, "Redis endpoint");
        if r.url.is_none() && r.url_env.is_none() {
            self.err(
                r.name.span(),
                format!("Redis endpoint `{}` has neither `url` nor `url_env`", r.name.get_ref()),
                "add url = \"redis://host:6379\" or url_env = \"VARIABLE_HOLDING_THE_URL\"",
            );
        }
        if let Some(url) = &r.url
            && let Some(rest) = url
                .get_ref()
                .strip_prefix("redis+sentinel://")
                .or_else(|| url.get_ref().strip_prefix("rediss+sentinel://"))
        {
            // A list of sentinels and a master name; `redis::url` reads it
            // (a layer above this one), this checks only what the runbook must not hold or lack.
            let (userinfo, rest) = rest.rsplit_once('@').map_or((None, rest), |(u, r)| (Some(u), r));
            if userinfo.and_then(|u| u.split_once(':')).is_some_and(|(_, pw)| !pw.is_empty()) {
                self.err(url.span(), "a password is written in the Redis URL", "remove it from the runbook, put it in an environment variable and name that variable in password_env");
            }
            let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
            if hosts.split(',').any(str::is_empty) || path.split('/').next().is_none_or(str::is_empty) {
                self.err(
                    url.span(),
                    format!("Redis Sentinel URL `{}` needs the sentinels and the master's name", url.get_ref()),
                    "write it like redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster/0",
                );
            }
            // Listed twice, a sentinel would count twice toward the majority
            // a copy needs.
            let mut seen = Vec::new();
            for h in hosts.split(',').filter(|h| !h.is_empty()) {
                let h = h.to_ascii_lowercase();
                let node = if h.contains(':') { h } else { format!("{h}:26379") };
                if seen.contains(&node) {
                    self.err(
                        url.span(),
                        format!("sentinel {node} is listed twice in `{}`", url.get_ref()),
                        "list each sentinel of the group once",
                    );
                    break;
                }
                seen.push(node);
            }
        } else if let Some(url) = &r.url
            && let Some(rest) = url
                .get_ref()
                .strip_prefix("redis+cluster://")
                .or_else(|| url.get_ref().strip_prefix("rediss+cluster://"))
        {
            // Nodes of a Redis Cluster; `redis::url` reads it, this checks what the runbook must not hold or lack.
            let (userinfo, rest) = rest.rsplit_once('@').map_or((None, rest), |(u, r)| (Some(u), r));
            if userinfo.and_then(|u| u.split_once(':')).is_some_and(|(_, pw)| !pw.is_empty()) {
                self.err(url.span(), "a password is written in the Redis URL", "remove it from the runbook, put it in an environment variable and name that variable in password_env");
            }
            let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
            if hosts.split(',').any(str::is_empty) || !matches!(path, "" | "0") {
                self.err(
                    url.span(),
                    format!("Redis Cluster URL `{}` needs its nodes and no database but 0", url.get_ref()),
                    "write it like redis+cluster://node-1:6379,node-2:6379",
                );
            } else if let Some(node) = hosts.split(',').find(|h| node_port(h).is_none()) {
                self.err(
                    url.span(),
                    format!("node `{node}` of Redis Cluster URL `{}` has no valid port", url.get_ref()),
                    "write each node as host:port with a port from 1 to 65535, or the host alone for 6379",
                );
            }
        } else if let Some(url) = &r.url {
            match reqwest::Url::parse(url.get_ref()) {
                Ok(u) if u.scheme() == "redis" || u.scheme() == "rediss" => {
                    if u.password().is_some() {
                        self.err(url.span(), "a password is written in the Redis URL", "remove it from the runbook, put it in an environment variable and name that variable in password_env");
                    }
                    if u.host_str().is_none_or(str::is_empty) {
                        self.err(
                            url.span(),
                            format!("Redis URL `{}` has no host", url.get_ref()),
                            "write it like redis://host:6379/0",
                        );
                    }
                }
                _ => self.err(
                    url.span(),
                    format!("`{}` is not a Redis URL", url.get_ref()),
                    "write it like redis://host:6379/0, rediss:// for TLS, redis+sentinel://sentinel:26379/mymaster/0 or redis+cluster://node-1:6379,node-2:6379",
                ),
            }
        }
        let url_port = match r.url.as_ref().map(|u| (u, url_port(u.get_ref()))) {
            Some((u, Err(ports))) if r.port.is_none() => {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                self.err(
                    u.span(),
                    format!(
                        "the nodes of `{}` listen on different ports ({}), and the security-group path is checked at one",
                        u.get_ref(),
                        ports.join(", ")
                    ),
                    "give port = the port the rules must open (on ElastiCache every node listens on the cluster's port)",
                );
                None
            }
            Some((_, Ok(p))) => p,
            _ => None,
        };
        let port = match &r.port {
            Some(p) if !(1..=65535).contains(p.get_ref()) => {
                self.err(
                    p.span(),
                    format!("port {} is outside 1–65535", p.get_ref()),
                    "give the TCP port Redis listens on in AWS, usually 6379",
                );
                6379
            }
            Some(p) => *p.get_ref() as u16,
            None => {
                // The URL in `url_env` is read at run time, and its port may be a
                // tunnel's; guessing 6379 would check (and open) the wrong rule.
                if r.url.is_none()
                    && let Some(var) = &r.url_env
                    && !r.security_groups.is_empty()
                {
                    self.err(
                        var.span(),
                        format!(
                            "Redis endpoint `{}` takes its URL from `{}` at run time, so the port its security groups must open is not known",
                            r.name.get_ref(),
                            var.get_ref()
                        ),
                        "give port = the port Redis listens on in AWS (usually 6379), or url = its URL",
                    );
                }
                url_port.unwrap_or(6379)
            }
        };
        let sentinel_url = r.url.as_ref().filter(|u| u.get_ref().contains("+sentinel://"));
        let sentinel_port = match (&r.sentinel_port, sentinel_url) {
            (Some(p), _) if !(1..=65535).contains(p.get_ref()) => {
                self.err(
                    p.span(),
                    format!("sentinel_port {} is outside 1–65535", p.get_ref()),
                    "give the TCP port the sentinels listen on, usually 26379",
                );
                None
            }
            // A url_env may hold a Sentinel URL whatever `url` says.
            (Some(p), None) if r.url.is_some() && r.url_env.is_none() => {
                self.err(
                    p.span(),
                    "sentinel_port is for a Redis Sentinel endpoint, and this endpoint's url is not one",
                    "drop sentinel_port, or name the sentinels: url = \"redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster/0\"",
                );
                None
            }
            (Some(p), _) => Some(*p.get_ref() as u16),
            (None, Some(u)) => match sentinel_ports(u.get_ref()) {
                Ok(p) => Some(p),
                Err(ports) => {
                    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                    self.err(
                        u.span(),
                        format!(
                            "the sentinels of `{}` listen on different ports ({}), and the security-group path to them is checked at one",
                            u.get_ref(),
                            ports.join(", ")
                        ),
                        "give sentinel_port = the port the rules must open to the sentinels",
                    );
                    None
                }
            },
            (None, None) => None,
        };
        if let Some(var) = &r.sentinel_password_env
            && r.url.as_ref().is_some_and(|u| !u.get_ref().contains("+sentinel://"))
        {
            self.err(
                var.span(),
                "sentinel_password_env is for a Redis Sentinel URL, and this endpoint's url is not one",
                "drop sentinel_password_env, or name the sentinels: url = \"redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster/0\"",
            );
        }
        for var in [&r.url_env, &r.password_env, &r.sentinel_password_env].into_iter().flatten() {
            if !is_env_var(var.get_ref()) {
                self.err(
                    var.span(),
                    format!("`{}` is not an environment variable name", var.get_ref()),
                    "name the variable that holds it (upper-case letters, digits and `_`, e.g. \
                     STAGING_REDIS_PASSWORD); a password or URL itself is a secret and stays out of the runbook",
                );
            }
        }
        for sg in &r.security_groups {
            if sg.get_ref().trim().is_empty() {
                self.err(sg.span(), "empty security group", "give a security-group id (sg-…) or name");
            }
        }
        if let Some(g) = &r.elasticache {
            // ElastiCache: 1–40 letters, digits or hyphens, starting with a letter.
            let id = g.get_ref();
            let ok = (1..=40).contains(&id.len())
                && id.starts_with(|c: char| c.is_ascii_alphabetic())
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                self.err(
                    g.span(),
                    format!("`{id}` is not an ElastiCache replication group id"),
                    "give the replication group's id: 1–40 letters, digits or hyphens, starting with a letter",
                );
            }
        }
        RedisEndpoint {
            elasticache: r.elasticache.as_ref().map(|g| g.get_ref().clone()),
            name: r.name.get_ref().clone(),
            environment: env.to_string(),
            url: r.url.as_ref().map(|u| u.get_ref().clone()),
            url_env: r.url_env.as_ref().map(|u| u.get_ref().clone()),
            password_env: r.password_env.as_ref().map(|p| p.get_ref().clone()),
            sentinel_password_env: r.sentinel_password_env.as_ref().map(|p| p.get_ref().clone()),
            port,
            sentinel_port,
            security_groups: r.security_groups.iter().map(|s| s.get_ref().clone()).collect(),
        }
    }

    fn dns(&mut self, names: &Names, d: &RawDns, rollout: &Rollout) -> Dns {
        let zone = d.zone.get_ref();
        let record = d.record.get_ref();
        let zone_is_id = zone.starts_with("/hostedzone/") || (zone.starts_with('Z') && !zone.contains('.'));
        if zone.is_empty() {
            self.err(d.zone.span(), "zone is empty", "give the hosted zone's name (example.com) or id (Z…)");
        }
        // A zone given by id says nothing of its name: a record without a dot is
        // a name relative to it, which Route53 (and a certificate) never matches.
        if zone_is_id && !trim_dot(record).contains('.') {
            self.err(
                d.record.span(),
                format!("record `{record}` is not a full name"),
                "give the record's full name, like www.example.com",
            );
        }
        if !zone_is_id && !zone.is_empty() {
            let (r, z) = (trim_dot(record).to_ascii_lowercase(), trim_dot(zone).to_ascii_lowercase());
            if !(r == z || r.ends_with(&format!(".{z}"))) {
                self.err(
                    d.record.span(),
                    format!("record `{record}` is not in zone `{zone}`"),
                    format!("use a name ending in .{}", trim_dot(zone)),
                );
            }
        }
        let types: Vec<String> = match d.record_type.get_ref() {
            toml::Value::String(t) => vec![t.clone()],
            toml::Value::Array(a) if a.iter().all(|v| v.is_str()) => {
                a.iter().filter_map(|v| v.as_str()).map(str::to_string).collect()
            }
            other => {
                self.err(
                    d.record_type.span(),
                    format!("type must be a record type or a list of them, not {}", other.type_str()),
                    "use type = \"A\", or type = [\"A\", \"AAAA\"] for a dual-stack group",
                );
                vec!["A".into()]
            }
        };
        let mut record_types: Vec<String> = Vec::new();
        for t in &types {
            let up = t.to_ascii_uppercase();
            if !["A", "AAAA", "CNAME"].contains(&up.as_str()) {
                self.err(d.record_type.span(), format!("record type `{t}` is not supported"), "use A, AAAA or CNAME");
            } else if record_types.contains(&up) {
                self.err(d.record_type.span(), format!("record type `{t}` is listed twice"), "list each type once");
            } else {
                record_types.push(up);
            }
        }
        if types.is_empty() {
            self.err(d.record_type.span(), "type lists no record type", "use type = \"A\" or [\"A\", \"AAAA\"]");
        }
        if record_types.len() > 1 && record_types.iter().any(|t| t == "CNAME") {
            self.err(
                d.record_type.span(),
                "CNAME cannot be grouped with other types (a name with a CNAME has no other record)",
                "use type = \"CNAME\" alone, or [\"A\", \"AAAA\"]",
            );
        }
        let rtype = record_types.first().cloned().unwrap_or_else(|| "A".into());
        let ttl = *d.ttl.get_ref();
        if !(0..=2_147_483_647).contains(&ttl) {
            self.err(
                d.ttl.span(),
                format!("ttl {ttl} is out of range"),
                "give seconds from 0 to 2147483647 (60 is usual during a cutover)",
            );
        }
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        let mut in_file_order: Vec<_> = d.set_identifiers.get_ref().iter().collect();
        in_file_order.sort_by_key(|(_, id)| id.span().start);
        for (env, id) in in_file_order {
            self.env_ref(names, env);
            let v = id.get_ref();
            if v.is_empty() || v.len() > 128 {
                self.err(
                    id.span(),
                    format!("set identifier `{v}` must be 1–128 characters"),
                    "give each weighted record a short unique identifier",
                );
            }
            if let Some(other) = seen.insert(v, env.get_ref()) {
                self.err(
                    id.span(),
                    format!("duplicate set identifier `{v}` (environment `{other}` uses it too)"),
                    "give each environment's record its own set identifier",
                );
            }
        }
        for side in [&rollout.from, &rollout.to] {
            if names.envs.contains(side) && !d.set_identifiers.get_ref().keys().any(|k| k.get_ref() == side) {
                self.err(
                    d.set_identifiers.span(),
                    format!("environment `{side}` takes part in the rollout but has no set identifier"),
                    format!("add {side} = \"…\" under [dns.set_identifiers]"),
                );
            }
        }
        let mut initial_weights = BTreeMap::new();
        if let Some(w) = &d.initial_weights {
            for (env, weight) in w.get_ref() {
                let name = self.env_ref(names, env);
                let value = *weight.get_ref();
                if !(0..=255).contains(&value) {
                    self.err(
                        weight.span(),
                        format!("weight {value} is outside 0–255"),
                        "Route53 weights are integers from 0 to 255",
                    );
                } else {
                    initial_weights.insert(name, value as u8);
                }
                if names.envs.contains(env.get_ref())
                    && !d.set_identifiers.get_ref().keys().any(|k| k.get_ref() == env.get_ref())
                {
                    self.err(
                        env.span(),
                        format!("environment `{}` has an initial weight but no set identifier", env.get_ref()),
                        "add it under [dns.set_identifiers] or remove its weight",
                    );
                }
            }
            for env in d.set_identifiers.get_ref().keys() {
                if !w.get_ref().keys().any(|k| k.get_ref() == env.get_ref()) {
                    self.err(
                        w.span(),
                        format!("environment `{}` has a set identifier but no initial weight", env.get_ref()),
                        format!("add {} = <0–255> to initial_weights (the weights abort returns to)", env.get_ref()),
                    );
                }
            }
            // The steps move weight between `from` and `to` only: a third
            // record with weight keeps its share, so "100%" would be a split.
            for (env, weight) in w.get_ref() {
                let third = env.get_ref() != &rollout.from && env.get_ref() != &rollout.to;
                if third && *weight.get_ref() > 0 && (0..=255).contains(weight.get_ref()) {
                    self.err(
                        weight.span(),
                        format!(
                            "`{}` keeps weight {} through the rollout, which moves weight between `{}` and `{}` \
                             only: its last step would give `{}` less than 100% of the traffic",
                            env.get_ref(),
                            weight.get_ref(),
                            rollout.from,
                            rollout.to,
                            rollout.to
                        ),
                        format!("give {} = 0 (shift its traffic away first), or leave its record out", env.get_ref()),
                    );
                }
            }
            // What an abort returns to must give the new side less than the
            // first step: else an abort in step 1 would raise its share (and
            // the rollback guard refuse it when it is needed).
            if let (Some(&f), Some(&t), Some(&first)) =
                (initial_weights.get(&rollout.from), initial_weights.get(&rollout.to), rollout.steps.first())
                && rollout.from != rollout.to
            {
                let share = crate::analysis::weights::shares(&[f, t])[1] * 100.0;
                // In integers (t/total ≥ first%; 0/0 is an equal split).
                let (to, total) = match u32::from(f) + u32::from(t) {
                    0 => (1, 2),
                    total => (u32::from(t), total),
                };
                if to * 100 >= u32::from(first) * total {
                    self.err(
                        w.span(),
                        format!(
                            "the initial weights give `{}` {share:.1}% of the traffic, not less than the first step's {first}%",
                            rollout.to
                        ),
                        format!(
                            "they are what an abort returns to: give `{}` a smaller share (e.g. {} = 100, {} = 0); all weights 0 is an equal split to Route53",
                            rollout.to, rollout.from, rollout.to
                        ),
                    );
                }
            }
        } else {
            initial_weights.insert(rollout.from.clone(), 100);
            initial_weights.insert(rollout.to.clone(), 0);
        }
        Dns {
            zone: zone.clone(),
            record: record.clone(),
            record_type: rtype,
            record_types,
            ttl: ttl.clamp(0, i64::from(u32::MAX)) as u32,
            set_identifiers: d
                .set_identifiers
                .get_ref()
                .iter()
                .map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone()))
                .collect(),
            initial_weights,
            access: self.access(d.access()),
        }
    }

    fn rollout(&mut self, names: &Names, r: &RawRollout) -> Rollout {
        let from = self.env_ref(names, &r.from);
        let to = self.env_ref(names, &r.to);
        if from == to {
            self.err(
                r.to.span(),
                "rollout `from` and `to` are the same environment",
                "traffic must move from one environment to another",
            );
        }
        let mut steps = Vec::new();
        let mut prev: Option<i64> = None;
        for s in r.steps.get_ref() {
            let v = *s.get_ref();
            if !(1..=100).contains(&v) {
                self.err(
                    s.span(),
                    format!("step {v} is outside 1–100"),
                    "steps are the percent of traffic on the `to` side, from 1 to 100",
                );
            } else if prev.is_some_and(|p| v <= p) {
                self.err(
                    s.span(),
                    format!("step {v} does not increase on the step before it ({})", prev.unwrap_or_default()),
                    "list steps in increasing order, e.g. [10, 25, 50, 100]",
                );
            } else {
                steps.push(v as u8);
            }
            prev = Some(v);
        }
        match r.steps.get_ref().last() {
            None => self.err(
                r.steps.span(),
                "rollout has no steps",
                "give steps ending at 100, e.g. steps = [10, 25, 50, 100]",
            ),
            Some(last) if (1..=100).contains(last.get_ref()) && *last.get_ref() != 100 => self.err(
                last.span(),
                format!("steps end at {} instead of 100", last.get_ref()),
                "end the steps with 100 so the rollout completes the cutover",
            ),
            _ => {}
        }
        let soak = self.duration(&r.soak, "soak").unwrap_or_default();
        if soak.is_zero() && parse_duration(r.soak.get_ref()).is_ok() {
            // Every gate would pass its step on the first reading after the shift.
            self.err(
                r.soak.span(),
                "soak is 0",
                "give how long each step must hold before the next, e.g. 5m; a soak of 0 passes every step on its \
                 first reading",
            );
        }
        let second = Duration::from_secs(1);
        if !soak.is_zero() && soak < second {
            self.err(
                r.soak.span(),
                format!("soak {} is under a second", r.soak.get_ref()),
                "give how long each step must hold before the next, e.g. 5m; a soak under a second passes every \
                 step on its first reading",
            );
        }
        let bake = r.bake.as_ref().and_then(|b| self.duration(b, "bake")).unwrap_or_default();
        if let Some(b) = &r.bake
            && !bake.is_zero()
            && bake < soak
        {
            self.err(
                b.span(),
                "bake is shorter than the soak",
                "the bake is how long the last step holds; make it at least the soak, or leave it out",
            );
        }
        let gate_interval = match &r.gate_interval {
            Some(g) => self.duration(g, "gate_interval").unwrap_or(Duration::from_secs(30)),
            None => Duration::from_secs(30),
        };
        if gate_interval.is_zero() {
            self.err(
                r.gate_interval.as_ref().map_or(r.soak.span(), |g| g.span()),
                "gate_interval is zero",
                "give a positive interval such as 30s",
            );
        } else if let Some(g) = &r.gate_interval
            && gate_interval < second
        {
            // Alarms are polled as often as the gates measure: every
            // millisecond would spend the account's CloudWatch quota.
            self.err(
                g.span(),
                format!("gate_interval {} is under a second", g.get_ref()),
                "give an interval of a second or more, such as 30s: the alarms are read that often",
            );
        }
        // The alarm_ok gates measured at gate_interval (see `gate`).
        if let Some(g) = &r.gate_interval
            && gate_interval > ALARM_EVALUATED_EVERY
            && r.gates.iter().any(|x| x.get_ref().kind.get_ref() == "alarm_ok" && x.get_ref().interval.is_none())
        {
            self.err(
                g.span(),
                format!(
                    "gate_interval {} is longer than a minute, and an alarm_ok gate is measured at it: CloudWatch \
                     evaluates an alarm every minute, so an ALARM lasting a minute between two readings would never \
                     be seen",
                    g.get_ref()
                ),
                "measure alarm_ok gates at least once a minute: gate_interval = \"30s\", or an interval of their own",
            );
        }
        for g in r.gates.iter().filter(|g| g.get_ref().kind.get_ref() == "compare") {
            for side in [&from, &to] {
                if names.envs.contains(side) && !names.lb_envs.contains(side) {
                    self.err(g.get_ref().kind.span(), format!("`compare` needs ALB metrics from both rollout sides, but environment `{side}` has no load balancer"), "use a `metric` gate on the side that has one instead");
                }
                if let Some(m) = &g.get_ref().metric
                    && let Some(metric) = Metric::from_cloudwatch_name(m.get_ref())
                {
                    self.one_target_group(names, side, metric, m.span());
                }
            }
        }
        let gates = r.gates.iter().filter_map(|g| self.gate(names, g.get_ref(), gate_interval)).collect();
        Rollout { from, to, steps, soak, bake, gate_interval, gates }
    }

    /// A gate whose `failure_limit` is more than the readings it takes in a
    /// step (the soak, and the wait past it for data covering the soak's
    /// end) could never fail one: its failures would only delay the step,
    /// which passes on its next pass.
    fn failure_limits_reachable(&mut self, rollout: &Rollout, raw_gates: &[S<RawGate>]) {
        if raw_gates.len() != rollout.gates.len() || rollout.soak.is_zero() {
            return;
        }
        for (g, raw) in rollout.gates.iter().zip(raw_gates) {
            let Some(limit) = &raw.get_ref().failure_limit else { continue };
            let past = g.settle().unwrap_or_default();
            let readings = ((rollout.soak + past).as_millis() / g.interval.as_millis().max(1)) as u64 + 1;
            if u64::from(g.failure_limit) > readings {
                let fmt = crate::runbook::duration::format_duration;
                let waits = if past.is_zero() { String::new() } else { format!(" and up to {} past it", fmt(past)) };
                self.err(
                    limit.span(),
                    format!(
                        "failure_limit {} is more than the {readings} readings this gate takes in a step (every {} \
                         over a soak of {}{waits}), so it could never fail one",
                        g.failure_limit,
                        fmt(g.interval),
                        fmt(rollout.soak)
                    ),
                    format!("give at most {readings}, or a longer soak or a shorter interval"),
                );
            }
        }
    }

    fn metric(&mut self, m: &S<String>) -> Metric {
        Metric::from_cloudwatch_name(m.get_ref()).unwrap_or_else(|| {
            self.err(
                m.span(),
                format!("unknown metric `{}`", m.get_ref()),
                format!("use one of {}", one_of(Metric::ALL.map(|m| m.cloudwatch_name()))),
            );
            Metric::RequestCount
        })
    }

    /// A metric or compare gate reads one target group's series (all but
    /// the load balancer's own 5xx are per target group): with several
    /// listed, errors on the others would go unseen.
    fn one_target_group(&mut self, names: &Names, env: &str, metric: Metric, span: std::ops::Range<usize>) {
        let groups = names.target_groups.get(env).map(Vec::as_slice).unwrap_or_default();
        if metric != Metric::Elb5xx && groups.len() > 1 {
            self.err(
                span,
                format!(
                    "{} is read per target group, and environment `{env}` lists {} ({}): a gate on it reads only \
                     the first, so the others' errors would go unseen",
                    metric.cloudwatch_name(),
                    groups.len(),
                    groups.join(", ")
                ),
                "list the one target group that serves the traffic, or gate on HTTPCode_ELB_5XX_Count, which the \
                 load balancer publishes for all of them",
            );
        }
    }

    /// HealthyHostCount held under a `max` passes on no healthy host at all.
    fn no_healthy_host_bound(&mut self, metric: Metric, kind: &str, span: std::ops::Range<usize>) {
        if metric == Metric::HealthyHostCount {
            self.err(
                span,
                format!("a {kind} gate holds its metric under a bound, and HealthyHostCount at 0 would pass it"),
                "gate on healthy targets instead: kind = \"healthy_targets\" with environment and min",
            );
        }
    }

    fn stat(&mut self, s: Option<&S<String>>, default: Stat) -> Stat {
        let Some(s) = s else { return default };
        Stat::parse(s.get_ref()).unwrap_or_else(|| {
            self.err(
                s.span(),
                format!("unknown statistic `{}`", s.get_ref()),
                "use Sum, Average, Minimum, Maximum, SampleCount or a percentile such as p99",
            );
            default
        })
    }

    /// A rollout bounding the `to` side's HTTPCode_Target_5XX_Count must
    /// bound its HTTPCode_ELB_5XX_Count too: the 5xx its load balancer
    /// answers itself (502 when a target closes the connection, 503 with no
    /// target in service, 504 when one times out) are never in the target
    /// count, so the 5xx gate passes while clients get them. `gates` and
    /// `rollout.gates` are the same gates, raw and read.
    fn load_balancer_5xx_watched(&mut self, gates: &[S<RawGate>], rollout: &Rollout, alarms: &[Alarm]) {
        let to = rollout.to.as_str();
        let bounds = |g: &GateKind, m: Metric| match g {
            GateKind::Metric { environment, metric, .. } => environment == to && *metric == m,
            GateKind::Compare { metric, .. } => *metric == m,
            // An alarm the gate's composite follows only with another in
            // ALARM too bounds nothing alone.
            GateKind::AlarmOk { alarms: names, .. } => names.iter().any(|n| {
                crate::runbook::alarms_setting_off(alarms, n)
                    .iter()
                    .any(|a| a.rule.is_none() && a.metric == m && a.environment.as_deref() == Some(to))
            }),
            _ => false,
        };
        if rollout.gates.iter().any(|g| bounds(&g.kind, Metric::Elb5xx)) {
            return;
        }
        let target_gate = gates.iter().zip(&rollout.gates).find(|(_, g)| {
            matches!(g.kind, GateKind::Metric { .. } | GateKind::Compare { .. }) && bounds(&g.kind, Metric::Target5xx)
        });
        let Some((raw, gate)) = target_gate else { return };
        let span = raw.get_ref().metric.as_ref().map_or(raw.span(), |m| m.span());
        let (kind, metric_gate) = match gate.kind {
            GateKind::Compare { .. } => ("compare", ""),
            _ => ("metric", ", max = 0 and no_data = \"pass\" (an ALB publishes none while it answers no 5xx)"),
        };
        self.err(
            span,
            format!(
                "the rollout bounds the 5xx of `{to}`'s targets but not those its load balancer answers itself: a \
                 502 (a target closed the connection), 503 (no target in service) or 504 (a target timed out) is \
                 never in HTTPCode_Target_5XX_Count, so this gate passes while clients get them"
            ),
            format!(
                "add a gate on HTTPCode_ELB_5XX_Count: a {kind} gate like this one with metric = \
                 \"HTTPCode_ELB_5XX_Count\"{metric_gate}, or an alarm_ok gate on an alarm declared with metric = \
                 \"HTTPCode_ELB_5XX_Count\" and environment = \"{to}\""
            ),
        );
    }

    /// An ALB's counts (5xx, requests) are worth only their Sum: AWS
    /// documents their Minimum, Maximum and Average as 1 whatever the count,
    /// so a bound on those passes at any number of errors.
    fn counts_summed(&mut self, metric: Option<Metric>, stat: Stat, s: Option<&S<String>>, compare: bool) {
        let Some(m) = metric.filter(|m| matches!(m, Metric::Target5xx | Metric::Elb5xx | Metric::RequestCount)) else {
            return;
        };
        let Some(s) = s.filter(|_| stat != Stat::Sum) else { return };
        let what = if compare {
            // A compare gate divides the counts' sums whatever `stat` says.
            format!(
                "{} is a count: a compare gate reads its Sum per request whatever `stat` says, not its {}",
                m.cloudwatch_name(),
                stat.cloudwatch_name()
            )
        } else {
            format!(
                "{} is a count: its {} is 1 (or the number of datapoints) whatever the number of requests, so a \
                 bound on it passes at any volume",
                m.cloudwatch_name(),
                stat.cloudwatch_name()
            )
        };
        self.err(s.span(), what, "use stat = \"Sum\" (the default), or leave stat out");
    }

    /// A TargetResponseTime summed adds every request's seconds together: it
    /// grows with traffic and bounds no request's latency.
    fn no_summed_latency(
        &mut self,
        metric: Option<Metric>,
        stat: Stat,
        s: Option<&S<String>>,
        metric_span: Option<std::ops::Range<usize>>,
    ) {
        if metric != Some(Metric::TargetResponseTime) || stat != Stat::Sum {
            return;
        }
        let Some(span) = s.map(|s| s.span()).or(metric_span) else { return };
        self.err(
            span,
            "TargetResponseTime summed (the default statistic) adds every request's seconds together: it grows with \
             traffic and bounds no request's latency"
                .to_string(),
            "give a statistic of one request's time: stat = \"p99\" (or \"Average\", \"Maximum\")",
        );
    }

    /// A gate bounds its statistic from above over the whole soak: a
    /// Minimum (or a percentile under the median) is the fastest requests
    /// or the best minute, so the bound passes while most are over it.
    fn no_lowest_stat(&mut self, metric: Option<Metric>, stat: Stat, s: Option<&S<String>>) {
        let Some(s) = s else { return };
        let low = match stat {
            Stat::Minimum => true,
            Stat::Percentile(p) => p < 50.0,
            _ => false,
        };
        if !low {
            return;
        }
        let name = metric.map_or("the metric", |m| m.cloudwatch_name());
        self.err(
            s.span(),
            format!(
                "a gate holds {name}'s {} under its bound over the whole soak: that is its lowest values, so the \
                 gate passes while most of them are over it",
                stat.cloudwatch_name()
            ),
            "bound what most requests see or the worst of them: stat = \"p99\", \"Average\" or \"Maximum\"",
        );
    }

    /// Reports each present field that the given kind does not take.
    fn forbid(&mut self, kind: &str, what: &str, present: &[(&str, Option<std::ops::Range<usize>>)], allowed: &[&str]) {
        for (name, span) in present {
            if let Some(span) = span
                && !allowed.contains(name)
            {
                let takes = if allowed.is_empty() { "no parameters".to_string() } else { one_of(allowed) };
                self.err(
                    span.clone(),
                    format!("`{name}` does not apply to a `{kind}` {what}"),
                    format!("remove it; a `{kind}` {what} takes {takes}"),
                );
            }
        }
    }

    fn require<'v, T>(
        &mut self,
        v: Option<&'v S<T>>,
        name: &str,
        kind: &str,
        at: std::ops::Range<usize>,
        example: &str,
    ) -> Option<&'v S<T>> {
        if v.is_none() {
            self.err(at, format!("`{kind}` needs `{name}`"), format!("add {name} = {example}"));
        }
        v
    }

    fn gate(&mut self, names: &Names, g: &RawGate, default_interval: Duration) -> Option<Gate> {
        let kind = g.kind.get_ref().as_str();
        let at = g.kind.span();
        let present = [
            ("environment", g.environment.as_ref().map(|x| x.span())),
            ("redis", g.redis.as_ref().map(|x| x.span())),
            ("min_hit_rate", g.min_hit_rate.as_ref().map(|x| x.span())),
            ("min_lookups", g.min_lookups.as_ref().map(|x| x.span())),
            ("alarms", g.alarms.as_ref().and_then(|a| a.first()).map(|x| x.span())),
            ("min", g.min.as_ref().map(|x| x.span())),
            ("metric", g.metric.as_ref().map(|x| x.span())),
            ("stat", g.stat.as_ref().map(|x| x.span())),
            ("max", g.max.as_ref().map(|x| x.span())),
            ("factor", g.factor.as_ref().map(|x| x.span())),
            ("min_requests", g.min_requests.as_ref().map(|x| x.span())),
            ("insufficient_data", g.insufficient_data.as_ref().map(|x| x.span())),
            ("settle", g.settle.as_ref().map(|x| x.span())),
            ("lag", g.lag.as_ref().map(|x| x.span())),
        ];
        let kind_value = match kind {
            "alarm_ok" => {
                self.forbid(kind, "gate", &present, &["alarms", "insufficient_data", "lag"]);
                let alarms: Vec<String> = g
                    .alarms
                    .iter()
                    .flatten()
                    .map(|a| {
                        if !names.alarms.contains(a.get_ref()) {
                            self.err(
                                a.span(),
                                format!("gate names unknown alarm `{}`", a.get_ref()),
                                format!("declare it under [[alarms]] or use one of {}", one_of(&names.alarms)),
                            );
                        }
                        a.get_ref().clone()
                    })
                    .collect();
                if alarms.is_empty() {
                    self.err(
                        at,
                        "`alarm_ok` gate names no alarms",
                        "add alarms = [\"name\", …] naming alarms declared under [[alarms]]",
                    );
                }
                let insufficient_data = match g.insufficient_data.as_ref().map(|n| (n, n.get_ref().as_str())) {
                    None | Some((_, "wait")) => InsufficientData::Wait,
                    Some((_, "pass")) => InsufficientData::Pass,
                    Some((_, "fail")) => InsufficientData::Fail,
                    Some((n, other)) => {
                        self.err(
                            n.span(),
                            format!("unknown insufficient_data choice `{other}`"),
                            "use wait (no data: the gate's no_data policy decides), pass or fail",
                        );
                        InsufficientData::Wait
                    }
                };
                let lag = match g.lag.as_ref().map(|l| (l, self.duration(l, "lag"))) {
                    None => DEFAULT_ALARM_LAG,
                    Some((_, None)) => DEFAULT_ALARM_LAG,
                    Some((l, Some(d))) if d.is_zero() || d > Duration::from_secs(3600) => {
                        self.err(
                            l.span(),
                            format!("lag {} is out of range", l.get_ref()),
                            "give how late the alarms judge a request, from 1s to 1h (default 4m: ALB datapoints \
                             arrive 1–3 minutes late and CloudWatch evaluates alarms once a minute); 0 would pass a \
                             step on states that have not judged its last minutes",
                        );
                        DEFAULT_ALARM_LAG
                    }
                    Some((_, Some(d))) => d,
                };
                GateKind::AlarmOk { alarms, insufficient_data, lag }
            }
            "healthy_targets" => {
                self.forbid(kind, "gate", &present, &["environment", "min"]);
                if let Some(e) = &g.environment {
                    self.needs(names, e, kind, true);
                }
                let env = self
                    .require(g.environment.as_ref(), "environment", kind, at.clone(), &env_example(names))
                    .map(|e| self.env_ref(names, e));
                let min = self.require(g.min.as_ref(), "min", kind, at, "2").map(|m| {
                    if *m.get_ref() < 1 || *m.get_ref() > 10_000 {
                        self.err(
                            m.span(),
                            format!("min {} is out of range", m.get_ref()),
                            "give at least 1 healthy target",
                        );
                    }
                    m.get_ref().clamp(&0, &10_000).to_owned() as u32
                });
                GateKind::HealthyTargets { environment: env?, min: min? }
            }
            "http_health" | "redis_reachable" => {
                self.forbid(kind, "gate", &present, &["environment"]);
                if let (Some(e), "redis_reachable") = (&g.environment, kind) {
                    self.needs(names, e, kind, false);
                }
                let env = self
                    .require(g.environment.as_ref(), "environment", kind, at, &env_example(names))
                    .map(|e| self.env_ref(names, e))?;
                if kind == "http_health" {
                    GateKind::HttpHealth { environment: env }
                } else {
                    GateKind::RedisReachable { environment: env }
                }
            }
            "redis_hit_rate" => {
                self.forbid(kind, "gate", &present, &["redis", "min_hit_rate", "min_lookups"]);
                let (redis, min_percent, min_lookups) =
                    self.hit_rate(names, kind, g.redis.as_ref(), g.min_hit_rate.as_ref(), g.min_lookups.as_ref(), at);
                GateKind::RedisHitRate { redis: redis?, min_percent: min_percent?, min_lookups: min_lookups? }
            }
            "metric" => {
                self.forbid(
                    kind,
                    "gate",
                    &present,
                    &["environment", "metric", "stat", "max", "min_requests", "settle"],
                );
                if let Some(e) = &g.environment {
                    self.needs(names, e, kind, true);
                }
                let env = self
                    .require(g.environment.as_ref(), "environment", kind, at.clone(), &env_example(names))
                    .map(|e| self.env_ref(names, e));
                let metric = self
                    .require(g.metric.as_ref(), "metric", kind, at.clone(), "\"HTTPCode_Target_5XX_Count\"")
                    .map(|m| self.metric(m));
                let stat = self.stat(g.stat.as_ref(), Stat::Sum);
                self.no_summed_latency(metric, stat, g.stat.as_ref(), g.metric.as_ref().map(|m| m.span()));
                self.counts_summed(metric, stat, g.stat.as_ref(), false);
                self.no_lowest_stat(metric, stat, g.stat.as_ref());
                let max = self.require(g.max.as_ref(), "max", kind, at, "0").map(|m| {
                    if !m.get_ref().is_finite() || *m.get_ref() < 0.0 {
                        self.err(
                            m.span(),
                            format!("max {} must be a number ≥ 0", m.get_ref()),
                            "give the highest acceptable value",
                        );
                    }
                    *m.get_ref()
                });
                let min_requests = g.min_requests.as_ref().and_then(|n| {
                    if !matches!(stat, Stat::Percentile(_)) {
                        self.err(
                            n.span(),
                            format!("`min_requests` applies to a percentile, not to {}", stat.cloudwatch_name()),
                            "remove it, or use a percentile such as stat = \"p99\"",
                        );
                        None
                    } else if !(1..=1_000_000_000).contains(n.get_ref()) {
                        self.err(
                            n.span(),
                            format!("min_requests {} is out of range", n.get_ref()),
                            "give a count of requests from 1 up",
                        );
                        None
                    } else {
                        Some(*n.get_ref() as u64)
                    }
                });
                if let (Some(e), Some(m), Some(span)) = (&env, metric, g.metric.as_ref().map(|m| m.span())) {
                    self.one_target_group(names, e, m, span.clone());
                    self.no_healthy_host_bound(m, kind, span);
                }
                if let (Some(Metric::TargetResponseTime), Some(m)) = (metric, g.max.as_ref())
                    && !matches!(stat, Stat::SampleCount | Stat::Sum)
                    && *m.get_ref() > MAX_RESPONSE_SECONDS
                {
                    // Milliseconds read as seconds: a bound no request reaches passes every step.
                    self.err(
                        m.span(),
                        format!("max {} is {} seconds: TargetResponseTime is in seconds", m.get_ref(), m.get_ref()),
                        format!(
                            "give the bound in seconds (100 ms is 0.1); above {MAX_RESPONSE_SECONDS} s (an ALB's \
                             default idle timeout) it is refused as a figure in milliseconds"
                        ),
                    );
                }
                GateKind::Metric { environment: env?, metric: metric?, stat, max: max?, min_requests }
            }
            "compare" => {
                self.forbid(kind, "gate", &present, &["metric", "stat", "factor", "min_requests", "settle"]);
                let metric = self
                    .require(g.metric.as_ref(), "metric", kind, at.clone(), "\"HTTPCode_Target_5XX_Count\"")
                    .map(|m| self.metric(m));
                let stat = self.stat(g.stat.as_ref(), Stat::Sum);
                self.no_summed_latency(metric, stat, g.stat.as_ref(), g.metric.as_ref().map(|m| m.span()));
                self.counts_summed(metric, stat, g.stat.as_ref(), true);
                self.no_lowest_stat(metric, stat, g.stat.as_ref());
                let factor = self.require(g.factor.as_ref(), "factor", kind, at, "1.5").map(|f| {
                    if !f.get_ref().is_finite() || *f.get_ref() <= 0.0 {
                        self.err(
                            f.span(),
                            format!("factor {} must be a number > 0", f.get_ref()),
                            "e.g. 1.5 allows the new side 1.5× the old side's rate",
                        );
                    }
                    *f.get_ref()
                });
                if let (Some(m), Some(span)) = (metric, g.metric.as_ref().map(|m| m.span())) {
                    self.no_healthy_host_bound(m, kind, span);
                }
                let min_requests = g.min_requests.as_ref().and_then(|n| {
                    if (1..=1_000_000_000).contains(n.get_ref()) {
                        Some(*n.get_ref() as u64)
                    } else {
                        self.err(
                            n.span(),
                            format!("min_requests {} is out of range", n.get_ref()),
                            "give a count of requests from 1 up",
                        );
                        None
                    }
                });
                GateKind::Compare { metric: metric?, stat, factor: factor?, min_requests }
            }
            other => {
                self.err(at, format!("unknown gate kind `{other}`"), format!("use one of {}", one_of(GATES)));
                return None;
            }
        };
        let interval = match &g.interval {
            Some(i) => self.duration(i, "interval").unwrap_or(default_interval),
            None => default_interval,
        };
        let count = |v: &mut Self, f: &Option<S<i64>>, default: u32, name: &str| -> u32 {
            match f {
                None => default,
                Some(x) if (1..=1000).contains(x.get_ref()) => *x.get_ref() as u32,
                Some(x) => {
                    v.err(
                        x.span(),
                        format!("{name} {} is out of range", x.get_ref()),
                        format!("give a count from 1 to 1000 (default {default})"),
                    );
                    default
                }
            }
        };
        let failure_limit = count(self, &g.failure_limit, 1, "failure_limit");
        let consecutive_error_limit = count(self, &g.consecutive_error_limit, 3, "consecutive_error_limit");
        let no_data = match g.no_data.as_ref().map(|n| (n, n.get_ref().as_str())) {
            None => NoDataPolicy::Pause,
            Some((_, "fail")) => NoDataPolicy::Fail,
            Some((_, "pause")) => NoDataPolicy::Pause,
            Some((_, "pass")) => NoDataPolicy::Pass,
            Some((n, other)) => {
                self.err(n.span(), format!("unknown no_data policy `{other}`"), "use fail, pause or pass");
                NoDataPolicy::Pause
            }
        };
        if let Some(i) = &g.interval
            && interval.is_zero()
        {
            self.err(i.span(), "interval is zero", "give a positive interval such as 30s");
        } else if let Some(i) = &g.interval
            && interval < Duration::from_secs(1)
        {
            self.err(
                i.span(),
                format!("interval {} is under a second", i.get_ref()),
                "give an interval of a second or more, such as 30s: its sources are read that often",
            );
        }
        let settle = g.settle.as_ref().and_then(|s| self.duration(s, "settle"));
        if let (Some(s), Some(d)) = (&g.settle, settle)
            && (d < Duration::from_secs(60) || d > Duration::from_secs(3600))
        {
            self.err(
                s.span(),
                format!("settle {} is out of range", s.get_ref()),
                "give how long to wait past the soak for the datapoints covering its end, from 1m to 1h (default \
                 3m: ALB datapoints arrive 1–3 minutes late); shorter, the no_data policy would judge the step's \
                 last minutes unseen",
            );
        }
        // A metric gate's query is its reading: measured at most once in its
        // settle time, the last minutes of a soak may never be read before
        // the no_data policy stands in for them.
        let waits = settle
            .filter(|d| (Duration::from_secs(60)..=Duration::from_secs(3600)).contains(d))
            .unwrap_or(crate::runbook::DEFAULT_SETTLE);
        if matches!(kind_value, GateKind::Metric { .. } | GateKind::Compare { .. })
            && !interval.is_zero()
            && interval >= waits
        {
            let at = g.interval.as_ref().map_or(g.kind.span(), |i| i.span());
            self.err(
                at,
                format!(
                    "interval {} is not shorter than the gate's settle time ({} s): the datapoints covering a \
                     soak's end might never be read before its no_data policy decides",
                    g.interval
                        .as_ref()
                        .map_or_else(|| format!("{} s (gate_interval)", interval.as_secs()), |i| i.get_ref().clone()),
                    waits.as_secs()
                ),
                "measure it more often than it settles, e.g. interval = \"30s\" (settle defaults to 3m)",
            );
        }
        // An alarm gate judges the state read when it measures: CloudWatch
        // evaluates an alarm every minute (every 10 s at a sub-minute
        // period), so an ALARM may last one minute and fall between two
        // readings further apart.
        if let (GateKind::AlarmOk { .. }, Some(i)) = (&kind_value, &g.interval)
            && interval > ALARM_EVALUATED_EVERY
        {
            self.err(
                i.span(),
                format!(
                    "interval {} is longer than a minute: CloudWatch evaluates an alarm every minute, so an ALARM \
                     lasting a minute between two readings would never be seen",
                    i.get_ref()
                ),
                "measure an alarm_ok gate at least once a minute, e.g. interval = \"30s\"",
            );
        }
        Some(Gate { kind: kind_value, interval, failure_limit, consecutive_error_limit, no_data, settle })
    }

    fn alarm(&mut self, names: &Names, a: &RawAlarm) -> Alarm {
        if a.name.get_ref().trim().is_empty() || a.name.get_ref().len() > 255 {
            self.err(a.name.span(), "alarm name must be 1–255 characters", "give the CloudWatch alarm's exact name");
        }
        let environment = a.environment.as_ref().map(|e| self.env_ref(names, e));
        let metric = a.metric.as_ref().map_or(Metric::Target5xx, |m| self.metric(m));
        let stat = self.stat(a.stat.as_ref(), Stat::Sum);
        // An alarm on a count's Average never fires at a threshold of 1 or more.
        self.counts_summed(Some(metric), stat, a.stat.as_ref(), false);
        // nan or inf: no alarm CloudWatch would create, and the report's
        // plots would scale to it.
        let threshold = match &a.threshold {
            Some(t) if !t.get_ref().is_finite() => {
                self.err(
                    t.span(),
                    format!("alarm threshold {} is not a finite number", t.get_ref()),
                    "give the value the alarm fires above, such as 5",
                );
                0.0
            }
            Some(t)
                if metric == Metric::TargetResponseTime
                    && !matches!(stat, Stat::Sum | Stat::SampleCount)
                    && *t.get_ref() > MAX_RESPONSE_SECONDS =>
            {
                // As a metric gate's `max`: milliseconds read as seconds, an
                // alarm that stays OK through any slowness (its gate errs).
                self.err(
                    t.span(),
                    format!(
                        "alarm threshold {} is {} seconds: TargetResponseTime is in seconds",
                        t.get_ref(),
                        t.get_ref()
                    ),
                    format!(
                        "give the threshold in seconds (100 ms is 0.1); above {MAX_RESPONSE_SECONDS} s (an ALB's \
                         default idle timeout) it is refused as a figure in milliseconds"
                    ),
                );
                *t.get_ref()
            }
            Some(t) => *t.get_ref(),
            None => 0.0,
        };
        let period = match &a.period {
            Some(p) => {
                let d = self.duration(p, "period").unwrap_or(Duration::from_secs(60));
                let s = d.as_secs();
                if d.subsec_millis() != 0 || !(s == 10 || s == 20 || s == 30 || (s >= 60 && s.is_multiple_of(60))) {
                    self.err(
                        p.span(),
                        format!("alarm period {} is not allowed by CloudWatch", p.get_ref()),
                        "use a whole number of minutes (60s, 5m): a load balancer publishes its metrics once a minute",
                    );
                } else if s < 60 {
                    // Every metric an [[alarms]] entry takes is a load balancer's.
                    self.err(
                        p.span(),
                        format!(
                            "alarm period {} is under a minute, and a load balancer publishes its metrics once a \
                             minute: most of the alarm's evaluations would see no data (and with notBreaching read OK)",
                            p.get_ref()
                        ),
                        "use a whole number of minutes (60s, 5m)",
                    );
                }
                d
            }
            None => Duration::from_secs(60),
        };
        let evaluation_periods = match &a.evaluation_periods {
            Some(n) if (1..=100).contains(n.get_ref()) => *n.get_ref() as u32,
            Some(n) => {
                self.err(n.span(), format!("evaluation_periods {} is out of range", n.get_ref()), "give 1 to 100");
                1
            }
            None => 1,
        };
        // PutMetricAlarm's own limit on the time an alarm looks back.
        let (whole, limit) =
            (period.as_secs().saturating_mul(u64::from(evaluation_periods)), alarm_range_limit(period));
        if whole > limit {
            let at = a.period.as_ref().map_or(a.name.span(), |p| p.span());
            self.err(
                at,
                format!(
                    "period × evaluation_periods is {} s, more than CloudWatch's {limit} s for a period {} an hour",
                    whole,
                    if period.as_secs() < 3600 { "under" } else { "of at least" }
                ),
                "shorten the period or give fewer evaluation_periods",
            );
        }
        let treat_missing_data = match &a.treat_missing_data {
            Some(t) if TREATMENTS.contains(&t.get_ref().as_str()) => t.get_ref().clone(),
            Some(t) => {
                self.err(
                    t.span(),
                    format!("unknown treat_missing_data `{}`", t.get_ref()),
                    format!("use one of {}", one_of(TREATMENTS)),
                );
                "missing".to_string()
            }
            None => "missing".to_string(),
        };
        let rule = a.rule.as_ref().map(|r| {
            let metric_keys = [
                ("environment", a.environment.as_ref().map(|x| x.span())),
                ("metric", a.metric.as_ref().map(|x| x.span())),
                ("stat", a.stat.as_ref().map(|x| x.span())),
                ("period", a.period.as_ref().map(|x| x.span())),
                ("evaluation_periods", a.evaluation_periods.as_ref().map(|x| x.span())),
                ("treat_missing_data", a.treat_missing_data.as_ref().map(|x| x.span())),
            ];
            self.forbid("composite", "alarm", &metric_keys, &[]);
            // PutCompositeAlarm takes a rule of at most 10,240 characters; a
            // longer one is no alarm AWS holds (and is not read further).
            if r.get_ref().chars().count() > MAX_ALARM_RULE {
                self.err(
                    r.span(),
                    format!(
                        "rule is {} characters long: AWS takes at most {MAX_ALARM_RULE} (PutCompositeAlarm's AlarmRule)",
                        r.get_ref().chars().count()
                    ),
                    "split it: a composite may name other composites",
                );
                return r.get_ref().clone();
            }
            let can_alarm = crate::runbook::alarm_rule_can_alarm(r.get_ref());
            if can_alarm == Some(false) {
                // `… AND FALSE` mutes a composite: a gate on it passes whatever its alarms say.
                self.err(
                    r.span(),
                    format!("rule `{}` can never be in ALARM, whatever its alarms' states", r.get_ref()),
                    "a gate on it could not fail: remove what mutes it (FALSE, a contradiction), or gate on the alarms \
                     it names",
                );
            }
            match crate::runbook::alarm_rule_names(r.get_ref()).filter(|_| can_alarm.is_some()) {
                Some(children) if !children.is_empty() => {
                    for c in children.iter().filter(|c| !names.alarms.contains(*c)) {
                        self.err(
                            r.span(),
                            format!("rule names unknown alarm `{c}`"),
                            format!("declare it under [[alarms]] or use one of {}", one_of(&names.alarms)),
                        );
                    }
                    // AWS finds a composite's children in its own account and
                    // region; cutover reads a composite as the runbook's own
                    // alarms, and a child in its environment's.
                    for (c, env) in children.iter().filter_map(|c| Some((c, names.alarm_environments.get(c)?))) {
                        if names.reached_otherwise.contains(env) {
                            self.err(
                                r.span(),
                                format!(
                                    "rule names `{c}`, declared for environment `{env}`, which is reached with its \
                                     own role, profile or region: AWS looks a composite's children up in the \
                                     composite's account and region, where cutover reads it (the runbook's own), so \
                                     cutover would judge another alarm than the one the composite follows"
                                ),
                                format!(
                                    "declare `{c}` without `environment`, or leave `{env}`'s alarms out of composite \
                                     alarms and name them in the gate itself"
                                ),
                            );
                        }
                    }
                }
                _ => self.err(
                    r.span(),
                    format!("cannot read rule `{}`", r.get_ref()),
                    "write ALARM(\"name\"), OK(\"name\") or INSUFFICIENT_DATA(\"name\") joined by AND, OR, NOT and parentheses",
                ),
            }
            r.get_ref().clone()
        });
        Alarm {
            name: a.name.get_ref().clone(),
            environment,
            metric,
            stat,
            threshold,
            period,
            evaluation_periods,
            treat_missing_data,
            rule,
            description: a.description.clone().unwrap_or_default(),
        }
    }

    /// The rollout's two sides are two sets of things: a load balancer, a
    /// target group or an instance shared by both would move no traffic,
    /// and the gates on `to` would measure the side already serving. Two
    /// Redis endpoints at one URL would make a copy write onto its source
    /// and a key count compare a server with itself.
    fn sides_apart(&mut self, raw: &BTreeMap<S<String>, S<RawEnvironment>>, rollout: &Rollout) {
        let env = |name: &str| raw.iter().find(|(k, _)| k.get_ref() == name).map(|(_, e)| e.get_ref());
        // Names are compared only where they name one account's things: two
        // accounts (or regions) may each have a `web-alb`.
        // An account the runbook names is that account whatever reaches it.
        let reached = |e: &RawEnvironment| match &e.account_id {
            Some(a) => [Some(a.get_ref().clone()), e.region.as_ref().map(|r| r.get_ref().clone()), None, None],
            None => {
                [&e.account_id, &e.region, &e.profile, &e.role_arn].map(|v| v.as_ref().map(|v| v.get_ref().clone()))
            }
        };
        if let (Some(from), Some(to)) = (env(&rollout.from), env(&rollout.to))
            && rollout.from != rollout.to
            && reached(from) == reached(to)
        {
            let (f, t) = (&rollout.from, &rollout.to);
            if let (Some(a), Some(b)) = (&from.load_balancer, &to.load_balancer)
                && resource_name(a.get_ref(), "loadbalancer/") == resource_name(b.get_ref(), "loadbalancer/")
            {
                self.err(
                    b.span(),
                    format!("`{t}` names the same load balancer as `{f}`: the rollout would move no traffic"),
                    format!("give `{t}` its own load balancer (the one the new side's record points at)"),
                );
            }
            for b in &to.target_groups {
                let name = resource_name(b.get_ref(), "targetgroup/");
                if from.target_groups.iter().any(|a| resource_name(a.get_ref(), "targetgroup/") == name) {
                    self.err(
                        b.span(),
                        format!("target group `{name}` is listed by both `{f}` and `{t}`"),
                        format!("list under `{t}` only the target groups of its own load balancer"),
                    );
                }
            }
            let (a, b) = (from.instances.get_ref(), to.instances.get_ref());
            let shared = match (&a.tags, &b.tags, &a.ids, &b.ids) {
                // Tags select by all of them: one set within the other selects shared instances.
                (Some(x), Some(y), _, _) => {
                    let within = |x: &BTreeMap<String, String>, y: &BTreeMap<String, String>| {
                        x.iter().all(|(k, v)| y.get(k) == Some(v))
                    };
                    (within(x, y) || within(y, x)).then(|| {
                        format!(
                            "the instance tags of `{t}` and `{f}` are one within the other (every instance the longer \
                             list selects, the shorter selects too)"
                        )
                    })
                }
                (_, _, Some(x), Some(y)) => y
                    .iter()
                    .find(|i| x.iter().any(|j| j.get_ref() == i.get_ref()))
                    .map(|i| format!("`{t}` and `{f}` both select instance {}", i.get_ref())),
                _ => None,
            };
            if let Some(what) = shared {
                self.err(
                    to.instances.span(),
                    format!("{what}: the two sides would share instances"),
                    format!("select `{t}`'s own instances (a tag only they carry, or their ids)"),
                );
            }
        }
        let mut urls: BTreeMap<(String, [Option<String>; 4]), &str> = BTreeMap::new();
        for e in raw.values() {
            for r in &e.get_ref().redis {
                let r = r.get_ref();
                let Some(url) = &r.url else { continue };
                let key = (url.get_ref().trim_end_matches('/').to_string(), reached(e.get_ref()));
                match urls.get(&key) {
                    Some(other) => self.err(
                        url.span(),
                        format!("Redis endpoint `{}` has the URL of `{other}`", r.name.get_ref()),
                        format!(
                            "give each endpoint its own server; an environment that shares another's Redis says so \
                             with uses_redis = [\"{other}\"]"
                        ),
                    ),
                    None => {
                        urls.insert(key, r.name.get_ref());
                    }
                }
            }
        }
    }

    fn phases(&mut self, names: &Names, phases: &[S<RawPhase>]) -> Vec<Phase> {
        let mut phase_ids = BTreeSet::new();
        let mut out = Vec::new();
        for p in phases {
            let p = p.get_ref();
            self.ident(&p.id, "phase id");
            if !phase_ids.insert(p.id.get_ref().clone()) {
                self.err(
                    p.id.span(),
                    format!("duplicate phase id `{}`", p.id.get_ref()),
                    "give every phase a unique id",
                );
            }
            let mut item_ids = BTreeSet::new();
            let mut items = Vec::new();
            for it in &p.items {
                let it = it.get_ref();
                self.ident(&it.id, "item id");
                if !item_ids.insert(it.id.get_ref().clone()) {
                    self.err(
                        it.id.span(),
                        format!("duplicate item id `{}` in phase `{}`", it.id.get_ref(), p.id.get_ref()),
                        "give every item of a phase a unique id",
                    );
                }
                if it.title.get_ref().trim().is_empty() {
                    self.err(it.title.span(), "item title is empty", "say what a person checks or does");
                }
                if let Some(item) = self.item(names, it) {
                    items.push(item);
                }
            }
            out.push(Phase { id: p.id.get_ref().clone(), title: p.title.get_ref().clone(), items });
        }
        self.not_before_targets(phases, &out);
        out
    }

    /// Each `not_before.after` names another manual or action item: the
    /// kinds whose finish cutover records (a tick, an applied action).
    fn not_before_targets(&mut self, raw: &[S<RawPhase>], phases: &[Phase]) {
        let keys: Vec<String> = phases
            .iter()
            .flat_map(|p| {
                p.items
                    .iter()
                    .filter(|i| {
                        !matches!(i.kind, ItemKind::Check { .. } | ItemKind::Action { action: Action::Rollout })
                    })
                    .map(move |i| format!("{}/{}", p.id, i.id))
            })
            .collect();
        for p in raw {
            let p = p.get_ref();
            for it in &p.items {
                let it = it.get_ref();
                let Some(nb) = &it.not_before else { continue };
                let after = nb.get_ref().after.get_ref();
                let own = format!("{}/{}", p.id.get_ref(), it.id.get_ref());
                let hint = || format!("name a manual or action item as phase/item: one of {}", one_of(&keys));
                if *after == own {
                    self.err(nb.get_ref().after.span(), format!("item `{own}` waits for itself"), hint());
                    continue;
                }
                let item = after.split_once('/').and_then(|(ph, i)| {
                    phases.iter().find(|x| x.id == ph).and_then(|x| x.items.iter().find(|y| y.id == i))
                });
                match item {
                    None => {
                        self.err(nb.get_ref().after.span(), format!("not_before names unknown item `{after}`"), hint())
                    }
                    Some(i) if matches!(i.kind, ItemKind::Check { .. }) => self.err(
                        nb.get_ref().after.span(),
                        format!("not_before names check item `{after}`, which records no finish time"),
                        hint(),
                    ),
                    Some(i) if matches!(i.kind, ItemKind::Action { action: Action::Rollout }) => self.err(
                        nb.get_ref().after.span(),
                        format!("not_before names the rollout `{after}`, whose finish is not recorded as an item's"),
                        "add a manual item ticked once the rollout is complete and name it instead",
                    ),
                    // A termination's rollback window runs from the stop of
                    // the same instances, not from any other item.
                    Some(i) => {
                        let terminates = phases
                            .iter()
                            .find(|x| x.id == *p.id.get_ref())
                            .and_then(|x| x.items.iter().find(|y| y.id == *it.id.get_ref()))
                            .and_then(|y| match &y.kind {
                                ItemKind::Action { action: Action::TerminateInstances { environment } } => {
                                    Some(environment.clone())
                                }
                                _ => None,
                            });
                        let stops = |e: &str| matches!(&i.kind, ItemKind::Action { action: Action::StopInstances { environment } } if environment == e);
                        if let Some(env) = terminates.filter(|e| !stops(e)) {
                            let of_env: Vec<String> = phases
                                .iter()
                                .flat_map(|x| x.items.iter().map(move |y| (x, y)))
                                .filter(|(_, y)| matches!(&y.kind, ItemKind::Action { action: Action::StopInstances { environment } } if *environment == env))
                                .map(|(x, y)| format!("`{}/{}`", x.id, y.id))
                                .collect();
                            self.err(
                                nb.get_ref().after.span(),
                                format!(
                                    "terminate_instances of {env} waits for `{after}`, which does not stop {env}'s \
                                     instances: its rollback window must run from their stop"
                                ),
                                if of_env.is_empty() {
                                    format!("add a stop_instances item for {env} and name it here")
                                } else {
                                    format!("name {}", of_env.join(" or "))
                                },
                            );
                        }
                    }
                }
            }
        }
        self.not_before_cycles(raw);
    }

    /// Items that wait for each other in a ring (a waits for b, b for a)
    /// can never run: each is said once, at the first of the ring.
    fn not_before_cycles(&mut self, raw: &[S<RawPhase>]) {
        let mut after: BTreeMap<String, &S<String>> = BTreeMap::new();
        for p in raw {
            for it in &p.get_ref().items {
                if let Some(nb) = &it.get_ref().not_before {
                    after.insert(
                        format!("{}/{}", p.get_ref().id.get_ref(), it.get_ref().id.get_ref()),
                        &nb.get_ref().after,
                    );
                }
            }
        }
        let mut said: Vec<String> = Vec::new();
        for start in after.keys() {
            let mut ring = vec![start.clone()];
            let mut at = start.clone();
            while let Some(next) = after.get(&at).map(|a| a.get_ref().clone()) {
                if next == *start && ring.len() > 1 {
                    if !ring.iter().any(|k| said.contains(k)) {
                        self.err(
                            after[start].span(),
                            format!(
                                "items wait for each other in a ring ({} → {start}): none of them can ever run",
                                ring.join(" → ")
                            ),
                            "make one of them wait for an item outside the ring, or drop its not_before",
                        );
                    }
                    said.extend(ring);
                    break;
                }
                if ring.contains(&next) || next == at {
                    break;
                }
                ring.push(next.clone());
                at = next;
            }
        }
    }

    /// An action item's time gate, its wait parsed; `after` is resolved by
    /// `not_before_targets` once every phase is known.
    fn not_before(&mut self, it: &RawItem, action: Option<&Action>) -> Option<NotBefore> {
        let nb = it.not_before.as_ref()?;
        match action {
            None => {
                self.err(
                    nb.span(),
                    "`not_before` applies to action items only",
                    "move it to the action item that must wait, or remove it",
                );
                return None;
            }
            Some(Action::Rollout) => {
                self.err(
                    nb.span(),
                    "`not_before` does not apply to the rollout",
                    "gate the actions after it instead, or remove it",
                );
                return None;
            }
            Some(_) => {}
        }
        let raw = nb.get_ref();
        let wait = self.duration(&raw.wait, "not_before wait")?;
        if wait.is_zero() {
            self.err(raw.wait.span(), "not_before wait is 0s", "give how long to wait, like 48h or 30m");
            return None;
        }
        Some(NotBefore { after: raw.after.get_ref().clone(), wait })
    }

    fn item(&mut self, names: &Names, it: &RawItem) -> Option<Item> {
        let params = it.params();
        let kind = match it.kind.get_ref().as_str() {
            "manual" => {
                self.forbid("manual", "item", &params_present(&params), &[]);
                if let Some(c) = &it.check {
                    self.err(c.span(), "`check` does not apply to a manual item", "set kind = \"check\" or remove it");
                }
                if let Some(a) = &it.action {
                    self.err(
                        a.span(),
                        "`action` does not apply to a manual item",
                        "set kind = \"action\" or remove it",
                    );
                }
                ItemKind::Manual
            }
            "check" => {
                if let Some(a) = &it.action {
                    self.err(a.span(), "`action` does not apply to a check item", "set kind = \"action\" or remove it");
                }
                if let Some(r) = &it.rollback {
                    self.err(
                        r.span(),
                        "a check item cannot have a rollback",
                        "move the rollback to the action item it undoes",
                    );
                }
                let Some(c) = &it.check else {
                    self.err(
                        it.kind.span(),
                        "check item has no `check`",
                        format!("add check = one of {}", one_of(CHECKS)),
                    );
                    return None;
                };
                ItemKind::Check { check: self.check(names, c, &params)? }
            }
            "action" => {
                if let Some(c) = &it.check {
                    self.err(c.span(), "`check` does not apply to an action item", "set kind = \"check\" or remove it");
                }
                let Some(a) = &it.action else {
                    self.err(
                        it.kind.span(),
                        "action item has no `action`",
                        format!("add action = one of {}", one_of(ACTIONS)),
                    );
                    return None;
                };
                ItemKind::Action { action: self.action(names, a, &params)? }
            }
            other => {
                self.err(
                    it.kind.span(),
                    format!("item kind `{other}` is not known"),
                    "use kind = \"manual\", \"check\" or \"action\"",
                );
                return None;
            }
        };
        let rollback = it.rollback.as_ref().and_then(|r| {
            let rb = r.get_ref();
            let undo = self.action(names, &rb.action, &rb.params())?;
            // A rollback runs to undo, without the item's own time gate: one
            // that destroys would skip the rollback window it exists for.
            if undo.confirm_name().is_some() {
                self.err(
                    r.span(),
                    format!("`{}` cannot be a rollback: it cannot be undone itself", undo.kind()),
                    "make it an action item of its own, after a rollback window (not_before)",
                );
                return None;
            }
            // An action nothing undoes is refused its rollback below.
            if let ItemKind::Action { action } = &kind
                && action.confirm_name().is_none()
                && let Err((what, how)) = undoes(action, &undo, self.first_step)
            {
                self.err(r.span(), what, how);
                return None;
            }
            Some(undo)
        });
        let not_before = match &kind {
            ItemKind::Action { action } => self.not_before(it, Some(action)),
            _ => self.not_before(it, None),
        };
        if let ItemKind::Action { action } = &kind
            && action.confirm_name().is_some()
        {
            if let Some(r) = &it.rollback {
                self.err(
                    r.span(),
                    format!("`{}` cannot be undone, so it has no rollback", action.kind()),
                    "remove the rollback (take backups first: create_image, snapshot_redis)",
                );
            }
            if matches!(action, Action::TerminateInstances { .. }) && it.not_before.is_none() {
                self.err(
                    it.action.as_ref().map_or(it.kind.span(), |a| a.span()),
                    "terminate_instances needs a rollback window",
                    "add not_before = { after = \"PHASE/ITEM\", wait = \"48h\" } naming the item that stopped them",
                );
            }
        }
        Some(Item {
            id: it.id.get_ref().clone(),
            title: it.title.get_ref().clone(),
            kind,
            rollback,
            note: it.note.clone(),
            blocking: it.blocking.unwrap_or(true),
            not_before,
        })
    }

    fn check(&mut self, names: &Names, c: &S<String>, p: &Params) -> Option<Check> {
        let kind = c.get_ref().as_str();
        let at = c.span();
        let present = params_present(p);
        let env = |v: &mut Self| {
            v.require(p.environment, "environment", kind, at.clone(), &env_example(names)).map(|e| v.env_ref(names, e))
        };
        Some(match kind {
            "targets_healthy" | "redis_reachable" | "http_ok" | "zones_enabled" | "instances_alike"
            | "https_listener" | "alarm_on_5xx" | "redis_persistence" | "autoscaling_group" => {
                self.forbid(kind, "check", &present, &["environment"]);
                if let (Some(e), false) = (p.environment, matches!(kind, "http_ok" | "instances_alike")) {
                    self.needs(names, e, kind, !matches!(kind, "redis_reachable" | "redis_persistence"));
                }
                let environment = env(self)?;
                match kind {
                    "targets_healthy" => Check::TargetsHealthy { environment },
                    "redis_reachable" => Check::RedisReachable { environment },
                    "http_ok" => Check::HttpOk { environment },
                    "instances_alike" => Check::InstancesAlike { environment },
                    "https_listener" => Check::HttpsListener { environment },
                    "alarm_on_5xx" => Check::AlarmOn5xx { environment },
                    "redis_persistence" => Check::RedisPersistence { environment },
                    "autoscaling_group" => Check::AutoscalingGroup { environment },
                    _ => Check::ZonesEnabled { environment },
                }
            }
            "parity" => {
                self.forbid(kind, "check", &present, &[]);
                Check::Parity
            }
            "stickiness" => {
                self.forbid(kind, "check", &present, &["environment", "duration"]);
                if let Some(e) = p.environment {
                    self.needs(names, e, kind, true);
                }
                let environment = env(self);
                let duration = self.stickiness_duration(kind, p, at);
                Check::Stickiness { environment: environment?, duration: duration? }
            }
            "alarm_ok" => {
                self.forbid(kind, "check", &present, &["alarm"]);
                let a = self.require(p.alarm, "alarm", kind, at, "\"staging-5xx\"")?;
                if !names.alarms.contains(a.get_ref()) {
                    self.err(
                        a.span(),
                        format!("check names unknown alarm `{}`", a.get_ref()),
                        format!("declare it under [[alarms]] or use one of {}", one_of(&names.alarms)),
                    );
                }
                Check::AlarmOk { alarm: a.get_ref().clone() }
            }
            "redis_hit_rate" => {
                self.forbid(kind, "check", &present, &["redis", "min_hit_rate", "min_lookups"]);
                let (redis, min_percent, min_lookups) =
                    self.hit_rate(names, kind, p.redis, p.min_hit_rate, p.min_lookups, at);
                Check::RedisHitRate { redis: redis?, min_percent: min_percent?, min_lookups: min_lookups? }
            }
            "key_counts_match" => {
                self.forbid(kind, "check", &present, &["from_redis", "to_redis", "tolerance"]);
                let (from_redis, to_redis) = self.redis_pair(names, kind, p, at);
                let tolerance = match p.tolerance {
                    Some(t) if *t.get_ref() < 0 => {
                        self.err(
                            t.span(),
                            format!("tolerance {} is negative", t.get_ref()),
                            "give how many keys the counts may differ by (0 for exact)",
                        );
                        0
                    }
                    Some(t) => *t.get_ref() as u64,
                    None => 0,
                };
                Check::KeyCountsMatch { from_redis: from_redis?, to_redis: to_redis?, tolerance }
            }
            other => {
                self.err(at, format!("unknown check `{other}`"), format!("use one of {}", one_of(CHECKS)));
                return None;
            }
        })
    }

    /// A `redis_hit_rate` check's or gate's endpoint, least hit rate
    /// (percent) and fewest lookups judged.
    fn hit_rate(
        &mut self,
        names: &Names,
        kind: &str,
        redis: Option<&S<String>>,
        min: Option<&S<f64>>,
        min_lookups: Option<&S<i64>>,
        at: std::ops::Range<usize>,
    ) -> (Option<String>, Option<f64>, Option<u64>) {
        let first = names.redis.iter().next().map_or("cache", |s| s.as_str());
        let redis =
            self.require(redis, "redis", kind, at.clone(), &format!("\"{first}\"")).map(|r| self.redis_ref(names, r));
        let min = self.require(min, "min_hit_rate", kind, at, "90").map(|m| {
            let v = *m.get_ref();
            if !(v > 0.0 && v <= 100.0) {
                self.err(
                    m.span(),
                    format!("min_hit_rate {v} is not a percent above 0"),
                    "give the least share of lookups that must hit, in percent: more than 0, at most 100 (90 for 90%)",
                );
            } else if v <= 1.0 {
                // A fraction (0.9 for 90%) would gate at under 1% and pass a
                // cold cache; no cutover gates on a hit rate that low.
                // Rounded: 0.57 * 100.0 is 56.99999999999999.
                let meant = (v * 100_000.0).round() / 1000.0;
                self.err(
                    m.span(),
                    format!("min_hit_rate {v} reads as {v}%, not {meant}%: the rate is in percent"),
                    format!(
                        "write {meant} for {meant}% (a least hit rate of 1% or less is taken as a fraction written by \
                         mistake)"
                    ),
                );
            }
            v
        });
        let min_lookups = match min_lookups {
            None => Some(DEFAULT_MIN_LOOKUPS),
            Some(n) if (1..=1_000_000_000).contains(n.get_ref()) => Some(*n.get_ref() as u64),
            Some(n) => {
                self.err(
                    n.span(),
                    format!("min_lookups {} is out of range", n.get_ref()),
                    format!(
                        "give the fewest lookups a hit rate is judged on, from 1 up (default {DEFAULT_MIN_LOOKUPS}): \
                         fewer in an interval is no data"
                    ),
                );
                None
            }
        };
        (redis, min, min_lookups)
    }

    fn stickiness_duration(&mut self, kind: &str, p: &Params, at: std::ops::Range<usize>) -> Option<Duration> {
        let d = self.require(p.duration, "duration", kind, at, "\"24h\"")?;
        let dur = self.duration(d, "duration")?;
        if dur.as_secs() < 1 || dur.as_secs() > 604_800 || dur.subsec_millis() != 0 {
            self.err(
                d.span(),
                format!("stickiness duration {} is outside 1s–7d", d.get_ref()),
                "ALB lb_cookie stickiness lasts 1 second to 7 days (604800 s)",
            );
        }
        Some(dur)
    }

    fn redis_pair(
        &mut self,
        names: &Names,
        kind: &str,
        p: &Params,
        at: std::ops::Range<usize>,
    ) -> (Option<String>, Option<String>) {
        let from = self
            .require(p.from_redis, "from_redis", kind, at.clone(), "\"old-cache\"")
            .map(|r| self.redis_ref(names, r));
        let to = self.require(p.to_redis, "to_redis", kind, at, "\"new-cache\"").map(|r| self.redis_ref(names, r));
        if let (Some(f), Some(t), Some(ts)) = (&from, &to, p.to_redis)
            && f == t
        {
            self.err(
                ts.span(),
                "from_redis and to_redis are the same endpoint",
                "name the source and the destination Redis",
            );
        }
        (from, to)
    }

    fn action(&mut self, names: &Names, a: &S<String>, p: &Params) -> Option<Action> {
        let kind = a.get_ref().as_str();
        let at = a.span();
        let present = params_present(p);
        Some(match kind {
            "shift_weights" => {
                self.forbid(kind, "action", &present, &["to"]);
                let to = self.require(p.to, "to", kind, at, "25")?;
                let v = *to.get_ref();
                if !(0..=100).contains(&v) {
                    self.err(
                        to.span(),
                        format!("shift to {v}% is outside 0–100"),
                        "give the percent of traffic the rollout's `to` side should get",
                    );
                    return None;
                }
                Action::ShiftWeights { to: v as u8 }
            }
            "rollout" => {
                self.forbid(kind, "action", &present, &[]);
                Action::Rollout
            }
            "register_targets"
            | "deregister_targets"
            | "disable_stickiness"
            | "authorize_redis_ingress"
            | "revoke_redis_ingress"
            | "stop_instances"
            | "start_instances" => {
                self.forbid(kind, "action", &present, &["environment"]);
                let e = self.require(p.environment, "environment", kind, at, &env_example(names))?;
                let environment = self.env_ref(names, e);
                match kind {
                    "register_targets" | "deregister_targets" | "disable_stickiness" => {
                        self.needs(names, e, kind, true)
                    }
                    "authorize_redis_ingress" | "revoke_redis_ingress" => self.needs(names, e, kind, false),
                    _ => {}
                }
                match kind {
                    "register_targets" => Action::RegisterTargets { environment },
                    "deregister_targets" => Action::DeregisterTargets { environment },
                    "disable_stickiness" => Action::DisableStickiness { environment },
                    "authorize_redis_ingress" => Action::AuthorizeRedisIngress { environment },
                    "revoke_redis_ingress" => Action::RevokeRedisIngress { environment },
                    "stop_instances" => Action::StopInstances { environment },
                    _ => Action::StartInstances { environment },
                }
            }
            "set_stickiness" => {
                self.forbid(kind, "action", &present, &["environment", "duration"]);
                if let Some(e) = p.environment {
                    self.needs(names, e, kind, true);
                }
                let environment = self
                    .require(p.environment, "environment", kind, at.clone(), &env_example(names))
                    .map(|e| self.env_ref(names, e));
                let duration = self.stickiness_duration(kind, p, at);
                Action::SetStickiness { environment: environment?, duration: duration? }
            }
            "copy_redis" => {
                self.forbid(kind, "action", &present, &["from_redis", "to_redis", "match"]);
                let (from_redis, to_redis) = self.redis_pair(names, kind, p, at);
                if let Some(m) = &p.pattern
                    && let Some((what, _)) = super::key_pattern_problem(m.get_ref())
                {
                    self.err(
                        m.span(),
                        format!("match {what}"),
                        "give a glob such as 'user:*' (in a literal string, 'user:\\[1\\]', each backslash is \
                         Redis's own escape), or leave match out to copy every key",
                    );
                }
                Action::CopyRedis {
                    from_redis: from_redis?,
                    to_redis: to_redis?,
                    pattern: p.pattern.map(|m| m.get_ref().clone()),
                }
            }
            "create_image" => {
                self.forbid(kind, "action", &present, &["environment", "no_reboot"]);
                let e = self.require(p.environment, "environment", kind, at, &env_example(names))?;
                let environment = self.env_ref(names, e);
                Action::CreateImage { environment, no_reboot: p.no_reboot.is_some_and(|b| *b.get_ref()) }
            }
            "terminate_instances" => {
                self.forbid(kind, "action", &present, &["environment"]);
                let e = self.require(p.environment, "environment", kind, at, &env_example(names))?;
                Action::TerminateInstances { environment: self.env_ref(names, e) }
            }
            "delete_security_groups" => {
                self.forbid(kind, "action", &present, &["environment", "security_groups"]);
                let e = self
                    .require(p.environment, "environment", kind, at.clone(), &env_example(names))
                    .map(|e| self.env_ref(names, e));
                let groups = self.require(p.security_groups, "security_groups", kind, at, "[\"old-app\"]")?;
                if groups.get_ref().is_empty() {
                    self.err(groups.span(), "security_groups is empty", "name the groups to delete");
                }
                let mut seen = BTreeSet::new();
                for g in groups.get_ref() {
                    if g.get_ref().trim().is_empty() || !seen.insert(g.get_ref().clone()) {
                        self.err(
                            g.span(),
                            format!("security group `{}` is empty or named twice", g.get_ref()),
                            "name each group once",
                        );
                    }
                }
                Action::DeleteSecurityGroups {
                    environment: e?,
                    security_groups: groups.get_ref().iter().map(|g| g.get_ref().clone()).collect(),
                }
            }
            "snapshot_redis" => {
                self.forbid(kind, "action", &present, &["redis"]);
                let r = self.require(p.redis, "redis", kind, at, "\"old-cache\"")?;
                let redis = self.redis_ref(names, r);
                if names.redis.contains(&redis) && !names.elasticache.contains(&redis) {
                    self.err(
                        r.span(),
                        format!("Redis endpoint `{redis}` is not an ElastiCache replication group"),
                        "set `elasticache = \"GROUP-ID\"` on the endpoint, or snapshot a self-managed Redis another way",
                    );
                }
                Action::SnapshotRedis { redis }
            }
            other => {
                self.err(at, format!("unknown action `{other}`"), format!("use one of {}", one_of(ACTIONS)));
                return None;
            }
        })
    }

    fn sandbox(
        &mut self,
        names: &Names,
        raw_envs: &BTreeMap<S<String>, S<RawEnvironment>>,
        s: &S<RawSandbox>,
    ) -> SandboxSpec {
        let sb = s.get_ref();
        let seed_keys = match &sb.seed_keys {
            Some(k) if !(0..=1_000_000).contains(k.get_ref()) => {
                self.err(k.span(), format!("seed_keys {} is out of range", k.get_ref()), "give 0 to 1000000 keys");
                0
            }
            Some(k) => *k.get_ref() as u32,
            None => 200,
        };
        let zone_ok = |z: &str| z.len() == 1 && ('a'..='f').contains(&z.chars().next().unwrap_or(' '));
        let mut load_balancer_zones = BTreeMap::new();
        for (env, zones) in &sb.load_balancer_zones {
            let env = self.env_ref(names, env);
            for z in zones {
                if !zone_ok(z.get_ref()) {
                    self.err(
                        z.span(),
                        format!("zone `{}` is not a zone letter", z.get_ref()),
                        "give availability-zone suffixes a to f, e.g. [\"a\", \"b\"]",
                    );
                }
            }
            load_balancer_zones.insert(env, zones.iter().map(|z| z.get_ref().clone()).collect());
        }
        let group_names: BTreeSet<String> =
            sb.security_groups.iter().map(|g| g.get_ref().name.get_ref().clone()).collect();
        let mut seen = BTreeSet::new();
        let mut security_groups = Vec::new();
        for g in &sb.security_groups {
            let g = g.get_ref();
            self.ident(&g.name, "security group");
            if !seen.insert(g.name.get_ref().clone()) {
                self.err(
                    g.name.span(),
                    format!("duplicate sandbox security group `{}`", g.name.get_ref()),
                    "declare each group once",
                );
            }
            let mut ingress = Vec::new();
            for i in &g.ingress {
                let i = i.get_ref();
                let port = *i.port.get_ref();
                if !(1..=65535).contains(&port) {
                    self.err(i.port.span(), format!("port {port} is outside 1–65535"), "give a TCP port such as 6379");
                }
                let from = i.from.get_ref();
                if !group_names.contains(from) && !is_cidr(from) {
                    self.err(
                        i.from.span(),
                        format!("ingress source `{from}` is neither a sandbox security group nor a CIDR"),
                        format!("use one of {} or a CIDR like 10.0.0.0/16", one_of(&group_names)),
                    );
                }
                ingress.push(Ingress { port: port.clamp(1, 65535) as u16, from: from.clone() });
            }
            security_groups.push(SandboxGroup { name: g.name.get_ref().clone(), ingress });
        }
        let mut seen = BTreeSet::new();
        let mut instances = Vec::new();
        for i in &sb.instances {
            let i = i.get_ref();
            self.ident(&i.name, "instance name");
            if !seen.insert(i.name.get_ref().clone()) {
                self.err(
                    i.name.span(),
                    format!("duplicate sandbox instance `{}`", i.name.get_ref()),
                    "give every instance a unique name",
                );
            }
            let env = self.env_ref(names, &i.environment);
            if !zone_ok(i.zone.get_ref()) {
                self.err(
                    i.zone.span(),
                    format!("zone `{}` is not a zone letter", i.zone.get_ref()),
                    "give an availability-zone suffix a to f",
                );
            }
            if i.security_groups.is_empty() {
                self.err(
                    i.name.span(),
                    format!("sandbox instance `{}` has no security group", i.name.get_ref()),
                    "give it security_groups = [\"…\"] naming groups under [[sandbox.security_groups]]",
                );
            }
            for g in &i.security_groups {
                if !group_names.contains(g.get_ref()) {
                    self.err(
                        g.span(),
                        format!("unknown sandbox security group `{}`", g.get_ref()),
                        format!("use one of {}", one_of(&group_names)),
                    );
                }
            }
            let raw_env = raw_envs.iter().find(|(k, _)| k.get_ref() == &env).map(|(_, e)| e.get_ref());
            if let Some(e) = raw_env
                && e.instances.get_ref().tags.is_none()
            {
                self.err(
                    i.environment.span(),
                    format!("environment `{env}` selects instances by id, which the sandbox cannot create"),
                    format!("select `{env}` instances by tags for a runbook the sandbox rehearses"),
                );
            }
            let env_redis: Vec<String> = raw_env
                .map(|e| match &e.uses_redis {
                    Some(used) => used.iter().map(|r| r.get_ref().clone()).collect(),
                    None => e.redis.iter().map(|r| r.get_ref().name.get_ref().clone()).collect(),
                })
                .unwrap_or_default();
            let redis = match &i.redis {
                Some(r) => self.redis_ref(names, r),
                None => match env_redis.first() {
                    Some(r) => r.clone(),
                    None => {
                        self.err(i.name.span(), format!("sandbox instance `{}` has no Redis to use", i.name.get_ref()), format!("add a redis entry (or uses_redis) to environment `{env}`, or set redis = \"…\" on the instance"));
                        String::new()
                    }
                },
            };
            instances.push(SandboxInstance {
                name: i.name.get_ref().clone(),
                environment: env,
                zone: i.zone.get_ref().clone(),
                security_groups: i.security_groups.iter().map(|g| g.get_ref().clone()).collect(),
                redis,
            });
        }
        for e in raw_envs.values() {
            for r in &e.get_ref().redis {
                let r = r.get_ref();
                if r.url_env.is_none() {
                    self.err(r.name.span(), format!("Redis endpoint `{}` has no url_env, so the sandbox cannot point it at its local redis-server", r.name.get_ref()), "add url_env = \"VARIABLE\"; the sandbox writes that variable to its env file");
                }
                for g in &r.security_groups {
                    if !group_names.contains(g.get_ref()) {
                        self.err(
                            g.span(),
                            format!("Redis security group `{}` is not declared in the sandbox", g.get_ref()),
                            format!(
                                "declare it under [[sandbox.security_groups]] or use one of {}",
                                one_of(&group_names)
                            ),
                        );
                    }
                }
            }
        }
        let mut alias_records = Vec::new();
        for env in sb.alias_records.iter().flat_map(|a| a.get_ref()) {
            let name = self.env_ref(names, env);
            let has_lb =
                raw_envs.iter().any(|(k, e)| k.get_ref() == env.get_ref() && e.get_ref().load_balancer.is_some());
            if names.envs.contains(env.get_ref()) && !has_lb {
                self.err(
                    env.span(),
                    format!("environment `{}` has no load balancer for its alias record to point at", env.get_ref()),
                    "list only environments with a load_balancer in alias_records",
                );
            }
            alias_records.push(name);
        }
        let mut redis_clusters = BTreeMap::new();
        for (name, c) in &sb.redis_clusters {
            let name = self.redis_ref(names, name);
            let c = c.get_ref();
            let mut cluster = SandboxCluster::default();
            if let Some(n) = &c.shards {
                if !(3..=8).contains(n.get_ref()) {
                    self.err(
                        n.span(),
                        format!("shards {} is out of range", n.get_ref()),
                        "give 3 to 8 primaries (redis-cli --cluster create needs at least 3)",
                    );
                }
                cluster.shards = (*n.get_ref()).clamp(3, 8) as usize;
            }
            if let Some(r) = &c.replicas {
                if !(0..=1).contains(r.get_ref()) {
                    self.err(
                        r.span(),
                        format!("replicas {} is out of range", r.get_ref()),
                        "give 0 or 1 replica per primary",
                    );
                }
                cluster.replicas = *r.get_ref() == 1;
            }
            redis_clusters.insert(name, cluster);
        }
        let mut redis_sentinels = BTreeMap::new();
        for (name, g) in &sb.redis_sentinels {
            let name = self.redis_ref(names, name);
            if redis_clusters.contains_key(&name) {
                self.err(
                    g.span(),
                    format!("Redis endpoint `{name}` is in both redis_clusters and redis_sentinels"),
                    "run it as a Redis Cluster or as a Sentinel group, not both",
                );
            }
            let g = g.get_ref();
            let mut group = SandboxSentinels::default();
            if let Some(n) = &g.sentinels {
                if !(1..=5).contains(n.get_ref()) {
                    self.err(n.span(), format!("sentinels {} is out of range", n.get_ref()), "give 1 to 5 sentinels");
                }
                group.sentinels = (*n.get_ref()).clamp(1, 5) as usize;
            }
            group.quorum = (group.sentinels / 2 + 1) as u32;
            if let Some(q) = &g.quorum {
                if !(1..=group.sentinels as i64).contains(q.get_ref()) {
                    self.err(
                        q.span(),
                        format!("quorum {} is out of range", q.get_ref()),
                        format!("give 1 to {} (the group's sentinels)", group.sentinels),
                    );
                }
                group.quorum = (*q.get_ref()).clamp(1, group.sentinels as i64) as u32;
            }
            redis_sentinels.insert(name, group);
        }
        // An endpoint whose URL names a cluster (or sentinels) is one in the sandbox too.
        for e in raw_envs.values() {
            for r in &e.get_ref().redis {
                let r = r.get_ref();
                let name = r.name.get_ref();
                let url = r.url.as_ref().map(|u| u.get_ref().as_str()).unwrap_or("");
                let cluster_url = url.starts_with("redis+cluster://") || url.starts_with("rediss+cluster://");
                let sentinel_url = url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://");
                let listed_other = match (cluster_url, sentinel_url) {
                    (true, _) if redis_sentinels.contains_key(name) => Some(("cluster", "redis_sentinels")),
                    (_, true) if redis_clusters.contains_key(name) => Some(("Sentinel", "redis_clusters")),
                    _ => None,
                };
                if let (Some((kind, list)), Some(u)) = (listed_other, &r.url) {
                    self.err(
                        u.span(),
                        format!("Redis endpoint `{name}` has a {kind} URL, but the sandbox lists it in {list}"),
                        format!("drop it from [sandbox] {list}, or change its URL"),
                    );
                } else if cluster_url {
                    redis_clusters.entry(name.clone()).or_default();
                } else if sentinel_url {
                    redis_sentinels.entry(name.clone()).or_default();
                }
            }
        }
        SandboxSpec {
            seed_keys,
            load_balancer_zones,
            security_groups,
            instances,
            alias_records,
            redis_clusters,
            redis_sentinels,
        }
    }
}

fn env_example(names: &Names) -> String {
    format!("\"{}\"", names.envs.iter().next().map_or("staging", |s| s.as_str()))
}

fn params_present(p: &Params) -> Vec<(&'static str, Option<std::ops::Range<usize>>)> {
    vec![
        ("environment", p.environment.map(|x| x.span())),
        ("alarm", p.alarm.map(|x| x.span())),
        ("to", p.to.map(|x| x.span())),
        ("duration", p.duration.map(|x| x.span())),
        ("from_redis", p.from_redis.map(|x| x.span())),
        ("to_redis", p.to_redis.map(|x| x.span())),
        ("match", p.pattern.map(|x| x.span())),
        ("tolerance", p.tolerance.map(|x| x.span())),
        ("no_reboot", p.no_reboot.map(|x| x.span())),
        ("redis", p.redis.map(|x| x.span())),
        ("min_hit_rate", p.min_hit_rate.map(|x| x.span())),
        ("min_lookups", p.min_lookups.map(|x| x.span())),
        ("security_groups", p.security_groups.map(|x| x.span())),
    ]
}

/// The longest an alarm may look back (period × evaluation periods), in
/// seconds: a week, or a day for a period under an hour (PutMetricAlarm).
fn alarm_range_limit(period: Duration) -> u64 {
    if period.as_secs() < 3600 { 86_400 } else { 604_800 }
}

/// `s3://bucket/prefix` → (bucket, prefix without slashes at its ends).
pub fn parse_state_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| format!("`{url}` is not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid {
        return Err(format!("`{bucket}` is not an S3 bucket name (3-63 lower-case letters, digits, `-`, `.`)"));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

/// The port of one node of a cluster URL (`[v6]:port`, `host:port`, or a
/// host alone: 6379); None when it is no port from 1 to 65535.
fn node_port(node: &str) -> Option<u16> {
    match node.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (!h.starts_with('[') || h.ends_with(']')) => p.parse().ok().filter(|p| *p > 0),
        _ => Some(6379),
    }
}

/// The port the sentinels of a `redis+sentinel://` URL listen on (26379
/// where a sentinel gives none; `Err` with each port when they differ). A
/// malformed port is left to `redis::url`, which refuses the URL.
fn sentinel_ports(url: &str) -> Result<u16, Vec<u16>> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hosts = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hosts = hosts.split('/').next().unwrap_or(hosts);
    let mut ports: Vec<u16> = Vec::new();
    for host in hosts.split(',').filter(|h| !h.is_empty()) {
        let port = match host.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && (!h.starts_with('[') || h.ends_with(']')) => p.parse().unwrap_or(26379),
            _ => 26379,
        };
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    match ports.as_slice() {
        [] => Ok(26379),
        [one] => Ok(*one),
        _ => Err(ports),
    }
}

/// The port a Redis URL names for security-group rules: a plain URL's; a
/// cluster's nodes' (6379 where a node gives none; `Err` with each port
/// when they differ); none for Sentinel, whose URL names the sentinels,
/// not the master.
fn url_port(url: &str) -> Result<Option<u16>, Vec<u16>> {
    let Some((scheme, rest)) = url.split_once("://") else { return Ok(None) };
    if scheme.ends_with("+sentinel") {
        return Ok(None);
    }
    if !scheme.ends_with("+cluster") {
        return Ok(reqwest::Url::parse(url).ok().and_then(|u| u.port()));
    }
    let hosts = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hosts = hosts.split('/').next().unwrap_or(hosts);
    let mut ports: Vec<u16> = Vec::new();
    for host in hosts.split(',') {
        // A malformed port is reported by the URL check.
        let Some(port) = node_port(host) else { return Ok(None) };
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    match ports.as_slice() {
        [one] => Ok(Some(*one)),
        _ => Err(ports),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::kinds::{INSUFFICIENT_DATA_CHOICES, ITEM_KINDS, NO_DATA_POLICIES};

    const MINIMAL: &str = include_str!("../../tests/runbooks/minimal.toml");

    fn with(old: &str, new: &str) -> String {
        assert!(MINIMAL.contains(old), "{old:?} not in minimal.toml");
        MINIMAL.replacen(old, new, 1)
    }

    fn assert_valid(text: &str, what: &str) {
        if let Err(e) = parse("t.toml", text) {
            panic!("{what} is offered by the schema but refused:\n{e}");
        }
    }

    /// A composite over the old side's alarm alone, or needing both sides'
    /// alarms at once, never goes off on the new side's trouble once the
    /// old side takes no traffic: no gate then measures the new side.
    #[test]
    fn a_composite_gate_measures_a_side_only_through_a_child_that_sets_it_off_alone() {
        let gate = |rule: &str| {
            with(
                "[[alarms]]\nname = \"green-5xx\"\nenvironment = \"green\"\n",
                &format!(
                    "[[alarms]]\nname = \"green-5xx\"\nenvironment = \"green\"\n\n[[alarms]]\nname = \"blue-5xx\"\n\
                     environment = \"blue\"\n\n[[alarms]]\nname = \"any\"\nrule = '{rule}'\n"
                ),
            )
            .replace("alarms = [\"green-5xx\"]", "alarms = [\"any\"]")
        };
        for rule in [r#"ALARM("blue-5xx")"#, r#"ALARM("green-5xx") AND ALARM("blue-5xx")"#] {
            let err = parse("t.toml", &gate(rule)).unwrap_err().to_string();
            assert!(err.contains("no rollout gate measures `green`, the side the traffic moves to"), "{rule}: {err}");
        }
        for rule in [
            r#"ALARM("green-5xx")"#,
            r#"ALARM("green-5xx") OR ALARM("blue-5xx")"#,
            r#"ALARM("green-5xx") AND ALARM("green-5xx")"#,
        ] {
            assert_valid(&gate(rule), rule);
        }
    }

    /// EC2 reads `*` and `?` in a filter's value as wildcards: `App = "*"`
    /// would select every instance with an `App` tag.
    #[test]
    fn an_instance_tag_value_with_a_wildcard_is_refused() {
        for value in ["*", "web-?", "blue*"] {
            let text = with("tags = { Environment = \"blue\" }", &format!("tags = {{ Environment = \"{value}\" }}"));
            let err = parse("t.toml", &text).unwrap_err().to_string();
            assert!(err.contains("which EC2 reads as a wildcard") && err.contains("t.toml:7:"), "{value}: {err}");
        }
    }

    /// A third weighted record keeps its share through the rollout: its
    /// "100%" step would be a split.
    #[test]
    fn a_third_record_with_weight_is_refused() {
        let third = |w: u8| {
            with("[dns]", "[environments.red]\ninstances = { tags = { Environment = \"red\" } }\n\n[dns]")
                .replace(
                    "{ blue = \"blue\", green = \"green\" }",
                    "{ blue = \"blue\", green = \"green\", red = \"red\" }",
                )
                .replace("{ blue = 100, green = 0 }", &format!("{{ blue = 100, green = 0, red = {w} }}"))
        };
        let err = parse("t.toml", &third(100)).unwrap_err().to_string();
        assert!(err.contains("`red` keeps weight 100 through the rollout"), "{err}");
        assert!(err.contains("give red = 0"), "{err}");
        assert_valid(&third(0), "a third record at weight 0");
    }

    /// `soak = 300`: a duration is a string with its unit, and the hint says so.
    #[test]
    fn a_duration_written_as_a_number_is_told_how_to_write_it() {
        let err = parse("t.toml", &with("soak = \"5m\"", "soak = 300")).unwrap_err().to_string();
        assert!(err.contains("t.toml:27:8") && err.contains("write \"300s\""), "{err}");
    }

    /// A failure limit the gate cannot reach in a step's readings could
    /// never fail one: its failures would only hold the step.
    #[test]
    fn a_failure_limit_beyond_a_steps_readings_is_refused() {
        let limit = |n: u32| {
            with(
                "alarms = [\"green-5xx\"]",
                &format!("alarms = [\"green-5xx\"]\ninterval = \"30s\"\nfailure_limit = {n}"),
            )
        };
        // A soak of 5m read every 30s, and past it the alarms' lag (4m) and
        // three intervals of polls (90s): 630 s, 22 readings.
        assert_valid(&limit(22), "a reachable failure_limit");
        let err = parse("t.toml", &limit(23)).unwrap_err().to_string();
        assert!(err.contains("failure_limit 23 is more than the 22 readings this gate takes in a step"), "{err}");
    }

    /// Items waiting for each other can never run.
    #[test]
    fn items_waiting_for_each_other_in_a_ring_are_refused() {
        let item = |id: &str, after: &str| {
            format!(
                "\n[[phases.items]]\nid = \"{id}\"\ntitle = \"{id}\"\nkind = \"action\"\naction = \"start_instances\"\n\
                 environment = \"blue\"\nnot_before = {{ after = \"traffic/{after}\", wait = \"1h\" }}\n"
            )
        };
        let text = format!("{MINIMAL}{}{}{}", item("d", "e"), item("e", "f"), item("f", "d"));
        let err = parse("t.toml", &text).unwrap_err().to_string();
        assert!(
            err.contains("items wait for each other in a ring (traffic/d → traffic/e → traffic/f → traffic/d)"),
            "{err}"
        );
        assert_eq!(err.matches("in a ring").count(), 1, "said once: {err}");
        let text = format!("{MINIMAL}{}{}", item("d", "e"), item("e", "shift-done"))
            .replace("traffic/shift-done", "traffic/d2");
        assert!(!parse("t.toml", &text).unwrap_err().to_string().contains("in a ring"));
    }

    #[test]
    fn sentinel_redis_urls_validate() {
        let url = "url = \"redis://blue-cache.internal:6379/0\"";
        for good in
            ["redis+sentinel://s1:26379,s2:26379/blue/0", "rediss+sentinel://s1/blue", "redis+sentinel://user@s1:1/m"]
        {
            let rb = parse("t.toml", &with(url, &format!("url = \"{good}\", port = 6380")))
                .unwrap_or_else(|e| panic!("{good}: {e}"));
            let ep = &rb.environments["blue"].redis[0];
            assert_eq!((ep.url.as_deref(), ep.port), (Some(good), 6380));
        }
        // Without `port`: the master's default, never a sentinel's port.
        let rb = parse("t.toml", &with(url, "url = \"redis+sentinel://s1:26379/blue/0\"")).unwrap();
        assert_eq!(rb.environments["blue"].redis[0].port, 6379);
        let err = parse("t.toml", &with(url, "url = \"redis://h:6379/0\", sentinel_password_env = \"S_PW\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sentinel_password_env is for a Redis Sentinel URL") && err.contains("t.toml:"), "{err}");
        let rb = parse("t.toml", &with(url, "url = \"redis+sentinel://s1/blue\", sentinel_password_env = \"S_PW\""))
            .unwrap();
        assert_eq!(rb.environments["blue"].redis[0].sentinel_password_env.as_deref(), Some("S_PW"));
        let err = parse("t.toml", &with(url, "url = \"redis+sentinel://S1,s1:26379/blue/0\"")).unwrap_err().to_string();
        assert!(err.contains("sentinel s1:26379 is listed twice") && err.contains("t.toml:"), "{err}");
    }

    /// A URL read from `url_env` at run time may carry a tunnel's port, so
    /// the rule a security group must hold is the runbook's to say.
    #[test]
    fn a_url_env_endpoint_with_security_groups_gives_its_port() {
        let url = "url = \"redis://blue-cache.internal:6379/0\"";
        let endpoint = |given: &str| parse("t.toml", &with(url, given)).map(|rb| rb.environments["blue"].redis[0].port);
        let err = endpoint("url_env = \"BLUE_URL\", security_groups = [\"blue-redis\"]").unwrap_err().to_string();
        assert!(err.contains("takes its URL from `BLUE_URL` at run time") && err.contains("give port ="), "{err}");
        assert_eq!(endpoint("url_env = \"BLUE_URL\", port = 6380, security_groups = [\"blue-redis\"]").unwrap(), 6380);
        let with_url = "url = \"redis://h:6381/0\", url_env = \"BLUE_URL\", security_groups = [\"blue-redis\"]";
        assert_eq!(endpoint(with_url).unwrap(), 6381, "the runbook's URL says");
        assert_eq!(endpoint("url_env = \"BLUE_URL\"").unwrap(), 6379, "no rule is checked or opened");
    }

    /// The port the sentinels' security-group path is checked at: the
    /// URL's sentinels' (26379 where they give none), or `sentinel_port`.
    #[test]
    fn sentinel_ports_validate() {
        let url = "url = \"redis://blue-cache.internal:6379/0\"";
        let port = |given: &str| {
            let rb = parse("t.toml", &with(url, given)).unwrap_or_else(|e| panic!("{given}: {e}"));
            rb.environments["blue"].redis[0].sentinel_port
        };
        assert_eq!(port(url), None, "not a Sentinel endpoint");
        assert_eq!(port("url = \"redis+sentinel://s1,s2/blue/0\""), Some(26379));
        assert_eq!(port("url = \"redis+sentinel://s1:5000,s2:5000/blue/0\""), Some(5000));
        assert_eq!(port("url = \"redis+sentinel://s1:5000,s2:5001/blue/0\", sentinel_port = 5001"), Some(5001));
        assert_eq!(port("url_env = \"BLUE_URL\", sentinel_port = 26380"), Some(26380));
        assert_eq!(port("url_env = \"BLUE_URL\""), None, "unknown until the runbook says");
        for (bad, why) in [
            (
                "url = \"redis+sentinel://s1:5000,s2:5001/blue/0\"",
                "the sentinels of `redis+sentinel://s1:5000,s2:5001/blue/0` listen on different ports (5000, 5001)",
            ),
            ("url = \"redis://h:6379/0\", sentinel_port = 26379", "sentinel_port is for a Redis Sentinel endpoint"),
            ("url = \"redis+sentinel://s1/blue\", sentinel_port = 0", "sentinel_port 0 is outside 1–65535"),
        ] {
            let err = parse("t.toml", &with(url, bad)).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("t.toml:"), "{bad}: {err}");
        }
    }

    /// A password written in a Redis URL, or given where a variable's name
    /// belongs, is refused without being echoed: the errors go to CI logs.
    #[test]
    fn redis_secrets_are_never_echoed_in_errors() {
        let url = "url = \"redis://blue-cache.internal:6379/0\"";
        for (bad, secret) in [
            ("url = \"redis://:hunter2@blue-cache.internal:6379/0\"", "hunter2"),
            ("url = \"redis+cluster://:hunter2@n1:7000,n2:7001\"", "hunter2"),
            ("url = \"redis+sentinel://:hunter2@s1:26379,/blue\"", "hunter2"),
            ("url = \"redis://:hunter2@h:99999/0\"", "hunter2"),
            ("url = \"redis://h:6379/0\", password_env = \"Tr0ub4dor&3\"", "Tr0ub4dor"),
            ("url_env = \"rediss://:Tr0ub4dor&3@prod-cache:6380\", port = 6380", "Tr0ub4dor"),
            ("url_env = \"rediss://:Tr0ub4dor&3@prod-cache:6380\", security_groups = [\"sg-1\"]", "Tr0ub4dor"),
            ("url = \"redis+sentinel://s1/blue\", sentinel_password_env = \"s3cret-pw\"", "s3cret"),
        ] {
            let err = parse("t.toml", &with(url, bad)).unwrap_err();
            let shown = format!("{err}\n{}", err.render(false));
            assert!(shown.contains("t.toml:"), "{bad}: {shown}");
            assert!(!shown.contains(secret), "{bad}: {shown}");
        }
    }

    #[test]
    fn cluster_redis_urls_validate() {
        let url = "url = \"redis://blue-cache.internal:6379/0\"";
        // The nodes' port is the one security-group rules must open.
        for (good, given, port) in [
            ("redis+cluster://n1:7000,n2:7000", "", 7000),
            ("rediss+cluster://n1/0", "", 6379),
            ("redis+cluster://user@n1:1", "", 1),
            ("redis+cluster://n1:6379,n2", "", 6379),
            ("redis+cluster://n1:7000,n2:7001", ", port = 7000", 7000),
        ] {
            let rb = parse("t.toml", &with(url, &format!("url = \"{good}\"{given}")))
                .unwrap_or_else(|e| panic!("{good}: {e}"));
            let ep = &rb.environments["blue"].redis[0];
            assert_eq!((ep.url.as_deref(), ep.port), (Some(good), port));
        }
        for (bad, why) in [
            ("redis+cluster://:pw@n1:7000", "a password is written in the Redis URL"),
            ("redis+cluster://n1:7000,", "needs its nodes and no database but 0"),
            ("redis+cluster://n1:7000/2", "needs its nodes and no database but 0"),
            ("redis+cluster://n1:7000,n2:7001", "listen on different ports (7000, 7001)"),
            ("redis+cluster://n1:7000,n2:70000", "node `n2:70000` of Redis Cluster URL"),
            ("redis+cluster://n1:7000x", "has no valid port"),
        ] {
            let err = parse("t.toml", &with(url, &format!("url = \"{bad}\""))).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("t.toml:"), "{bad}: {err}");
        }
    }

    #[test]
    fn sandbox_redis_clusters_validate() {
        let sandbox = include_str!("../../tests/runbooks/cluster-sandbox.toml");
        let rb = parse("c.toml", sandbox).unwrap_or_else(|e| panic!("{e}"));
        let spec = rb.sandbox.as_ref().unwrap();
        assert_eq!(spec.redis_clusters["blue-cache"], SandboxCluster { shards: 3, replicas: true });
        assert!(!spec.redis_clusters.contains_key("green-cache"), "a plain endpoint stays one server");
        let line = "redis_clusters = { blue-cache = { shards = 3, replicas = 1 } }";
        for (bad, why) in [
            ("redis_clusters = { nope = {} }", "unknown Redis endpoint `nope`"),
            ("redis_clusters = { blue-cache = { shards = 2 } }", "shards 2 is out of range"),
            ("redis_clusters = { blue-cache = { replicas = 2 } }", "replicas 2 is out of range"),
        ] {
            let err = parse("c.toml", &sandbox.replace(line, bad)).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("c.toml:"), "{bad}: {err}");
        }
        // A cluster URL is a cluster in the sandbox without being listed.
        let url = "name = \"green-cache\", url_env";
        let listed = sandbox
            .replace(line, "")
            .replace(url, "name = \"green-cache\", url = \"redis+cluster://n1:7000\", url_env");
        let rb = parse("c.toml", &listed).unwrap_or_else(|e| panic!("{e}"));
        let spec = rb.sandbox.as_ref().unwrap();
        assert_eq!(spec.redis_clusters.keys().collect::<Vec<_>>(), ["green-cache"]);
        assert_eq!(spec.redis_clusters["green-cache"], SandboxCluster::default());
    }

    #[test]
    fn sandbox_redis_sentinels_validate() {
        let sandbox = include_str!("../../tests/runbooks/sentinel-sandbox.toml");
        let rb = parse("s.toml", sandbox).unwrap_or_else(|e| panic!("{e}"));
        let spec = rb.sandbox.as_ref().unwrap();
        assert_eq!(spec.redis_sentinels["blue-cache"], SandboxSentinels { sentinels: 3, quorum: 2 });
        assert!(spec.redis_clusters.is_empty() && !spec.redis_sentinels.contains_key("green-cache"));
        let line = "redis_sentinels = { blue-cache = { sentinels = 3, quorum = 2 } }";
        let five = sandbox.replace(line, "redis_sentinels = { blue-cache = { sentinels = 5 } }");
        let spec = parse("s.toml", &five).unwrap_or_else(|e| panic!("{e}")).sandbox.unwrap();
        assert_eq!(spec.redis_sentinels["blue-cache"], SandboxSentinels { sentinels: 5, quorum: 3 }, "a majority");
        let both = "redis_sentinels = { blue-cache = {} }\nredis_clusters = { blue-cache = {} }";
        for (bad, why) in [
            ("redis_sentinels = { nope = {} }", "unknown Redis endpoint `nope`"),
            ("redis_sentinels = { blue-cache = { sentinels = 0 } }", "sentinels 0 is out of range"),
            ("redis_sentinels = { blue-cache = { sentinels = 3, quorum = 4 } }", "quorum 4 is out of range"),
            (both, "Redis endpoint `blue-cache` is in both redis_clusters and redis_sentinels"),
        ] {
            let err = parse("s.toml", &sandbox.replace(line, bad)).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("s.toml:"), "{bad}: {err}");
        }
        // A Sentinel URL is a group in the sandbox without being listed; listed as a cluster, it is an error.
        let url = "name = \"green-cache\", url_env";
        let sentinel_url = "name = \"green-cache\", url = \"redis+sentinel://s1:26379/m\", url_env";
        let rb = parse("s.toml", &sandbox.replace(url, sentinel_url)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rb.sandbox.unwrap().redis_sentinels["green-cache"], SandboxSentinels::default());
        let as_cluster = sandbox.replace(url, sentinel_url).replace(line, "redis_clusters = { green-cache = {} }");
        let err = parse("s.toml", &as_cluster).unwrap_err().to_string();
        assert!(
            err.contains("Redis endpoint `green-cache` has a Sentinel URL, but the sandbox lists it in redis_clusters"),
            "{err}"
        );
    }

    /// A metric read per target group cannot be gated on an environment
    /// listing several (only the first is read); HealthyHostCount under a
    /// bound would pass with no healthy host.
    #[test]
    fn metric_gates_read_one_target_group_and_never_bound_healthy_hosts() {
        let two = with("target_groups = [\"green-web\"]", "target_groups = [\"green-web\", \"green-api\"]");
        let gate = "kind = \"alarm_ok\"\nalarms = [\"green-5xx\"]";
        let metric = |m: &str| format!("kind = \"metric\"\nenvironment = \"green\"\nmetric = \"{m}\"\nmax = 0");
        let err =
            parse("t.toml", &two.replacen(gate, &metric("HTTPCode_Target_5XX_Count"), 1)).unwrap_err().to_string();
        assert!(
            err.contains("HTTPCode_Target_5XX_Count is read per target group, and environment `green` lists 2 (green-web, green-api)")
                && err.contains("t.toml:"),
            "{err}"
        );
        assert_valid(&two.replacen(gate, &metric("HTTPCode_ELB_5XX_Count"), 1), "the load balancer's own 5xx");
        let elb = format!("\n\n[[rollout.gates]]\n{}", metric("HTTPCode_ELB_5XX_Count"));
        assert_valid(&with(gate, &(metric("HTTPCode_Target_5XX_Count") + &elb)), "one target group");
        let err = parse("t.toml", &with(gate, &metric("HealthyHostCount"))).unwrap_err().to_string();
        assert!(err.contains("HealthyHostCount at 0 would pass it"), "{err}");
        // Latency in milliseconds would be a bound no request reaches.
        let latency =
            |max: &str| metric("TargetResponseTime").replace("max = 0", &format!("stat = \"Average\"\nmax = {max}"));
        let err = parse("t.toml", &with(gate, &latency("100"))).unwrap_err().to_string();
        assert!(
            err.contains("max 100 is 100 seconds: TargetResponseTime is in seconds")
                && err.contains("100 ms is 0.1")
                && err.contains("t.toml:"),
            "{err}"
        );
        assert_valid(&with(gate, &latency("0.1")), "100 ms");
        assert_valid(&with(gate, &latency("60")), "a minute, the default idle timeout");
        // A count of requests is no time per request.
        let count = latency("1000").replace("Average", "SampleCount");
        assert_valid(&with(gate, &count), "a count of requests");
        // Summed, the default, it grows with traffic: no latency bound.
        for summed in [metric("TargetResponseTime"), count.replace("SampleCount", "Sum")] {
            let err = parse("t.toml", &with(gate, &summed)).unwrap_err().to_string();
            assert!(err.contains("TargetResponseTime summed") && err.contains("stat = \"p99\""), "{err}");
        }
        let compare = "kind = \"compare\"\nmetric = \"TargetResponseTime\"\nfactor = 1.5";
        let err = parse("t.toml", &with(gate, compare)).unwrap_err().to_string();
        assert!(err.contains("TargetResponseTime summed"), "{err}");
        let err = parse("t.toml", &with(gate, &format!("{compare}\nstat = \"p99\""))).unwrap_err().to_string();
        assert!(!err.contains("TargetResponseTime summed"), "{err}");
        // A count's Average (Minimum, Maximum, p99) is 1 whatever the count: only its Sum bounds it.
        for stat in ["Average", "Maximum", "Minimum", "SampleCount", "p99"] {
            let averaged =
                metric("HTTPCode_Target_5XX_Count").replace("max = 0", &format!("stat = \"{stat}\"\nmax = 5"));
            let err = parse("t.toml", &with(gate, &averaged)).unwrap_err().to_string();
            assert!(
                err.contains(&format!("HTTPCode_Target_5XX_Count is a count: its {stat} is 1"))
                    && err.contains("stat = \"Sum\"")
                    && err.contains("t.toml:"),
                "{err}"
            );
        }
        let err = parse(
            "t.toml",
            &with(gate, "kind = \"compare\"\nmetric = \"HTTPCode_ELB_5XX_Count\"\nstat = \"Average\"\nfactor = 1.5"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("HTTPCode_ELB_5XX_Count is a count: a compare gate reads its Sum per request"), "{err}");
        let summed = metric("HTTPCode_Target_5XX_Count").replace("max = 0", "stat = \"Sum\"\nmax = 5");
        assert_valid(&with(gate, &(summed + &elb)), "a count summed");
    }

    #[test]
    fn a_rollout_bounding_its_targets_5xx_bounds_its_load_balancers_own_too() {
        let gate = "kind = \"alarm_ok\"\nalarms = [\"green-5xx\"]";
        let metric = |env: &str, m: &str| {
            format!("kind = \"metric\"\nenvironment = \"{env}\"\nmetric = \"{m}\"\nmax = 0\nno_data = \"pass\"")
        };
        let and = |a: &str, b: &str| format!("{a}\n\n[[rollout.gates]]\n{b}");
        let target = metric("green", "HTTPCode_Target_5XX_Count");
        let refused = |text: &str| {
            let err = parse("t.toml", text).unwrap_err().to_string();
            assert!(
                err.contains(
                    "the rollout bounds the 5xx of `green`'s targets but not those its load balancer answers itself"
                ) && err.contains("metric = \"HTTPCode_ELB_5XX_Count\"")
                    && err.contains("t.toml:32:10:"),
                "{err}"
            );
        };
        refused(&with(gate, &target));
        // Another side's load balancer says nothing of this one's.
        refused(&with(gate, &and(&target, &metric("blue", "HTTPCode_ELB_5XX_Count"))));
        assert_valid(&with(gate, &and(&target, &metric("green", "HTTPCode_ELB_5XX_Count"))), "both counts bounded");
        // A compare gate reads both sides: blue gets a load balancer.
        let compare = |m: &str| format!("kind = \"compare\"\nmetric = \"{m}\"\nfactor = 1.5");
        let both_sides = |gates: &str| {
            with(gate, gates).replacen(
                "[environments.blue]\n",
                "[environments.blue]\nload_balancer = \"blue-alb\"\ntarget_groups = [\"blue-web\"]\n",
                1,
            )
        };
        let err = parse("t.toml", &both_sides(&compare("HTTPCode_Target_5XX_Count"))).unwrap_err().to_string();
        assert!(err.contains("add a gate on HTTPCode_ELB_5XX_Count: a compare gate like this one"), "{err}");
        assert_valid(
            &both_sides(&and(&compare("HTTPCode_Target_5XX_Count"), &compare("HTTPCode_ELB_5XX_Count"))),
            "both compared",
        );
        // An alarm on the load balancer's own 5xx of `green`, gated on, bounds them.
        let on_elb = |text: String| {
            text.replacen(
                "name = \"green-5xx\"\nenvironment = \"green\"",
                "name = \"green-5xx\"\nenvironment = \"green\"\nmetric = \"HTTPCode_ELB_5XX_Count\"",
                1,
            )
        };
        assert_valid(&on_elb(with(gate, &and(gate, &target))), "an alarm on the load balancer's 5xx");
        let err = parse("t.toml", &with(gate, &and(gate, &target))).unwrap_err().to_string();
        assert!(err.contains("the rollout bounds the 5xx of `green`'s targets"), "an alarm on the target count: {err}");
        // Through a composite: only a child whose ALARM alone sets it off.
        let composite = |op: &str| {
            on_elb(with(gate, &and("kind = \"alarm_ok\"\nalarms = [\"green-any\"]", &target))).replacen(
                "[[phases]]",
                &format!(
                    "[[alarms]]\nname = \"green-tg\"\nenvironment = \"green\"\n\n[[alarms]]\nname = \"green-any\"\n\
                     rule = 'ALARM(\"green-tg\") {op} ALARM(\"green-5xx\")'\n\n[[phases]]"
                ),
                1,
            )
        };
        assert_valid(&composite("OR"), "a composite any of whose alarms sets it off");
        let err = parse("t.toml", &composite("AND")).unwrap_err().to_string();
        assert!(err.contains("the rollout bounds the 5xx of `green`'s targets"), "both needed: {err}");
        // Without a bound on the target count, nothing is asked.
        assert_valid(MINIMAL, "an alarm gate alone");
    }

    /// An alarm gate's `lag`: 4m unless given (3m past its longest alarm
    /// period when that is over a minute), from 1s to 1h, and only on
    /// alarm gates; its wait for a covering reading runs that long past the
    /// soak, plus the time a poll may take before it counts as stalled.
    #[test]
    fn an_alarm_gates_lag_defaults_to_four_minutes_and_is_checked() {
        let gate = "kind = \"alarm_ok\"\nalarms = [\"green-5xx\"]";
        let alarm_gate = |text: &str| {
            let rb = parse("t.toml", text).unwrap();
            let g = rb.rollout.gates.into_iter().find(|g| matches!(g.kind, GateKind::AlarmOk { .. })).unwrap();
            let GateKind::AlarmOk { lag, .. } = g.kind else { unreachable!() };
            (lag, g.settle(), g.interval)
        };
        let (lag, settle, interval) = alarm_gate(&with(gate, gate));
        assert_eq!(lag, DEFAULT_ALARM_LAG);
        assert_eq!(settle, Some(DEFAULT_ALARM_LAG + (interval * 3).max(Duration::from_secs(60))));
        let (lag, _, _) = alarm_gate(&with(gate, &format!("{gate}\nlag = \"90s\"")));
        assert_eq!(lag, Duration::from_secs(90));
        let (_, settle, _) = alarm_gate(&with(gate, &format!("{gate}\nlag = \"90s\"\ninterval = \"40s\"")));
        assert_eq!(settle, Some(Duration::from_secs(90 + 120)), "three 40 s polls are longer than a minute");
        for bad in ["0s", "2h"] {
            let err = parse("t.toml", &with(gate, &format!("{gate}\nlag = \"{bad}\""))).unwrap_err().to_string();
            assert!(err.contains(&format!("lag {bad} is out of range")) && err.contains("t.toml:"), "{err}");
        }
        let err = parse("t.toml", &with(gate, &format!("{gate}\nlag = \"soon\""))).unwrap_err().to_string();
        assert!(err.contains("lag: "), "{err}");
        let targets = "kind = \"healthy_targets\"\nenvironment = \"green\"\nmin = 1\nlag = \"1m\"";
        let err = parse("t.toml", &with(gate, targets)).unwrap_err().to_string();
        assert!(err.contains("lag"), "a lag on a gate that reads live state: {err}");
        // A 5-minute alarm judges a request up to 5 minutes later than a
        // 1-minute one: the default waits that much longer, alone or through
        // a composite; a lag given is kept.
        let five = with("environment = \"green\"\n", "environment = \"green\"\nperiod = \"5m\"\n");
        assert_eq!(alarm_gate(&five).0, Duration::from_secs(8 * 60));
        assert_eq!(alarm_gate(&five.replacen(gate, &format!("{gate}\nlag = \"90s\""), 1)).0, Duration::from_secs(90));
        let composite = five.replacen(gate, "kind = \"alarm_ok\"\nalarms = [\"green-any\"]", 1)
            + "\n[[alarms]]\nname = \"green-any\"\nrule = 'ALARM(\"green-5xx\")'\n";
        assert_eq!(alarm_gate(&composite).0, Duration::from_secs(8 * 60));
        let nested = composite.replacen("alarms = [\"green-any\"]", "alarms = [\"green-all\"]", 1)
            + "\n[[alarms]]\nname = \"green-all\"\nrule = 'ALARM(\"green-any\")'\n";
        assert_eq!(alarm_gate(&nested).0, Duration::from_secs(8 * 60), "a composite of a composite");
    }

    /// The closed lists `cutover schema` offers are the ones validation accepts.
    #[test]
    fn every_choice_the_schema_offers_validates() {
        let gate = "alarms = [\"green-5xx\"]\n";
        for policy in NO_DATA_POLICIES {
            assert_valid(&with(gate, &format!("{gate}no_data = \"{policy}\"\n")), policy);
        }
        for choice in INSUFFICIENT_DATA_CHOICES {
            assert_valid(&with(gate, &format!("{gate}insufficient_data = \"{choice}\"\n")), choice);
        }
        let alarm = "environment = \"green\"\n\n[[phases]]";
        for treatment in TREATMENTS {
            let text =
                with(alarm, &format!("environment = \"green\"\ntreat_missing_data = \"{treatment}\"\n\n[[phases]]"));
            assert_valid(&text, treatment);
        }
        for kind in ITEM_KINDS {
            let extra = match kind {
                "check" => "check = \"targets_healthy\"\nenvironment = \"green\"\n",
                "action" => "action = \"register_targets\"\nenvironment = \"green\"\n",
                _ => "",
            };
            let text =
                format!("{MINIMAL}\n[[phases.items]]\nid = \"extra\"\ntitle = \"Extra\"\nkind = \"{kind}\"\n{extra}");
            assert_valid(&text, kind);
        }
    }
}
