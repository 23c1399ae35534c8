"""TLS stays verified (field case F10): an untrusted or incomplete chain stops sign-in before
the password is sent, with a clear message; the operator's CA bundle makes it work."""

from __future__ import annotations

import ssl
import warnings
from dataclasses import replace

import pytest
import trustme

from secure_layers.connection import connect
from secure_layers.errors import CertificateError
from tests.arcgis_double import ArcGISDouble
from tests.conftest import APP_URL


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA(organization_name="Example County GIS test CA")


def serving(certificate: trustme.LeafCert, full_chain: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if full_chain:
        certificate.configure_cert(context)
    else:  # the leaf alone, without the intermediate that signed it
        with certificate.private_key_pem.tempfile() as key, certificate.cert_chain_pems[0].tempfile() as leaf:
            context.load_cert_chain(leaf, key)
    return context


@pytest.fixture
def tls_double(authority):
    with ArcGISDouble(tls=serving(authority.issue_cert("127.0.0.1"))) as server:
        yield server


def test_an_untrusted_certificate_stops_sign_in_before_the_password_is_sent(tls_double, settings):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no InsecureRequestWarning: verification never switched off
        with pytest.raises(CertificateError) as raised:
            connect(settings, tls_double.service_url, "user1", "user1", APP_URL)
    assert "certificate of 127.0.0.1 could not be verified" in str(raised.value)
    assert "SECURE_LAYERS_CA_BUNDLE" in str(raised.value)
    assert tls_double.requests == []  # the handshake failed: no request, no password


def test_the_operators_ca_bundle_makes_it_work(tls_double, settings, authority, tmp_path):
    bundle = tmp_path / "county-ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    conn = connect(replace(settings, ca_bundle=str(bundle)), tls_double.service_url, "user1", "user1", APP_URL)
    assert conn.info.map_name == "Wildfire"
    assert tls_double.service_url.startswith("https://")


def test_a_chain_missing_its_intermediate_is_refused_even_with_the_root_trusted(authority, settings, tmp_path):
    intermediate = authority.create_child_ca()
    bundle = tmp_path / "county-ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    with ArcGISDouble(tls=serving(intermediate.issue_cert("127.0.0.1"), full_chain=False)) as server:
        with pytest.raises(CertificateError):
            connect(replace(settings, ca_bundle=str(bundle)), server.service_url, "user1", "user1", APP_URL)
        assert server.requests == []
