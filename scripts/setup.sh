#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine (run as root, or with sudo available):
# system packages, the Python package with its test tools, the control-plane binaries and
# upstream KubeEdge's edgecore and cloudcore (all built once from the Go module proxy and cached
# in ~/.cache/pykubeedge). Idempotent: a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need=()
for pkg in containerd runc containernetworking-plugins busybox-static mosquitto mosquitto-clients \
           docker-registry apache2-utils \
           iptables iproute2 gcc libc6-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "==> pip install -e .[test]"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check -e ".[test]"

command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
echo "==> control plane binaries (cached after the first build)"
python3 -m pykubeedge.devcluster build --tier full --quiet
echo "==> upstream KubeEdge v1.23.1 edgecore and cloudcore, the peers of tests/interop (cached)"
python3 -m pykubeedge.devcluster build-kubeedge --quiet
echo "==> metrics-server for kubectl top (built once from the Go module proxy, cached)"
python3 -m pykubeedge.devcluster.metricsserver
