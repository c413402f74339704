#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, when missing.
# As root it uses apt-get; otherwise it stops and names what to install.
set -euo pipefail

# program -> Debian package
declare -A NEED=(
  [ffmpeg]=ffmpeg            # codecs for generated test media (PyAV/decord ship their own libs; the CLI helps debugging)
  [espeak-ng]=espeak-ng      # synthetic narration for tests and the sample archive
  [chromium]=chromium        # the headless browser of the UI test
)
missing=()
for prog in "${!NEED[@]}"; do
  command -v "$prog" >/dev/null 2>&1 || missing+=("${NEED[$prog]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${missing[*]} (no apt-get here: install them with your package manager)" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" fonts-dejavu-core >/dev/null
