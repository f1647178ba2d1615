# shellcheck shell=bash
# A node for the CNI tests (sourced by tests/integration/test_cni*.sh): TAP helpers, a "node"
# network namespace holding the datapath (tests/tools/dp_node: the real programs and maps,
# pinned under $pins, with the ranges an agent writes: cluster 10.244.0.0/16, this node
# 10.244.1.0/24, attested node 2 10.244.2.0/24; 10.244.3.0/24 is no attested node's), and a
# "remote" namespace routed from the node that answers for 10.244.2.10 and 10.244.3.10.
# Callers set pfx (namespace prefix), pins and work before calling cni_node_setup.
# shellcheck source=tests/e2e/tap.bash
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/tap.bash"

# cni_require TOOL...: the whole test is skipped (plan 1..0) without root, one of the tools, or
# Debian's reference plugins in $plugins
cni_require() {
	local t
	[ "$(id -u)" -eq 0 ] || { echo "1..0 # SKIP needs root (network namespaces, bpffs)"; exit 0; }
	for t in "$@"; do
		command -v "$t" >/dev/null || { echo "1..0 # SKIP $t is not installed"; exit 0; }
	done
	for t in bridge host-local loopback; do
		[ -x "$plugins/$t" ] || { echo "1..0 # SKIP $plugins/$t missing (containernetworking-plugins)"; exit 0; }
	done
}

# check_why NAME DIAGNOSTIC CMD...: ok if CMD succeeds, else not ok with DIAGNOSTIC's output
check_why() {
	local name=$1 diag=$2; shift 2
	if "$@" >/dev/null 2>&1; then ok "$name"; else not_ok "$name" "false: $*" "$(eval "$diag")"; fi
}
bail() { echo "Bail out! $*"; exit 1; }
quiet() { "$@" >"$work/setup.out" 2>&1 || bail "$* failed: $(tail -3 "$work/setup.out")"; }
# until_true SECONDS CMD...: poll CMD every 100 ms until it succeeds; false on timeout
until_true() {
	local end=$(($(date +%s) + $1)); shift
	until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -lt "$end" ] || return 1; sleep 0.1; done
}
node() { nsenter --net="/run/netns/$pfx-node" "$@"; }
node_ctl() { node "$ctl" "$@" --pin-root "$pins"; }
pods_json() { node_ctl pods --json; }
# pod_field NAME JQ: a field of the registered pod NAME (empty if not registered)
pod_field() { pods_json | jq -r --arg p "$1" ".[] | select(.pod == \$p) | $2"; }
# counter REASON: packets the datapath counted for REASON
counter() { node_ctl status --json | jq -r ".counters.$1.packets"; }
# addrs_of IFINDEX: pod addresses registered to that veth (bpftool -j prints raw bytes in
# .value and the BTF-typed number in .formatted.value)
addrs_of() { bpftool -j map dump pinned "$pins/pod_addrs" | jq --argjson i "$1" '[.[] | select((.formatted.value // .value) == $i)] | length'; }

cni_node_setup() {
	quiet ip netns add "$pfx-node"
	quiet ip netns add "$pfx-remote"
	quiet node ip link set lo up
	quiet node sysctl -qw net.ipv4.ip_forward=1
	quiet ip -n "$pfx-node" link add up0 type veth peer name up0 netns "$pfx-remote"
	quiet ip -n "$pfx-node" addr add 192.0.2.1/30 dev up0
	quiet ip -n "$pfx-node" link set up0 up
	quiet ip -n "$pfx-remote" addr add 192.0.2.2/30 dev up0
	quiet ip -n "$pfx-remote" addr add 10.244.2.10/32 dev up0
	quiet ip -n "$pfx-remote" addr add 10.244.3.10/32 dev up0
	quiet ip -n "$pfx-remote" link set up0 up
	quiet ip -n "$pfx-remote" route add 10.244.1.0/24 via 192.0.2.1
	quiet ip -n "$pfx-node" route add 10.244.2.0/24 via 192.0.2.2
	quiet ip -n "$pfx-node" route add 10.244.3.0/24 via 192.0.2.2
	quiet node "$build/tests/tools/dp_node" load "$pins" --cidr 10.244.0.0/16 \
		--node 10.244.1.0/24=1 --node 10.244.2.0/24=2
}

cni_node_cleanup() {
	local ns
	for ns in node remote "$@"; do ip netns del "$pfx-$ns" 2>/dev/null; done
	"$build/tests/tools/dp_node" unpin "$pins" >/dev/null 2>&1
	rm -rf "$pins"
}
