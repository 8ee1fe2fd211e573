#!/usr/bin/env bash
# Install the Postfix HTML documentation (Debian package postfix-doc),
# the public corpus used by the bench/evalsets/postfix evaluation set.
# Idempotent: does nothing but print the path when the corpus is already there.
set -euo pipefail

CORPUS_DIR=/usr/share/doc/postfix/html

if [ ! -f "$CORPUS_DIR/postconf.5.html" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    else
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" apt-get install -y postfix-doc
fi

if [ ! -f "$CORPUS_DIR/postconf.5.html" ]; then
    echo "install_corpus.sh: $CORPUS_DIR/postconf.5.html still missing after install" >&2
    exit 1
fi

echo "$CORPUS_DIR"
