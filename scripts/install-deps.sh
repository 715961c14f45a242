#!/usr/bin/env bash
# Installs what building and testing moni needs on a fresh Debian machine
# with Rust: libpcap (the capture library moni links), tshark and tcpdump
# (the independent judges in tests and benchmarks), Prometheus and promtool
# and iproute2 (the live tests: a real scrape, network namespaces), nmap,
# hping3 and iperf3 (real attacks and load in those namespaces),
# systemd-analyze (verifies the units in packaging/systemd/), and the
# Python packages
# the analyst-side tests use (duckdb, pyarrow, pandas and polars: the
# readers that must open the collected store; jsonschema to validate EVE
# lines against Suricata's schema; boto3 and moto for the collector's S3
# test; cryptography for the TLS test's throwaway CA).
# Skips what is already there.
set -euo pipefail
need_apt=()
dpkg -s libpcap-dev >/dev/null 2>&1 || need_apt+=(libpcap-dev)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
if [ "${1:-}" != "--build-only" ]; then
  command -v tshark >/dev/null || need_apt+=(tshark)
  command -v tcpdump >/dev/null || need_apt+=(tcpdump)
  command -v prometheus >/dev/null || need_apt+=(prometheus)
  command -v tc >/dev/null || need_apt+=(iproute2)
  command -v nmap >/dev/null || need_apt+=(nmap)
  command -v hping3 >/dev/null || need_apt+=(hping3)
  command -v iperf3 >/dev/null || need_apt+=(iperf3)
  command -v systemd-analyze >/dev/null || need_apt+=(systemd)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi
if [ "${1:-}" != "--build-only" ]; then
  python3 -c "import duckdb, pyarrow, pandas, polars, jsonschema, boto3, cryptography" 2>/dev/null &&
    command -v moto_server >/dev/null ||
    python3 -m pip install -q duckdb pyarrow pandas polars jsonschema boto3 "moto[server]" cryptography
fi
