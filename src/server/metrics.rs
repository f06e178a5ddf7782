//! Prometheus metrics served on `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed with no change.
    Allowed,
    /// Allowed with an injection patch.
    Patched,
    /// Denied by a Raft rule or an undecidable request.
    Denied,
    /// Not an AdmissionReview, or too large (HTTP 4xx).
    Rejected,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        use std::fmt::Write;
        encoder.write_str(match self {
            Outcome::Allowed => "allowed",
            Outcome::Patched => "patched",
            Outcome::Denied => "denied",
            Outcome::Rejected => "rejected",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub webhook: String,
    pub operation: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// SHA-256 of the leaf certificate's DER, as `openssl x509 -outform der | sha256sum` prints it.
    pub sha256: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: String,
}

/// Why the server closed or refused an HTTPS connection.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Closed {
    /// The TLS handshake failed or did not finish within the header timeout.
    Handshake,
    /// No request in flight for the idle timeout (or no whole request within the header timeout).
    Idle,
    /// Closed at the connection cap to make room for a new one.
    Evicted,
    /// Refused at the cap because every open connection was serving a request.
    Refused,
}

impl EncodeLabelValue for Closed {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        use std::fmt::Write;
        encoder.write_str(match self {
            Closed::Handshake => "handshake",
            Closed::Idle => "idle",
            Closed::Evicted => "evicted",
            Closed::Refused => "refused",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    pub reason: Closed,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<WebhookLabels, Histogram>,
    warnings: Family<WebhookLabels, Counter>,
    cert_reloads: Family<ReloadLabels, Counter>,
    connections: Gauge,
    closed: Family<ClosedLabels, Counter>,
    response_bytes: Family<WebhookLabels, Histogram>,
    certificate: Family<CertificateLabels, Gauge>,
    certificate_expiry: Gauge,
    shed: Family<WebhookLabels, Counter>,
    buffered: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("raft_injector");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests by webhook, operation and outcome",
            requests.clone(),
        );
        let duration = Family::<WebhookLabels, Histogram>::new_with_constructor(|| {
            // 50µs .. ~1.6s: admission is expected in well under a millisecond.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.00005, 2.0, 16,
            ))
        });
        registry.register(
            "admission_duration_seconds",
            "Time to decide an admission request, body parsing included",
            duration.clone(),
        );
        let warnings = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "admission_warnings",
            "Warnings returned to clients",
            warnings.clone(),
        );
        let cert_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Serving certificate reloads by result",
            cert_reloads.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "https_connections",
            "HTTPS connections open",
            connections.clone(),
        );
        let closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "https_connections_closed",
            "HTTPS connections the server closed or refused, by reason",
            closed.clone(),
        );
        let response_bytes = Family::<WebhookLabels, Histogram>::new_with_constructor(|| {
            // 1 KiB .. 1 MiB: a denial or a patch is a few KiB.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                1024.0, 4.0, 6,
            ))
        });
        registry.register(
            "admission_response_bytes",
            "Size of the AdmissionReview bodies sent back",
            response_bytes.clone(),
        );
        let certificate = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "serving_certificate_info",
            "The serving certificate in use (1), by fingerprint; certs/install.sh waits on it",
            certificate.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "serving_certificate_expiry_timestamp_seconds",
            "When the serving certificate in use expires (Unix time)",
            certificate_expiry.clone(),
        );
        let shed = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "requests_shed",
            "Requests answered 503 unread because request bodies held the whole body budget \
             (the body arriving the longest is shed first)",
            shed.clone(),
        );
        let buffered = Gauge::default();
        registry.register(
            "buffered_body_bytes",
            "Bytes of request bodies held by all requests being read or decided",
            buffered.clone(),
        );
        // `raft-injector check` compares it with the version recorded in each injection.
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: crate::VERSION.to_owned(),
            })
            .set(1);
        registry.register("build_info", "The running raft-injector version (1)", build);
        Metrics {
            registry,
            response_bytes,
            certificate,
            certificate_expiry,
            requests,
            duration,
            warnings,
            cert_reloads,
            connections,
            closed,
            shed,
            buffered,
        }
    }
}

impl Metrics {
    /// The body budget of `limit` bytes, reporting what it holds here.
    pub fn body_budget(&self, limit: usize) -> super::budget::BodyBudget {
        let budget = super::budget::BodyBudget::with_gauge(limit, self.buffered.clone());
        self.buffered.set(0);
        budget
    }

    pub fn shed(&self, webhook: &str) {
        self.shed
            .get_or_create(&WebhookLabels {
                webhook: webhook.to_owned(),
            })
            .inc();
    }

    pub fn observe(
        &self,
        webhook: &str,
        operation: &str,
        outcome: Outcome,
        warnings: usize,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                webhook: webhook.to_owned(),
                operation: operation.to_owned(),
                outcome,
            })
            .inc();
        let webhook = WebhookLabels {
            webhook: webhook.to_owned(),
        };
        self.duration
            .get_or_create(&webhook)
            .observe(took.as_secs_f64());
        if warnings > 0 {
            self.warnings
                .get_or_create(&webhook)
                .inc_by(warnings as u64);
        }
    }

    pub fn cert_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.cert_reloads
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Records the leaf certificate (DER) now being served.
    pub fn serving_certificate(&self, der: &[u8]) {
        use sha2::{Digest, Sha256};
        let sha256 = Sha256::digest(der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.certificate.clear();
        self.certificate
            .get_or_create(&CertificateLabels { sha256 })
            .set(1);
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
            self.certificate_expiry
                .set(cert.validity().not_after.timestamp());
        }
    }

    pub fn response_size(&self, webhook: &str, bytes: usize) {
        self.response_bytes
            .get_or_create(&WebhookLabels {
                webhook: webhook.to_owned(),
            })
            .observe(bytes as f64);
    }

    pub fn connections_open(&self, open: usize) {
        self.connections
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    pub fn connection_closed(&self, reason: Closed) {
        self.closed.get_or_create(&ClosedLabels { reason }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
