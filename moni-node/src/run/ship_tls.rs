//! The shipper's HTTP client: TLS verification for `https://` collectors.
//!
//! Certificates are always verified (there is no "insecure" switch): against
//! `ship.ca_file` when given (only that CA is trusted), else against the
//! system's roots. `ship.cert_file` + `ship.key_file` present a client
//! certificate to a collector that asks for one (mutual TLS).

use std::time::Duration;

use crate::config::ShipSettings;

/// Builds the blocking client the shipper uploads with.
pub fn client(s: &ShipSettings) -> Result<reqwest::blocking::Client, reqwest::Error> {
    let mut b = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(300))
        // Never the bundled Mozilla list: the system's roots or ca_file.
        .tls_built_in_webpki_certs(false);
    let https = s.collectors.iter().any(|c| c.starts_with("https://"));
    match &s.tls.ca_pem {
        Some(pem) => {
            b = b.tls_built_in_root_certs(false);
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                b = b.add_root_certificate(cert);
            }
        }
        // Reading the system store is only worth it for https:// collectors.
        None => b = b.tls_built_in_native_certs(https),
    }
    if let Some(pem) = &s.tls.identity_pem {
        b = b.identity(reqwest::Identity::from_pem(pem)?);
    }
    b.build()
}
