//! Turns a StatefulSet and its context into the facts injection is built from: which
//! container, which ports, which flavor, how many bootstrap members. Every problem found
//! on the way is reported in words a user can act on.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use uuid::Uuid;

use super::hook_url::{Hook, HookUrl};

use super::context::Context;
use super::dns;
use super::flavor::Flavor;
use super::names::*;
use super::replicas;
use super::status::Recorded;
use super::verdict::shown;

/// Everything injection needs, resolved and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub namespace: String,
    /// The headless Service (`spec.serviceName`).
    pub service: String,
    /// Index of the target container in `spec.template.spec.containers`.
    pub container: usize,
    pub peer_port: u16,
    pub client_port: u16,
    pub flavor: Flavor,
    pub cluster_domain: String,
    pub group_id: String,
    /// The frozen size of the bootstrap peer list.
    pub bootstrap_size: i32,
    /// `spec.ordinals.start`: the bootstrap members are `ordinal_start ..` this plus the size.
    pub ordinal_start: i32,
    /// Generic flavor with a `join-url`: members beyond the bootstrap set join through it.
    pub joins_by_url: bool,
    /// Generic flavor with a `members-url`: the helper can read the member list, so the
    /// reconcile sidecar repairs missed leaves as it does for etcd.
    pub reads_members: bool,
    /// The Secret named by `raft-injector.io/tls-secret`: TLS between members and for the
    /// helper's calls.
    pub tls_secret: Option<String>,
    /// Flavor kraft: annotation `raft-injector.io/node-id-offset`; a member's Kafka
    /// `node.id` is its ordinal plus this.
    pub node_id_offset: i32,
}

/// Namespace of the UUIDv5 group ids: the UUIDv5 of `raft-injector.io` in the DNS namespace
/// (a constant rather than a SHA-1 per admission; a test checks it against its definition).
pub(crate) const GROUP_ID_NAMESPACE: Uuid = Uuid::from_u128(0x32194629_227a_5131_9574_9642197bae7d);

/// The stable default Raft group id of a StatefulSet.
pub fn default_group_id(namespace: &str, name: &str) -> String {
    Uuid::new_v5(
        &GROUP_ID_NAMESPACE,
        format!("{namespace}/{name}").as_bytes(),
    )
    .to_string()
}

/// The value of annotation `key`, if the StatefulSet has it.
pub fn annotation<'a>(sts: &'a StatefulSet, key: &str) -> Option<&'a str> {
    sts.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// `spec.replicas`, where unset means 1.
pub use super::ordinals::replicas;

pub fn containers(sts: &StatefulSet) -> &[Container] {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.as_slice())
        .unwrap_or_default()
}

/// Bootstrap size: recorded once, on the first admission with a non-zero replica count.
/// The old object's status counts too, because a server-side apply that omits the status
/// annotation removes it from the new object.
pub fn bootstrap_size(sts: &StatefulSet, recorded: &Recorded) -> i32 {
    recorded.bootstrap_size().unwrap_or_else(|| replicas(sts))
}

/// The container that gets the env vars, mount and preStop hook (SPEC §4).
pub fn target_container(sts: &StatefulSet) -> Result<usize, String> {
    let containers = containers(sts);
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    if let Some(wanted) = annotation(sts, CONTAINER_ANNOTATION) {
        return containers
            .iter()
            .position(|c| c.name == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "annotation {CONTAINER_ANNOTATION} is {} but the pod template has no such container \
                     (containers: {}) — name one of them",
                    shown(wanted),
                    super::verdict::clip(&names.join(", "))
                )
            });
    }
    match containers {
        [] => Err(
            "spec.template.spec.containers is empty; there is no container to configure as a Raft member \
             — add the container that runs the Raft server"
                .to_owned(),
        ),
        [_] => Ok(0),
        _ => Ok(containers.iter().position(|c| c.name == name).unwrap_or(0)),
    }
}

