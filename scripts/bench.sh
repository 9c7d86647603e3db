#!/bin/sh
# The benchmark: installs Dovecot and isync (mbsync) when missing, then
# copies generated mailboxes between local Dovecot servers with mailferry
# and, in the same rounds, with its peers, and prints the comparison:
#
#   1. -corpus realistic: 20 mailboxes x 500 messages shaped like real mail
#      (median ~8 KB, mean ~17 KB, ~1.5% attachments), one mailbox alone,
#      one mailferry migrate per mailbox 4 at a time, and mailferry apply
#      --parallel 4, against mbsync and doveadm backup (imapc);
#   2. -corpus large: one mailbox of large messages, mailferry migrate
#      against mbsync.
#
# Flags go to the bench program, for both corpora (go run
# ./cmd/mailferry-bench -h lists them), e.g. -rounds 5 -json. A -corpus flag
# runs that corpus only; so does BENCH_CORPUS=realistic (or large).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --bench
mkdir -p tmp
go build -o tmp/mailferry-bench ./cmd/mailferry-bench
for arg in "$@"; do
	case "$arg" in
	-corpus | -corpus=* | --corpus | --corpus=*) exec tmp/mailferry-bench "$@" ;;
	esac
done
for corpus in ${BENCH_CORPUS:-realistic large}; do
	tmp/mailferry-bench -corpus "$corpus" "$@"
done
