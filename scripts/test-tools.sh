#!/usr/bin/env bash
# First step of `npm test`: the Debian tools the suite drives (curl with HTTP/2, h2load,
# testssl.sh, bubblewrap, iproute2, dnsmasq, PyJWT, the Prometheus parser,
# httpx/h2/cbor2 for the Python client). On a fresh machine of this
# kind (root, apt reachable) it installs what is missing; where it cannot, it stops at once
# and names the packages, instead of letting tests skip or fail one by one later (in CI a
# test that would skip for a missing tool fails: test/helpers/requires.ts).
set -euo pipefail

PY=/usr/bin/python3
need=()
have() { command -v "$1" >/dev/null 2>&1; }
pymod() { [ -x "$PY" ] && "$PY" -c "import $1" >/dev/null 2>&1; }

missing() {
  need=()
  have curl || need+=(curl)
  # Certificates with odd SANs are made as an operator would, with the openssl CLI.
  have openssl || need+=(openssl)
  have h2load || need+=(nghttp2-client)
  have ip || need+=(iproute2)
  # DNS discovery is tested against a real DNS server (test/e2e/discovery-dns.test.ts).
  have dnsmasq || need+=(dnsmasq-base)
  have bwrap || need+=(bubblewrap)
  have setpriv || need+=(util-linux)
  # deploy/systemd/skein.service is checked offline by systemd-analyze.
  have systemd-analyze || need+=(systemd)
  # `skein completion` scripts are run by the real shells.
  have zsh || need+=(zsh)
  have fish || need+=(fish)
  # Debian's package installs the binary as `testssl`.
  have testssl || need+=(testssl.sh)
  # JWTs in the plugin tests are minted by an independent library: Debian's PyJWT.
  pymod 'jwt, cryptography' || need+=(python3-jwt python3-cryptography)
  # /metrics is also read by the Prometheus project's own parser.
  pymod prometheus_client || need+=(python3-prometheus-client)
  # The Python client (clients/python) runs on Debian's httpx with HTTP/2 (h2) and cbor2.
  pymod 'httpx, h2, cbor2' || need+=(python3-httpx python3-h2 python3-cbor2)
  # ...and is type-checked with mypy --strict (it ships py.typed).
  pymod mypy || need+=(python3-mypy)
  # docs/config.schema.json is checked by an independent JSON Schema validator.
  pymod jsonschema || need+=(python3-jsonschema)
  # test/sandbox/test_confine.py confines real third-party packages and checks its syscall
  # table against the kernel headers (in CI a skipped test fails: test/helpers/requires.ts).
  pymod yaml || need+=(python3-yaml)
  pymod numpy || need+=(python3-numpy)
  [ -e /usr/include/x86_64-linux-gnu/asm/unistd_64.h ] || [ -e /usr/include/asm-generic/unistd.h ] || need+=(linux-libc-dev)
}

missing
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && have apt-get; then
    echo "test tools: installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    missing
  fi
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "test tools: missing Debian packages: ${need[*]}" >&2
  echo "  install them with: sudo apt-get install ${need[*]}   (npm test installs them itself when run as root)" >&2
  exit 1
fi
curl --version | grep -q HTTP2 || { echo "test tools: curl on this machine lacks HTTP/2 support (Debian's curl has it)" >&2; exit 1; }
echo "test tools: ok"