fn parse_port(sts: &StatefulSet, key: &str) -> Result<Option<u16>, String> {
    match annotation(sts, key) {
        None => Ok(None),
        Some(raw) => match raw.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(Some(port)),
            _ => Err(format!(
                "annotation {key} is {}, which is not a port number — use a number from 1 to 65535",
                shown(raw)
            )),
        },
    }
}

fn named_port(container: &Container, names: &[&str]) -> Option<u16> {
    container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref().is_some_and(|n| names.contains(&n)))
        .and_then(|p| u16::try_from(p.container_port).ok())
}

/// The pod port behind a headless Service's only port.
fn service_only_port(service: &Service, container: Option<&Container>) -> Option<u16> {
    let ports = service.spec.as_ref()?.ports.as_ref()?;
    let [port] = ports.as_slice() else {
        return None;
    };
    match &port.target_port {
        Some(IntOrString::Int(target)) => u16::try_from(*target).ok(),
        Some(IntOrString::String(name)) => container.and_then(|c| named_port(c, &[name.as_str()])),
        None => u16::try_from(port.port).ok(),
    }
}

/// The Raft peer port (SPEC §4): annotation, flavor default, a container port named
/// `raft` or `peer`, then the headless Service's only port.
fn peer_port(
    sts: &StatefulSet,
    flavor: Flavor,
    container: Option<&Container>,
    service: Option<&Service>,
) -> Result<u16, String> {
    if let Some(port) = parse_port(sts, PORT_ANNOTATION)? {
        return Ok(port);
    }
    flavor
        .default_peer_port()
        .or_else(|| container.and_then(|c| named_port(c, &["raft", "peer"])))
        .or_else(|| service.and_then(|s| service_only_port(s, container)))
        .ok_or_else(|| {
            format!(
                "no Raft peer port could be resolved; peers need it to reach each other — set annotation \
                 {PORT_ANNOTATION}, name a container port \"raft\" or \"peer\", or give the headless Service \
                 exactly one port"
            )
        })
}

