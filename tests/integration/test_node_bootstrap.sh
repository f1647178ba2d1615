#!/usr/bin/env bash
# scripts/node-bootstrap, into temporary install roots (--prefix): usage errors exit 2 and name
# what is wrong; --dry-run prints the configuration and the unit and changes nothing; a run
# writes the binaries (0755), the trust inputs (0644), the configuration (0600) and the unit
# (0644); the installed agent accepts the configuration's options; the unit passes
# `systemd-analyze verify` (its security exposure is printed for information); a run with
# other options is refused without --force and changes nothing; on a kernel without WireGuard
# the doctor refuses the install. Prints TAP.
# shellcheck disable=SC2015,SC2016 # ok/not_ok always succeed ("check && ok || not_ok" is if/else); $VAR in single quotes is the unit's
set -u
root=${CONCLAVE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${CONCLAVE_BUILD:-$root/build}
boot=$root/scripts/node-bootstrap
work=$(mktemp -d /tmp/conclave-bootstrap-XXXXXX)
trap 'rm -rf "$work"' EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); echo "not ok $n - $1"; shift
	local l; for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /'; done
}
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
# expect CODE NAME CMD...: run CMD, check its exit status, keep its output in $work/out
expect() {
	local want=$1 name=$2; shift 2
	"$@" >"$work/out" 2>&1
	local got=$?
	if [ "$got" -eq "$want" ]; then ok "$name"; else not_ok "$name" "exit $got, expected $want" "$(tail -5 "$work/out")"; fi
}
# contains TEXT NAME: the last output holds TEXT (a fixed string)
contains() {
	if grep -qF -- "$1" "$work/out"; then ok "$2"; else not_ok "$2" "output lacks '$1'" "$(tail -5 "$work/out")"; fi
}
# tree DIR: one checksum of every path, mode, owner, link target and content under DIR
tree() {
	(cd "$1" && { find . -printf '%p %m %u %l\n' | sort; find . -type f -exec md5sum {} + | sort; }) | md5sum
}

for b in conclave-agent conclavectl; do
	[ -x "$build/$b" ] || { echo "1..0 # SKIP $build/$b is not built"; exit 0; }
done
echo "1..37"

# Trust inputs: the script copies them; the agent (test 16) must reject them as they are.
echo "not a signed policy" >"$work/cp-policy"
echo "not a key" >"$work/policy-key.pub"
echo "not a PEM" >"$work/ek-roots.pem"
uuid=00112233-4455-6677-8899-AABBCCDDEEFF
req=(--join 10.88.0.10:7443 --cp-policy "$work/cp-policy" --policy-key "$work/policy-key.pub"
	--ek-roots "$work/ek-roots.pem" --disk-uuid "$uuid" --underlay eth9 --endpoint 198.51.100.7:51820
	--bin "$build")
p=$work/prefix
mkdir "$p"

# ---- usage ----
expect 0 "--help describes the options" "$boot" --help
contains "--skip-doctor" "--help names --skip-doctor"
expect 2 "no options is a usage error" "$boot"
contains "missing required options: --join --cp-policy --policy-key --ek-roots --disk-uuid" \
	"the usage error names every missing required option"
expect 2 "a disk UUID that is not 32 hex digits is a usage error" "$boot" "${req[@]}" --disk-uuid 1234 --prefix "$p" --dry-run
expect 2 "an unreadable trust input is a usage error" "$boot" "${req[@]}" --ek-roots "$work/none" --prefix "$p" --dry-run
contains "--ek-roots $work/none: not a readable" "the error names the unreadable file"

# ---- dry run ----
before=$(tree "$p")
expect 0 "--dry-run succeeds" "$boot" "${req[@]}" --prefix "$p" --dry-run
after=$(tree "$p")
[ "$before" = "$after" ] && [ -z "$(ls -A "$p")" ] && ok "--dry-run changes nothing in the install root" ||
	not_ok "--dry-run changes nothing in the install root" "$(find "$p")"
grep -qxF '| ExecStart=/usr/local/bin/conclave-agent $CONCLAVE_AGENT_ARGS' "$work/out" &&
	grep -q '^| NoNewPrivileges=yes$' "$work/out" && grep -q "^write: $p/etc/systemd/system/conclave-agent.service" "$work/out" &&
	ok "the plan shows the unit with its content" || not_ok "the plan shows the unit with its content" "$(head -20 "$work/out")"
grep -q "^| CONCLAVE_AGENT_ARGS=\".*--disk-uuid 00112233445566778899aabbccddeeff " "$work/out" &&
	ok "the plan shows the configuration (the disk UUID as 32 lower-case hex digits)" ||
	not_ok "the plan shows the configuration (the disk UUID as 32 lower-case hex digits)" "$(grep CONCLAVE_AGENT_ARGS "$work/out")"
