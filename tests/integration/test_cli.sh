#!/usr/bin/env bash
# The conclavectl command-line contract, end to end against a private swtpm: the flow an
# operator scripts (keygen, attest, make-credential, activate, policy, verify) and the exit
# codes scripts rely on (0 pass, 1 refused, 2 usage or unreadable input). Prints TAP.
set -u
root=${CONCLAVE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${CONCLAVE_BUILD:-$root/build}
ctl=$build/conclavectl
work=$(mktemp -d /tmp/conclave-cli-XXXXXX)
trap '"$root/tests/tools/swtpm-env" stop "$work/tpm" >/dev/null 2>&1; "$root/tests/tools/swtpm-env" stop "$work/tpm2" >/dev/null 2>&1; rm -rf "$work"' EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
# expect CODE NAME CMD...: run CMD, check its exit status, keep its output in $work/out
expect() {
	local want=$1 name=$2; shift 2
	"$@" >"$work/out" 2>&1
	local got=$?
	if [ "$got" -eq "$want" ]; then ok "$name"; else not_ok "$name" "exit $got, expected $want" "$(grep -iE "fail|error|refused" "$work/out" | head -5)" "$(tail -3 "$work/out")"; fi
}
# contains TEXT NAME: the last output holds TEXT
contains() {
	if grep -q -- "$1" "$work/out"; then ok "$2"; else not_ok "$2" "output lacks '$1'" "$(grep -iE "fail|error|refused" "$work/out" | head -5)" "$(tail -3 "$work/out")"; fi
}

echo "1..28"
tcti=$("$root/tests/tools/swtpm-env" start "$work/tpm") || { echo "Bail out! swtpm did not start"; exit 1; }
ca=$("$root/tests/tools/swtpm-env" ca "$work/tpm")
"$build/tests/tools/replay-log" "$tcti" "$root/tests/data/eventlogs/eventlog-uki.bin" >/dev/null ||
	{ echo "Bail out! cannot replay the boot log into swtpm"; exit 1; }
att=(attest --tcti "$tcti" --ak-state "$work/ak" --eventlog "$root/tests/data/eventlogs/eventlog-uki.bin" --ek-chain "$work/tpm/ca/issuercert.pem")
nonce=00112233445566778899aabbccddeeff

expect 0 "--help lists every command" "$ctl" --help
contains "verify-evidence" "--help names verify-evidence"
expect 0 "attest --help describes its options" "$ctl" attest --help
contains "--ak-state" "attest --help names --ak-state"
expect 2 "unknown command is a usage error" "$ctl" frobnicate
expect 2 "attest without --nonce is a usage error" "$ctl" attest --tcti "$tcti" --out "$work/x"
expect 2 "a too-short nonce is a usage error" "$ctl" "${att[@]}" --nonce 00 --out "$work/x"

expect 0 "policy keygen" "$ctl" policy keygen --out "$work/signer"
mode=$(stat -c %a "$work/signer.key")
[ "$mode" = 600 ] && ok "policy private key is 0600" || not_ok "policy private key is 0600" "mode $mode"
expect 1 "policy keygen refuses to overwrite a key" "$ctl" policy keygen --out "$work/signer"

expect 0 "attest (first contact, AK created)" "$ctl" "${att[@]}" --nonce "$nonce" --out "$work/ev0"
expect 0 "make-credential for the evidence's EK and AK" "$ctl" make-credential --ca "$ca" --out "$work/chal" --secret-out "$work/cred" "$work/ev0"
mode=$(stat -c %a "$work/cred")
[ "$mode" = 600 ] && ok "credential file is 0600" || not_ok "credential file is 0600" "mode $mode"
expect 0 "attest --activate answers the challenge" "$ctl" "${att[@]}" --nonce "$nonce" --activate "$work/chal" --out "$work/ev1"
expect 0 "policy from-evidence" "$ctl" policy from-evidence --out "$work/measurements.json" "$work/ev1"
expect 0 "policy sign" "$ctl" policy sign --key "$work/signer.key" --in "$work/measurements.json" --out "$work/policy.signed"

verify=(verify-evidence --policy "$work/policy.signed" --policy-pubkey "$work/signer.pub" --ca "$ca")
expect 0 "verify-evidence passes on first contact" "$ctl" "${verify[@]}" --nonce "$nonce" --credential "$work/cred" --state "$work/state" "$work/ev1"
contains "verdict: PASS" "the verdict says PASS"

expect 0 "re-attestation of the known node passes without a credential" \
	bash -c "'$ctl' ${att[*]@Q} --nonce ffeeddccbbaa99887766554433221100 --out '$work/ev2' && '$ctl' ${verify[*]@Q} --nonce ffeeddccbbaa99887766554433221100 --state '$work/state' --json '$work/ev2'"
contains '"ok":true' "--json reports ok"

expect 1 "wrong nonce is refused" "$ctl" "${verify[@]}" --nonce ffffffffffffffffffffffffffffffff --credential "$work/cred" "$work/ev1"
contains "failed checks: .*nonce" "the refusal names the nonce check"

"$ctl" policy keygen --out "$work/other" >/dev/null
expect 1 "a policy signed by another key is refused" "$ctl" verify-evidence --policy "$work/policy.signed" --policy-pubkey "$work/other.pub" --ca "$ca" --nonce "$nonce" --credential "$work/cred" "$work/ev1"
contains "policy-signature" "the refusal names the policy signature"
expect 1 "the same refusal with --json" "$ctl" verify-evidence --json --policy "$work/policy.signed" --policy-pubkey "$work/other.pub" --ca "$ca" --nonce "$nonce" "$work/ev1"
contains '"name":"policy-signature"' "--json names the policy-signature check"

expect 2 "unreadable evidence is exit 2" "$ctl" "${verify[@]}" --nonce "$nonce" "$work/does-not-exist"
head -c 100 "$work/ev1" >"$work/truncated"
expect 1 "truncated evidence is refused (format)" "$ctl" "${verify[@]}" --nonce "$nonce" --credential "$work/cred" "$work/truncated"
