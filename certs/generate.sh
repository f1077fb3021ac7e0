#!/usr/bin/env bash
# Creates the development CA and leaf certificates in this folder (see README.md here).
# Development only: the CA's private key is committed, so anyone can mint certificates it signs.
set -euo pipefail
cd "$(dirname "$0")"
days_ca=3650
days_leaf=1095

# ECDSA P-256 throughout: the fastest common choice for handshakes, and what the benchmarks use.
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

new_key ca-key.pem
openssl req -x509 -new -key ca-key.pem -sha256 -days "$days_ca" -out ca.pem \
  -subj "/O=Switchyard development/CN=Switchyard development CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"

# leaf FILE-STEM COMMON-NAME SUBJECT-ALT-NAMES
leaf() {
  new_key "$1-key.pem"
  openssl req -new -key "$1-key.pem" -subj "/O=Switchyard development/CN=$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 \
    -days "$days_leaf" -out "$1.pem" -extfile <(printf '%s\n' \
      "subjectAltName=$3" \
      "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth") 2>/dev/null
  rm -f "$1.csr"
}

leaf localhost localhost "DNS:localhost,IP:127.0.0.1,IP:::1"
leaf a.test a.test "DNS:a.test"
leaf b.test b.test "DNS:b.test"
leaf wildcard.example.test '*.example.test' "DNS:*.example.test"
rm -f ca.srl

for cert in ca.pem localhost.pem a.test.pem b.test.pem wildcard.example.test.pem; do
  printf '%-28s expires %s\n' "$cert" "$(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)"
done
