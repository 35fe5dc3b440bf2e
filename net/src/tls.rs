//! Certificates and TLS configuration for ringcast nodes.
//!
//! # Trust model
//!
//! A cluster has one certificate authority, created by [`generate`] (the
//! `ringcast cert` command). Every node has a certificate signed by it whose
//! only subject alternative name is the node's name (a DNS name), usable for
//! both TLS server and client authentication. Connections are mutual TLS 1.3
//! with ALPN [`ALPN`]:
//!
//! - the connecting node (the consumer) checks that the accepting node's
//!   certificate chains to the CA and is valid for the node name it dialled
//!   (standard hostname verification, server name = peer node name);
//! - the accepting node (the producer) requires a client certificate chaining
//!   to the CA, so a peer without one is refused during the handshake, before
//!   any frame; it then reads the node name from that certificate
//!   ([`peer_node_name`]) and checks the name claimed in the `Hello` against
//!   it.
//!
//! Only the ring crypto provider is used, selected explicitly (no process-wide
//! default provider is installed or needed).
//!
//! # Files
//!
//! `DIR/ca.crt`, `DIR/ca.key`, `DIR/NAME.crt`, `DIR/NAME.key`, all PEM.
//! Private keys are PKCS#8 ECDSA P-256, written with mode `0600` on Unix.
//! Certificates are valid from one day before their creation (clock skew)
//! for [`VALIDITY_DAYS`] days.
//!
//! # quinn configuration
//!
//! [`NodeIdentity::server_crypto`] and [`NodeIdentity::client_crypto`] return
//! the rustls configurations; [`NodeIdentity::server_config`] and
//! [`NodeIdentity::client_config`] wrap them for quinn with a caller-supplied
//! [`quinn::TransportConfig`] (idle timeout, keep-alive), which this module
//! leaves to the node.

use std::any::Any;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The ALPN protocol identifier of ringcast version 1, offered and required
/// by both ends.
pub const ALPN: &[u8] = b"ringcast/1";

/// File name of the CA certificate in a certificate directory.
pub const CA_CERT_FILE: &str = "ca.crt";

/// File name of the CA private key in a certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// Validity of generated certificates, CA and nodes, in days (10 years).
pub const VALIDITY_DAYS: i64 = 3650;

/// Longest node name: one DNS label.
pub const MAX_NODE_NAME: usize = 63;

/// Common name of the CA certificate.
const CA_COMMON_NAME: &str = "ringcast cluster ca";

