//! Builds the rustls server configuration from [`TlsSettings`]: reads the PEM files once, at
//! startup, with the `ring` provider (pure Rust and assembly: no cmake, no C toolchain).

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::config::{ClientAuth, TlsSettings, TlsVersion};

/// Reads the certificate, key and client CA; every error names the file, the key and what to do.
pub fn server_config(t: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(&t.cert_file, "cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&t.key_file).map_err(|e| {
        file_error(
            &t.key_file,
            "key_file",
            &e,
            "a PEM private key (PKCS#8, PKCS#1 or SEC1), readable by walwatch",
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (t.min_version..=t.max_version).contains(v))
    .map(|(_, p)| p)
    .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("cannot configure TLS versions: {e}"))?;
    let builder = match (t.client_auth, &t.client_ca_file) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(ca_file)) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca_file, "client_ca_file")? {
                roots.add(cert).map_err(|e| {
                    format!(
                        "web config: tls_server_config.client_ca_file {}: a certificate in it is not a valid CA certificate ({e}); check the file",
                        ca_file.display()
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::VerifyIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| {
                format!(
                    "web config: tls_server_config.client_ca_file {}: cannot verify clients with it ({e})",
                    ca_file.display()
                )
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "web config: tls_server_config.cert_file {} and key_file {} do not make a usable pair ({e}); check that the key is the certificate's",
            t.cert_file.display(),
            t.key_file.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(path, key, &e, "PEM certificates, readable by walwatch"))?;
    if certs.is_empty() {
        return Err(format!(
            "web config: tls_server_config.{key} {}: no PEM certificate in it (expected `-----BEGIN CERTIFICATE-----`)",
            path.display()
        ));
    }
    Ok(certs)
}

fn file_error(path: &Path, key: &str, e: &rustls_pki_types::pem::Error, want: &str) -> String {
    format!(
        "web config: tls_server_config.{key} {}: cannot read it ({e}); it must hold {want}",
        path.display()
    )
}
