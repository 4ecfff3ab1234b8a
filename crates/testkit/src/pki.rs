//! Throwaway certificate authorities for TLS tests: a CA that signs a server certificate for
//! loopback and client certificates, all ECDSA P-256, written out as PEM files.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate authority that lives as long as a test.
#[derive(Debug)]
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key (PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA called `name`.
    ///
    /// # Panics
    /// When key generation or signing fails.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("generating the CA's key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).expect("self-signing the CA").pem();
        Self { issuer: Issuer::new(params, key), pem }
    }

    /// Writes the CA's certificate to `path` and returns the path.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write_cert(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.pem).expect("writing the CA certificate");
        path.to_path_buf()
    }

    /// A server certificate for 127.0.0.1, ::1 and localhost, written to `dir` as
    /// `NAME.pem` and `NAME.key`.
    ///
    /// # Panics
    /// When signing or writing fails.
    pub fn server(&self, dir: &Path, name: &str) -> CertFiles {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.subject_alt_names = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            SanType::DnsName("localhost".try_into().expect("a valid DNS name")),
        ];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, dir, name)
    }

    /// A client certificate, written to `dir` as `NAME.pem` and `NAME.key`. Its subject has
    /// no common name: etcd's JSON gateway refuses clients whose certificate has one.
    ///
    /// # Panics
    /// When signing or writing fails.
    pub fn client(&self, dir: &Path, name: &str) -> CertFiles {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, dir, name)
    }

    fn sign(&self, mut params: CertificateParams, dir: &Path, name: &str) -> CertFiles {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generating a key");
        let cert = params.signed_by(&key, &self.issuer).expect("signing a certificate");
        let files = CertFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("writing a certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("writing a key");
        files
    }
}
