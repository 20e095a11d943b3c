# lib.sh -- what data/make-*.sh share; sourced, not run.

# say MESSAGE: a line on stderr, prefixed with the script's name.
say() {
  echo "$(basename "$0" .sh): $*" >&2
}

# need_ffmpeg: install ffmpeg with apt-get unless it is there.
need_ffmpeg() {
  if ! command -v ffmpeg >/dev/null 2>&1; then
    say "installing ffmpeg (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  fi
}

# check_sha256 FILE EXPECTED: stop unless FILE's sha256 is EXPECTED, so that a different
# package version cannot silently change the data.
check_sha256() {
  local got
  got="$(sha256sum "$1" | cut -d' ' -f1)"
  if [[ "$got" != "$2" ]]; then
    say "$(basename "$1") sha256 is $got, expected $2"
    say "(the Debian package changed; update the hash and data/README.md)"
    exit 1
  fi
}
