//! The certificate a webhook pod actually serves, fetched through a port-forward (so it is
//! the pod's, not the Secret's), and whether a webhook configuration's caBundle trusts it
//! for the name kube-apiserver dials (`<service>.<namespace>.svc`).

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

/// What a TLS handshake showed: the chain the server sent, leaf first.
#[derive(Clone, Debug)]
pub struct Served {
    pub chain: Vec<CertificateDer<'static>>,
}

impl Served {
    /// The leaf's expiry, Unix seconds.
    pub fn not_after(&self) -> Option<i64> {
        let leaf = self.chain.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        Some(cert.validity().not_after.timestamp())
    }

    /// The leaf's subject, for messages.
    pub fn subject(&self) -> String {
        self.chain
            .first()
            .and_then(|leaf| x509_parser::parse_x509_certificate(leaf).ok())
            .map_or_else(
                || "an unreadable certificate".to_owned(),
                |(_, c)| c.subject().to_string(),
            )
    }
}

/// Accepts any chain and keeps it: `check` judges the chain afterwards, against each
/// caBundle in turn, and nothing is sent over this connection.
#[derive(Debug)]
struct Recorder {
    provider: Arc<CryptoProvider>,
    seen: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Runs a TLS handshake over `stream` and returns the chain the server presented.
pub async fn handshake<S>(stream: S, server_name: &str) -> Result<Served, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        provider: provider.clone(),
        seen: Mutex::new(Vec::new()),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| format!("{server_name:?} is not a DNS name"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let chain = recorder
        .seen
        .lock()
        .map(|seen| seen.clone())
        .unwrap_or_default();
    if chain.is_empty() {
        return Err("the server presented no certificate".to_owned());
    }
    Ok(Served { chain })
}

/// The certificate pod `pod` serves on `port`, through the API server's port-forward.
pub async fn served_by_pod(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
    server_name: &str,
) -> Result<Served, String> {
    let pods = kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), namespace);
    let mut forwarder = pods
        .portforward(pod, &[port])
        .await
        .map_err(|e| format!("port-forward to {pod}:{port}: {e}"))?;
    let stream = forwarder
        .take_stream(port)
        .ok_or_else(|| format!("port-forward to {pod}:{port} gave no stream"))?;
    let served = handshake(stream, server_name).await;
    forwarder.abort();
    served
}

/// Whether `ca_bundle` (PEM, one or more CAs) trusts `served` for `server_name`, as
/// kube-apiserver would check it at `now`. The error says why not.
pub fn verify(
    served: &Served,
    ca_bundle: &[u8],
    server_name: &str,
    now: UnixTime,
) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(ca_bundle) {
        let cert = cert.map_err(|e| format!("the caBundle is not PEM: {e}"))?;
        roots.add(cert).map_err(|e| {
            format!("the caBundle holds a certificate that is not a usable CA: {e}")
        })?;
        count += 1;
    }
    if count == 0 {
        return Err("the caBundle holds no certificate".to_owned());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| format!("{server_name:?} is not a DNS name"))?;
    let (leaf, intermediates) = served
        .chain
        .split_first()
        .ok_or_else(|| "no certificate was served".to_owned())?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], now)
        .map(|_| ())
        .map_err(|e| match e {
            rustls::Error::InvalidCertificate(reason) => describe(&reason, count),
            other => other.to_string(),
        })
}