contains "run: systemctl --root=$p enable conclave-agent.service" "the plan enables the unit in the install root"
contains "run: $build/conclavectl doctor" "the plan checks the kernel first"
# The plan for this machine (/): systemctl starts the unit; the dry run touches nothing.
host_state() { ls -ld /etc/conclave /etc/systemd/system/conclave-agent.service /usr/local/bin/conclave-agent 2>&1; }
host_before=$(host_state)
expect 0 "--dry-run for this machine succeeds (any user)" "$boot" "${req[@]}" --dry-run --force
grep -qxF "run: systemctl daemon-reload" "$work/out" && grep -qxF "run: systemctl enable --now conclave-agent.service" "$work/out" &&
	grep -q "^write: /etc/conclave/agent.conf (mode 0600, root)" "$work/out" && [ "$(host_state)" = "$host_before" ] &&
	ok "... it would write /etc/conclave/agent.conf and start the unit, and changed nothing" ||
	not_ok "... it would write /etc/conclave/agent.conf and start the unit, and changed nothing" "$(grep -v '^|' "$work/out")"

# ---- the kernel check ----
if [ -e /proc/modules ] || [ "$(id -u)" -ne 0 ]; then
	skip "doctor refuses the install on a kernel without WireGuard" "for the CI host (no modules, root)"
	skip "the refusal names the missing features, nothing written" "for the CI host (no modules, root)"
else
	expect 1 "doctor refuses the install on a kernel without WireGuard" "$boot" "${req[@]}" --prefix "$p" --no-start
	grep -q "the kernel lacks what the agent needs: wireguard" "$work/out" && grep -q "^MISSING wireguard" "$work/out" &&
		[ -z "$(ls -A "$p")" ] && ok "the refusal names the missing features, nothing written" ||
		not_ok "the refusal names the missing features, nothing written" "$(tail -3 "$work/out")" "$(find "$p")"
fi

