# Regenerates tests/runbooks/bad/*.toml from minimal.toml (one mistake each).
# Then refresh each .err with `cutover validate X.toml 2> X.err` from the repo
# root (errors, each with its line and caret) and READ it.
import os, re, subprocess, sys
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BAD = os.path.join(ROOT, "tests/runbooks/bad")
base = open(os.path.join(ROOT, "tests/runbooks/minimal.toml")).read()
HEAD = "# The smallest useful runbook; each tests/runbooks/bad/*.toml changes one thing.\n"
assert base.startswith(HEAD)
body = base[len(HEAD):]

SANDBOX_BASE = body.replace(
    'redis = [{ name = "blue-cache", url = "redis://blue-cache.internal:6379/0" }]',
    'redis = [{ name = "blue-cache", url_env = "BLUE_REDIS_URL", port = 6379, security_groups = ["blue-redis"] }]',
) + '''
[sandbox]
load_balancer_zones = { blue = ["a"], green = ["a"] }

[[sandbox.security_groups]]
name = "app"

[[sandbox.security_groups]]
name = "blue-redis"
ingress = [{ port = 6379, from = "app" }]

[[sandbox.instances]]
name = "blue-1"
environment = "blue"
zone = "a"
security_groups = ["app"]

[[sandbox.instances]]
name = "green-1"
environment = "green"
zone = "a"
security_groups = ["app"]
redis = "blue-cache"
'''

def sub(text, old, new, count=1):
    n = text.count(old)
    assert n == count, (old, n)
    return text.replace(old, new)

ITEM_TAIL = '''
[[phases.items]]
'''
F = {}
def fx(name, comment, *repls, base=None, append=None):
    t = body if base is None else base
    for old, new in repls:
        t = sub(t, old, new)
    if append:
        t = t + append
    F[name] = f"# Mistake: {comment}\n" + t

