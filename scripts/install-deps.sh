#!/bin/sh
# Installs what the test suites and the benchmark need that Go does not
# bring: Dovecot (real IMAP and POP3 servers for the integration tests), Chromium
# (renders the HTML reports in their test), Prometheus (a real server for
# the health_query tests; promtool lints a real scrape in the metrics tests) and, with
# --bench, isync (mbsync, the baseline the benchmark compares against) and
# GNU time (how the benchmark measures each tool's peak RSS).
# Debian packages; run as root or with sudo available.
set -eu

want="dovecot-imapd"
command -v dovecot >/dev/null 2>&1 && want=""
# Chromium: the HTML report is rendered in headless Chromium in the tests.
command -v chromium >/dev/null 2>&1 || want="$want chromium"
# Prometheus: the health_query tests run a real server scraping an exporter
# the test controls; the metrics tests run `promtool check metrics`.
if ! { command -v prometheus || [ -x /usr/bin/prometheus ]; } >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
	want="$want prometheus"
fi
# POP3 (the tests of the POP3 UIDL check run Dovecot's POP3 server too).
if ! [ -x /usr/lib/dovecot/pop3 ]; then
	want="$want dovecot-pop3d"
fi
if [ "${1:-}" = "--bench" ] && ! command -v mbsync >/dev/null 2>&1; then
	want="$want isync"
fi
# GNU time: the benchmark reads each tool's own peak RSS through it.
if [ "${1:-}" = "--bench" ] && ! [ -x /usr/bin/time ]; then
	want="$want time"
fi
[ -z "$want" ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "install-deps: need root (or sudo) to install: $want" >&2
		exit 1
	fi
fi
echo "install-deps: installing $want (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
# The packages' own service must not start on the standard ports; tests run
# their own instances.
$SUDO apt-get install -y -qq $want >&2
