#!/usr/bin/env bash
# Fetch the face model weights into $MODELS_DIR and verify them against
# models/SHA256SUMS. Sources are tried in order:
#   1. files already present in $MODELS_DIR with the right checksum;
#   2. the official dlib.net downloads (*.dat.bz2), for machines on the internet;
#   3. the PyPI source package face-recognition-models==0.3.0, which ships
#      the same files (the route that works on machines that reach only PyPI).
# ONNX embedders (*.onnx) come from the npm registry instead:
#   fr_feature.onnx from faceplugin-face-recognition-js@0.0.1 (`npm pack`,
#   then model/fr_feature.onnx out of the tarball).
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
for f in "${onnx[@]+"${onnx[@]}"}"; do
  read -r pkg inner < <(npm_source "$f") || { log "ERROR   no source known for $f"; exit 1; }
  command -v npm >/dev/null || { log "ERROR   $f needs npm (apt-get install npm)"; exit 1; }
  log "fetch   $f from npm $pkg (npm pack)"
  mkdir -p "$tmp/npm"
  tgz="$(cd "$tmp/npm" && npm pack --silent "$pkg" 2>/dev/null | tail -1)"
  [ -n "$tgz" ] && [ -f "$tmp/npm/$tgz" ] || { log "ERROR   npm pack $pkg failed"; exit 1; }
  tar -xzf "$tmp/npm/$tgz" -C "$tmp/npm" "$inner"
  got="$(sha256sum "$tmp/npm/$inner" | awk '{print $1}')"
  if [ "$got" != "$(want "$f")" ]; then
    log "ERROR   checksum mismatch for $f: got $got, want $(want "$f")"; exit 1
  fi
  cp "$tmp/npm/$inner" "$dir/$f.part" && mv "$dir/$f.part" "$dir/$f"
  log "ok      $f (npm, checksum verified)"
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
pip="${PIP:-}"
[ -z "$pip" ] && { command -v pip3 >/dev/null && pip=pip3 || pip="python3 -m pip"; }
log "fetch   face-recognition-models==0.3.0 from PyPI ($pip download --no-deps --no-binary :all:)"
$pip download --quiet --no-deps --no-binary :all: -d "$tmp" face-recognition-models==0.3.0
tar -xzf "$tmp"/face_recognition_models-0.3.0.tar.gz -C "$tmp"
src="$tmp/face_recognition_models-0.3.0/face_recognition_models/models"
for f in "${missing[@]}"; do
  [ -f "$src/$f" ] || { log "ERROR   $f is not in the PyPI package"; exit 1; }
  got="$(sha256sum "$src/$f" | awk '{print $1}')"
  if [ "$got" != "$(want "$f")" ]; then
    log "ERROR   checksum mismatch for $f: got $got, want $(want "$f")"; exit 1
  fi
  cp "$src/$f" "$dir/$f.part" && mv "$dir/$f.part" "$dir/$f"
  log "ok      $f (PyPI, checksum verified)"
done
# Final check over everything: a wrong checksum is a hard error.
for f in $files; do valid "$f" || { log "ERROR   $f failed verification in $dir"; exit 1; }; done
log "all models verified in $dir"
