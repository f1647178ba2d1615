# shellcheck shell=bash
# A control plane and node agents on the host, for shell tests (test_agent.sh, test_faults_agent.sh,
# test_secrets.sh): conclave-joind in a hub network namespace behind a bridge, each agent in its own
# namespace with a veth to it, its datapath attached there and pinned under its own bpffs
# directory, every TPM its own swtpm booted from the golden UKI event log. Source it, set
# `agents` (the agent numbers, default 1 2 3 4), call agent_env_init NAME; then
# setup_network, setup_tpms, setup_trust and init_cluster. Prints TAP through ok/not_ok/check.
# shellcheck disable=SC2016 # jq and perl programs are single-quoted on purpose
set -u
root=${CONCLAVE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
build=${CONCLAVE_BUILD:-$root/build}
ctl=$build/conclavectl
agent_bin=$build/conclave-agent
swtpm_env=$root/tests/tools/swtpm-env
log=$root/tests/data/eventlogs/eventlog-uki.bin
[ -n "${agents+set}" ] || agents=(1 2 3 4)
joind_extra=() # more options for conclave-joind

# agent_env_require TOOL...: skip the whole test (TAP plan 0) without root or a tool.
# shellcheck disable=SC2120 # the extra tools are optional
agent_env_require() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "1..0 # SKIP needs root (network namespaces, bpffs)"
		exit 0
	fi
	for tool in ip nsenter bpftool jq perl swtpm tpm2_pcrextend "$@"; do
		command -v "$tool" >/dev/null || { echo "1..0 # SKIP $tool is not installed"; exit 0; }
	done
}

