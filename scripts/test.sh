#!/bin/sh
# The test command: installs Dovecot when missing, then runs every suite
# (unit and Dovecot integration) with the race detector. The
# Dovecot suites never skip here (MAILFERRY_REQUIRE_DOVECOT=1).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export MAILFERRY_REQUIRE_DOVECOT=1
export MAILFERRY_TEST_POSTGRES="${MAILFERRY_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
export MAILFERRY_REQUIRE_POSTGRES=1
exec go test -race -shuffle=on -timeout 15m "$@" ./...