fn describe(reason: &rustls::CertificateError, cas: usize) -> String {
    use rustls::CertificateError as E;
    match reason {
        E::UnknownIssuer => format!(
            "it is not signed by the CA{} in the caBundle",
            if cas > 1 { "s" } else { "" }
        ),
        // A CA of the same name but another key, e.g. one made anew instead of reused.
        E::BadSignature => format!(
            "it is not signed by the CA{} in the caBundle (one has the issuer's name, but another key)",
            if cas > 1 { "s" } else { "" }
        ),
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            "it is not valid for the Service's DNS name (SANs)".to_owned()
        }
        E::Expired | E::ExpiredContext { .. } => "it has expired".to_owned(),
        E::NotValidYet | E::NotValidYetContext { .. } => "it is not valid yet".to_owned(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{issue, CertRequest};

    fn request() -> CertRequest {
        CertRequest {
            service: "raft-injector".to_owned(),
            namespace: "raft-injector".to_owned(),
            cluster_domain: "cluster.local".to_owned(),
            ips: vec![],
            days: 30,
        }
    }

    fn served(pem: &str) -> Served {
        Served {
            chain: CertificateDer::pem_slice_iter(pem.as_bytes())
                .map(|c| c.unwrap())
                .collect(),
        }
    }

    const NAME: &str = "raft-injector.raft-injector.svc";

    #[test]
    fn the_issuing_ca_trusts_the_leaf_for_the_service_name_and_another_ca_does_not() {
        let issued = issue(&request(), None).unwrap();
        let other = issue(&request(), None).unwrap();
        let leaf = served(&issued.cert);
        assert_eq!(
            verify(&leaf, issued.ca.cert.as_bytes(), NAME, UnixTime::now()),
            Ok(())
        );
        let error = verify(&leaf, other.ca.cert.as_bytes(), NAME, UnixTime::now()).unwrap_err();
        assert!(
            error.contains("not signed by the CA in the caBundle"),
            "{error}"
        );
        let both = format!("{}{}", other.ca.cert, issued.ca.cert);
        assert_eq!(
            verify(&leaf, both.as_bytes(), NAME, UnixTime::now()),
            Ok(()),
            "a two-CA bundle during rotation"
        );
    }

    #[test]
    fn a_leaf_for_another_service_is_refused_for_its_name() {
        let issued = issue(&request(), None).unwrap();
        let error = verify(
            &served(&issued.cert),
            issued.ca.cert.as_bytes(),
            "other.raft-injector.svc",
            UnixTime::now(),
        )
        .unwrap_err();
        assert!(
            error.contains("not valid for the Service's DNS name"),
            "{error}"
        );
    }

    #[test]
    fn an_expired_leaf_is_refused_and_its_expiry_is_read() {
        let issued = issue(&request(), None).unwrap();
        let leaf = served(&issued.cert);
        let not_after = leaf.not_after().unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            (29 * 86400..=31 * 86400).contains(&(not_after - now)),
            "{not_after}"
        );
        let later =
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(not_after as u64 + 60));
        let error = verify(&leaf, issued.ca.cert.as_bytes(), NAME, later).unwrap_err();
        assert!(error.contains("expired"), "{error}");
    }

    #[test]
    fn an_empty_or_garbled_bundle_says_so() {
        let issued = issue(&request(), None).unwrap();
        let leaf = served(&issued.cert);
        assert!(verify(&leaf, b"", NAME, UnixTime::now())
            .unwrap_err()
            .contains("no certificate"));
        let garbled = b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(verify(&leaf, garbled, NAME, UnixTime::now()).is_err());
    }

    #[tokio::test]
    async fn a_handshake_records_the_chain_a_real_server_presents() {
        let dir = tempfile::tempdir().unwrap();
        let issued = issue(&request(), None).unwrap();
        crate::certs::write_to(dir.path(), &issued).unwrap();
        let paths = crate::server::tls::CertPaths {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let reloader = crate::server::tls::CertReloader::load(paths).unwrap();
        let config = Arc::new(crate::server::tls::server_config(reloader).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = acceptor.accept(tcp).await;
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let leaf = handshake(tcp, NAME).await.unwrap();
        assert_eq!(
            verify(&leaf, issued.ca.cert.as_bytes(), NAME, UnixTime::now()),
            Ok(())
        );
        assert!(
            leaf.subject().contains("raft-injector"),
            "{}",
            leaf.subject()
        );
        server.await.unwrap();
    }
}
