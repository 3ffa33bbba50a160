//! TLS for `tcp://` engines: the docker CLI's cert folder (`ca.pem`, `cert.pem`, `key.pem`,
//! as `DOCKER_CERT_PATH` holds them) read into a rustls client configuration, for the plain
//! JSON reads of [`super::raw`]; bollard reads the same files for everything else.

use crate::engine::EngineError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The three files of a docker cert folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFolder {
    /// The folder.
    pub dir: PathBuf,
}

impl CertFolder {
    /// The CA certificate that signed the engine's server certificate.
    #[must_use]
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The client certificate.
    #[must_use]
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The client certificate's private key.
    #[must_use]
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

/// Makes ring the process's rustls provider (once; bollard's client certificates need one).
pub(crate) fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path) -> Result<Vec<u8>, EngineError> {
    std::fs::read(path).map_err(|e| {
        EngineError::Other(format!(
            "cannot read {}: {e}; the TLS folder needs ca.pem, cert.pem and key.pem",
            path.display()
        ))
    })
}

/// Reads the folder into a client configuration that trusts only its `ca.pem` and presents
/// its `cert.pem` and `key.pem`.
///
/// # Errors
///
/// [`EngineError::Other`] naming the file that is missing or does not parse.
pub(crate) fn client_config(folder: &CertFolder) -> Result<Arc<rustls::ClientConfig>, EngineError> {
    install_provider();
    let bad =
        |path: PathBuf, what: &str| EngineError::Other(format!("{} is not {what}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    let ca = read(&folder.ca())?;
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&ca)
        .collect::<Result<_, _>>()
        .map_err(|_| bad(folder.ca(), "a PEM certificate"))?;
    if cas.is_empty() {
        return Err(bad(folder.ca(), "a PEM certificate"));
    }
    for cert in cas {
        roots
            .add(cert)
            .map_err(|_| bad(folder.ca(), "a usable CA certificate"))?;
    }
    let cert = read(&folder.cert())?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .map_err(|_| bad(folder.cert(), "a PEM certificate"))?;
    if chain.is_empty() {
        return Err(bad(folder.cert(), "a PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&folder.key())?)
        .map_err(|_| bad(folder.key(), "a PEM private key"))?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            EngineError::Other(format!(
                "{} and {} do not make a client identity: {e}",
                folder.cert().display(),
                folder.key().display()
            ))
        })?;
    Ok(Arc::new(config))
}