S = 'soak = "5m"'
fx("unknown-key", "a top-level key the format does not have", ('[runbook]\n', 'schema = 2\n\n[runbook]\n'))
fx("unknown-key-nested", "`alarm` (singular) in a gate, which takes `alarms`", ('alarms = ["green-5xx"]', 'alarm = ["green-5xx"]'))
fx("wrong-type", "ttl written as a string", ('ttl = 60', 'ttl = "60"'))
fx("toml-syntax", "an unquoted string", ('soak = "5m"', 'soak = 5m'))
fx("duplicate-key", "the same key twice in one table", ('ttl = 60\n', 'ttl = 60\nttl = 300\n'))
fx("missing-table", "no [dns] table", ('''[dns]
zone = "example.com"
record = "app.example.com"
type = "CNAME"
ttl = 60
set_identifiers = { blue = "blue", green = "green" }
initial_weights = { blue = 100, green = 0 }

''', ''))
fx("missing-field", "no soak in [rollout]", ('soak = "5m"\n', ''))
fx("weight-300", "initial weight above 255", ('initial_weights = { blue = 100, green = 0 }', 'initial_weights = { blue = 300, green = 0 }'))
fx("weight-negative", "negative initial weight", ('initial_weights = { blue = 100, green = 0 }', 'initial_weights = { blue = 100, green = -1 }'))
fx("steps-not-increasing", "a step lower than the one before", ('steps = [10, 50, 100]', 'steps = [10, 50, 30, 100]'))
fx("steps-not-ending-at-100", "the last step is not 100", ('steps = [10, 50, 100]', 'steps = [10, 50, 90]'))
fx("step-zero", "a step of 0%", ('steps = [10, 50, 100]', 'steps = [0, 50, 100]'))
fx("step-150", "a step above 100%", ('steps = [10, 50, 100]', 'steps = [10, 50, 150]'))
fx("empty-steps", "no steps", ('steps = [10, 50, 100]', 'steps = []'))
fx("rollout-without-gates", "a rollout with no gates: every step would pass on its soak time alone", ('[[rollout.gates]]\nkind = "alarm_ok"\nalarms = ["green-5xx"]\n\n', ''))
fx("gate-unknown-alarm", "a gate naming an alarm not declared", ('alarms = ["green-5xx"]', 'alarms = ["green-500"]'))
fx("gate-unknown-environment", "a gate naming an environment not declared", ('kind = "alarm_ok"\nalarms = ["green-5xx"]', 'kind = "alarm_ok"\nalarms = ["green-5xx"]\n\n[[rollout.gates]]\nkind = "healthy_targets"\nenvironment = "gren"\nmin = 2'))
fx("rollout-from-equals-to", "rollout from and to the same environment", ('to = "green"', 'to = "blue"'))
fx("rollout-unknown-environment", "rollout to an environment not declared", ('to = "green"', 'to = "grean"'))
fx("duplicate-set-identifiers", "two environments with the same set identifier", ('set_identifiers = { blue = "blue", green = "green" }', 'set_identifiers = { blue = "blue", green = "blue" }'))
fx("missing-set-identifier", "the rollout's `to` side has no set identifier", ('set_identifiers = { blue = "blue", green = "green" }', 'set_identifiers = { blue = "blue" }'))
fx("unknown-item-kind", "a phase item of unknown kind", ('kind = "action"', 'kind = "task"'))
fx("unknown-check", "a check that does not exist", append='''
[[phases.items]]
id = "dns"
title = "Record resolves to green"
kind = "check"
check = "dns_resolves"
environment = "green"
''')
fx("unknown-action", "an action that does not exist", ('action = "rollout"', 'action = "shift_traffic"'))
fx("field-not-for-kind", "`environment` on a rollout action, which takes no parameters", ('action = "rollout"\n', 'action = "rollout"\nenvironment = "green"\n'))
fx("manual-with-check", "`check` on a manual item", append='''
[[phases.items]]
id = "backup"
title = "Redis snapshot taken"
kind = "manual"
check = "alarm_ok"
''')
fx("check-with-rollback", "a check item with a rollback", append='''
[[phases.items]]
id = "targets"
title = "Green targets healthy"
kind = "check"
check = "targets_healthy"
environment = "green"
rollback = { action = "shift_weights", to = 0 }
''')
fx("check-missing-environment", "a check without the environment it needs", append='''
[[phases.items]]
id = "targets"
title = "Green targets healthy"
kind = "check"
check = "targets_healthy"
''')
fx("soak-5-minutes", "a duration written in words", ('soak = "5m"', 'soak = "5 minutes"'))
fx("stickiness-8d", "stickiness longer than the ALB allows (7 days)", append='''
[[phases.items]]
id = "sticky"
title = "Sticky sessions on green"
kind = "check"
check = "stickiness"
environment = "green"
duration = "8d"
''')
fx("shift-weights-150", "shift_weights above 100%", ('rollback = { action = "shift_weights", to = 0 }', 'rollback = { action = "shift_weights", to = 150 }'))
fx("redis-url-password", "a password written in the Redis URL", ('url = "redis://blue-cache.internal:6379/0"', 'url = "redis://:hunter2@blue-cache.internal:6379/0"'))
fx("redis-no-url", "a Redis endpoint with neither url nor url_env", ('redis = [{ name = "blue-cache", url = "redis://blue-cache.internal:6379/0" }]', 'redis = [{ name = "blue-cache" }]'))
fx("redis-sentinel-password", "a password written in a Redis Sentinel URL", ('url = "redis://blue-cache.internal:6379/0"', 'url = "redis+sentinel://:hunter2@sentinel-1:26379,sentinel-2:26379/blue/0"'))
fx("redis-sentinel-no-master", "a Redis Sentinel URL without the master's name", ('url = "redis://blue-cache.internal:6379/0"', 'url = "redis+sentinel://sentinel-1:26379,sentinel-2:26379"'))
fx("redis-http-scheme", "an http:// URL for Redis", ('url = "redis://blue-cache.internal:6379/0"', 'url = "http://blue-cache.internal:6379/0"'))
fx("redis-duplicate-name", "two Redis endpoints with one name", ('instances = { tags = { Environment = "green" } }\n', 'instances = { tags = { Environment = "green" } }\nredis = [{ name = "blue-cache", url = "redis://green-cache.internal:6379/0" }]\n'))
fx("record-not-in-zone", "a record outside the hosted zone", ('record = "app.example.com"', 'record = "app.example.org"'))
fx("unknown-record-type", "a record type weighted routing cannot shift", ('type = "CNAME"', 'type = "MX"'))
fx("duplicate-phase-id", "two phases with one id", append='''
[[phases]]
id = "traffic"
title = "After the rollout"
''')
fx("duplicate-item-id", "two items of a phase with one id", append='''
[[phases.items]]
id = "shift"
title = "Traffic looks normal"
kind = "manual"
''')
fx("unknown-no-data", "an unknown no_data policy", ('alarms = ["green-5xx"]\n', 'alarms = ["green-5xx"]\nno_data = "ignore"\n'))
fx("bad-metric-name", "a metric cutover does not read", ('environment = "green"\n\n[[phases]]', 'environment = "green"\nmetric = "HTTPCode_5XX"\n\n[[phases]]'))
fx("bad-stat", "a statistic CloudWatch does not have", ('environment = "green"\n\n[[phases]]', 'environment = "green"\nstat = "Median"\n\n[[phases]]'))
fx("unknown-gate-kind", "an unknown gate kind", ('kind = "alarm_ok"', 'kind = "alarms_ok"'))
fx("alarm-period-45s", "an alarm period CloudWatch does not allow", ('environment = "green"\n\n[[phases]]', 'environment = "green"\nperiod = "45s"\n\n[[phases]]'))
fx("alarm-looks-back-too-far", "an alarm looking back further than CloudWatch allows (period × evaluation_periods over a day)", ('environment = "green"\n\n[[phases]]', 'environment = "green"\nperiod = "30m"\nevaluation_periods = 100\n\n[[phases]]'))
fx("invalid-item-id", "an item id with a space", ('id = "shift"', 'id = "shift traffic"'))
fx("instances-tags-and-ids", "instances selected by tags and ids at once", ('instances = { tags = { Environment = "green" } }', 'instances = { tags = { Environment = "green" }, ids = ["i-0123456789abcdef0"] }'))
fx("account-id-integer", "account_id as a number, not a quoted string", ('name = "minimal"\n', 'name = "minimal"\naccount_id = 123456789012\n'))
fx("one-environment", "only one environment", ('''[environments.green]
load_balancer = "green-alb"
target_groups = ["green-web"]
instances = { tags = { Environment = "green" } }

''', ''))
fx("access-bad-role-arn", "a role_arn that is not an IAM role ARN", ('zone = "example.com"', 'zone = "example.com"\nrole_arn = "arn:aws:iam::1234:user/dns"'))
fx("access-external-id-without-role", "an external_id with no role to assume", ('instances = { tags = { Environment = "green" } }', 'instances = { tags = { Environment = "green" } }\nexternal_id = "cutover-green"'))
fx("access-account-not-the-roles", "an account_id other than its role's account", ('instances = { tags = { Environment = "green" } }', 'instances = { tags = { Environment = "green" } }\naccount_id = "222222222222"\nrole_arn = "arn:aws:iam::333333333333:role/cutover"'))
fx("composite-child-reached-otherwise", "a composite alarm naming an alarm of an environment reached with its own role", ('instances = { tags = { Environment = "green" } }', 'instances = { tags = { Environment = "green" } }\nrole_arn = "arn:aws:iam::222222222222:role/cutover"'), ('name = "green-5xx"\nenvironment = "green"\n', 'name = "green-5xx"\nenvironment = "green"\n\n[[alarms]]\nname = "any-5xx"\nrule = "ALARM(\\"green-5xx\\")"\n'))
fx("access-bad-region", "an environment region that is not a region", ('instances = { tags = { Environment = "blue" } }', 'instances = { tags = { Environment = "blue" } }\nregion = "Ireland"'))
# Sandbox fixtures start from minimal-sandbox.toml.
fx("sandbox-unknown-security-group", "a sandbox instance in a security group not declared", ('name = "green-1"\nenvironment = "green"\nzone = "a"\nsecurity_groups = ["app"]', 'name = "green-1"\nenvironment = "green"\nzone = "a"\nsecurity_groups = ["web"]'), base=SANDBOX_BASE)
fx("sandbox-environment-by-ids", "the sandbox cannot create instances selected by id", ('instances = { tags = { Environment = "green" } }', 'instances = { ids = ["i-0123456789abcdef0"] }'), base=SANDBOX_BASE)
fx("sandbox-redis-without-url-env", "a Redis endpoint the sandbox cannot point at its redis-server", ('url_env = "BLUE_REDIS_URL"', 'url = "redis://blue-cache.internal:6379/0"'), base=SANDBOX_BASE)
fx("redis-url-env-without-port", "a Redis endpoint whose URL is read at run time, with no port for its security groups", ('url_env = "BLUE_REDIS_URL", port = 6379,', 'url_env = "BLUE_REDIS_URL",'), base=SANDBOX_BASE)
fx("sandbox-bad-zone", "a zone written as a full AZ name", ('name = "blue-1"\nenvironment = "blue"\nzone = "a"', 'name = "blue-1"\nenvironment = "blue"\nzone = "eu-west-1a"'), base=SANDBOX_BASE)
fx("dns-relative-record-with-zone-id", "a record written relative to a zone given by id", ('zone = "example.com"\nrecord = "app.example.com"', 'zone = "Z0123456789ABCDEFGHIJ"\nrecord = "app"'))
fx("dns-type-list-with-cname", "CNAME grouped with another type", ('type = "CNAME"', 'type = ["A", "CNAME"]'))
fx("dns-type-not-a-string", "a record type given as a number", ('type = "CNAME"', 'type = 1'))
fx("dns-type-twice", "a type listed twice", ('type = "CNAME"', 'type = ["AAAA", "aaaa"]'))
fx("sandbox-alias-with-cname", "alias records asked for a CNAME group", ('load_balancer_zones = { blue = ["a"], green = ["a"] }', 'load_balancer_zones = { blue = ["a"], green = ["a"] }\nalias_records = ["green"]'), base=SANDBOX_BASE)
fx("sandbox-alias-without-load-balancer", "an alias record for an environment with no load balancer", ('type = "CNAME"', 'type = "A"'), ('load_balancer_zones = { blue = ["a"], green = ["a"] }', 'load_balancer_zones = { blue = ["a"], green = ["a"] }\nalias_records = ["blue"]'), base=SANDBOX_BASE)
fx("notify-webhook-url-in-runbook", "the webhook URL itself where its variable's name belongs", append='''
[notify]
webhook_url_env = "https://hooks.example.com/services/T000/B000/XXXX"
''')
fx("parity-unknown-path", "[parity] allows a path that does not exist", append='\n[parity]\nallow = [{ what = "target_group.healthcheck.interval", reason = "staging checks faster" }]\n')
fx("parity-no-reason", "[parity] allows a difference without saying why", append='\n[parity]\nallow = [\n  { what = "instances.type", reason = "staging is sized for load" },\n  { what = "alarms" },\n]\n')
fx("parity-twice-and-empty-reason", "[parity] allows one path twice, and gives an empty reason", append='\n[parity]\nallow = [\n  { what = "instances.type", reason = "staging is sized for load" },\n  { what = "instances.type", reason = "and bigger" },\n  { what = "alarms", reason = " " },\n]\n')
fx("parity-narrowed-twice-and-empty-to", "[parity] allows one difference twice with the same narrowing, pins an empty value, narrows a path also allowed whole, with spaces at a subject's ends", append='\n[parity]\nallow = [\n  { what = "security_groups", subject = "app groups", reason = "the office reaches green over SSH" },\n  { what = "security_groups", subject = "redis groups", reason = "a narrowing of its own: allowed" },\n  { what = "security_groups", subject = "app groups", reason = "said again" },\n  { what = "alarms", to = "", reason = "pinned to nothing" },\n  { what = "instances.type", reason = "staging is sized for load" },\n  { what = "instances.type", subject = " demo-green-web ", reason = "narrowed beside the whole, and padded" },\n]\n')
fx("redis-elasticache-bad-id", "an ElastiCache replication group id with an underscore", ('url = "redis://blue-cache.internal:6379/0" }', 'url = "redis://blue-cache.internal:6379/0", elasticache = "blue_cache" }'))
GATED_STOP = '''
[[phases.items]]
id = "stop-blue"
title = "Stop blue"
kind = "action"
action = "stop_instances"
environment = "blue"
'''
fx("not-before-unknown-item", "a time gate after an item that does not exist", append=GATED_STOP + '''
[[phases.items]]
id = "stop-green"
title = "Stop green, 48 h after blue"
kind = "action"
action = "stop_instances"
environment = "green"
not_before = { after = "traffic/stop-blu", wait = "48h" }
''')
fx("not-before-bad-wait", "a time gate whose wait is not a duration, and one after a check item", append=GATED_STOP + '''
[[phases.items]]
id = "targets"
title = "Green targets healthy"
kind = "check"
check = "targets_healthy"
environment = "green"

[[phases.items]]
id = "stop-green"
title = "Stop green, 2 days after blue"
kind = "action"
action = "stop_instances"
environment = "green"
not_before = { after = "traffic/stop-blue", wait = "2 days" }

[[phases.items]]
id = "start-green"
title = "Start green after the check"
kind = "action"
action = "start_instances"
environment = "green"
not_before = { after = "traffic/targets", wait = "1h" }
''')
fx("not-before-on-manual", "a time gate on a manual item, and one after the rollout", append=GATED_STOP + '''
[[phases.items]]
id = "terminate"
title = "Terminate blue"
kind = "manual"
not_before = { after = "traffic/stop-blue", wait = "48h" }

[[phases.items]]
id = "start-blue"
title = "Start blue a day after the rollout"
kind = "action"
action = "start_instances"
environment = "blue"
not_before = { after = "traffic/shift", wait = "1d" }
''')
fx("terminate-window-and-rollback", "terminate_instances as a rollback (which runs without a rollback window), and a termination whose window runs from another environment's stop", append=GATED_STOP + '''
[[phases.items]]
id = "stop-green"
title = "Stop green"
kind = "action"
action = "stop_instances"
environment = "green"
rollback = { action = "terminate_instances", environment = "green" }

[[phases.items]]
id = "terminate"
title = "Terminate blue, 48 h after the stop"
kind = "action"
action = "terminate_instances"
environment = "blue"
not_before = { after = "traffic/stop-green", wait = "48h" }
''')
fx("snapshot-redis-not-elasticache", "snapshot_redis of a Redis that is not ElastiCache, and create_image without its environment", append='''
[[phases.items]]
id = "snapshot"
title = "Snapshot blue's Redis"
kind = "action"
action = "snapshot_redis"
redis = "blue-cache"

[[phases.items]]
id = "images"
title = "AMIs of blue"
kind = "action"
action = "create_image"
no_reboot = true
''')
fx("terminate-without-window", "terminate_instances with no rollback window, and a rollback on it; delete_security_groups without groups", append=GATED_STOP + '''
[[phases.items]]
id = "terminate"
title = "Terminate blue"
kind = "action"
action = "terminate_instances"
environment = "blue"
rollback = { action = "start_instances", environment = "blue" }

[[phases.items]]
id = "groups"
title = "Delete blue's groups"
kind = "action"
action = "delete_security_groups"
environment = "blue"
security_groups = []
''')
fx("authorize-redis-without-groups", "authorize_redis_ingress for an environment whose Redis names no security groups", append=GATED_STOP + '''
[[phases.items]]
id = "open-redis"
title = "Let blue's instances reach their Redis"
kind = "action"
action = "authorize_redis_ingress"
environment = "blue"
''')
fx("rollback-does-not-undo", "rollbacks that would not undo their item: the rollout's to 100% (above its first step), a start of another environment, the same action again", ('rollback = { action = "shift_weights", to = 0 }', 'rollback = { action = "shift_weights", to = 100 }'), append=GATED_STOP + '''rollback = { action = "start_instances", environment = "green" }

[[phases.items]]
id = "register-green"
title = "Register green's targets"
kind = "action"
action = "register_targets"
environment = "green"
rollback = { action = "register_targets", environment = "green" }
''')
fx("rollout-sides-share-infrastructure", "the rollout's two sides share a load balancer, a target group and instances, and two Redis endpoints one URL",
   ('[environments.blue]\ninstances = { tags = { Environment = "blue" } }', '[environments.blue]\nload_balancer = "green-alb"\ntarget_groups = ["green-web"]\ninstances = { tags = { Environment = "green" } }'),
   ('[environments.green]\nload_balancer = "green-alb"\ntarget_groups = ["green-web"]\ninstances = { tags = { Environment = "green" } }\n', '[environments.green]\nload_balancer = "green-alb"\ntarget_groups = ["green-web"]\ninstances = { tags = { Environment = "green", Role = "web" } }\nredis = [{ name = "green-cache", url = "redis://blue-cache.internal:6379/0" }]\n'))
