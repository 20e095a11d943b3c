#!/usr/bin/env bash
# make-default.sh -- rebuild the project's default dataset (data/5000.png .. data/5151.png)
# and the unseen video data/tree/ (0.png .. 67.png).
#
# Why: the original seed data (152 KITTI frames, 65x65, greyscale) cannot be
# fetched in this environment, so the default dataset is built instead from a
# real street-scene video that Debian ships: OpenCV's sample clip vtest.avi
# (768x576, 10 fps, people walking), from the Debian package `opencv-doc`.
#
# What: take every 2nd frame starting at frame 0 (frames 0,2,...,302 = 152
# frames), crop the centre 576x576 square, area-average it down to 65x65,
# convert to 8-bit greyscale and write 5000.png .. 5151.png next to this script.
# And from the same package's tree.avi (320x240, 15 fps, a tree in the wind, filmed by
# hand), every frame the same way into tree/0.png .. tree/67.png: a video no model here
# is trained on, for `bench-cli eval`.
#
# Usage: bash data/make-default.sh      (from any directory; needs root/apt for
# ffmpeg if it is not installed already). Re-running gives byte-identical PNGs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# sha256 of examples/data/vtest.avi in opencv-doc 4.6.0+dfsg-12 (Debian bookworm);
# checked so that a different package version cannot silently change the data.
vtest_sha256=45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf
tree_sha256=4666099d0f704e310047b2f0a5ec9f936cb76a7271de9a2e70a0c57f82ac82dc

# shellcheck source=data/lib.sh
source "$here/lib.sh"
need_ffmpeg

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

# frames VIDEO SELECT COUNT START OUT: COUNT frames of VIDEO (those SELECT keeps), centre
# square, area-averaged to 65x65 grey, bit-exact PNGs OUT/START.png ...
frames() {
  mkdir "$5"
  ffmpeg -nostdin -hide_banner -loglevel error -i "$1" \
    -vf "$2crop=ih:ih,scale=65:65:flags=area,format=gray" \
    -fps_mode passthrough -frames:v "$3" \
    -map_metadata -1 -fflags +bitexact -flags:v +bitexact \
    -start_number "$4" "$5/%d.png"
  local n
  n="$(find "$5" -name '*.png' | wc -l)"
  if [[ "$n" -ne "$3" || ! -f "$5/$4.png" ]]; then
    echo "make-default: expected $3 frames of $(basename "$1") from $4.png, got $n" >&2
    exit 1
  fi
}

check_sha256 "$video" "$vtest_sha256"
frames "$video" "select='not(mod(n\,2))'," 152 5000 "$tmp/out"
rm -f "$here"/5[01][0-9][0-9].png
mv "$tmp"/out/*.png "$here"/
say "wrote 152 frames to $here/5000.png .. 5151.png"

# The same 152 frames as one lossless video file (FFV1, grey, 5 fps): data/street.mkv,
# which loads as the PNGs do (README, "Video files").
ffmpeg -nostdin -v error -y -framerate 5 -start_number 5000 -i "$here/%d.png" -frames:v 152 \
  -c:v ffv1 -pix_fmt gray -map_metadata -1 -fflags +bitexact -flags:v +bitexact \
  "$tmp/street.mkv"
mv "$tmp/street.mkv" "$here/street.mkv"
say "wrote $here/street.mkv"

check_sha256 "$ex/tree.avi" "$tree_sha256"
frames "$ex/tree.avi" "" 68 0 "$tmp/tree"
rm -rf "$here/tree"
mv "$tmp/tree" "$here/tree"
say "wrote 68 frames to $here/tree/0.png .. 67.png"
