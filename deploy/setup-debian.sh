#!/usr/bin/env bash
# Install the Debian 12 packages the project needs, only those missing.
# Idempotent; prints what it does. Run as root or with sudo available.
set -euo pipefail

pkgs=(
  # native stack for gocv (OpenCV 4.6) and go-face (dlib 19.24)
  build-essential pkg-config libopencv-dev libdlib-dev libopenblas-dev liblapack-dev
  libatlas-base-dev libjpeg62-turbo-dev
  # model fetching
  python3-pip python3-venv unzip curl bzip2 ca-certificates
  # external broker path, city database, browser tests, Vietnamese fonts
  mosquitto mosquitto-dev libmosquitto-dev libssl-dev postgresql chromium fonts-noto-core fonts-dejavu-core
  # fault tests: an RTSP camera fed by a real encoder; network namespaces,
  # veth pairs and packet loss (ip, tc); a small filesystem for a full disk
  ffmpeg iproute2 e2fsprogs util-linux
)

# npm fetches the ONNX embedder (models/fetch.sh). Use the machine's npm if
# there is one (e.g. from NodeSource); otherwise Debian's.
command -v npm >/dev/null || pkgs+=(npm)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all Debian packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# The Debian packages enable services we do not want running by default:
# tests start their own throwaway mosquitto and PostgreSQL on loopback.
for s in mosquitto postgresql; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$s" 2>/dev/null; then
    echo "setup: note: system $s service is running; the project does not need it"
  fi
done
