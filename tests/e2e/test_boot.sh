#!/usr/bin/env bash
# Node images booted for real: QEMU (TCG) + OVMF + one swtpm per VM, through scripts/node-vm.
# The predicted, signed measurements accept the production image's quote, with every PCR equal
# to the prediction; and each of these is refused with the failing PCR or check named:
#   an image with one byte of its initramfs changed, a command-line override, the debug image,
#   a VM whose EK certificate comes from another CA.
# VMs run E2E_JOBS at a time (default 2). Prints TAP.
set -u
# shellcheck source=tests/e2e/tap.bash
source "$(dirname "$0")/tap.bash"
jobs=${E2E_JOBS:-2}
work=$(mktemp -d /tmp/conclave-boot-test-XXXXXX)
pids=()
# node-vm tears its own VM down on exit; stop any still running (Ctrl-C, timeout) first.
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "1..12"
for tool in qemu-system-x86_64 swtpm swtpm_setup objcopy; do
	command -v $tool >/dev/null || { echo "Bail out! $tool missing (scripts/install-deps)"; exit 1; }
done
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || { echo "Bail out! OVMF missing"; exit 1; }
"$root/scripts/build-image" --build "$build" --out "$work/image" >"$work/build.log" 2>&1 ||
	{ echo "Bail out! build-image failed: $(tail -3 "$work/build.log")"; exit 1; }
prod=$work/image/node.efi

# The image builder's side: predict, review (here: nothing to review), sign.
"$ctl" policy keygen --out "$work/signer" >/dev/null &&
	"$ctl" measure --out "$work/measurements.json" "$prod" >"$work/measure.log" &&
	"$ctl" policy sign --key "$work/signer.key" --in "$work/measurements.json" \
		--out "$work/policy.signed" ||
	{ echo "Bail out! cannot predict and sign the measurements: $(cat "$work/measure.log")"; exit 1; }

# One byte of the initramfs changed, in place: the release file's "production" -> "Production".
cp "$prod" "$work/tampered.efi"
initrd_of "$prod" "$work/node.cpio"
at=$(grep -obUa 'VARIANT_ID=production' "$work/node.cpio" | head -1 | cut -d: -f1)
off=$(($(section_offset "$prod" .initrd) + at + 11))
printf 'P' | dd of="$work/tampered.efi" bs=1 seek=$off conv=notrunc status=none
cmp -l "$prod" "$work/tampered.efi" | wc -l | grep -qx 1 ||
	{ echo "Bail out! could not change exactly one byte of the initramfs"; exit 1; }

# Two CAs: the cluster's, which the verifier trusts, and another one.
"$root/scripts/node-vm" --prepare-only --dir "$work/good" --ca-dir "$work/ca" >/dev/null &&
	"$root/scripts/node-vm" --prepare-only --dir "$work/foreign" --ca-dir "$work/other-ca" >/dev/null ||
	{ echo "Bail out! cannot provision swtpm"; exit 1; }
cat "$work/ca/swtpm-localca-rootca-cert.pem" "$work/ca/issuercert.pem" >"$work/trust.pem"

boot() { # NAME IMAGE CA-DIR [node-vm options]: start in the background, at most $jobs at once
	local name=$1 image=$2 ca=$3
	shift 3
	while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
	"$root/scripts/node-vm" --image "$image" --dir "$work/$name" --ca-dir "$ca" \
		--trust "$work/trust.pem" --timeout 240 "$@" >/dev/null 2>&1 &
	pids+=($!)
	echo "$! $name" >>"$work/pids"
}
started=$SECONDS
boot good "$prod" "$work/ca"
boot tampered "$work/tampered.efi" "$work/ca"
boot override "$prod" "$work/ca" --append "console=ttyS0 panic=-1 loglevel=4 no_timer_check conclave.override=1"
boot debug "$work/image/node-debug.efi" "$work/ca"
boot foreign "$prod" "$work/other-ca"
declare -A rc=()
while read -r pid name; do
	wait "$pid"
	rc[$name]=$?
done <"$work/pids"
echo "# 5 boots in $((SECONDS - started)) s, $jobs at a time"

