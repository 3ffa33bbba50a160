//! The cluster's TLS certificates, made as docker-machine makes them: one authority per cluster
//! (`certs/ca.pem`, `certs/ca-key.pem`), one client certificate for shoal and the docker CLI
//! (`certs/cert.pem`, `certs/key.pem`, the folder `shoal env` points `DOCKER_CERT_PATH` at),
//! and one server certificate per VM naming its address, which only that VM holds.

use super::QemuError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The authority's certificate.
pub const CA_CERT: &str = "ca.pem";
/// The authority's key.
const CA_KEY: &str = "ca-key.pem";
/// The client certificate.
pub const CLIENT_CERT: &str = "cert.pem";
/// The client key.
pub const CLIENT_KEY: &str = "key.pem";

/// A VM's server certificate and key, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerCert {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

fn cert_error(what: &str, e: rcgen::Error) -> QemuError {
    QemuError::Unavailable(format!("cannot make {what}: {e}"))
}

/// The authority's parameters: the same for a cluster every time, so that a certificate it
/// signs later chains to the `ca.pem` written first.
fn authority(cluster: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("shoal {cluster} CA"));
    name.push(DnType::OrganizationName, "shoal");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Writes `text` to `path` readable by its owner alone when `secret`.
fn write(path: &Path, text: &str, secret: bool) -> Result<(), QemuError> {
    std::fs::write(path, text)
        .and_then(|()| {
            let mode = if secret { 0o600 } else { 0o644 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        })
        .map_err(|e| QemuError::io(format!("cannot write {}", path.display()), e))
}

/// Makes the authority and the client certificate in `dir` unless they exist.
pub fn ensure_cluster_certs(dir: &Path, cluster: &str) -> Result<(), QemuError> {
    if [CA_CERT, CA_KEY, CLIENT_CERT, CLIENT_KEY]
        .iter()
        .all(|f| dir.join(f).is_file())
    {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| QemuError::io(format!("cannot create {}", dir.display()), e))?;
    let ca_key = KeyPair::generate().map_err(|e| cert_error("the cluster's CA key", e))?;
    let ca_cert = authority(cluster)
        .self_signed(&ca_key)
        .map_err(|e| cert_error("the cluster's CA", e))?;
    let issuer = Issuer::new(authority(cluster), &ca_key);
    let mut client = CertificateParams::default();
    client
        .distinguished_name
        .push(DnType::CommonName, format!("shoal {cluster} client"));
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let client_key = KeyPair::generate().map_err(|e| cert_error("the client key", e))?;
    let client_cert = client
        .signed_by(&client_key, &issuer)
        .map_err(|e| cert_error("the client certificate", e))?;
    write(&dir.join(CA_KEY), &ca_key.serialize_pem(), true)?;
    write(&dir.join(CLIENT_KEY), &client_key.serialize_pem(), true)?;
    write(&dir.join(CLIENT_CERT), &client_cert.pem(), false)?;
    write(&dir.join(CA_CERT), &ca_cert.pem(), false)
}

/// A server certificate for the VM `machine` at `address`, signed by the authority in `dir`.
pub fn server_cert(
    dir: &Path,
    cluster: &str,
    machine: &str,
    address: Ipv4Addr,
) -> Result<ServerCert, QemuError> {
    let key_path = dir.join(CA_KEY);
    let ca_pem = std::fs::read_to_string(&key_path)
        .map_err(|e| QemuError::io(format!("cannot read {}", key_path.display()), e))?;
    let ca_key = KeyPair::from_pem(&ca_pem).map_err(|e| cert_error("the CA key", e))?;
    let issuer = Issuer::new(authority(cluster), &ca_key);
    let mut params = CertificateParams::new(vec![machine.to_string(), "localhost".to_string()])
        .map_err(|e| cert_error(&format!("machine {machine}'s certificate"), e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, machine.to_string());
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(address)));
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().map_err(|e| cert_error("a server key", e))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| cert_error(&format!("machine {machine}'s certificate"), e))?;
    Ok(ServerCert {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn the_authority_is_made_once_and_signs_later_certificates() {
        let dir = tempfile::tempdir().unwrap();
        ensure_cluster_certs(dir.path(), "web").unwrap();
        let ca = std::fs::read_to_string(dir.path().join(CA_CERT)).unwrap();
        ensure_cluster_certs(dir.path(), "web").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(CA_CERT)).unwrap(),
            ca
        );
        let mode = std::fs::metadata(dir.path().join(CA_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let server = server_cert(dir.path(), "web", "m1", Ipv4Addr::new(10, 213, 7, 10)).unwrap();
        assert!(server.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(server.key.contains("PRIVATE KEY"));
        // The server certificate chains to the CA written first: rustls accepts it for the
        // VM's address, with the client certificate.
        let roots = {
            let mut roots = rustls::RootCertStore::empty();
            let der = rustls_pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).unwrap();
            roots.add(der).unwrap();
            std::sync::Arc::new(roots)
        };
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let end = rustls_pki_types::CertificateDer::from_pem_slice(server.cert.as_bytes()).unwrap();
        let name = rustls_pki_types::ServerName::IpAddress(rustls_pki_types::IpAddr::from(
            std::net::IpAddr::V4(Ipv4Addr::new(10, 213, 7, 10)),
        ));
        verifier
            .verify_server_cert(&end, &[], &name, &[], rustls_pki_types::UnixTime::now())
            .unwrap();
        let other = rustls_pki_types::ServerName::IpAddress(rustls_pki_types::IpAddr::from(
            std::net::IpAddr::V4(Ipv4Addr::new(10, 213, 7, 11)),
        ));
        assert!(verifier
            .verify_server_cert(&end, &[], &other, &[], rustls_pki_types::UnixTime::now())
            .is_err());
    }
}
