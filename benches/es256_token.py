"""Prints an ES256 JWT (iss "bench", sub "alice", a day to live) signed with the PEM EC key
given, using only openssl and the standard library: the JWT row of benches/instructions.sh."""
import base64, json, subprocess, sys, time

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

def der_to_raw(der: bytes) -> bytes:
    # SEQUENCE { INTEGER r, INTEGER s } to r || s, 32 bytes each.
    def integer(at: int):
        assert der[at] == 0x02
        length = der[at + 1]
        value = der[at + 2 : at + 2 + length].lstrip(b"\0").rjust(32, b"\0")
        return value, at + 2 + length
    at = 2 if der[1] < 0x80 else 3
    r, at = integer(at)
    s, _ = integer(at)
    return r + s

header = b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"iss": "bench", "sub": "alice", "exp": int(time.time()) + 86400}).encode())
signing_input = f"{header}.{claims}".encode()
der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", sys.argv[1]], input=signing_input,
                     capture_output=True, check=True).stdout
print(f"{header}.{claims}.{b64(der_to_raw(der))}")
