#!/usr/bin/env bash
# Install the Python 3.11 HTML documentation (Debian package python3.11-doc),
# the public corpus used by the bench/pydocs evaluation set.
# Idempotent: does nothing but print the path when the corpus is already there.
set -euo pipefail

CORPUS_DIR=/usr/share/doc/python3.11/html

if [ ! -f "$CORPUS_DIR/index.html" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    else
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" apt-get install -y python3.11-doc
fi

if [ ! -f "$CORPUS_DIR/index.html" ]; then
    echo "install_corpus.sh: $CORPUS_DIR/index.html still missing after install" >&2
    exit 1
fi

echo "$CORPUS_DIR"
