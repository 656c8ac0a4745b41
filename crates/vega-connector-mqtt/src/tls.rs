//! The rustls client configuration of a TLS connection, built with the
//! `ring` provider each time the consumer connects (so a renewed CA file or
//! client certificate is picked up at the next reconnect).
//!
//! Trusted roots are the certificates of `tls.ca_file` when given, else the
//! system's CA bundle: the file named by `SSL_CERT_FILE`, else the first
//! bundle found at the usual locations of Debian/Ubuntu, Fedora/RHEL,
//! openSUSE and Alpine.

use std::fs;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::TlsParams;

/// Where Linux distributions keep the system's CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Builds the client configuration; errors name the parameter and file.
pub(crate) fn client_config(params: &TlsParams) -> Result<Arc<ClientConfig>, String> {
    let roots = match &params.ca_file {
        Some(path) => {
            let certs = read_certs("tls.ca_file", path)?;
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    format!(
                        "tls.ca_file '{}': not a usable CA certificate: {e}",
                        path.display()
                    )
                })?;
            }
            roots
        }
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    let config = match (&params.client_cert_file, &params.client_key_file) {
        (Some(cert_path), Some(key_path)) => {
            let chain = read_certs("tls.client_cert_file", cert_path)?;
            let key = read_key(key_path)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!(
                    "tls.client_cert_file '{}' and tls.client_key_file '{}': {e}",
                    cert_path.display(),
                    key_path.display()
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn read_certs(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = fs::read(path).map_err(|e| format!("{field} '{}': {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(bytes.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{field} '{}': not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{field} '{}': no PEM certificates found",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes =
        fs::read(path).map_err(|e| format!("tls.client_key_file '{}': {e}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(bytes.as_slice()))
        .map_err(|e| format!("tls.client_key_file '{}': not PEM: {e}", path.display()))?
        .ok_or_else(|| {
            format!(
                "tls.client_key_file '{}': no PEM private key found",
                path.display()
            )
        })
}

fn system_roots() -> Result<RootCertStore, String> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let candidates = from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from));
    for path in candidates {
        let Ok(bytes) = fs::read(&path) else {
            continue;
        };
        let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(bytes.as_slice()))
            .filter_map(Result::ok)
            .collect();
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(certs);
        if !roots.is_empty() {
            return Ok(roots);
        }
    }
    Err("no system CA certificates found; give tls.ca_file".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_parameter() {
        let params = TlsParams {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let err = client_config(&params).unwrap_err();
        assert!(
            err.starts_with("tls.ca_file '/nonexistent/ca.pem'"),
            "{err}"
        );
    }

    #[test]
    fn files_without_certificates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        fs::write(&path, "nothing here\n").unwrap();
        let params = TlsParams {
            ca_file: Some(path),
            ..Default::default()
        };
        let err = client_config(&params).unwrap_err();
        assert!(err.contains("no PEM certificates"), "{err}");
    }
}
