#!/usr/bin/env bash
# Installs what building and testing moni needs on a fresh Debian machine
# with Rust: libpcap (the capture library moni links), tshark and tcpdump
# (the independent judges in tests and benchmarks), Prometheus and promtool
# and iproute2 (the live tests: a real scrape, network namespaces), nmap,
# hping3 and iperf3 (real attacks and load in those namespaces),
# systemd-analyze (verifies the units in packaging/systemd/), Suricata 7
# (the reference moni's EVE alerts are compared with, field by field; from
# bookworm-backports on Debian 12, whose main archive has none), a
# headless Java 17 runtime (Spark's), cargo-deb (builds the Debian package
# the packaging test installs; pinned, built once into ~/.cargo/bin), and
# the Python packages the
# analyst-side tests use (duckdb, pyarrow, pandas, polars and pyspark: the
# readers that must open the collected store; jsonschema to validate EVE
# lines against Suricata's schema; boto3 and moto for the collector's S3
# test; cryptography for the TLS test's throwaway CA).
# Skips what is already there.
#
#   scripts/install-deps.sh [--build-only]   system packages (and, without
#                                            --build-only, the test tools)
#   scripts/install-deps.sh --python PKG...  only these Python packages
#
# Python packages go in with pip for the `python3` on PATH. A Debian
# system Python has no pip until python3-pip is installed, and refuses
# pip installs outside a virtual environment (PEP 668,
# "externally-managed-environment"); both are handled: pip is installed
# from apt when missing, and PIP_BREAK_SYSTEM_PACKAGES=1 lets it install
# next to Debian's packages (as root into /usr/local, else into
# ~/.local, whose bin/ must then be on PATH for moto_server). A pyenv or
# virtualenv Python is used as it is (a virtualenv made without pip gets
# it from ensurepip).
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
pip_install() {
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if python3 -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
      python3 -m ensurepip -q   # a virtualenv made without pip
    else
      if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
        echo "error: python3 has no pip; install python3-pip as root (no sudo here)" >&2
        exit 1
      fi
      $SUDO apt-get update -q
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q python3-pip
    fi
  fi
  PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q "$@"
}
if [ "${1:-}" = "--python" ]; then
  shift
  pip_install "$@"
  exit 0
fi
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
  # The lab's probe-effect overload: CPU burners and disk writers in the
  # monitor's cgroup; gcc builds its 64-byte frame sender; ethtool puts
  # its forwarding node's veths in NAPI mode (and the lab's offloads off).
  command -v stress-ng >/dev/null || need_apt+=(stress-ng)
  command -v gcc >/dev/null || need_apt+=(gcc)
  command -v ethtool >/dev/null || need_apt+=(ethtool)
  command -v systemd-analyze >/dev/null || need_apt+=(systemd)
  command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
  command -v dpkg-shlibdeps >/dev/null || need_apt+=(dpkg-dev)
  command -v suricata >/dev/null || need_suricata=1
fi
if [ ${#need_apt[@]} -gt 0 ] || [ "${need_suricata:-0}" = 1 ]; then
  backports=""
  if [ "${need_suricata:-0}" = 1 ] && grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then
    # Debian 12 ships Suricata only in bookworm-backports (7.0.x).
    backports=bookworm-backports
    grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/ ||
      echo "deb http://deb.debian.org/debian bookworm-backports main" |
      $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
  fi
  $SUDO apt-get update -q
  if [ ${#need_apt[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
  fi
  if [ "${need_suricata:-0}" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q ${backports:+-t "$backports"} suricata
  fi
fi
if [ "${1:-}" != "--build-only" ]; then
  if ! command -v cargo-deb >/dev/null; then
    deb_build=$(mktemp -d)
    CARGO_TARGET_DIR="$deb_build" cargo install -q cargo-deb --version 3.8.0 --locked
    rm -rf "$deb_build"
  fi
  python3 -c "import duckdb, pyarrow, pandas, polars, pyspark, jsonschema, boto3, cryptography" 2>/dev/null &&
    command -v moto_server >/dev/null ||
    pip_install duckdb pyarrow pandas polars pyspark jsonschema boto3 "moto[server]" cryptography
fi
