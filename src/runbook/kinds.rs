//! The closed lists of the runbook format: what the validator accepts and
//! `cutover schema` offers (a test ties the two together). The validator
//! matches each choice as a literal.

pub const CHECKS: [&str; 14] = [
    "targets_healthy",
    "redis_reachable",
    "stickiness",
    "alarm_ok",
    "http_ok",
    "key_counts_match",
    "zones_enabled",
    "parity",
    "instances_alike",
    "https_listener",
    "alarm_on_5xx",
    "redis_persistence",
    "autoscaling_group",
    "redis_hit_rate",
];
/// Every action kind the runbook format has.
pub const ACTIONS: [&str; 15] = [
    "shift_weights",
    "rollout",
    "register_targets",
    "deregister_targets",
    "set_stickiness",
    "disable_stickiness",
    "authorize_redis_ingress",
    "revoke_redis_ingress",
    "copy_redis",
    "stop_instances",
    "start_instances",
    "create_image",
    "snapshot_redis",
    "terminate_instances",
    "delete_security_groups",
];
pub const GATES: [&str; 7] =
    ["alarm_ok", "healthy_targets", "http_health", "redis_reachable", "redis_hit_rate", "metric", "compare"];
pub const ITEM_KINDS: [&str; 3] = ["manual", "check", "action"];
pub const NO_DATA_POLICIES: [&str; 3] = ["fail", "pause", "pass"];
pub const INSUFFICIENT_DATA_CHOICES: [&str; 3] = ["wait", "pass", "fail"];
pub const TREATMENTS: [&str; 4] = ["missing", "notBreaching", "breaching", "ignore"];
