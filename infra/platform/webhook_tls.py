"""TLS for an admission webhook, generated once by Pulumi and kept in its (encrypted) state.

A chart that generates its webhook certificate at render time (Helm's genCA) issues a new
CA on every upgrade: until the webhook's pods reload the new secret, the API server rejects
every request the webhook intercepts with x509 errors. A certificate made here stays the
same across upgrades and previews; only its renewal (see LEAF_RENEWAL_HOURS) changes the
serving certificate, and never the CA that API servers trust.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

HOURS_PER_YEAR = 24 * 365
CA_VALIDITY_HOURS = 20 * HOURS_PER_YEAR
LEAF_VALIDITY_HOURS = 10 * HOURS_PER_YEAR
# A `pulumi up` in the leaf's last year replaces it (same CA, so no rejected requests).
LEAF_RENEWAL_HOURS = HOURS_PER_YEAR


def service_dns_names(service: str, namespace: str) -> list[str]:
    """Every name the API server may use to reach an in-cluster webhook service."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


@dataclass(frozen=True)
class WebhookCertificate:
    ca_pem: pulumi.Output[str]
    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]

    @classmethod
    def create(cls, name: str, *, service: str, namespace: str, opts: pulumi.ResourceOptions) -> WebhookCertificate:
        ca_key = tls.PrivateKey(f"{name}-ca", algorithm="ECDSA", ecdsa_curve="P256", opts=opts)
        ca = tls.SelfSignedCert(
            f"{name}-ca", private_key_pem=ca_key.private_key_pem, is_ca_certificate=True,
            subject={"common_name": f"{service}-ca"}, validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"], opts=opts)
        key = tls.PrivateKey(f"{name}-serving", algorithm="ECDSA", ecdsa_curve="P256", opts=opts)
        request = tls.CertRequest(
            f"{name}-serving", private_key_pem=key.private_key_pem, dns_names=service_dns_names(service, namespace),
            subject={"common_name": f"{service}.{namespace}.svc"}, opts=opts)
        serving = tls.LocallySignedCert(
            f"{name}-serving", cert_request_pem=request.cert_request_pem, ca_cert_pem=ca.cert_pem,
            ca_private_key_pem=ca_key.private_key_pem, validity_period_hours=LEAF_VALIDITY_HOURS,
            early_renewal_hours=LEAF_RENEWAL_HOURS, allowed_uses=["server_auth", "digital_signature"], opts=opts)
        return cls(ca_pem=ca.cert_pem, cert_pem=serving.cert_pem, key_pem=pulumi.Output.secret(key.private_key_pem))
