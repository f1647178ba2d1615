#!/usr/bin/env bash
# `conclavectl doctor` on the development host, whose kernel (ENVIRONMENT.md) has eBPF, BTF and
# tc but no WireGuard, no device-mapper and no loadable modules: the node features are reported
# missing with a reason and a remedy, the BPF ones ok; --json says the same; --no-load changes
# nothing on the system. Root (bpf, namespaces). Prints TAP.
set -u
root=${CONCLAVE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${CONCLAVE_BUILD:-$root/build}
ctl=$build/conclavectl
work=$(mktemp -d /tmp/conclave-doctor-XXXXXX)
trap 'rm -rf "$work"' EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /'; done; }

if [ -e /proc/modules ]; then
	echo "1..0 # SKIP this kernel can load modules: the expectations below are for the CI host's"
	exit 0
fi
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP needs root (bpf, namespaces)"; exit 0; }
echo "1..13"

"$ctl" doctor >"$work/text" 2>&1
rc=$?
[ $rc = 1 ] && ok "doctor exits 1 on a host without the node's kernel features" ||
	not_ok "doctor exits 1 on a host without the node's kernel features" "exit $rc" "$(cat "$work/text")"
status() { awk -v f="$1" '$2 == f { print $1 }' "$work/text"; }
for f in wireguard dm-crypt dm-integrity tpm; do
	line=$(grep "^MISSING $f " "$work/text")
	[ "$(status $f)" = MISSING ] && [[ $line == *"cannot load modules"*"; remedy: "?* ]] &&
		ok "$f is missing, with the reason (no module support) and a remedy" ||
		not_ok "$f is missing, with the reason (no module support) and a remedy" "$line"
done
[ "$(status bpf)" = ok ] && [ "$(status btf)" = ok ] && [ "$(status tc-bpf)" = ok ] &&
	ok "bpf, tc-bpf and btf are ok" ||
	not_ok "bpf, tc-bpf and btf are ok" "$(grep -E ' (bpf|tc-bpf|btf) ' "$work/text")"
grep -q '^MISSING dm-crypt .*remedy: use a kernel built with CONFIG_BLK_DEV_DM and CONFIG_DM_CRYPT' "$work/text" &&
	ok "the remedy names the kernel option" ||
	not_ok "the remedy names the kernel option" "$(grep dm-crypt "$work/text")"

"$ctl" doctor --json >"$work/json" 2>"$work/err"
rc=$?
if [ $rc = 1 ] && jq -e '.ok == false and (.features | length) == 7' "$work/json" >/dev/null 2>&1; then
	ok "--json parses: ok false, 7 features, exit 1"
else
	not_ok "--json parses: ok false, 7 features, exit 1" "exit $rc" "$(head -c 500 "$work/json")" "$(cat "$work/err")"
fi
json_view=$(jq -r '.features[] | "\(if .ok then "ok" else "MISSING" end) \(.name)"' "$work/json" 2>/dev/null)
text_view=$(awk '$1 == "ok" || $1 == "MISSING" { print $1, $2 }' "$work/text")
remedies=$(jq -r '[.features[] | select((.ok and .remedy == null) or ((.ok | not) and (.remedy | length) > 0))] | length' "$work/json" 2>/dev/null)
[ -n "$json_view" ] && [ "$json_view" = "$text_view" ] && [ "$remedies" = 7 ] &&
	ok "--json agrees with the text, a remedy exactly where a feature is missing" ||
	not_ok "--json agrees with the text, a remedy exactly where a feature is missing" \
		"json: $(tr '\n' ' ' <<<"$json_view")" "text: $(tr '\n' ' ' <<<"$text_view")" "remedies: $remedies"

"$ctl" doctor --no-load >"$work/noload" 2>&1
rc=$?
[ $rc = 1 ] && [ "$(grep -c '^MISSING' "$work/noload")" = "$(grep -c '^MISSING' "$work/text")" ] &&
	ok "--no-load reports the same on this host" ||
	not_ok "--no-load reports the same on this host" "exit $rc" "$(cat "$work/noload")"

# bpffs: in a private mount namespace without it, --no-load reports it missing and mounts
# nothing; without --no-load doctor mounts it (in that namespace only).
unshare -m sh -c "umount /sys/fs/bpf 2>/dev/null; '$ctl' doctor --no-load bpf; echo \"exit \$?\"; \
	grep -c ' /sys/fs/bpf bpf ' /proc/self/mounts; '$ctl' doctor bpf; echo \"exit \$?\"" >"$work/ns" 2>&1
if grep -q '^MISSING bpf .*no bpffs is mounted on /sys/fs/bpf; remedy: mount bpffs' "$work/ns" &&
	[ "$(sed -n 3p "$work/ns")" = "exit 1" ] && [ "$(sed -n 4p "$work/ns")" = 0 ]; then
	ok "--no-load mounts nothing: bpffs reported missing and still unmounted"
else
	not_ok "--no-load mounts nothing: bpffs reported missing and still unmounted" "$(cat "$work/ns")"
fi
grep -q '^ok      bpf .*bpffs mounted now on /sys/fs/bpf' "$work/ns" && [ "$(tail -1 "$work/ns")" = "exit 0" ] &&
	ok "doctor without --no-load mounts bpffs and is then ok" ||
	not_ok "doctor without --no-load mounts bpffs and is then ok" "$(cat "$work/ns")"

"$ctl" doctor frobnicate >"$work/out" 2>&1
rc=$?
[ $rc = 2 ] && grep -q "unknown feature 'frobnicate'" "$work/out" && ok "an unknown feature is a usage error" ||
	not_ok "an unknown feature is a usage error" "exit $rc" "$(head -3 "$work/out")"