fx("gates-only-on-from", "every gate measures the side traffic leaves, none the side it moves to", ('kind = "alarm_ok"\nalarms = ["green-5xx"]', 'kind = "http_health"\nenvironment = "blue"'))
fx("alarm-period-30s", "an alarm period under a minute on a load balancer's metric (published once a minute)", ('environment = "green"\n\n[[phases]]', 'environment = "green"\nperiod = "30s"\n\n[[phases]]'))
fx("control-characters-in-text", "terminal escapes in a title (a line erased, a fake verdict printed) and in a phase title", ('[runbook]\nname = "minimal"\n', '[runbook]\nname = "minimal"\ntitle = "Cutover \\u001b[2K\\rALL CHECKS PASSED \\u001b[8m"\n'), ('title = "Traffic"', 'title = "Traffic \\u001b]0;pwned\\u0007"'))
fx("multi-error", "several mistakes, reported together in line order",
   ('initial_weights = { blue = 100, green = 0 }', 'initial_weights = { blue = 300, green = 0 }'),
   ('steps = [10, 50, 100]', 'steps = [10, 50, 30, 100]'),
   ('soak = "5m"', 'soak = "5 minutes"'),
   ('alarms = ["green-5xx"]', 'alarms = ["green-500"]'),
   ('kind = "action"', 'kind = "task"'))

# Its gate waits out the sandbox's 2 s alarm evaluation (the bad fixtures never run).
LAG = ('alarms = ["green-5xx"]\n', 'alarms = ["green-5xx"]\nlag = "3s"   # the sandbox shows datapoints at once and evaluates alarms every 2 s\n')
assert SANDBOX_BASE.count(LAG[0]) == 1
open(os.path.join(ROOT, "tests/runbooks/minimal-sandbox.toml"), "w").write(
    "# minimal.toml with a [sandbox] section; the sandbox-* bad fixtures change one thing.\n" + SANDBOX_BASE.replace(*LAG))
for name, text in F.items():
    open(os.path.join(BAD, name + ".toml"), "w").write(text)
print(len(F))
