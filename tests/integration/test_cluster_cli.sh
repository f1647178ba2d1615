#!/usr/bin/env bash
# The operator's cluster commands against a real conclave-joind on a private swtpm: init (and
# what it refuses), verify and cluster-status, revoke and replace-disk (what they refuse; their
# success with real members is in test_control.c), restart and recover, a control plane on
# another TPM, set-policy. Exit codes are the contract: 0 success, 1 refused, 2 usage or
# unreadable input. Node joins are tested in test_joind.c and test_control.c. Prints TAP.
# shellcheck disable=SC2016 # jq programs name their --arg variables in single quotes
set -u
root=${CONCLAVE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${CONCLAVE_BUILD:-$root/build}
ctl=$build/conclavectl
swtpm_env=$root/tests/tools/swtpm-env
log=$root/tests/data/eventlogs/eventlog-uki.bin
work=$(mktemp -d /tmp/conclave-cluster-cli-XXXXXX)
joind_pid=

cleanup() {
	stop_joind
	"$swtpm_env" stop "$work/tpm" >/dev/null 2>&1
	"$swtpm_env" stop "$work/tpm2" >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); echo "not ok $n - $1"; shift
	local l; for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /'; done
}
# expect CODE NAME CMD...: run CMD, check its exit status, keep its stdout in $work/out and its
# stderr in $work/err
expect() {
	local want=$1 name=$2; shift 2
	"$@" >"$work/out" 2>"$work/err"
	local got=$?
	if [ "$got" -eq "$want" ]; then ok "$name"; else not_ok "$name" "exit $got, expected $want" "$(tail -5 "$work/out" "$work/err")"; fi
}
# contains TEXT NAME: the last command's stdout or stderr holds TEXT
contains() {
	if cat "$work/out" "$work/err" | grep -q -- "$1"; then ok "$2"; else not_ok "$2" "output lacks '$1'" "$(tail -5 "$work/out" "$work/err")"; fi
}
# truth NAME CMD...: ok if CMD succeeds
truth() {
	local name=$1; shift
	if "$@" >/dev/null; then ok "$name"; else not_ok "$name" "false: $*"; fi
}
bail() { echo "Bail out! $*"; [ -n "$joind_pid" ] && tail -5 "$work/joind.log" | sed 's/^/# /'; exit 1; }
quiet() { "$@" >"$work/setup.out" 2>&1 || bail "$* failed: $(tail -3 "$work/setup.out")"; }

# start_joind TCTI AK_STATE EK_CHAIN DB [joind options...]: a join service on 127.0.0.1; sets
# $joind_pid, $join (HOST:PORT) and $at (how cluster commands reach it: its port changes with
# every start, so they override the cluster file's address).
start_joind() {
	local tcti=$1 ak=$2 chain=$3 db=$4; shift 4
	rm -f "$work/joind.port"
	"$build/conclave-joind" --listen 127.0.0.1 --port 0 --port-file "$work/joind.port" \
		--timeout-ms 5000 --tcti "$tcti" --ak-state "$ak" --event-log "$log" \
		--ek-chain "$chain" --node-policy "$work/cp-policy.signed" \
		--policy-key "$work/signer.pub" --ca "$ca" --db "$db" \
		--operator-key "$work/operator.pub" "$@" >>"$work/joind.log" 2>&1 &
	joind_pid=$!
	for _ in $(seq 200); do
		[ -s "$work/joind.port" ] && break
		kill -0 "$joind_pid" 2>/dev/null || bail "conclave-joind exited at start"
		sleep 0.05
	done
	[ -s "$work/joind.port" ] || bail "conclave-joind reported no port"
	join=127.0.0.1:$(cat "$work/joind.port")
	at=(--join "$join" --timeout-ms 5000)
}

# SIGTERM is joind's orderly stop; SIGKILL if it has not exited within 5 s.
stop_joind() {
	[ -n "$joind_pid" ] || return 0
	kill "$joind_pid" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$joind_pid" 2>/dev/null || break; sleep 0.05; done
	kill -9 "$joind_pid" 2>/dev/null
	wait "$joind_pid" 2>/dev/null
	joind_pid=
}

echo "1..73"

