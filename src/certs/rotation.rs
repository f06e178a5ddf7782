//! The webhook's own certificates (`serve --cert-secret`): given what the Secret holds now,
//! what it should hold next. Pure: the time is passed in, and so is whether every webhook
//! configuration's caBundle already trusts the current CA.
//!
//! The rules, in order:
//! - no usable CA (missing, unparsable, key not matching, expired) → a new CA; one that
//!   still works is kept as the previous CA, so what it signed stays trusted;
//! - a CA with less than a third of the configured CA life left → a new CA the same way, but
//!   only once the served leaf is from the current CA (so at most two CAs are ever needed);
//! - a previous CA that expired → dropped;
//! - no usable leaf (missing, unparsable, key not matching, expired) → a new leaf now;
//! - a leaf from another CA → a new leaf once every caBundle trusts the current CA (until
//!   then the old leaf keeps working, trusted through the previous CA);
//! - a leaf with less than a third of its life left, or for other names → a new leaf.
//!
//! caBundle is always the current CA followed by the previous one, if any.

use rcgen::KeyPair;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::{issue_leaf_at, new_ca_at, Ca, CertRequest, CertsError};

/// The Secret key of the CA that signed earlier leaves, kept trusted during a change.
pub const PREVIOUS_CA_FILE: &str = "ca-previous.crt";

/// The Secret's PEM entries (`ca.crt`, `ca.key`, `ca-previous.crt`, `tls.crt`, `tls.key`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub ca_cert: Option<String>,
    pub ca_key: Option<String>,
    pub previous_ca: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = |k: &Option<String>| k.as_deref().map(super::redacted);
        f.debug_struct("Stored")
            .field("ca_cert", &self.ca_cert)
            .field("ca_key", &key(&self.ca_key))
            .field("previous_ca", &self.previous_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &key(&self.tls_key))
            .finish()
    }
}

impl Stored {
    /// What the webhook configurations' caBundle should be: the current CA, then the previous.
    pub fn ca_bundle(&self) -> String {
        let mut bundle = String::new();
        for pem in [&self.ca_cert, &self.previous_ca].into_iter().flatten() {
            bundle.push_str(pem.trim_end());
            bundle.push('\n');
        }
        bundle
    }
}

/// How long a new CA and a new leaf are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    pub ca: Duration,
    pub leaf: Duration,
}

impl Default for Lifetimes {
    /// Ten years for the CA (it changes only by the rules above), one year for the leaf.
    fn default() -> Lifetimes {
        Lifetimes {
            ca: Duration::days(3650),
            leaf: Duration::days(365),
        }
    }
}

/// The Secret's next contents and, one line each, why they changed.
#[derive(Clone, Debug)]
pub struct Next {
    pub stored: Stored,
    pub why: Vec<String>,
}

/// A certificate read from PEM, with what the rules ask of it.
struct Parsed {
    not_after: OffsetDateTime,
    not_before: OffsetDateTime,
    subject_key_id: Option<Vec<u8>>,
    authority_key_id: Option<Vec<u8>>,
    public_key: Vec<u8>,
    dns_names: Vec<String>,
}

fn parse(pem: &str) -> Result<Parsed, String> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&block.contents)
        .map_err(|e| format!("not a certificate: {e}"))?;
    Ok(read(&cert))
}

