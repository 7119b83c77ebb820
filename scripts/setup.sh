#!/bin/sh
# Install the Debian packages vlua needs to build and test, if any are
# missing. Idempotent and quiet when everything is there. As non-root it
# prints the exact apt-get line and stops.
set -eu

PACKAGES="gcc make pkg-config lua5.4 liblua5.4-dev libopenblas-dev libreadline-dev zlib1g-dev \
libcmocka-dev lua-busted libcjson-dev dataset-fashion-mnist \
libavformat-dev libavcodec-dev libswscale-dev libswresample-dev libavutil-dev libsndfile1-dev libfftw3-dev"
# Extra packages for `make bench` and `make fixtures` (peers and references).
if [ "${1:-}" = "--bench" ]; then
  PACKAGES="$PACKAGES python3-numpy python3-torch python3-torchvision python3-opencv python3-scipy ffmpeg autodock-vina"
fi

missing=""
for p in $PACKAGES; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$status" in
    *" installed") ;;
    *) missing="$missing $p" ;;
  esac
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "vlua: missing Debian packages:$missing" >&2
  echo "run as root:  apt-get update && apt-get install -y$missing" >&2
  exit 1
fi

echo "vlua: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
