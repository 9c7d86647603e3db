#!/bin/sh
# The benchmark: installs Dovecot and isync (mbsync) when missing, then
# copies one generated mailbox between local Dovecot servers with mailferry
# and with mbsync, in the same run, and prints messages/s, MB/s, wall time
# and peak RSS of both and their ratio. Flags go to the bench program
# (go run ./cmd/mailferry-bench -h lists them), e.g. -rounds 5 -json.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --bench
exec go run ./cmd/mailferry-bench "$@"