# agent_env_init NAME: the work directory, namespace and pin names; cleanup at exit.
agent_env_init() {
	work=$(mktemp -d "/tmp/conclave-$1-XXXXXX")
	pfx=cnc-$1-${work##*-}		    # network namespaces: $pfx-hub, $pfx-N
	pins=/sys/fs/bpf/conclave-test-${work##*-} # per-agent pin roots: $pins-N
	net=198.18.0			    # the underlay: the join service .1, agent N .1N
	port=7443			    # the join service's port (fixed: agents are started with it)
	join=$net.1:$port
	ranges=(--overlay-v4 10.100.0.0/16 --overlay-v6 fd00:100::/64 --pod-pool 10.244.0.0/16)
	joind_pid=
	trap cleanup EXIT
}
declare -A agent_pid=()
mounted_bpffs=

cleanup() {
	local i
	[ -n "${sender_pid:-}" ] && kill "$sender_pid" 2>/dev/null
	for i in "${!agent_pid[@]}"; do stop_agent "$i" >/dev/null 2>&1; done
	stop_joind
	for i in cp "${agents[@]}"; do "$swtpm_env" stop "$work/tpm-$i" >/dev/null 2>&1; done
	for i in hub "${agents[@]}"; do ip netns del "$pfx-$i" 2>/dev/null; done
	for i in "${agents[@]}"; do
		mountpoint -q "$pins-$i" && umount "$pins-$i" # should an agent have mounted one there
		rm -rf "$pins-$i"
	done
	[ -n "$mounted_bpffs" ] && umount /sys/fs/bpf
	if [ -n "${CONCLAVE_KEEP_WORK:-}" ]; then echo "# kept $work"; else rm -rf "$work"; fi
}

# shellcheck source=tests/lib/tap.bash
. "$root/tests/lib/tap.bash"
# check NAME DIAGNOSTIC CMD...: ok if CMD succeeds, else not ok with DIAGNOSTIC's output
check() {
	local name=$1 diag=$2; shift 2
	if "$@" >/dev/null 2>&1; then ok "$name"; else not_ok "$name" "false: $*" "$(eval "$diag")"; fi
}
bail() {
	echo "Bail out! $*"
	[ -f "$work/joind.log" ] && tail -5 "$work/joind.log" | sed 's/^/# joind: /'
	exit 1
}
quiet() { "$@" >"$work/setup.out" 2>&1 || bail "$* failed: $(tail -3 "$work/setup.out")"; }
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$pfx-$ns" "$@"; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# until_true SECONDS CMD...: poll CMD every 100 ms until it succeeds; false on timeout
until_true() {
	local end=$(($(date +%s%N) + $1 * 1000000000)); shift
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		[ "$(date +%s%N)" -lt "$end" ] || return 1
		sleep 0.1
	done
}

# ---- the join service ----------------------------------------------------------------------

# start_joind: conclave-joind in the hub namespace on $join, waiting for init or recover (no
# --recovery); the same port every time, since the agents were started with it.
start_joind() {
	rm -f "$work/joind.port"
	echo "--- start $(date +%T.%N)" >>"$work/joind.log"
	nsenter --net="/run/netns/$pfx-hub" "$build/conclave-joind" --listen "$net.1" --port "$port" \
		--port-file "$work/joind.port" --timeout-ms 5000 --tcti "$(cat "$work/tpm-cp.tcti")" \
		--ak-state "$work/ak-cp" --event-log "$log" --ek-chain "$work/tpm-cp/ca/issuercert.pem" \
		--node-policy "$work/policy.signed" --policy-key "$work/signer.pub" \
		--ca "$work/ek-roots.pem" --db "$work/members.db" --operator-key "$work/operator.pub" \
		--reattest-deadline-s 0 "${ranges[@]}" "${joind_extra[@]}" -v >>"$work/joind.log" 2>&1 &
	joind_pid=$!
	for _ in $(seq 300); do
		[ -s "$work/joind.port" ] && return 0
		kill -0 "$joind_pid" 2>/dev/null || bail "conclave-joind exited at start"
		sleep 0.05
	done
	bail "conclave-joind reported no port"
}

# SIGTERM is joind's orderly stop; SIGKILL if it has not exited within 5 s. Returns its status.
stop_joind() {
	local rc
	[ -n "$joind_pid" ] || return 0
	kill "$joind_pid" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$joind_pid" 2>/dev/null || break; sleep 0.05; done
	kill -9 "$joind_pid" 2>/dev/null
	wait "$joind_pid" 2>/dev/null; rc=$?
	joind_pid=
	return $rc
}

# ctl CMD [options...]: a cluster command from the hub namespace against this cluster.
ctl() {
	local cmd=$1; shift
	in_ns hub "$ctl" "$cmd" --cluster "$work/cluster.json" --timeout-ms 5000 "$@"
}

# ---- agents --------------------------------------------------------------------------------

# start_agent N [options...]: agent N in its namespace, datapath on veth$N, logs in aN.log.
start_agent() {
	local i=$1; shift
	local ev=(--event-log "$log")
	[ "$i" = 4 ] && ev=(--no-event-log) # its PCR 4 has no event: the policy alone judges it
	echo "--- start $(date +%T.%N)" >>"$work/a$i.log"
	nsenter --net="/run/netns/$pfx-$i" "$agent_bin" --join "$join" --cp-policy "$work/policy.signed" \
		--policy-key "$work/signer.pub" --ek-roots "$("$swtpm_env" ca "$work/tpm-cp")" \
		--timeout-ms 5000 --tcti "$(cat "$work/tpm-$i.tcti")" --ak-state "$work/ak-$i" \
		"${ev[@]}" --ek-chain "$work/tpm-$i/ca/issuercert.pem" \
		--disk-uuid "$(printf 'd15c%028x' "$i")" --endpoint "$net.1$i:51820" --name "node-$i" \
		--no-wireguard --underlay "veth$i" --pin-root "$pins-$i" "${ranges[@]}" \
		--reattest-s 2 --status "$work/a$i.sock" -v "$@" >>"$work/a$i.log" 2>&1 &
	agent_pid[$i]=$!
}

# start_agents [options...]: every agent in ${agents[@]}. Their pin roots are directories on
# /sys/fs/bpf: an agent mounts a bpffs of its own only where there is none.
# shellcheck disable=SC2120 # the options are optional
start_agents() {
	local i
	for i in "${agents[@]}"; do
		mkdir -p "$pins-$i"
		start_agent "$i" "$@"
	done
}

# stop_agent N: SIGTERM, SIGKILL after 5 s; returns the agent's exit status.
stop_agent() {
	local i=$1 pid=${agent_pid[$1]:-} rc
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null; rc=$?
	unset "agent_pid[$i]"
	return $rc
}

# node_status N [--json]: conclavectl status in agent N's namespace: the agent's status line
# (read from its socket) and its datapath. The agent answers between joins, not during one.
node_status() {
	timeout 10 nsenter --net="/run/netns/$pfx-$1" "$ctl" status --pin-root "$pins-$1" \
		--agent "$work/a$1.sock" "${@:2}"
}
# status N: agent N's status (one line of JSON); fails if the agent does not answer
status() { node_status "$1" --json 2>/dev/null | jq -ec '.agent // empty'; }
# st N JQ: a field of agent N's status (jq -r)
st() { status "$1" | jq -r "$2"; }
# is N JQ: agent N answers, and its status satisfies JQ (jq -e alone accepts empty input)
is() { local s; s=$(status "$1") && [ -n "$s" ] && jq -e "$2" <<<"$s" >/dev/null; }
# jqt FILE JQ [jq options...]: FILE holds JSON that satisfies JQ
jqt() { local f=$1 prog=$2; shift 2; [ -s "$f" ] && jq -e "$@" "$prog" "$f" >/dev/null; }

# dp_endpoints N: the WireGuard endpoints in agent N's pinned peers map, "ip:port", sorted.
# Keys are IPv4-mapped addresses and big-endian ports (bpftool prints them as host numbers).
dp_endpoints() {
	bpftool -j map dump pinned "$pins-$1/peers" | jq -r '.[] | (.formatted // .) |
		select(.key.port != 0) |
		"\(.key.addr[12:] | map(tostring) | join(".")):\(.key.port % 256 * 256 + (.key.port / 256 | floor))"' |
		sort
}
# dp_holds N I...: agent N's datapath admits exactly the endpoints of agents I...
dp_holds() {
	local i=$1 want; shift
	want=$(for k in "$@"; do echo "$net.1$k:51820"; done | sort)
	[ "$(dp_endpoints "$i")" = "$want" ]
}
peers_map_id() { bpftool -j map show pinned "$pins-$1/peers" | jq -r .id; }
dp_count() { bpftool -j map dump pinned "$pins-$1/peers" | jq length; }

# counter N REASON: packets agent N's datapath counted for REASON (pass_peer, drop_unknown_peer)
counter() { node_status "$1" --json 2>/dev/null | jq -r ".counters.$2.packets"; }

agent_diag() { # what to print when a check of agent N fails
	echo "status: $(status "$1")"
	echo "datapath: $(dp_endpoints "$1" | tr '\n' ' ')"
	tail -6 "$work/a$1.log"
}

# ---- set-up --------------------------------------------------------------------------------

# setup_network: bpffs, the hub namespace with a bridge, a veth to each agent's namespace.
setup_network() {
	local i
	if [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" != bpf_fs ]; then
		mount -t bpf bpf /sys/fs/bpf || bail "cannot mount bpffs on /sys/fs/bpf"
		mounted_bpffs=1
	fi
	quiet ip netns add "$pfx-hub"
	quiet ip -n "$pfx-hub" link add br0 type bridge
	quiet ip -n "$pfx-hub" addr add "$net.1/24" dev br0
	quiet ip -n "$pfx-hub" link set br0 up
	quiet ip -n "$pfx-hub" link set lo up
	for i in "${agents[@]}"; do
		quiet ip netns add "$pfx-$i"
		quiet ip -n "$pfx-hub" link add "p$i" type veth peer name "veth$i" netns "$pfx-$i"
		quiet ip -n "$pfx-hub" link set "p$i" master br0 up
		quiet ip -n "$pfx-$i" addr add "$net.1$i/24" dev "veth$i"
		quiet ip -n "$pfx-$i" link set "veth$i" up
		quiet ip -n "$pfx-$i" link set lo up
	done
}

# setup_tpms: the control plane's and each agent's swtpm, booted from the golden UKI log.
setup_tpms() {
	local i
	for i in cp "${agents[@]}"; do
		("$swtpm_env" start "$work/tpm-$i" >"$work/tpm-$i.tcti" 2>"$work/tpm-$i.err") &
	done
	wait
	for i in cp "${agents[@]}"; do
		[ -s "$work/tpm-$i.tcti" ] || bail "swtpm $i did not start: $(cat "$work/tpm-$i.err")"
		quiet "$build/tests/tools/replay-log" "$(cat "$work/tpm-$i.tcti")" "$log"
		"$swtpm_env" ca "$work/tpm-$i" | xargs cat >>"$work/ek-roots.pem" # joind's EK roots
	done
}

# setup_trust: the policy (the golden boot, from the control plane's evidence), its signer and
# the operator's key.
setup_trust() {
	local tcti nonce=00112233445566778899aabbccddeeff att
	tcti=$(cat "$work/tpm-cp.tcti")
	att=(attest --tcti "$tcti" --ak-state "$work/ak-cp" --eventlog "$log"
		--ek-chain "$work/tpm-cp/ca/issuercert.pem" --nonce "$nonce")
	quiet "$ctl" "${att[@]}" --out "$work/ev0"
	quiet "$ctl" make-credential --ca "$("$swtpm_env" ca "$work/tpm-cp")" --out "$work/chal" \
		--secret-out "$work/cred" "$work/ev0"
	quiet "$ctl" "${att[@]}" --activate "$work/chal" --out "$work/ev1"
	quiet "$ctl" policy from-evidence --out "$work/measurements.json" "$work/ev1"
	quiet "$ctl" policy keygen --out "$work/signer"
	quiet "$ctl" policy sign --key "$work/signer.key" --in "$work/measurements.json" \
		--out "$work/policy.signed" # the control plane's policy, and the nodes' too
	quiet "$ctl" policy keygen --out "$work/operator"
}

# init_cluster: start joind and initialise it as the operator (recovery file, cluster file).
init_cluster() {
	start_joind
	quiet in_ns hub "$ctl" init --join "$join" --cp-policy "$work/policy.signed" \
		--policy-key "$work/signer.pub" --ek-roots "$("$swtpm_env" ca "$work/tpm-cp")" \
		--operator-key "$work/operator.key" --timeout-ms 5000 \
		--recovery-out "$work/cluster.rec" --cluster-out "$work/cluster.json"
	cluster_id=$(jq -r .cluster_id "$work/cluster.json")
	export cluster_id # the scripts that source this use it
}