/// Resolves everything injection needs, or lists every reason it cannot.
pub fn resolve(
    sts: &StatefulSet,
    ctx: &Context,
    recorded: &Recorded,
) -> Result<Resolved, Vec<String>> {
    let mut problems = Vec::new();

    let service = sts
        .spec
        .as_ref()
        .map(|s| s.service_name.clone().unwrap_or_default())
        .unwrap_or_default();
    if service.is_empty() {
        problems.push(
            "spec.serviceName is not set; Raft members find each other through the per-pod DNS names of a \
             headless Service — set spec.serviceName to a headless Service (clusterIP: None) that selects \
             these pods"
                .to_owned(),
        );
    }

    let flavor = match annotation(sts, FLAVOR_ANNOTATION) {
        None => Flavor::default(),
        Some(raw) => raw.parse().unwrap_or_else(|()| {
            problems.push(format!(
                "annotation {FLAVOR_ANNOTATION} is {}, which is not a known flavor — use \"etcd\", \"kraft\" or \"generic\"",
                shown(raw)
            ));
            Flavor::default()
        }),
    };

    let container = target_container(sts).map_err(|p| problems.push(p)).ok();
    let target = container.and_then(|i| containers(sts).get(i));

    let peer_port = peer_port(sts, flavor, target, ctx.service)
        .map_err(|p| problems.push(p))
        .ok();
    let client_port = parse_port(sts, CLIENT_PORT_ANNOTATION)
        .map_err(|p| problems.push(p))
        .ok()
        .flatten()
        .unwrap_or(ETCD_DEFAULT_CLIENT_PORT);

    let cluster_domain = annotation(sts, CLUSTER_DOMAIN_ANNOTATION)
        .unwrap_or(&ctx.settings.cluster_domain)
        .trim_matches('.')
        .to_owned();
    if !dns::is_subdomain(&cluster_domain) {
        problems.push(format!(
            "the cluster domain (annotation {CLUSTER_DOMAIN_ANNOTATION}, else --cluster-domain) is {}, which is not \
             a DNS domain — use your cluster's domain, usually cluster.local",
            shown(&cluster_domain)
        ));
    }

    let name = sts.metadata.name.clone().unwrap_or_default();
    problems.extend(name_problems(
        &name,
        &service,
        super::ordinals::start(sts),
        ctx,
    ));
    problems.extend(size_problems(sts, ctx, recorded));
    if let Some(problem) = flavor_change_problem(recorded, flavor) {
        problems.push(problem);
    }
    if let Some(problem) = ordinal_start_change_problem(sts, ctx, recorded) {
        problems.push(problem);
    }
    let tls_secret = annotation(sts, TLS_SECRET_ANNOTATION).map(str::to_owned);
    if let Some(secret) = &tls_secret {
        if !dns::is_subdomain(secret) {
            problems.push(format!(
                "annotation {TLS_SECRET_ANNOTATION} is {}, which cannot name a Secret (a DNS subdomain: lowercase \
                 letters, digits, '-' and '.') — name the Secret holding ca.crt, tls.crt and tls.key",
                shown(secret)
            ));
        }
    }
    if let Some(problem) = tls_change_problem(sts, ctx, recorded) {
        problems.push(problem);
    }
    for hook in Hook::ALL {
        if let Some(raw) = annotation(sts, hook.annotation()) {
            if let Err(why) = HookUrl::parse_as(hook, raw) {
                problems.push(format!(
                    "annotation {} is {}: {why}",
                    hook.annotation(),
                    shown(raw)
                ));
            }
        }
    }
    let joins_by_url = flavor == Flavor::Generic && annotation(sts, JOIN_URL_ANNOTATION).is_some();
    let reads_members =
        flavor == Flavor::Generic && annotation(sts, MEMBERS_URL_ANNOTATION).is_some();

    let node_id_offset = match annotation(sts, NODE_ID_OFFSET_ANNOTATION) {
        None => 0,
        Some(raw) => match raw.trim().parse::<i32>() {
            Ok(offset) if (0..=1_000_000_000).contains(&offset) => offset,
            _ => {
                problems.push(format!(
                    "annotation {NODE_ID_OFFSET_ANNOTATION} is {}, which is not a node id offset — use a whole \
                     number from 0 to 1000000000 (a member's Kafka node.id is its ordinal plus the offset)",
                    shown(raw)
                ));
                0
            }
        },
    };

    let group_id = annotation(sts, GROUP_ID_ANNOTATION)
        .map(str::to_owned)
        .unwrap_or_else(|| default_group_id(ctx.namespace, &name));

    match (container, peer_port, problems.is_empty()) {
        (Some(container), Some(peer_port), true) => Ok(Resolved {
            name,
            namespace: ctx.namespace.to_owned(),
            service,
            container,
            peer_port,
            client_port,
            flavor,
            cluster_domain,
            group_id,
            bootstrap_size: bootstrap_size(sts, recorded),
            ordinal_start: super::ordinals::start(sts),
            joins_by_url,
            reads_members,
            tls_secret,
            node_id_offset,
        }),
        _ => Err(problems),
    }
}

/// Every name that goes into a member's DNS name must be a DNS label, short enough for the
/// largest ordinal; checked before any per-member value is built.
fn name_problems(name: &str, service: &str, start: i32, ctx: &Context) -> Vec<String> {
    let mut problems = Vec::new();
    let ordinal_digits = dns::digits(
        ctx.settings
            .max_replicas
            .saturating_sub(1)
            .saturating_add(start.max(0)),
    );
    let longest = dns::MAX_LABEL - 1 - ordinal_digits;
    if name.is_empty() {
        problems.push(
            "metadata.name is empty; the peer list is built from the member names <name>-<ordinal>, so the name \
             must be known at admission — set metadata.name (generateName is not supported)"
                .to_owned(),
        );
    } else if !dns::is_label(name) || name.len() > longest {
        problems.push(format!(
            "metadata.name is {}; members are reached as <name>-<ordinal>.<service>, and that first part must be a \
             DNS label (lowercase letters, digits and '-', at most {} characters) — use a name of at most \
             {longest} such characters",
            shown(name),
            dns::MAX_LABEL
        ));
    }
    if !service.is_empty() && !dns::is_label(service) {
        problems.push(format!(
            "spec.serviceName is {}, which cannot name a Service (a DNS label: lowercase letters, digits and '-', \
             at most {} characters) — name the headless Service that selects these pods",
            shown(service),
            dns::MAX_LABEL
        ));
    }
    if !dns::is_label(ctx.namespace) {
        problems.push(format!(
            "the namespace is {}, which is not a DNS label — use the namespace the StatefulSet is applied to",
            shown(ctx.namespace)
        ));
    }
    problems
}