/// Why certificates could not be generated, loaded or turned into a
/// configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A node name that is not a lower-case DNS label.
    #[error("invalid node name {name:?}: {reason}")]
    InvalidNodeName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Reading a file failed.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing a file or creating the directory failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("cannot parse {}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// Only one of the CA's two files exists. Replacing the CA would orphan
    /// every node certificate it signed, so nothing is done.
    #[error("{} exists but {} does not: restore it, or remove both to create a new ca", present.display(), missing.display())]
    CaIncomplete {
        /// The file found.
        present: PathBuf,
        /// The file missing.
        missing: PathBuf,
    },
    /// Generating a key or certificate, or loading the CA, failed.
    #[error("certificate generation failed")]
    Rcgen(#[from] rcgen::Error),
    /// A node certificate does not chain to the CA of its directory, or is
    /// not valid for its node name.
    #[error("certificate {} is not valid for node {name:?} under {}", cert.display(), ca.display())]
    NotIssuedByCa {
        /// The node name.
        name: String,
        /// The node certificate.
        cert: PathBuf,
        /// The CA certificate.
        ca: PathBuf,
        /// The cause.
        #[source]
        source: Box<webpki::Error>,
    },
    /// A peer certificate carries no single valid node name.
    #[error("peer certificate has no usable node name: {0}")]
    PeerName(&'static str),
    /// rustls refused the configuration (for example a key that does not
    /// match the certificate).
    #[error("invalid tls configuration")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("invalid client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The rustls configuration lacks what QUIC needs.
    #[error("tls configuration unusable for quic")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// What [`generate`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generated {
    /// True if a new CA was created; false if the existing one was reused.
    pub ca_created: bool,
    /// Nodes whose certificate and key were written.
    pub issued: Vec<String>,
    /// Nodes whose certificate and key already existed and were kept.
    pub kept: Vec<String>,
}

/// Checks that `name` can be a node name: 1 to [`MAX_NODE_NAME`] characters
/// among `a-z`, `0-9` and `-`, not starting or ending with `-`, not all
/// digits, and not `ca` (the CA's file name).
pub fn validate_node_name(name: &str) -> Result<(), TlsError> {
    let invalid = |reason| {
        Err(TlsError::InvalidNodeName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > MAX_NODE_NAME {
        return invalid("longer than 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return invalid("only a-z, 0-9 and - are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return invalid("starts or ends with -");
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return invalid("all digits");
    }
    if name == "ca" {
        return invalid("reserved for the certificate authority");
    }
    if !matches!(ServerName::try_from(name), Ok(ServerName::DnsName(_))) {
        return invalid("not a dns name");
    }
    Ok(())
}

/// Path of a node's certificate in `dir`.
pub fn cert_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.crt"))
}

/// Path of a node's private key in `dir`.
pub fn key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.key"))
}

/// Creates or extends the certificate directory `dir`.
///
/// 1. Validates every name first; on an invalid one nothing is written.
/// 2. Creates `dir` if needed.
/// 3. Reuses `ca.crt` + `ca.key` if both exist (`ca.crt` is left unchanged),
///    creates a new self-signed CA if neither exists, and refuses if only one
///    does ([`TlsError::CaIncomplete`]).
/// 4. For each node without both `NAME.crt` and `NAME.key`, issues a
///    certificate (subject alternative name = the node name; extended key
///    usage server and client authentication) and checks that it chains to
///    `ca.crt`. Nodes that have both files are kept as they are, after
///    checking that their certificate is valid under `ca.crt`
///    ([`TlsError::NotIssuedByCa`] if not: remove both files to reissue).
pub fn generate(dir: &Path, nodes: &[String]) -> Result<Generated, TlsError> {
    for name in nodes {
        validate_node_name(name)?;
    }
    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let ca_cert_path = dir.join(CA_CERT_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);
    let mut report = Generated::default();
    let (issuer, ca_der) = match (ca_cert_path.exists(), ca_key_path.exists()) {
        (true, true) => {
            let key = KeyPair::from_pem(&read_string(&ca_key_path)?)?;
            let cert_pem = read_string(&ca_cert_path)?;
            let ca_der = parse_cert(&ca_cert_path, cert_pem.as_bytes())?;
            (Issuer::from_ca_cert_pem(&cert_pem, key)?, ca_der)
        }
        (false, false) => {
            let key = KeyPair::generate()?;
            let params = ca_params();
            let cert = params.self_signed(&key)?;
            write_file(&ca_key_path, key.serialize_pem().as_bytes(), true)?;
            write_file(&ca_cert_path, cert.pem().as_bytes(), false)?;
            report.ca_created = true;
            (Issuer::new(params, key), cert.der().clone())
        }
        (true, false) => {
            return Err(TlsError::CaIncomplete {
                present: ca_cert_path,
                missing: ca_key_path,
            })
        }
        (false, true) => {
            return Err(TlsError::CaIncomplete {
                present: ca_key_path,
                missing: ca_cert_path,
            })
        }
    };
    for name in nodes {
        let cert_file = cert_path(dir, name);
        let key_file = key_path(dir, name);
        if cert_file.exists() && key_file.exists() {
            // A kept certificate must still be valid under this CA (it is not
            // if the CA files were replaced).
            let cert = parse_cert(&cert_file, &read_bytes(&cert_file)?)?;
            check_issued(name, &cert, &ca_der).map_err(|source| TlsError::NotIssuedByCa {
                name: name.clone(),
                cert: cert_file.clone(),
                ca: ca_cert_path.clone(),
                source: Box::new(source),
            })?;
            if !report.kept.contains(name) && !report.issued.contains(name) {
                report.kept.push(name.clone());
            }
            continue;
        }
        let key = KeyPair::generate()?;
        let cert = node_params(name)?.signed_by(&key, &issuer)?;
        check_issued(name, cert.der(), &ca_der).map_err(|source| TlsError::NotIssuedByCa {
            name: name.clone(),
            cert: cert_file.clone(),
            ca: ca_cert_path.clone(),
            source: Box::new(source),
        })?;
        write_file(&key_file, key.serialize_pem().as_bytes(), true)?;
        write_file(&cert_file, cert.pem().as_bytes(), false)?;
        report.issued.push(name.clone());
    }
    Ok(report)
}

/// A node's certificate, private key and cluster CA, loaded from a
/// certificate directory.
pub struct NodeIdentity {
    /// The node name; the certificate is valid for it.
    name: String,
    /// The node certificate (first), then any intermediates.
    cert_chain: Vec<CertificateDer<'static>>,
    /// The node's private key.
    key: PrivateKeyDer<'static>,
    /// The cluster CA: the only trust anchor.
    ca: CertificateDer<'static>,
}

/// Loads node `name`'s identity from `dir` ([`NodeIdentity::load`]).
pub fn load_node_identity(dir: &Path, name: &str) -> Result<NodeIdentity, TlsError> {
    NodeIdentity::load(dir, name)
}

impl NodeIdentity {
    /// Loads `DIR/NAME.crt`, `DIR/NAME.key` and `DIR/ca.crt`, and checks that
    /// the certificate is valid for `name` and chains to the CA, so that a
    /// mismatched directory fails here rather than at every handshake.
    pub fn load(dir: &Path, name: &str) -> Result<Self, TlsError> {
        validate_node_name(name)?;
        let cert_file = cert_path(dir, name);
        let key_file = key_path(dir, name);
        let ca_file = dir.join(CA_CERT_FILE);

        let cert_pem = read_bytes(&cert_file)?;
        let cert_chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| pem_error(&cert_file, source))?;
        let Some(cert) = cert_chain.first() else {
            return Err(pem_error(
                &cert_file,
                rustls_pki_types::pem::Error::NoItemsFound,
            ));
        };
        let key = PrivateKeyDer::from_pem_slice(&read_bytes(&key_file)?)
            .map_err(|source| pem_error(&key_file, source))?;
        let ca = parse_cert(&ca_file, &read_bytes(&ca_file)?)?;

        check_issued(name, cert, &ca).map_err(|source| TlsError::NotIssuedByCa {
            name: name.to_owned(),
            cert: cert_file,
            ca: ca_file,
            source: Box::new(source),
        })?;
        Ok(Self {
            name: name.to_owned(),
            cert_chain,
            key,
            ca,
        })
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        // `load` refuses a file without certificate, so the chain is non-empty;
        // the slice pattern keeps this total anyway.
        match self.cert_chain.as_slice() {
            [first, ..] => first,
            [] => &self.ca,
        }
    }

    /// The cluster CA certificate.
    pub fn ca(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// rustls server configuration: TLS 1.3 only, ring provider, ALPN
    /// [`ALPN`], presents the node certificate and requires a client
    /// certificate chaining to the CA.
    pub fn server_crypto(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone()).build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// rustls client configuration: TLS 1.3 only, ring provider, ALPN
    /// [`ALPN`], trusts only the CA (server name = the peer's node name),
    /// presents the node certificate.
    pub fn client_crypto(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.cert_chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// quinn server configuration from [`server_crypto`](Self::server_crypto)
    /// and `transport`.
    pub fn server_config(
        &self,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ServerConfig, TlsError> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(self.server_crypto()?)?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport);
        Ok(config)
    }

    /// quinn client configuration from [`client_crypto`](Self::client_crypto)
    /// and `transport`. Connect with the peer's node name as server name.
    pub fn client_config(
        &self,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ClientConfig, TlsError> {
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(self.client_crypto()?)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport);
        Ok(config)
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(Arc::new(roots))
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("name", &self.name)
            .field("certs", &self.cert_chain.len())
            .finish_non_exhaustive()
    }
}

/// The peer's end-entity certificate from a QUIC connection's
/// `peer_identity()` (rustls hands quinn a `Vec<CertificateDer>`), or `None`
/// if there is none.
pub fn peer_certificate(identity: Option<Box<dyn Any>>) -> Option<CertificateDer<'static>> {
    let certs = identity?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.into_iter().next()
}

/// The node name a peer certificate is for: its single DNS subject
/// alternative name, which must be a valid node name.
///
/// Only meaningful for a certificate the TLS handshake already verified
/// against the CA.
pub fn peer_node_name(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|_| TlsError::PeerName("certificate does not parse"))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|_| TlsError::PeerName("invalid subject alternative name extension"))?
        .ok_or(TlsError::PeerName("no subject alternative name"))?;
    let mut names = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some(*dns),
            _ => None,
        });
    let (Some(name), None) = (names.next(), names.next()) else {
        return Err(TlsError::PeerName("not exactly one dns name"));
    };
    validate_node_name(name).map_err(|_| TlsError::PeerName("dns name is not a node name"))?;
    Ok(name.to_owned())
}

