#!/usr/bin/env bash
# Fetch the demo pupils' photos for `make run` (`bin/hub demo`) into
# $DEMO_PHOTOS_DIR and verify them against models/DEMO_PHOTOS.SHA256SUMS.
#
# Source: the PyPI source package face_recognition==1.3.0 (MIT, Adam
# Geitgey), whose tests/test_images/ hold official White House photos of
# Barack Obama (three) and Joe Biden (one): works of the US federal
# government, public domain. The sdist's own SHA-256 is pinned as well as
# each extracted file's; a mismatch is a hard error. Nothing is committed.
#
# Cache (outside the clone; `make` exports the same default to bin/hub):
#   $DEMO_PHOTOS_DIR, default $DIEMDANH_CACHE/demo-photos, where
#   DIEMDANH_CACHE defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/diemdanh.
# DEMO_PHOTOS_URL overrides the download address (a mirror of the same
# file; the pinned checksum still applies).
#
# Exit 0: every photo present and verified. Exit 1: something is missing
# and could not be fetched (what, and why, is printed); `make run` then
# starts the demo without its pupils and says how to enrol from the
# browser. Exit 2: a checksum mismatch (a hard error, like models/fetch.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sums="$here/DEMO_PHOTOS.SHA256SUMS"
cache="${DIEMDANH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/diemdanh}"
dir="${DEMO_PHOTOS_DIR:-$cache/demo-photos}"
sdist=face_recognition-1.3.0.tar.gz
url="${DEMO_PHOTOS_URL:-https://files.pythonhosted.org/packages/6c/49/75dda409b94841f01cbbc34114c9b67ec618265084e4d12d37ab838f4fd3/$sdist}"
log() { printf 'demo-photos: %s\n' "$*" >&2; }

want() { awk -v f="$1" '$2==f {print $1}' "$sums"; }
sum() { sha256sum "$1" | awk '{print $1}'; }
valid() { [ -f "$dir/$1" ] && [ "$(sum "$dir/$1")" = "$(want "$1")" ]; }

photos=$(awk -v s="$sdist" '$2!=s {print $2}' "$sums")
missing=()
for f in $photos; do valid "$f" || missing+=("$f"); done
if [ ${#missing[@]} -eq 0 ]; then
  log "all demo photos present in $dir (face_recognition 1.3.0, checksums verified)"
  exit 0
fi
fail() {
  log "MISSING ${missing[*]} in $dir: $*"
  log "\`make run\` starts the demo without its pupils; run \`bash models/fetch-demo.sh\` when online, or enrol from the browser"
  exit 1
}
command -v curl >/dev/null || fail "curl is not installed (apt-get install curl)"
mkdir -p "$dir" || fail "cannot create the folder"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

log "fetch   $sdist ($url)"
curl -fsSL --connect-timeout 10 --max-time 300 --retry 2 -o "$tmp/$sdist" "$url" 2>"$tmp/curl.err" \
  || fail "download failed: $(tr '\n' ' ' < "$tmp/curl.err")"
got="$(sum "$tmp/$sdist")"
if [ "$got" != "$(want "$sdist")" ]; then
  log "ERROR   checksum mismatch for $sdist: got $got, want $(want "$sdist")"; exit 2
fi
inner=()
for f in "${missing[@]}"; do inner+=("${sdist%.tar.gz}/tests/test_images/$f"); done
tar -xzf "$tmp/$sdist" -C "$tmp" "${inner[@]}"
for f in "${missing[@]}"; do
  src="$tmp/${sdist%.tar.gz}/tests/test_images/$f"
  got="$(sum "$src")"
  if [ "$got" != "$(want "$f")" ]; then
    log "ERROR   checksum mismatch for $f in $sdist: got $got, want $(want "$f")"; exit 2
  fi
  cp "$src" "$dir/$f.part" && mv "$dir/$f.part" "$dir/$f"
  log "ok      $f (checksum verified)"
done
log "all demo photos present in $dir"