# ---- a run ----
expect 0 "a run into the install root (--no-start --skip-doctor)" "$boot" "${req[@]}" --prefix "$p" --no-start --skip-doctor
modes=$(cd "$p" && stat -c '%a %U %n' usr/local/bin/conclave-agent usr/local/bin/conclavectl etc/conclave/trust/* \
	etc/conclave/agent.conf etc/systemd/system/conclave-agent.service 2>&1)
want_owner=$(id -un)
want="755 $want_owner usr/local/bin/conclave-agent
755 $want_owner usr/local/bin/conclavectl
644 $want_owner etc/conclave/trust/cp-policy.signed
644 $want_owner etc/conclave/trust/ek-roots.pem
644 $want_owner etc/conclave/trust/policy-key.pub
600 $want_owner etc/conclave/agent.conf
644 $want_owner etc/systemd/system/conclave-agent.service"
[ "$modes" = "$want" ] && ok "binaries 0755, trust inputs 0644, configuration 0600, unit 0644" ||
	not_ok "binaries 0755, trust inputs 0644, configuration 0600, unit 0644" "$modes"
cmp -s "$build/conclave-agent" "$p/usr/local/bin/conclave-agent" && cmp -s "$work/ek-roots.pem" "$p/etc/conclave/trust/ek-roots.pem" &&
	cmp -s "$work/cp-policy" "$p/etc/conclave/trust/cp-policy.signed" && ok "binaries and trust inputs are copies" ||
	not_ok "binaries and trust inputs are copies"
conf_args=$(sed -n 's/^CONCLAVE_AGENT_ARGS="\(.*\)"$/\1/p' "$p/etc/conclave/agent.conf")
missing=''
for o in "--join 10.88.0.10:7443" "--cp-policy /etc/conclave/trust/cp-policy.signed" \
	"--policy-key /etc/conclave/trust/policy-key.pub" "--ek-roots /etc/conclave/trust/ek-roots.pem" \
	"--ak-state /var/lib/conclave/ak" "--disk-uuid 00112233445566778899aabbccddeeff" \
	"--endpoint 198.51.100.7:51820" "--underlay eth9" "--wg-port 51820" "--reattest-s 600" \
	"--overlay-v4 10.100.0.0/16" "--pod-pool 10.244.0.0/16"; do
	[[ " $conf_args " == *" $o "* ]] || missing+="$o; "
done
[ -z "$missing" ] && ok "the configuration holds every option" || not_ok "the configuration holds every option" "missing: $missing" "$conf_args"
# The options, with the trust paths moved into the install root: parsed (exit 1: the trust
# inputs above are not valid), not a usage error (exit 2).
read -ra agent_args <<<"${conf_args//\/etc\/conclave\//$p/etc/conclave/}"
"$p/usr/local/bin/conclave-agent" "${agent_args[@]}" >"$work/out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "policy" "$work/out" && ok "the installed agent accepts the configuration's options" ||
	not_ok "the installed agent accepts the configuration's options" "exit $rc (2 = usage error)" "$(cat "$work/out")"

unit=$p/etc/systemd/system/conclave-agent.service
missing=''
for l in "EnvironmentFile=/etc/conclave/agent.conf" "NoNewPrivileges=yes" "PrivateTmp=yes" "ProtectSystem=strict" \
	"ProtectHome=yes" "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK" "DevicePolicy=closed" \
	"DeviceAllow=/dev/tpmrm0 rw" "CapabilityBoundingSet=CAP_NET_ADMIN CAP_BPF CAP_PERFMON CAP_SYS_ADMIN" \
	"ReadWritePaths=/sys/fs/bpf" "LimitMEMLOCK=infinity" "Restart=on-failure"; do
	grep -qxF "$l" "$unit" || missing+="$l; "
done
[ -z "$missing" ] && ok "the unit is hardened (no new privileges, private tmp, address families, capabilities, devices)" ||
	not_ok "the unit is hardened (no new privileges, private tmp, address families, capabilities, devices)" "missing: $missing"

# systemd-analyze verify needs every command to exist: the unit with its binaries' paths moved
# into the install root, in a directory of its own.
if command -v systemd-analyze >/dev/null; then
	mkdir "$work/verify"
	sed "s#/usr/local/bin/#$p/usr/local/bin/#g" "$unit" >"$work/verify/conclave-agent.service"
	systemd-analyze verify "$work/verify/conclave-agent.service" >"$work/out" 2>&1
	rc=$?
	[ $rc -eq 0 ] && [ ! -s "$work/out" ] && ok "the unit passes systemd-analyze verify, without a warning" ||
		not_ok "the unit passes systemd-analyze verify, without a warning" "exit $rc" "$(cat "$work/out")"
	if systemd-analyze security --offline=true "$work/verify/conclave-agent.service" >"$work/security" 2>&1; then
		echo "# $(grep -o 'Overall exposure level.*' "$work/security" || tail -1 "$work/security")"
	else
		echo "# systemd-analyze security --offline: $(tail -1 "$work/security")"
	fi
else
	skip "the unit passes systemd-analyze verify, without a warning" "no systemd-analyze (scripts/install-deps)"
fi

before=$(tree "$p")
expect 0 "a second run with the same options succeeds" "$boot" "${req[@]}" --prefix "$p" --no-start --skip-doctor
[ "$(tree "$p")" = "$before" ] && ! grep -q '^wrote:' "$work/out" && ok "... and changes nothing" ||
	not_ok "... and changes nothing" "$(cat "$work/out")"
expect 1 "a run with other options is refused without --force" "$boot" "${req[@]}" --wg-port 51999 --prefix "$p" --no-start --skip-doctor
[ "$(tree "$p")" = "$before" ] && grep -q "$p/etc/conclave/agent.conf exists with other content.*--force" "$work/out" &&
	ok "the refusal names the configuration and --force, nothing changed" ||
	not_ok "the refusal names the configuration and --force, nothing changed" "$(cat "$work/out")"
echo "another roots file" >"$work/other-roots.pem"
expect 1 "other trust inputs are refused without --force too" "$boot" "${req[@]}" --ek-roots "$work/other-roots.pem" --prefix "$p" --no-start --skip-doctor
expect 0 "--dry-run --force on an installed root succeeds" "$boot" "${req[@]}" --wg-port 51999 --prefix "$p" --no-start --skip-doctor --dry-run --force
[ "$(tree "$p")" = "$before" ] && ok "... and changes nothing" || not_ok "... and changes nothing"
expect 0 "--force replaces the configuration" "$boot" "${req[@]}" --wg-port 51999 --prefix "$p" --no-start --skip-doctor --force
grep -q -- "--wg-port 51999 " "$p/etc/conclave/agent.conf" && [ "$(stat -c %a "$p/etc/conclave/agent.conf")" = 600 ] &&
	ok "... which then holds the new options, still 0600" || not_ok "... which then holds the new options, still 0600" "$(cat "$p/etc/conclave/agent.conf")"

# ---- enabling in an install root; the defaults from the default route ----
if command -v systemctl >/dev/null; then
	expect 0 "without --no-start the unit is enabled in the install root" "$boot" "${req[@]}" --wg-port 51999 --prefix "$p" --skip-doctor
	[ "$(readlink "$p/etc/systemd/system/multi-user.target.wants/conclave-agent.service")" = /etc/systemd/system/conclave-agent.service ] &&
		ok "multi-user.target wants conclave-agent.service" || not_ok "multi-user.target wants conclave-agent.service" "$(find "$p/etc/systemd")"
else
	skip "without --no-start the unit is enabled in the install root" "no systemctl"
	skip "multi-user.target wants conclave-agent.service" "no systemctl"
fi
dev=$(ip -4 route show default 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
addr=$( [ -n "$dev" ] && ip -4 -o addr show dev "$dev" scope global | awk '{ sub(/\/.*/, "", $4); print $4; exit }')
if [ -n "$addr" ]; then
	defaults=("${req[@]:0:10}" --bin "$build") # without --underlay and --endpoint
	expect 0 "without --underlay and --endpoint, the default route's interface and address" "$boot" "${defaults[@]}" --prefix "$p" --no-start --dry-run --force
	contains "--endpoint $addr:51820 --underlay $dev " "... are the endpoint ($addr:51820) and the underlay ($dev)"
else
	skip "without --underlay and --endpoint, the default route's interface and address" "no IPv4 default route"
	skip "... are the endpoint and the underlay" "no IPv4 default route"
fi
