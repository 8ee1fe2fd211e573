#!/usr/bin/env bash
# Install the SQLite documentation (Debian package sqlite3-doc), the corpus of the
# bench/evalsets/sqlite evaluation set, then print the corpus root.
# Idempotent: does nothing but print the path when the corpus is already there.
set -euo pipefail

CORPUS_DIR=/usr/share/doc/sqlite3

if [ ! -f "$CORPUS_DIR/lang_select.html" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    else
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" apt-get install -y sqlite3-doc
fi

if [ ! -f "$CORPUS_DIR/lang_select.html" ]; then
    echo "install_corpus.sh: $CORPUS_DIR/lang_select.html still missing after install" >&2
    exit 1
fi

echo "$CORPUS_DIR"
