# shellcheck shell=bash
# Run a CNI plugin chain the way libcni does (containernetworking/cni libcni/api.go): each
# plugin of a conflist gets its own config on stdin (the plugin's object plus the list's
# cniVersion and name, and prevResult from the plugin before it on ADD, the final ADD result on
# CHECK and DEL), the CNI_* variables in its environment, and is found by its type in
# CNI_PATH; ADD and CHECK run in list order, DEL in reverse order and goes on past failures.
# Sourced by tests/integration/test_cni*.sh and scripts/bench-cni.
#
# Callers set: CNI_PATH (":"-separated plugin directories) and CHAIN_NS (the network
# namespace the plugins run in, as the runtime's; "" for the caller's own).
# Results: the last plugin's stdout in $chain_out, each ADD step's stdout in chain_steps[], and
# the microseconds the plugins of the last chain_add/check/del ran in $chain_us (their execs
# only: preparing each stdin with jq is this driver's cost, not the runtime's), each plugin's in
# chain_step_us[] (indexed by its place in the list).

chain_out=
chain_steps=()
chain_us=0
chain_step_us=()

# chain_plugin TYPE: the plugin's path in CNI_PATH
chain_plugin() {
	local d dirs
	IFS=: read -ra dirs <<<"$CNI_PATH"
	for d in "${dirs[@]}"; do
		[ -x "$d/$1" ] && { echo "$d/$1"; return 0; }
	done
	return 1
}

# chain_conf LIST INDEX PREV: plugin INDEX's stdin (PREV: a result's JSON, or empty)
chain_conf() {
	jq -c --argjson i "$2" --arg prev "$3" \
		'.plugins[$i] + {cniVersion: .cniVersion, name: .name} +
		 (if $prev == "" then {} else {prevResult: ($prev | fromjson)} end)' "$1"
}

# chain_exec CMD CONF ID NETNS IFNAME ARGS: one plugin; its stdout in $chain_out
chain_exec() {
	local cmd=$1 conf=$2 type plugin rc t0
	type=$(jq -r .type <<<"$conf")
	plugin=$(chain_plugin "$type") || { chain_out="no plugin $type in $CNI_PATH"; return 1; }
	local run=(env CNI_COMMAND="$cmd" CNI_CONTAINERID="$3" CNI_NETNS="$4" CNI_IFNAME="$5"
		CNI_ARGS="$6" CNI_PATH="$CNI_PATH" "$plugin")
	[ -n "${CHAIN_NS:-}" ] && run=(nsenter --net="/run/netns/$CHAIN_NS" "${run[@]}")
	printf '%s\n' "$conf" >"${TMPDIR:-/tmp}/.cni-chain-$$"
	t0=$(date +%s%N)
	chain_out=$("${run[@]}" <"${TMPDIR:-/tmp}/.cni-chain-$$")
	rc=$?
	chain_last_us=$((($(date +%s%N) - t0) / 1000))
	chain_us=$((chain_us + chain_last_us))
	rm -f "${TMPDIR:-/tmp}/.cni-chain-$$"
	return $rc
}

chain_len() { jq '.plugins | length' "$1"; }

# chain_add LIST ID NETNS IFNAME ARGS: ADD through the list; $chain_out is the final result
# (or the failing plugin's error)
chain_add() {
	local list=$1 prev="" i n
	n=$(chain_len "$list")
	chain_steps=()
	chain_step_us=()
	chain_us=0
	for ((i = 0; i < n; i++)); do
		chain_exec ADD "$(chain_conf "$list" "$i" "$prev")" "${@:2}" || return 1
		chain_steps+=("$chain_out")
		chain_step_us[i]=$chain_last_us
		prev=$chain_out
	done
}

# chain_check LIST RESULT ID NETNS IFNAME ARGS
chain_check() {
	local list=$1 result=$2 i n
	n=$(chain_len "$list")
	chain_us=0
	chain_step_us=()
	for ((i = 0; i < n; i++)); do
		chain_exec CHECK "$(chain_conf "$list" "$i" "$result")" "${@:3}" || return 1
	done
}

# chain_del LIST RESULT ID NETNS IFNAME ARGS: reverse order, every plugin runs; fails if any did
chain_del() {
	local list=$1 result=$2 i n rc=0 errs=""
	n=$(chain_len "$list")
	chain_us=0
	chain_step_us=()
	for ((i = n - 1; i >= 0; i--)); do
		chain_exec DEL "$(chain_conf "$list" "$i" "$result")" "${@:3}" ||
			{ rc=1; errs+="$chain_out "; }
		chain_step_us[i]=$chain_last_us
	done
	chain_out=$errs
	return $rc
}