/// True if `cert` is valid for node name `claimed` (by subject alternative
/// name, as hostname verification does). Does not check the chain.
pub fn verify_peer_name(cert: &CertificateDer<'_>, claimed: &str) -> bool {
    let Ok(name @ ServerName::DnsName(_)) = ServerName::try_from(claimed) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .and_then(|ee| ee.verify_is_valid_for_subject_name(&name))
        .is_ok()
}

/// The crypto provider of every configuration: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parameters of the cluster CA: may sign end-entity certificates only.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "ringcast");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    params
}

/// Parameters of a node certificate: SAN = the node name, server and client
/// authentication.
fn node_params(name: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(vec![name.to_owned()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    set_validity(&mut params);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
}

/// Checks that `cert` chains to `ca` for both server and client
/// authentication and is valid for `name`.
fn check_issued(
    name: &str,
    cert: &CertificateDer<'_>,
    ca: &CertificateDer<'_>,
) -> Result<(), webpki::Error> {
    let anchor = webpki::anchor_from_trusted_cert(ca)?;
    let anchors = [anchor];
    let ee = webpki::EndEntityCert::try_from(cert)?;
    for usage in [
        webpki::KeyUsage::server_auth(),
        webpki::KeyUsage::client_auth(),
    ] {
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &[],
            UnixTime::now(),
            usage,
            None,
            None,
        )?;
    }
    let server_name =
        ServerName::try_from(name).map_err(|_| webpki::Error::MalformedDnsIdentifier)?;
    ee.verify_is_valid_for_subject_name(&server_name)
}

fn parse_cert(path: &Path, pem: &[u8]) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem).map_err(|source| pem_error(path, source))
}

