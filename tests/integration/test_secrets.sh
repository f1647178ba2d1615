#!/usr/bin/env bash
# Secrets stay secret, checked with the real keys of a running cluster (conclave-joind and two
# agents at -v, conclavectl init/verify/cluster-status): the master secret and salt (from the
# recovery file), each agent's disk key (recomputed here with `openssl kdf` from the recovery
# secret, the EK certificate and the disk UUID, and found in the agent's locked memory, which
# shows the recomputation is right) and each agent's WireGuard private keys (found in its
# locked memory by their public keys, before and after a rotation) must appear in no log and no
# command output, as hex in either case or base64. Processes holding keys dump no core (their
# /proc/PID/limits) and files holding secrets are 0600; the recovery file is not written
# through a symbolic link or over an existing file. Prints TAP.
# shellcheck source=tests/lib/agent_env.bash
# shellcheck disable=SC2016 # diagnostics and checks are single-quoted: evaluated when they run
. "${CONCLAVE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/agent_env.bash"
agents=(1 2)
agent_env_require openssl base64 xxd
agent_env_init secrets
find_secret=$build/tests/tools/find_secret
# AddressSanitizer makes mlock a no-op, so keys cannot be found by their locked mappings: this
# test needs the production build (`make check` runs it); `make asan` skips it.
if grep -qa __asan_init "$build/conclave-agent" 2>/dev/null; then
	echo "1..0 # SKIP an AddressSanitizer build: mlock is a no-op under ASan (make check runs this test)"
	exit 0
fi

echo "1..23"
setup_network
setup_tpms
setup_trust
init_cluster
start_agents # with the options start_agent always gives
for i in 1 2; do
	check "agent $i reaches running" "agent_diag $i" until_true 30 is "$i" '.state == "running"'
done
ctl verify >"$work/verify.out" 2>&1
ctl cluster-status >"$work/status.out" 2>&1

# ---- the real keys --------------------------------------------------------------------------
secrets=() # lowercase hex
master=$(awk '$1 == "master" { print $2 }' "$work/cluster.rec")
salt=$(awk '$1 == "salt" { print $2 }' "$work/cluster.rec")
secrets+=("$master" "$salt")
check "the recovery file holds a 32-byte master secret and salt" true \
	eval '[ ${#master} = 64 ] && [ ${#salt} = 64 ]'

# disk_key I: HKDF-SHA256(master, salt, "conclave/v1/disk/<EK id>/<uuid>") as docs/kms.md says.
disk_key() {
	local i=$1 ekid uuid hex
	TSS2_LOG=all+none TPM2TOOLS_TCTI=$(cat "$work/tpm-$i.tcti") \
		tpm2_nvread 0x01c00002 -o "$work/ek-$i.der" >/dev/null 2>&1 || return 1
	ekid=$(sha256sum "$work/ek-$i.der" | cut -d' ' -f1)
	hex=$(printf 'd15c%028x' "$i")
	uuid=${hex:0:8}-${hex:8:4}-${hex:12:4}-${hex:16:4}-${hex:20:12}
	openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt "hexkey:$master" \
		-kdfopt "hexsalt:$salt" -kdfopt "info:conclave/v1/disk/$ekid/$uuid" HKDF |
		tr -d ':\n' | tr 'A-F' 'a-f'
}
# wg_private I: agent I's current WireGuard private key (it rotates every 2 s: the key read from
# its status may be gone by the time its memory is read; try again).
wg_private() {
	local priv
	for _ in 1 2 3 4 5; do
		priv=$("$find_secret" "${agent_pid[$1]}" wg "$(st "$1" .wg_public_key)") &&
			[ -n "$priv" ] && { echo "$priv"; return 0; }
	done
	return 1
}
declare -A wg1=()
for i in 1 2; do
	pid=${agent_pid[$i]}
	dk=$(disk_key "$i")
	check "agent $i holds the disk key recomputed from the recovery secret" \
		"echo key $dk" "$find_secret" "$pid" bytes "$dk"
	secrets+=("$dk")
	wg1[$i]=$(wg_private "$i")
	check "agent $i's WireGuard private key is found in its locked memory" \
		"agent_diag $i" test -n "${wg1[$i]}"
	secrets+=("${wg1[$i]}")