/// `spec.replicas` and a recorded bootstrap size must both lie in `0..=--max-replicas`
/// before the peer list is built from them.
fn size_problems(sts: &StatefulSet, ctx: &Context, recorded: &Recorded) -> Vec<String> {
    let max = ctx.settings.max_replicas;
    let mut problems: Vec<String> = replicas::range_problem("spec.replicas", replicas(sts), max)
        .into_iter()
        .collect();
    if let Some(size) = recorded.bootstrap_size() {
        if !replicas::in_range(size, max) {
            problems.push(format!(
                "annotation {STATUS_ANNOTATION} records a bootstrap size of {size}, outside 0..{max}; the \
                 annotation was changed by hand — restore it, or remove it together with the injected env vars to \
                 inject afresh"
            ));
        }
    }
    problems
}

/// The peer list names the bootstrap members by ordinal, so once members have run, moving
/// `spec.ordinals.start` would start pods that are in no member's peer list while the
/// members it names are gone.
fn ordinal_start_change_problem(
    sts: &StatefulSet,
    ctx: &Context,
    recorded: &Recorded,
) -> Option<String> {
    let old = ctx.old?;
    let ran = recorded.previous().is_some_and(|s| s.bootstrap_size != 0);
    let (before, now) = (super::ordinals::start(old), super::ordinals::start(sts));
    (ran && before != now).then(|| {
        format!(
            "spec.ordinals.start changes from {before} to {now}, but the members were started as ordinals \
             {before}.. and the injected peer list names them; a new start would run pods that no member knows \
             — keep spec.ordinals.start at {before} (to move the members, create a new StatefulSet and move \
             the data, or scale to 0, delete the StatefulSet and its claims, and create it again)"
        )
    })
}

/// TLS is frozen with the rest of the injection: the injected URLs say http or https, and
/// the Secret's volume is only ever added. Turning it on, off or to another Secret after
/// injection would leave members half-configured.
fn tls_change_problem(sts: &StatefulSet, ctx: &Context, recorded: &Recorded) -> Option<String> {
    let old = ctx.old?;
    let injected = recorded.previous().is_some_and(|s| s.bootstrap_size != 0);
    let (before, now) = (
        annotation(old, TLS_SECRET_ANNOTATION),
        annotation(sts, TLS_SECRET_ANNOTATION),
    );
    (injected && before != now).then(|| {
        let show = |v: Option<&str>| v.map_or_else(|| "unset".to_owned(), shown);
        format!(
            "annotation {TLS_SECRET_ANNOTATION} changes from {} to {}, but the members were injected with it \
             {}, and injected pieces are frozen (changing them would restart every member, half of them on \
             the old setting) — set it back, or recreate the StatefulSet (its volumes can stay) to change TLS",
            show(before),
            show(now),
            show(before)
        )
    })
}

/// The flavor is frozen with the rest of the injection: the pod template was built for the
/// recorded one, and rebuilding it for another would roll every member.
fn flavor_change_problem(recorded: &Recorded, flavor: Flavor) -> Option<String> {
    let recorded = recorded.previous()?.flavor;
    (recorded != flavor).then(|| {
        format!(
            "annotation {FLAVOR_ANNOTATION} is now \"{flavor}\" but the pod template was injected for \
             \"{recorded}\", and injected pieces are frozen (changing them would restart every member) — set the \
             annotation back to \"{recorded}\", or recreate the StatefulSet to change the flavor"
        )
    })
}
