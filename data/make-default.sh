#!/usr/bin/env bash
# make-default.sh -- rebuild the project's default dataset (data/5000.png .. data/5151.png).
#
# Why: the original seed data (152 KITTI frames, 65x65, greyscale) cannot be
# fetched in this environment, so the default dataset is built instead from a
# real street-scene video that Debian ships: OpenCV's sample clip vtest.avi
# (768x576, 10 fps, people walking), from the Debian package `opencv-doc`.
#
# What: take every 2nd frame starting at frame 0 (frames 0,2,...,302 = 152
# frames), crop the centre 576x576 square, area-average it down to 65x65,
# convert to 8-bit greyscale and write 5000.png .. 5151.png next to this script.
#
# Usage: bash data/make-default.sh      (from any directory; needs root/apt for
# ffmpeg if it is not installed already). Re-running gives byte-identical PNGs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# sha256 of examples/data/vtest.avi in opencv-doc 4.6.0+dfsg-12 (Debian bookworm);
# checked so that a different package version cannot silently change the data.
vtest_sha256=45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf

if ! command -v ffmpeg >/dev/null 2>&1; then
  echo "make-default: installing ffmpeg (apt-get)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir "$tmp/dl"
# let apt's unprivileged download user write here (avoids the "unsandboxed" warning)
if id _apt >/dev/null 2>&1; then chown _apt "$tmp/dl" 2>/dev/null || true; fi

echo "make-default: downloading opencv-doc (not installed, only unpacked)" >&2
(cd "$tmp/dl" && apt-get download -qq opencv-doc)
deb="$(ls "$tmp"/dl/opencv-doc_*.deb)"
echo "make-default: got opencv-doc $(dpkg-deb -f "$deb" Version)" >&2
dpkg -x "$deb" "$tmp/pkg"

ex="$tmp/pkg/usr/share/doc/opencv-doc/examples/data"
if [[ -f "$ex/vtest.avi" ]]; then
  video="$ex/vtest.avi"
elif [[ -f "$ex/vtest.avi.gz" ]]; then
  gzip -dc "$ex/vtest.avi.gz" >"$tmp/vtest.avi"
  video="$tmp/vtest.avi"
else
  echo "make-default: vtest.avi not found in opencv-doc" >&2
  exit 1
fi

got="$(sha256sum "$video" | cut -d' ' -f1)"
if [[ "$got" != "$vtest_sha256" ]]; then
  echo "make-default: vtest.avi sha256 is $got, expected $vtest_sha256" >&2
  echo "make-default: (the Debian package changed; update the hash and data/README.md)" >&2
  exit 1
fi

mkdir "$tmp/out"
ffmpeg -nostdin -hide_banner -loglevel error -i "$video" \
  -vf "select='not(mod(n\,2))',crop=ih:ih,scale=65:65:flags=area,format=gray" \
  -fps_mode passthrough -frames:v 152 \
  -map_metadata -1 -fflags +bitexact -flags:v +bitexact \
  -start_number 5000 "$tmp/out/%d.png"

n="$(find "$tmp/out" -name '*.png' | wc -l)"
if [[ "$n" -ne 152 || ! -f "$tmp/out/5000.png" || ! -f "$tmp/out/5151.png" ]]; then
  echo "make-default: expected 152 frames 5000..5151, got $n" >&2
  exit 1
fi

rm -f "$here"/5[01][0-9][0-9].png
mv "$tmp"/out/*.png "$here"/
echo "make-default: wrote 152 frames to $here/5000.png .. 5151.png" >&2
