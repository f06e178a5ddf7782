//! Which namespace an object without `metadata.namespace` will land in: what `-n` says,
//! else the kubeconfig context's namespace (as kubectl would use), else unknown.

/// Where the namespace for objects that name none comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DefaultNamespace {
    /// `-n/--namespace`: objects naming another namespace are an error, as in kubectl.
    Flag(String),
    /// The current kubeconfig context's namespace.
    Kubeconfig(String),
    /// Nothing says; `default` is assumed, and said so.
    Unknown,
}

impl DefaultNamespace {
    /// From the `-n` flag, else the kubeconfig (KUBECONFIG or ~/.kube/config), else unknown.
    pub fn resolve(flag: Option<String>) -> DefaultNamespace {
        if let Some(namespace) = flag {
            return DefaultNamespace::Flag(namespace);
        }
        match context_namespace() {
            Some(namespace) => DefaultNamespace::Kubeconfig(namespace),
            None => DefaultNamespace::Unknown,
        }
    }

    /// The namespace assumed for objects that name none.
    pub fn name(&self) -> &str {
        match self {
            DefaultNamespace::Flag(ns) | DefaultNamespace::Kubeconfig(ns) => ns,
            DefaultNamespace::Unknown => "default",
        }
    }
}

/// The namespace of the kubeconfig's current context, if it sets one.
fn context_namespace() -> Option<String> {
    let config = kube::config::Kubeconfig::read().ok()?;
    let current = config.current_context.as_deref()?;
    config
        .contexts
        .iter()
        .find(|c| c.name == current)?
        .context
        .as_ref()?
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
}