vm_diag() { # NAME: why a VM failed, as TAP comments
	echo "exchange: $(tail -3 "$work/$1/exchange.log" 2>/dev/null | tr '\n' ' ')"
	echo "console: $(grep -a conclave-init "$work/$1/console.log" 2>/dev/null | tail -3 | tr '\n' ' ')"
}
verify() { # NAME EVIDENCE [options]: verify-evidence as the cluster's verifier; output in $work/NAME.verdict
	local name=$1 ev=$2
	shift 2
	"$ctl" verify-evidence --policy "$work/policy.signed" --policy-pubkey "$work/signer.pub" \
		--ca "$work/trust.pem" --nonce "$(cat "$work/$name/nonce")" "$@" "$work/$name/$ev" \
		>"$work/$name.verdict" 2>&1
}
mismatched() { # NAME: the PCRs the verdict reports as MISMATCH, space separated
	awk '$4 ~ /^MISMATCH/ { printf "%s ", $1 }' "$work/$1.verdict"
}
expect_refusal() { # NAME DESCRIPTION PCRS...: refused (exit 1) with exactly these PCRs named
	local name=$1 what=$2 want got code
	shift 2
	want="$* "
	verify "$name" ev1 --credential "$work/$name/cred"
	code=$?
	got=$(mismatched "$name")
	if [ $code -eq 1 ] && [ "$got" = "$want" ] && grep -q "failed checks: policy$" "$work/$name.verdict"; then
		ok "$what is refused, naming PCR ${want% }"
	else
		not_ok "$what is refused, naming PCR ${want% }" "exit $code, mismatched PCRs: $got" \
			"$(grep -E 'FAIL|verdict' "$work/$name.verdict")"
	fi
}

# 1-3: the production image
[ "${rc[good]}" = 0 ] && [ -s "$work/good/ev1" ] &&
	ok "production node boots, attests and answers the activation challenge" ||
	not_ok "production node boots, attests and answers the activation challenge" "$(vm_diag good)"
verify good ev1 --credential "$work/good/cred"
code=$?
[ $code -eq 0 ] && grep -q "verdict: PASS" "$work/good.verdict" &&
	ok "its quote verifies against the predicted, signed policy" ||
	not_ok "its quote verifies against the predicted, signed policy" "exit $code" \
		"$(grep -E 'FAIL|verdict' "$work/good.verdict")"
matched=$(awk '$4 == "match" { printf "%s ", $1 }' "$work/good.verdict")
[ "$matched" = "0 1 2 3 4 5 6 7 8 9 11 12 13 14 " ] &&
	ok "every quoted PCR (0-9, 11-14) equals the prediction" ||
	not_ok "every quoted PCR (0-9, 11-14) equals the prediction" "matching: $matched" \
		"mismatching: $(mismatched good)"

# 4-5: one byte of the initramfs
[ "${rc[tampered]}" = 0 ] && ok "an image with one initramfs byte changed still boots and attests" ||
	not_ok "an image with one initramfs byte changed still boots and attests" "$(vm_diag tampered)"
expect_refusal tampered "an image with one initramfs byte changed" 4 9 11

# 6-8: the kernel command line overridden from the host (systemd-stub measures it into PCR 12;
# the kernel's stub measures the LoadOptions it receives into PCR 9)
[ "${rc[override]}" = 0 ] && ok "a node booted with a command-line override attests" ||
	not_ok "a node booted with a command-line override attests" "$(vm_diag override)"
expect_refusal override "a command-line override" 9 12
grep -q '"12": { "expected": "0\{64\}"' "$work/measurements.json" && ok "the policy pins PCR 12 to zero (no override allowed)" ||
	not_ok "the policy pins PCR 12 to zero (no override allowed)"

# 9-10: the debug image (busybox) against the production policy
[ "${rc[debug]}" = 0 ] && ok "the debug image boots and attests" ||
	not_ok "the debug image boots and attests" "$(vm_diag debug)"
expect_refusal debug "the debug image" 4 9 11

# 11-12: a TPM whose EK certificate another CA issued
grep -q "ABORT sent" "$work/foreign/exchange.log" 2>/dev/null && [ ! -e "$work/foreign/ev1" ] &&
	ok "the host refuses to activate a TPM whose EK certificate is from another CA" ||
	not_ok "the host refuses to activate a TPM whose EK certificate is from another CA" "$(vm_diag foreign)"
verify foreign ev0
code=$?
grep -q "failed checks:.*ek-certificate" "$work/foreign.verdict" && [ $code -eq 1 ] &&
	ok "its evidence is refused, naming the EK certificate" ||
	not_ok "its evidence is refused, naming the EK certificate" "exit $code" \
		"$(grep -E 'FAIL|verdict' "$work/foreign.verdict")"

for v in good tampered override debug foreign; do
	[ -f "$work/$v/timing" ] && echo "# $v: $(tr '\n' ' ' <"$work/$v/timing")"
done
