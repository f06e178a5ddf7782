//! `raft-injector certs`: a CA and a serving certificate for the webhook Service
//! (ECDSA P-256), for installs without cert-manager and for the local test control plane.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to issue a serving certificate for.
#[derive(Clone, Debug)]
pub struct CertRequest {
    pub service: String,
    pub namespace: String,
    pub cluster_domain: String,
    pub ips: Vec<IpAddr>,
    pub days: u32,
}

impl CertRequest {
    /// The DNS names the API server may use to reach the Service.
    pub fn dns_names(&self) -> Vec<String> {
        let (s, ns) = (&self.service, &self.namespace);
        vec![
            s.clone(),
            format!("{s}.{ns}"),
            format!("{s}.{ns}.svc"),
            format!("{s}.{ns}.svc.{}", self.cluster_domain),
        ]
    }
}

/// PEM-encoded output.
#[derive(Clone, Debug)]
pub struct Issued {
    pub ca_cert: String,
    pub cert: String,
    pub key: String,
}

fn validity(params: &mut CertificateParams, days: u32) {
    // Backdated a little so a skewed API server clock still accepts a fresh certificate.
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
}

pub fn issue(request: &CertRequest) -> Result<Issued, CertsError> {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("raft-injector CA ({})", request.namespace),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // The CA outlives several leaf rotations.
    validity(&mut ca, request.days.saturating_mul(3));
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let dns_names = request.dns_names();
    let mut leaf = CertificateParams::new(dns_names.clone())?;
    leaf.subject_alt_names
        .extend(request.ips.iter().copied().map(SanType::IpAddress));
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, dns_names[2].clone());
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut leaf, request.days);
    let issuer = Issuer::new(ca, ca_key);
    let cert = leaf.signed_by(&key, &issuer)?;

    Ok(Issued {
        ca_cert: ca_cert.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn write(path: PathBuf, contents: &str, private: bool) -> Result<(), CertsError> {
    let result = (|| {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(&path)?.write_all(contents.as_bytes())
    })();
    result.map_err(|source| CertsError::Write { path, source })
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` into `dir`, creating it.
pub fn write_to(dir: &Path, issued: &Issued) -> Result<(), CertsError> {
    std::fs::create_dir_all(dir).map_err(|source| CertsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    write(dir.join("ca.crt"), &issued.ca_cert, false)?;
    write(dir.join("tls.crt"), &issued.cert, false)?;
    write(dir.join("tls.key"), &issued.key, true)
}
