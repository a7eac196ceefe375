//! Why a service could not be built or started.

use std::net::SocketAddr;

use messaging_cascade::engine::BuildError;
use messaging_conversations::router::RouterError;
use messaging_core::StoreError;

use super::config::ConfigError;

/// Why [`Service::build`](super::Service::build) or [`Service::listen`](super::Service::listen)
/// failed. Never contains a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The configuration has problems (every one is listed), or an adapter refused a setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The engine refused the channels and policies.
    #[error("engine: {0}")]
    Engine(#[from] BuildError),
    /// The webhook router refused a mount.
    #[error("webhook router: {0}")]
    Router(#[from] RouterError),
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}