fn pem_error(path: &Path, source: rustls_pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        source,
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_string(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to `path`, readable by the owner only if `private`.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), TlsError> {
    let write_error = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(write_error)?;
    #[cfg(unix)]
    if private {
        // `mode` applies only to a new file; an existing one is narrowed too.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(write_error)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    io::Write::write_all(&mut file, contents).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use rustls::{ClientConnection, ServerConnection};

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            // Relaxed: only uniqueness of the value matters.
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "ringcast-tls-test-{}-{tag}-{n}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&path);
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn node_names_are_validated() {
        for good in ["a", "node-1", "n0", "1a", &"x".repeat(63)] {
            assert!(validate_node_name(good).is_ok(), "{good}");
        }
        let cases = [
            ("", "empty"),
            (&"x".repeat(64)[..], "longer than 63 characters"),
            ("Node", "only a-z, 0-9 and - are allowed"),
            ("a.b", "only a-z, 0-9 and - are allowed"),
            ("a_b", "only a-z, 0-9 and - are allowed"),
            ("é", "only a-z, 0-9 and - are allowed"),
            ("-a", "starts or ends with -"),
            ("a-", "starts or ends with -"),
            ("123", "all digits"),
            ("ca", "reserved for the certificate authority"),
        ];
        for (name, reason) in cases {
            match validate_node_name(name) {
                Err(TlsError::InvalidNodeName { name: n, reason: r }) => {
                    assert_eq!((n.as_str(), r), (name, reason));
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
        let message = validate_node_name("A").unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid node name \"A\": only a-z, 0-9 and - are allowed"
        );
    }

    #[test]
    fn invalid_names_write_nothing() {
        let dir = TempDir::new("invalid");
        assert!(generate(&dir.0, &names(&["good", "Bad"])).is_err());
        assert!(!dir.0.exists());
    }

    #[test]
    fn generate_then_extend_reuses_the_ca() {
        let dir = TempDir::new("extend");
        let report = generate(&dir.0, &names(&["alpha", "beta", "alpha"])).unwrap();
        assert_eq!(
            report,
            Generated {
                ca_created: true,
                issued: names(&["alpha", "beta"]),
                kept: vec![],
            }
        );
        for file in [
            "ca.crt",
            "ca.key",
            "alpha.crt",
            "alpha.key",
            "beta.crt",
            "beta.key",
        ] {
            assert!(dir.0.join(file).is_file(), "{file}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in ["ca.key", "alpha.key"] {
                let mode = fs::metadata(dir.0.join(key)).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{key}");
            }
        }
        let ca_before = fs::read(dir.0.join(CA_CERT_FILE)).unwrap();
        let alpha_before = fs::read(dir.0.join("alpha.crt")).unwrap();

        let report = generate(&dir.0, &names(&["alpha", "gamma"])).unwrap();
        assert_eq!(
            report,
            Generated {
                ca_created: false,
                issued: names(&["gamma"]),
                kept: names(&["alpha"]),
            }
        );
        assert_eq!(fs::read(dir.0.join(CA_CERT_FILE)).unwrap(), ca_before);
        assert_eq!(fs::read(dir.0.join("alpha.crt")).unwrap(), alpha_before);

        // Every node, old and new, chains to the one CA (checked by `load`).
        for name in ["alpha", "beta", "gamma"] {
            let id = load_node_identity(&dir.0, name).unwrap();
            assert_eq!(id.name(), name);
            assert_eq!(peer_node_name(id.cert()).unwrap(), name);
            assert!(verify_peer_name(id.cert(), name));
            assert_eq!(
                id.ca().as_ref(),
                load_node_identity(&dir.0, "alpha").unwrap().ca().as_ref()
            );
        }
        let debug = format!("{:?}", load_node_identity(&dir.0, "alpha").unwrap());
        assert!(
            debug.contains("alpha") && !debug.contains("PRIVATE"),
            "{debug}"
        );
    }

    #[test]
    fn a_half_ca_is_refused() {
        let dir = TempDir::new("half");
        generate(&dir.0, &names(&["a"])).unwrap();
        fs::remove_file(dir.0.join(CA_KEY_FILE)).unwrap();
        let error = generate(&dir.0, &names(&["b"])).unwrap_err();
        assert!(matches!(error, TlsError::CaIncomplete { .. }), "{error:?}");
        assert!(!dir.0.join("b.crt").exists());
    }

    #[test]
    fn nodes_of_a_replaced_ca_are_not_kept_silently() {
        let dir = TempDir::new("replaced");
        generate(&dir.0, &names(&["a"])).unwrap();
        fs::remove_file(dir.0.join(CA_KEY_FILE)).unwrap();
        fs::remove_file(dir.0.join(CA_CERT_FILE)).unwrap();
        let error = generate(&dir.0, &names(&["a"])).unwrap_err();
        assert!(matches!(error, TlsError::NotIssuedByCa { .. }), "{error:?}");
        fs::remove_file(dir.0.join("a.crt")).unwrap();
        let report = generate(&dir.0, &names(&["a"])).unwrap();
        assert_eq!(report.issued, names(&["a"]));
        load_node_identity(&dir.0, "a").unwrap();
    }

    #[test]
    fn loading_checks_the_files() {
        let dir = TempDir::new("load");
        generate(&dir.0, &names(&["a"])).unwrap();
        assert!(matches!(
            load_node_identity(&dir.0, "missing"),
            Err(TlsError::Read { .. })
        ));
        assert!(matches!(
            load_node_identity(&dir.0, "Bad"),
            Err(TlsError::InvalidNodeName { .. })
        ));
        // A certificate renamed to another node is not valid for that name.
        fs::copy(dir.0.join("a.crt"), dir.0.join("b.crt")).unwrap();
        fs::copy(dir.0.join("a.key"), dir.0.join("b.key")).unwrap();
        assert!(matches!(
            load_node_identity(&dir.0, "b"),
            Err(TlsError::NotIssuedByCa { .. })
        ));
        // A node certificate from another cluster does not chain to this CA.
        let other = TempDir::new("load-other");
        generate(&other.0, &names(&["c"])).unwrap();
        fs::copy(other.0.join("c.crt"), dir.0.join("c.crt")).unwrap();
        fs::copy(other.0.join("c.key"), dir.0.join("c.key")).unwrap();
        assert!(matches!(
            load_node_identity(&dir.0, "c"),
            Err(TlsError::NotIssuedByCa { .. })
        ));
        fs::write(dir.0.join("d.crt"), "not pem").unwrap();
        fs::write(dir.0.join("d.key"), "not pem").unwrap();
        assert!(matches!(
            load_node_identity(&dir.0, "d"),
            Err(TlsError::Pem { .. })
        ));
    }

    #[test]
    fn configs_build() {
        let dir = TempDir::new("configs");
        generate(&dir.0, &names(&["a"])).unwrap();
        let id = load_node_identity(&dir.0, "a").unwrap();
        let server = id.server_crypto().unwrap();
        let client = id.client_crypto().unwrap();
        assert_eq!(server.alpn_protocols, [ALPN.to_vec()]);
        assert_eq!(client.alpn_protocols, [ALPN.to_vec()]);
        let transport = Arc::new(quinn::TransportConfig::default());
        id.server_config(transport.clone()).unwrap();
        id.client_config(transport).unwrap();
    }

    #[test]
    fn peer_name_verification() {
        let dir = TempDir::new("names");
        generate(&dir.0, &names(&["a", "b"])).unwrap();
        let a = load_node_identity(&dir.0, "a").unwrap();
        assert!(verify_peer_name(a.cert(), "a"));
        assert!(!verify_peer_name(a.cert(), "b"));
        assert!(!verify_peer_name(a.cert(), ""));
        assert!(!verify_peer_name(a.cert(), "127.0.0.1"));
        assert!(!verify_peer_name(&CertificateDer::from(vec![1, 2, 3]), "a"));
        // The CA certificate has no node name.
        assert!(matches!(peer_node_name(a.ca()), Err(TlsError::PeerName(_))));
        assert!(matches!(
            peer_node_name(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
            Err(TlsError::PeerName(_))
        ));
        // quinn hands the peer identity over as `Box<dyn Any>`.
        let identity: Box<dyn Any> = Box::new(vec![a.cert().clone()]);
        assert_eq!(peer_certificate(Some(identity)).as_ref(), Some(a.cert()));
        assert_eq!(peer_certificate(Some(Box::new(42u8))), None);
        assert_eq!(peer_certificate(None), None);
    }

    #[test]
    fn client_verifier_rejects_another_ca() {
        let dir = TempDir::new("verifier");
        let other = TempDir::new("verifier-other");
        generate(&dir.0, &names(&["a", "b"])).unwrap();
        generate(&other.0, &names(&["b"])).unwrap();
        let a = load_node_identity(&dir.0, "a").unwrap();
        let b = load_node_identity(&dir.0, "b").unwrap();
        let stranger = load_node_identity(&other.0, "b").unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(a.roots().unwrap(), provider())
            .build()
            .unwrap();
        assert!(verifier.client_auth_mandatory());
        let now = UnixTime::now();
        assert!(verifier.verify_client_cert(b.cert(), &[], now).is_ok());
        assert!(verifier
            .verify_client_cert(stranger.cert(), &[], now)
            .is_err());
    }

    /// Runs a TLS handshake in memory; the error of the side that failed.
    fn handshake(
        client: &mut ClientConnection,
        server: &mut ServerConnection,
    ) -> Result<(), rustls::Error> {
        fn pump(
            from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
            to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
        ) -> Result<(), rustls::Error> {
            let mut buf = Vec::new();
            while from.wants_write() {
                from.write_tls(&mut buf).unwrap();
            }
            let mut rest = &buf[..];
            while !rest.is_empty() {
                to.read_tls(&mut rest).unwrap();
                to.process_new_packets()?;
            }
            Ok(())
        }
        for _ in 0..10 {
            pump(client, server)?;
            pump(server, client)?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    fn connect(
        client: &NodeIdentity,
        server: &NodeIdentity,
        server_name: &str,
    ) -> (Result<(), rustls::Error>, ServerConnection) {
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let mut c = ClientConnection::new(Arc::new(client.client_crypto().unwrap()), name).unwrap();
        let mut s = ServerConnection::new(Arc::new(server.server_crypto().unwrap())).unwrap();
        (handshake(&mut c, &mut s), s)
    }

    #[test]
    fn mutual_tls_end_to_end() {
        let dir = TempDir::new("e2e");
        let other = TempDir::new("e2e-other");
        generate(&dir.0, &names(&["a", "b"])).unwrap();
        generate(&other.0, &names(&["a", "b"])).unwrap();
        let a = load_node_identity(&dir.0, "a").unwrap();
        let b = load_node_identity(&dir.0, "b").unwrap();

        // Same cluster: both sides authenticated, ALPN agreed, and the
        // server reads the client's node name from its certificate.
        let (result, server) = connect(&a, &b, "b");
        result.unwrap();
        assert_eq!(server.alpn_protocol(), Some(ALPN));
        let peer = server.peer_certificates().unwrap()[0].clone();
        assert_eq!(peer_node_name(&peer).unwrap(), "a");

        // Dialling "c" but reaching b: hostname verification fails.
        let (result, _) = connect(&a, &b, "c");
        assert!(result.is_err());

        // A client of another cluster is refused by the server.
        let stranger = load_node_identity(&other.0, "a").unwrap();
        let (result, _) = connect(&stranger, &b, "b");
        assert!(result.is_err());

        // A server of another cluster is refused by the client.
        let stranger_server = load_node_identity(&other.0, "b").unwrap();
        let (result, _) = connect(&a, &stranger_server, "b");
        assert!(result.is_err());
    }
}