# ---- a TPM, its boot, the control-plane policy, the operator's key -------------------------
tcti=$("$swtpm_env" start "$work/tpm") || bail "swtpm did not start"
ca=$("$swtpm_env" ca "$work/tpm")
chain=$work/tpm/ca/issuercert.pem
quiet "$build/tests/tools/replay-log" "$tcti" "$log"
nonce=00112233445566778899aabbccddeeff
att=(attest --tcti "$tcti" --ak-state "$work/ak" --eventlog "$log" --ek-chain "$chain" --nonce "$nonce")
quiet "$ctl" "${att[@]}" --out "$work/ev0"
quiet "$ctl" make-credential --ca "$ca" --out "$work/chal" --secret-out "$work/cred" "$work/ev0"
quiet "$ctl" "${att[@]}" --activate "$work/chal" --out "$work/ev1"
quiet "$ctl" policy from-evidence --out "$work/measurements.json" "$work/ev1"
quiet "$ctl" policy keygen --out "$work/signer"
quiet "$ctl" policy sign --key "$work/signer.key" --in "$work/measurements.json" --out "$work/cp-policy.signed"
quiet "$ctl" verify-evidence --policy "$work/cp-policy.signed" --policy-pubkey "$work/signer.pub" \
	--ca "$ca" --nonce "$nonce" --credential "$work/cred" --json "$work/ev1"