fn read(cert: &X509Certificate<'_>) -> Parsed {
    let mut parsed = Parsed {
        not_after: cert.validity().not_after.to_datetime(),
        not_before: cert.validity().not_before.to_datetime(),
        subject_key_id: None,
        authority_key_id: None,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        dns_names: Vec::new(),
    };
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => {
                parsed.subject_key_id = Some(id.0.to_vec())
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                parsed.authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::DNSName(dns) = name {
                        parsed.dns_names.push((*dns).to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    parsed
}

/// Whether `key_pem` is the private key of `cert`.
fn key_matches(cert: &Parsed, key_pem: &str) -> bool {
    KeyPair::from_pem(key_pem).is_ok_and(|key| key.public_key_raw() == cert.public_key.as_slice())
}

fn days(duration: Duration) -> i64 {
    duration.whole_days()
}

/// The current CA if it can sign, or why not.
fn usable_ca(stored: &Stored, now: OffsetDateTime) -> Result<(Ca, Parsed), String> {
    let (Some(cert), Some(key)) = (&stored.ca_cert, &stored.ca_key) else {
        return Err("the Secret holds no CA".to_owned());
    };
    let parsed = parse(cert).map_err(|e| format!("ca.crt is {e}"))?;
    if !key_matches(&parsed, key) {
        return Err("ca.key is not the key of ca.crt".to_owned());
    }
    if parsed.not_after <= now {
        return Err(format!("the CA expired at {}", parsed.not_after));
    }
    let ca = Ca {
        cert: cert.clone(),
        key: key.clone(),
    };
    Ok((ca, parsed))
}

enum Leaf {
    Good,
    /// Usable but to be replaced: the reason.
    Renew(String),
    /// From another CA: replaced once the current CA is trusted everywhere.
    OtherCa,
    /// Not usable at all: the reason.
    Broken(String),
}

fn judge_leaf(stored: &Stored, ca: &Parsed, request: &CertRequest, now: OffsetDateTime) -> Leaf {
    let (Some(cert), Some(key)) = (&stored.tls_cert, &stored.tls_key) else {
        return Leaf::Broken("the Secret holds no serving certificate".to_owned());
    };
    let leaf = match parse(cert) {
        Ok(leaf) => leaf,
        Err(e) => return Leaf::Broken(format!("tls.crt is {e}")),
    };
    if !key_matches(&leaf, key) {
        return Leaf::Broken("tls.key is not the key of tls.crt".to_owned());
    }
    if leaf.not_after <= now {
        return Leaf::Broken(format!(
            "the serving certificate expired at {}",
            leaf.not_after
        ));
    }
    if leaf.authority_key_id.is_none() || leaf.authority_key_id != ca.subject_key_id {
        return Leaf::OtherCa;
    }
    let mut wanted = request.dns_names();
    wanted.sort();
    let mut has = leaf.dns_names.clone();
    has.sort();
    if has != wanted {
        return Leaf::Renew(format!(
            "the serving certificate is for {has:?}, the Service's names are {wanted:?}"
        ));
    }
    let left = leaf.not_after - now;
    if left * 3 < leaf.not_after - leaf.not_before {
        return Leaf::Renew(format!(
            "the serving certificate expires in {} days",
            days(left)
        ));
    }
    Leaf::Good
}

/// What the Secret should hold next, or `None` when it is right as it is.
/// `bundles_trust_ca`: every webhook configuration's caBundle holds the current CA.
pub fn plan(
    stored: &Stored,
    request: &CertRequest,
    life: Lifetimes,
    now: OffsetDateTime,
    bundles_trust_ca: bool,
) -> Result<Option<Next>, CertsError> {
    let mut next = stored.clone();
    let mut why = Vec::new();
    let mut bundles_trust_ca = bundles_trust_ca;

    let current = usable_ca(stored, now);
    let replace_ca = match &current {
        Err(reason) => Some(reason.clone()),
        Ok((_, parsed)) => {
            let left = parsed.not_after - now;
            // Measured against the configured life: a longer setting replaces a CA made
            // under a shorter one (through the same safe steps), a shorter one does not.
            let aging = left * 3 < life.ca;
            let leaf_is_ours = matches!(
                judge_leaf(stored, parsed, request, now),
                Leaf::Good | Leaf::Renew(_)
            );
            (aging && leaf_is_ours).then(|| format!("the CA expires in {} days", days(left)))
        }
    };
    let ca = match (replace_ca, current) {
        (None, Ok((ca, parsed))) => (ca, parsed),
        (reason, current) => {
            let reason = reason.unwrap_or_default();
            let ca = new_ca_at(request, now, life.ca)?;
            // The CA being replaced stays trusted while it still works: its leaf is served.
            next.previous_ca = match current {
                Ok((old, _)) => Some(old.cert),
                Err(_) => None,
            };
            next.ca_cert = Some(ca.cert.clone());
            next.ca_key = Some(ca.key.clone());
            why.push(format!("new CA: {reason}"));
            bundles_trust_ca = false;
            let parsed = parse(&ca.cert).map_err(|e| CertsError::BadCa {
                dir: "the new CA".into(),
                why: e,
            })?;
            (ca, parsed)
        }
    };

    if let Some(previous) = &next.previous_ca {
        let gone = parse(previous).map_or(true, |p| p.not_after <= now);
        if gone {
            next.previous_ca = None;
            why.push("dropped the previous CA: expired".to_owned());
        }
    }

    let reissue = match judge_leaf(&next, &ca.1, request, now) {
        Leaf::Good => None,
        Leaf::Renew(reason) | Leaf::Broken(reason) => Some(reason),
        Leaf::OtherCa if bundles_trust_ca => Some(
            "the serving certificate is from the previous CA, and every caBundle trusts the current one"
                .to_owned(),
        ),
        Leaf::OtherCa if next.previous_ca.is_none() => Some(
            "the serving certificate is from a CA no caBundle will trust".to_owned(),
        ),
        Leaf::OtherCa => None,
    };
    if let Some(reason) = reissue {
        // Never valid past the CA that signs it.
        let leaf_life = life.leaf.min(ca.1.not_after - now);
        let (cert, key) = issue_leaf_at(request, &ca.0, now, leaf_life)?;
        next.tls_cert = Some(cert);
        next.tls_key = Some(key);
        why.push(format!("new serving certificate: {reason}"));
    }

    Ok((!why.is_empty()).then_some(Next { stored: next, why }))
}

/// Whether `bundle` (PEM) holds the certificate `ca_pem`.
pub fn bundle_holds(bundle: &[u8], ca_pem: &str) -> bool {
    let Ok((_, wanted)) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()) else {
        return false;
    };
    x509_parser::pem::Pem::iter_from_buffer(bundle)
        .filter_map(Result::ok)
        .any(|pem| pem.contents == wanted.contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> CertRequest {
        CertRequest {
            service: "raft-injector".into(),
            namespace: "raft-injector".into(),
            cluster_domain: "cluster.local".into(),
            ips: vec![],
            days: 365,
        }
    }

    fn start() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    /// Runs the plan until it settles, with caBundles that follow the Secret when `patched`.
    fn settle(stored: Stored, at: OffsetDateTime, patched: bool) -> (Stored, Vec<String>) {
        let mut stored = stored;
        let mut log = Vec::new();
        let mut bundle = String::new();
        for _ in 0..4 {
            let trusted = stored
                .ca_cert
                .as_deref()
                .is_some_and(|ca| bundle_holds(bundle.as_bytes(), ca));
            match plan(&stored, &request(), Lifetimes::default(), at, trusted).unwrap() {
                Some(next) => {
                    log.extend(next.why);
                    stored = next.stored;
                }
                None => return (stored, log),
            }
            if patched {
                bundle = stored.ca_bundle();
            }
        }
        panic!("the plan did not settle: {log:?}");
    }

    #[test]
    fn an_empty_secret_gets_a_ca_and_a_leaf_and_then_stays_as_it_is() {
        let (stored, log) = settle(Stored::default(), start(), true);
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(stored.ca_cert.is_some() && stored.tls_cert.is_some());
        assert_eq!(stored.previous_ca, None);
        let bundle = stored.ca_bundle();
        assert!(bundle_holds(
            bundle.as_bytes(),
            stored.ca_cert.as_ref().unwrap()
        ));
        // A day later nothing changes.
        let later = plan(
            &stored,
            &request(),
            Lifetimes::default(),
            start() + Duration::days(1),
            true,
        )
        .unwrap();
        assert!(later.is_none(), "{:?}", later.map(|n| n.why));
    }

    #[test]
    fn the_leaf_is_renewed_under_the_same_ca_when_a_third_of_its_life_is_left() {
        let (first, _) = settle(Stored::default(), start(), true);
        let at = start() + Duration::days(250);
        let (renewed, log) = settle(first.clone(), at, true);
        assert_eq!(renewed.ca_cert, first.ca_cert, "the CA stays");
        assert_ne!(renewed.tls_cert, first.tls_cert);
        assert!(log[0].contains("expires in"), "{log:?}");
        assert_eq!(renewed.ca_bundle(), first.ca_bundle(), "no caBundle change");
    }

    #[test]
    fn an_aging_ca_is_replaced_with_both_trusted_and_the_leaf_follows_only_once_trusted() {
        let (mut first, _) = settle(Stored::default(), start(), true);
        let at = start() + Duration::days(2500);
        // The leaf has been renewed on its own schedule under the old CA.
        let ca = Ca {
            cert: first.ca_cert.clone().unwrap(),
            key: first.ca_key.clone().unwrap(),
        };
        let (cert, key) = issue_leaf_at(&request(), &ca, at, Duration::days(365)).unwrap();
        (first.tls_cert, first.tls_key) = (Some(cert), Some(key));
        // caBundles not yet patched: the new CA comes, the old leaf stays.
        let step = plan(&first, &request(), Lifetimes::default(), at, true)
            .unwrap()
            .expect("a change");
        let mid = step.stored;
        assert_ne!(mid.ca_cert, first.ca_cert);
        assert_eq!(mid.previous_ca, first.ca_cert);
        let leaf_before = mid.tls_cert.clone();
        let again = plan(&mid, &request(), Lifetimes::default(), at, false).unwrap();
        assert!(
            again
                .as_ref()
                .is_none_or(|n| n.stored.tls_cert == leaf_before),
            "the leaf must wait for the caBundles: {:?}",
            again.map(|n| n.why)
        );
        // Once the caBundles hold the new CA, the leaf comes from it.
        let done = plan(&mid, &request(), Lifetimes::default(), at, true)
            .unwrap()
            .expect("a new leaf");
        assert_ne!(done.stored.tls_cert, leaf_before);
        assert!(done.why[0].contains("previous CA"), "{:?}", done.why);
        assert_eq!(
            done.stored.previous_ca, first.ca_cert,
            "the old CA stays trusted"
        );
    }

    #[test]
    fn a_longer_ca_lifetime_replaces_the_ca_through_the_same_safe_steps() {
        let (first, _) = settle(Stored::default(), start(), true);
        let longer = Lifetimes {
            ca: Duration::days(36500),
            leaf: Duration::days(365),
        };
        let step = plan(&first, &request(), longer, start(), true)
            .unwrap()
            .expect("a new CA");
        assert_eq!(step.stored.previous_ca, first.ca_cert);
        assert_eq!(
            step.stored.tls_cert, first.tls_cert,
            "the leaf waits for the caBundles"
        );
        let shorter = Lifetimes {
            ca: Duration::days(365),
            leaf: Duration::days(90),
        };
        assert!(plan(&first, &request(), shorter, start(), true)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_garbled_or_mismatched_secret_is_replaced_whole() {
        let (first, _) = settle(Stored::default(), start(), true);
        let garbled = Stored {
            ca_key: first.tls_key.clone(),
            ..first.clone()
        };
        let (fixed, log) = settle(garbled, start(), true);
        assert!(log[0].contains("ca.key is not the key"), "{log:?}");
        assert_ne!(fixed.ca_cert, first.ca_cert);
        assert_eq!(fixed.previous_ca, None, "a CA that cannot sign is not kept");
        let broken_leaf = Stored {
            tls_cert: Some("junk".into()),
            ..first.clone()
        };
        let (fixed, log) = settle(broken_leaf, start(), true);
        assert_eq!(fixed.ca_cert, first.ca_cert);
        assert!(log[0].contains("tls.crt is not PEM"), "{log:?}");
    }

    #[test]
    fn an_expired_previous_ca_is_dropped_and_a_leaf_for_other_names_is_reissued() {
        let (first, _) = settle(Stored::default(), start(), true);
        let (old, _) = settle(Stored::default(), start() - Duration::days(3649), true);
        let with_previous = Stored {
            previous_ca: old.ca_cert.clone(),
            ..first.clone()
        };
        let (next, log) = settle(with_previous, start() + Duration::days(2), true);
        assert_eq!(next.previous_ca, None, "{log:?}");
        let renamed = CertRequest {
            service: "webhook".into(),
            ..request()
        };
        let step = plan(&first, &renamed, Lifetimes::default(), start(), true)
            .unwrap()
            .expect("a new leaf");
        assert!(step.why[0].contains("Service's names"), "{:?}", step.why);
        assert_eq!(step.stored.ca_cert, first.ca_cert);
    }
}