done
# A rotation (re-attestation every 2 s) makes new private keys: those too.
for i in 1 2; do
	old=$(st "$i" .wg_public_key)
	if until_true 10 eval "[ \"\$(st $i .wg_public_key)\" != \"$old\" ]"; then
		priv=$(wg_private "$i")
		check "agent $i's rotated private key is found, and differs" "echo $priv" \
			eval "[ -n '$priv' ] && [ '$priv' != '${wg1[$i]}' ]"
		secrets+=("$priv")
	else
		not_ok "agent $i rotates its key" "$(agent_diag "$i")"
	fi
done
ctl revoke --operator-key "$work/operator.key" "$(st 2 .node_id)" >"$work/revoke.out" 2>&1
until_true 10 is 1 '.peers == 0' || true

# ---- none of it in any log or output --------------------------------------------------------
outputs=("$work/joind.log" "$work/a1.log" "$work/a2.log" "$work/verify.out" "$work/status.out"
	"$work/revoke.out" "$work/setup.out")
check "the logs are not empty (joind and agents log at -v)" 'wc -l "${outputs[@]}"' \
	eval '[ "$(cat "$work/joind.log" "$work/a1.log" | wc -l)" -gt 20 ]'
leaks() { # every secret as hex (both cases) and base64, against every output
	local s b64
	for s in "${secrets[@]}"; do
		[ -n "$s" ] || continue
		b64=$(xxd -r -p <<<"$s" | base64 -w0)
		grep -l -i -F -e "$s" -e "${b64%%=*}" "${outputs[@]}" 2>/dev/null
	done
}
check "no key in any log or command output (${#secrets[@]} keys, hex and base64)" 'leaks' \
	test -z "$(leaks)"
check "the test's key list holds what it should (master, salt, 2 disk keys, 4 WireGuard keys)" \
	'printf "%s\n" "${secrets[@]}"' test "$(printf '%s\n' "${secrets[@]}" | grep -c .)" = 8

# ---- no core dumps from processes that hold keys ----------------------------------------------
core_limit() { awk '/^Max core file size/ { print $5 "/" $6 }' "/proc/$1/limits"; }
check "conclave-joind dumps no core (Max core file size 0/0)" "core_limit $joind_pid" \
	test "$(core_limit "$joind_pid")" = 0/0
for i in 1 2; do
	check "conclave-agent $i dumps no core (Max core file size 0/0)" \
		"core_limit ${agent_pid[$i]}" test "$(core_limit "${agent_pid[$i]}")" = 0/0
done

# ---- files holding secrets ----------------------------------------------------------------------
mode() { stat -c %a "$1"; }
for f in cluster.rec operator.key signer.key members.db; do
	check "$f is 0600" "ls -l $work/$f" test "$(mode "$work/$f")" = 600
done
check "the AK records are 0600" "ls -l $work/ak-cp $work/ak-1" \
	test -z "$(find "$work/ak-cp" "$work/ak-1" -type f ! -perm 600)"
check "the agent's status socket is 0600" "ls -l $work/a1.sock" test "$(mode "$work/a1.sock")" = 600
ln -s "$work/elsewhere" "$work/link.rec"
echo keep >"$work/exists.rec"
ctl_init_to() { # conclavectl init writing its recovery file to $1 (refused before it connects)
	"$ctl" init --join "$join" --cp-policy "$work/policy.signed" --policy-key "$work/signer.pub" \
		--ek-roots "$work/ek-roots.pem" --operator-key "$work/operator.key" --timeout-ms 2000 \
		--recovery-out "$1" --cluster-out "$work/other.json"
}
ctl_init_to "$work/link.rec" >"$work/link.out" 2>&1
check "a recovery file is not written through a symbolic link" 'cat $work/link.out' \
	test ! -e "$work/elsewhere"
ctl_init_to "$work/exists.rec" >"$work/exists.out" 2>&1
check "a recovery file is never written over an existing file" 'cat $work/exists.out' \
	test "$(cat "$work/exists.rec")" = keep