ek=$(jq -r .nodeId "$work/setup.out")
[ ${#ek} -eq 64 ] || bail "no EK id from verify-evidence"
quiet "$ctl" policy keygen --out "$work/operator"
quiet "$ctl" policy keygen --out "$work/intruder"

start_joind "$tcti" "$work/ak" "$chain" "$work/a.db"
to=(--timeout-ms 5000)
trust=(--cp-policy "$work/cp-policy.signed" --policy-key "$work/signer.pub" --ek-roots "$ca")
init=("$ctl" init --join "$join" "${trust[@]}" --operator-key "$work/operator.key" "${to[@]}")

# ---- usage ---------------------------------------------------------------------------------
expect 0 "--help lists the cluster commands" "$ctl" --help
contains "cluster-status" "--help names cluster-status"
expect 2 "verify without --cluster is a usage error" "$ctl" verify
expect 2 "init without --cluster-out is a usage error" "${init[@]}" --recovery-out "$work/x.rec"
expect 2 "revoke of a node id that is not a number is a usage error" \
	"$ctl" revoke --cluster "$work/none.json" --operator-key "$work/operator.key" abc
expect 2 "replace-disk without --node is a usage error" \
	"$ctl" replace-disk --cluster "$work/none.json" --operator-key "$work/operator.key"
contains "replace-disk needs --node" "the usage error names the missing --node"
expect 2 "replace-disk of a node id that is not a number is a usage error" \
	"$ctl" replace-disk --cluster "$work/none.json" --operator-key "$work/operator.key" --node 0x1
contains "bad node id '0x1'" "the usage error names the bad node id"
expect 2 "an unreadable cluster file is exit 2" "$ctl" verify --cluster "$work/none.json"

# ---- (1) before init ----------------------------------------------------------------------
# A cluster file as init would write it, for a cluster this join service does not serve.
cat >"$work/pre.json" <<EOF
{ "conclave-cluster": 1, "join": "$join",
  "cluster_id": "$(printf '%064d' 7)", "control_plane_ek": "$ek",
  "control_plane_policy": "$work/cp-policy.signed", "policy_key": "$work/signer.pub",
  "ek_roots": "$ca" }
EOF
expect 1 "verify before init fails" "$ctl" verify --cluster "$work/pre.json" "${to[@]}"
contains "not initialised" "the refusal says the join service is not initialised"
sed 's/"join"/"extra": 1, "join"/' "$work/pre.json" >"$work/unknown.json"
expect 2 "a cluster file with an unknown key is refused" "$ctl" verify --cluster "$work/unknown.json"
contains 'unknown key "extra"' "the refusal names the unknown key"
expect 1 "an unreachable join service fails quickly" \
	"$ctl" verify --cluster "$work/pre.json" --join 127.0.0.1:1 --timeout-ms 500

# ---- (2) init refuses to overwrite a recovery file, before contacting anything --------------
echo keep >"$work/exists.rec"
expect 2 "init with an existing recovery file is exit 2" \
	"${init[@]}" --recovery-out "$work/exists.rec" --cluster-out "$work/a.json"
truth "the existing recovery file is untouched" [ "$(cat "$work/exists.rec")" = keep ]
truth "no cluster file was written" [ ! -e "$work/a.json" ]
expect 2 "init into a directory that does not exist is exit 2" \
	"${init[@]}" --recovery-out "$work/x.rec" --cluster-out "$work/no/such/dir/a.json"
truth "and it wrote no recovery file" [ ! -e "$work/x.rec" ]

# ---- (3) init --------------------------------------------------------------------------------
expect 0 "init succeeds" "${init[@]}" --recovery-out "$work/a.rec" --cluster-out "$work/a.json"
cp "$work/out" "$work/init.out"
truth "the recovery file is mode 0600" [ "$(stat -c %a "$work/a.rec")" = 600 ]
truth "the cluster file is mode 0644" [ "$(stat -c %a "$work/a.json")" = 644 ]
id=$(jq -r .cluster_id "$work/a.json")
truth "the cluster file names the cluster and the control plane's EK" \
	jq -e --arg ek "$ek" '."conclave-cluster" == 1 and (.cluster_id | length) == 64 and
	  .control_plane_ek == $ek and (.ek_roots | startswith("/"))' "$work/a.json"
contains "cluster $id" "init prints the cluster identity"
contains "keep it offline" "init tells the operator to keep the recovery file offline"
truth "the cluster file works from another directory (absolute paths)" \
	bash -c "cd / && '$ctl' verify --cluster '$work/a.json' ${to[*]} >/dev/null 2>&1"
truth "the recovery file holds a v1 recovery secret" grep -q "^conclave-recovery v1" "$work/a.rec"

# ---- (4) a second init ---------------------------------------------------------------------
expect 1 "a second init is refused" "${init[@]}" --recovery-out "$work/b.rec" --cluster-out "$work/b.json"
contains "already holds its master secret" "the refusal says the control plane has a cluster"
truth "the refused init's recovery file is removed" [ ! -e "$work/b.rec" ]
truth "the refused init wrote no cluster file" [ ! -e "$work/b.json" ]

# ---- (5) verify ------------------------------------------------------------------------------
expect 0 "verify passes" "$ctl" verify --cluster "$work/a.json" "${to[@]}"
contains "^cluster $id\$" "verify prints the cluster identity of the cluster file"
contains "control plane: attested (EK $ek)" "verify names the control plane's EK"
contains "^  PCR 4 " "verify lists the control plane's PCRs"
contains "CA certificate sha256 " "verify prints the CA fingerprint"
contains "verified: 0 active members, 0 revoked" "verify ends with the verdict"
expect 0 "verify --json" "$ctl" verify --cluster "$work/a.json" "${to[@]}" --json
truth "--json: verified, the cluster identity, the EK, PCR 4" \
	jq -e --arg id "$id" --arg ek "$ek" \
	'.verified == true and .cluster_id == $id and .control_plane.ek == $ek and
	 (.control_plane.pcrs["4"] | length) == 64 and .members == [] and .generation >= 0' "$work/out"
expect 0 "cluster-status passes" "$ctl" cluster-status --cluster "$work/a.json" "${to[@]}"
contains "cluster $id: generation" "cluster-status prints the cluster and generation"
# The same cluster file, but a control-plane policy that wants another PCR 4.
jq '.pcrs["4"].expected = ("00" * 32)' "$work/measurements.json" >"$work/pcr4.json"
quiet "$ctl" policy sign --key "$work/signer.key" --in "$work/pcr4.json" --out "$work/pcr4.signed"
jq --arg p "$work/pcr4.signed" '.control_plane_policy = $p' "$work/a.json" >"$work/pcr4-cluster.json"
expect 1 "verify refuses a control plane that does not match the control-plane policy" \
	"$ctl" verify --cluster "$work/pcr4-cluster.json" "${to[@]}"
contains "failed check policy" "the refusal names the failed policy check"

# ---- (6) revoke ------------------------------------------------------------------------------
expect 1 "revoke of an unknown node is refused" \
	"$ctl" revoke --cluster "$work/a.json" --operator-key "$work/operator.key" "${to[@]}" 42
contains "not an active member" "the refusal says the node is not a member"
expect 1 "revoke signed by another key is refused" \
	"$ctl" revoke --cluster "$work/a.json" --operator-key "$work/intruder.key" "${to[@]}" 1
contains "not signed" "the refusal says the request is not signed by the operator key"
expect 1 "replace-disk of an unknown node is refused" \
	"$ctl" replace-disk --cluster "$work/a.json" --operator-key "$work/operator.key" "${to[@]}" --node 42
contains "there is no node 42" "the refusal says there is no such node"
expect 1 "replace-disk signed by another key is refused" \
	"$ctl" replace-disk --cluster "$work/a.json" --operator-key "$work/intruder.key" "${to[@]}" --node 1
contains "replace-disk refused by the join service (refused): the request is not signed by the operator key" \
	"the refusal says the request is not signed by the operator key"

# ---- (7) restart and recover -----------------------------------------------------------------
stop_joind
# Another cluster on the same TPM, with its own store: its recovery file is the wrong one.
start_joind "$tcti" "$work/ak" "$chain" "$work/other.db"
expect 0 "init of another cluster (own store), --json" \
	"$ctl" init --join "$join" "${trust[@]}" --operator-key "$work/operator.key" "${at[@]}" \
	--recovery-out "$work/other.rec" --cluster-out "$work/other.json" --json
truth "init --json names the cluster of the cluster file it wrote" \
	jq -e --arg id "$(jq -r .cluster_id "$work/other.json")" '.cluster_id == $id' "$work/out"
stop_joind
start_joind "$tcti" "$work/ak" "$chain" "$work/a.db"
expect 1 "after a restart without --recovery, verify fails" "$ctl" verify --cluster "$work/a.json" "${at[@]}"
contains "not initialised" "the refusal says the join service is not initialised"
expect 1 "recover with another cluster's recovery file is refused before sending" \
	"$ctl" recover --operator-key "$work/operator.key" "${at[@]}" --cluster "$work/a.json" --recovery "$work/other.rec"
contains "nothing was sent" "the refusal says the secret was not sent"
expect 1 "the join service refuses another cluster's master secret" \
	"$ctl" recover --operator-key "$work/operator.key" "${at[@]}" --cluster "$work/other.json" --recovery "$work/other.rec"
contains "belongs to another cluster" "joind's refusal names the other cluster"
expect 1 "recover signed by another key is refused" \
	"$ctl" recover --operator-key "$work/intruder.key" "${at[@]}" --cluster "$work/a.json" --recovery "$work/a.rec"
contains "not signed" "the refusal says the request is not signed by the operator key"
expect 0 "recover with the right recovery file" "$ctl" recover --operator-key "$work/operator.key" "${at[@]}" --cluster "$work/a.json" --recovery "$work/a.rec"
contains "$id" "recover prints the cluster identity"
expect 0 "verify passes after recover" "$ctl" verify --cluster "$work/a.json" "${at[@]}"
contains "^cluster $id\$" "the same cluster identity after recover"

# ---- (8) the same store and secret on another TPM ------------------------------------------
stop_joind
mkdir -p "$work/tpm2" && cp -r "$work/tpm/ca" "$work/tpm2/ca" # same manufacturer CA
tcti2=$("$swtpm_env" start "$work/tpm2") || bail "second swtpm did not start"
quiet "$build/tests/tools/replay-log" "$tcti2" "$log"
start_joind "$tcti2" "$work/ak2" "$work/tpm2/ca/issuercert.pem" "$work/a.db" --recovery "$work/a.rec"
expect 1 "verify refuses a control plane on another TPM" "$ctl" verify --cluster "$work/a.json" "${at[@]}"
contains "EK .*expected $ek" "the refusal names the EK mismatch"
expect 1 "cluster-status refuses it too" "$ctl" cluster-status --cluster "$work/a.json" "${at[@]}" --json
truth "--json says not verified" jq -e '.verified == false and (.reason | test("EK"))' "$work/out"

# ---- (9) set-policy --------------------------------------------------------------------------
stop_joind
start_joind "$tcti" "$work/ak" "$chain" "$work/a.db" --recovery "$work/a.rec"
quiet "$ctl" policy sign --key "$work/intruder.key" --in "$work/measurements.json" --out "$work/intruder-policy.signed"
expect 1 "set-policy with a policy signed by another key is refused" "$ctl" set-policy --cluster "$work/a.json" --operator-key "$work/operator.key" "${at[@]}" "$work/intruder-policy.signed"
expect 0 "set-policy with the right key" "$ctl" set-policy --cluster "$work/a.json" --operator-key "$work/operator.key" "${at[@]}" "$work/cp-policy.signed"
contains "policy installed: 0 member(s) do not match it, 0 revoked" "set-policy prints joind's summary"
