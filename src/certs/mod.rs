//! `raft-injector certs`: a CA and a serving certificate for the webhook Service
//! (ECDSA P-256), for installs without cert-manager and for the local test control plane.
//!
//! The CA is kept beside the serving pair (`ca.key`, `ca.crt`) and reused on the next run,
//! so rotating the serving certificate never changes what the webhook configurations'
//! `caBundle` must hold. Certificates carry subject and authority key identifiers, so a
//! bundle with an old and a new CA (during a CA change) verifies either.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

pub mod rotation;

pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

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
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{present} exists but {missing} does not, so the CA cannot be reused — restore {missing}, or pass \
         --new-ca to make a new CA (the webhook configurations' caBundle must then be updated)"
    )]
    HalfCa { present: PathBuf, missing: PathBuf },
    #[error(
        "the CA in {dir} cannot be reused ({why}) — pass --new-ca to replace it (the webhook configurations' \
         caBundle must then be updated)"
    )]
    BadCa { dir: PathBuf, why: String },
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

/// A CA as PEM: its certificate and private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Ca {
    pub cert: String,
    pub key: String,
}

/// PEM-encoded output.
#[derive(Clone)]
pub struct Issued {
    pub ca: Ca,
    /// Whether `ca` is the CA that was passed in, rather than a new one.
    pub ca_reused: bool,
    pub cert: String,
    pub key: String,
}

/// How a private key shows in `Debug` output (logs, panics, test failures): whether there is
/// one, never its bytes.
pub fn redacted(key: &str) -> &'static str {
    if key.is_empty() {
        "(none)"
    } else {
        "(private key, redacted)"
    }
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert", &self.cert)
            .field("key", &redacted(&self.key))
            .finish()
    }
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("ca", &self.ca)
            .field("ca_reused", &self.ca_reused)
            .field("cert", &self.cert)
            .field("key", &redacted(&self.key))
            .finish()
    }
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, life: Duration) {
    // Backdated a little so a skewed API server clock still accepts a fresh certificate.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + life;
}

fn new_ca(request: &CertRequest) -> Result<Ca, CertsError> {
    // The CA outlives several leaf rotations.
    let life = Duration::days(i64::from(request.days.saturating_mul(3)));
    new_ca_at(request, OffsetDateTime::now_utc(), life)
}

/// A new self-signed CA valid for `life` from `now`.
pub fn new_ca_at(
    request: &CertRequest,
    now: OffsetDateTime,
    life: Duration,
) -> Result<Ca, CertsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    // The creation time tells CAs apart in a bundle that holds two during a change.
    let created = now.unix_timestamp();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("raft-injector CA ({}) {created}", request.namespace),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, now, life);
    let cert = params.self_signed(&key)?;
    Ok(Ca {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Issues a serving certificate signed by `ca`, or by a new CA when `ca` is `None`.
pub fn issue(request: &CertRequest, ca: Option<&Ca>) -> Result<Issued, CertsError> {
    let (ca, ca_reused) = match ca {
        Some(ca) => (ca.clone(), true),
        None => (new_ca(request)?, false),
    };
    let life = Duration::days(i64::from(request.days));
    let (cert, key) = issue_leaf_at(request, &ca, OffsetDateTime::now_utc(), life)?;
    Ok(Issued {
        ca,
        ca_reused,
        cert,
        key,
    })
}

/// A serving certificate and its key (PEM) signed by `ca`, valid for `life` from `now`.
pub fn issue_leaf_at(
    request: &CertRequest,
    ca: &Ca,
    now: OffsetDateTime,
    life: Duration,
) -> Result<(String, String), CertsError> {
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, KeyPair::from_pem(&ca.key)?)?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let dns_names = request.dns_names();
    let mut leaf = CertificateParams::new(dns_names.clone())?;
    leaf.subject_alt_names
        .extend(request.ips.iter().copied().map(SanType::IpAddress));
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, dns_names[2].clone());
    // ExplicitNoCa writes basicConstraints CA:false and the subject key identifier.
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut leaf, now, life);
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The CA kept in `dir`, if there is one. Half a CA, or one that does not parse, is an
/// error rather than a silent replacement.
pub fn read_ca(dir: &Path) -> Result<Option<Ca>, CertsError> {
    let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
    let read = |path: &Path| match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CertsError::Read {
            path: path.to_owned(),
            source,
        }),
    };
    let ca = match (read(&cert_path)?, read(&key_path)?) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => Ca { cert, key },
        (Some(_), None) => {
            return Err(CertsError::HalfCa {
                present: cert_path,
                missing: key_path,
            })
        }
        (None, Some(_)) => {
            return Err(CertsError::HalfCa {
                present: key_path,
                missing: cert_path,
            })
        }
    };
    let bad = |why: String| CertsError::BadCa {
        dir: dir.to_owned(),
        why,
    };
    let key = KeyPair::from_pem(&ca.key).map_err(|e| bad(format!("{CA_KEY_FILE}: {e}")))?;
    Issuer::from_ca_cert_pem(&ca.cert, key).map_err(|e| bad(format!("{CA_CERT_FILE}: {e}")))?;
    Ok(Some(ca))
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
        let mut file = options.open(&path)?;
        // The mode above applies only to a new file: an existing one (written by another
        // tool, or before this rule) is narrowed before the key goes in.
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(contents.as_bytes())
    })();
    result.map_err(|source| CertsError::Write { path, source })
}

/// Writes `ca.crt`, `ca.key`, `tls.crt` and `tls.key` into `dir`, creating it.
pub fn write_to(dir: &Path, issued: &Issued) -> Result<(), CertsError> {
    std::fs::create_dir_all(dir).map_err(|source| CertsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    write(dir.join(CA_CERT_FILE), &issued.ca.cert, false)?;
    write(dir.join(CA_KEY_FILE), &issued.ca.key, true)?;
    write(dir.join(CERT_FILE), &issued.cert, false)?;
    write(dir.join(KEY_FILE), &issued.key, true)
}
