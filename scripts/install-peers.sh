#!/usr/bin/env bash
# Installs what the foreign clients in peers/ need from Debian: golang-go and
# golang-google-grpc-dev (grpc-go 1.33, built offline in GOPATH mode), and
# python3 with venv (grpcio itself comes from PyPI, into a venv, via make
# peers). As root it installs them; otherwise it says what to run.
set -euo pipefail
missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
[ -d /usr/share/gocode/src/google.golang.org/grpc ] || missing+=(golang-google-grpc-dev)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "peers need: ${missing[*]}; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 2
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
