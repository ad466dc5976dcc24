"""The SCRAM-SHA-256 verifier the local cloud sets as the owner's password
(localcloud.postgres.scram_sha256_verifier), checked against RFC 7677's example exchange:
the verifier's ServerKey must sign that exchange as the RFC's server did."""

from __future__ import annotations

import base64
import hashlib
import hmac

from localcloud.postgres import scram_sha256_verifier

# RFC 7677, section 3: user "user", password "pencil".
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
AUTH_MESSAGE = (
    b"n=user,r=rOprNGfwEbeRWgbNEkqO,"
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
)
SERVER_SIGNATURE = base64.b64decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_the_verifier_signs_rfc_7677s_exchange_as_its_server_did() -> None:
    verifier = scram_sha256_verifier("pencil", salt=SALT, iterations=4096)

    scheme, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))

    assert (scheme, iterations, base64.b64decode(salt)) == ("SCRAM-SHA-256", "4096", SALT)
    assert hmac.new(server_key, AUTH_MESSAGE, hashlib.sha256).digest() == SERVER_SIGNATURE
    assert len(stored_key) == 32


def test_each_verifier_gets_a_salt_of_its_own() -> None:
    assert scram_sha256_verifier("same") != scram_sha256_verifier("same")
    assert "same" not in scram_sha256_verifier("same")
