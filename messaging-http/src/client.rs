//! The HTTP client of an adapter: the user's own `reqwest::Client`, or a default one built the
//! same way in every adapter.

use std::fmt;
use std::time::Duration;

use messaging_core::ChannelError;

/// How long the default client waits for a TCP and TLS connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a client could not be had. Never contains a URL or a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// `reqwest` could not build the default client (the TLS backend failed to start).
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
    /// An extra root certificate could not be read as PEM.
    #[error("invalid root certificate: {0}")]
    InvalidCertificate(String),
    /// Extra root certificates were given along with a ready-made client, which cannot take them.
    #[error(
        "extra root certificates cannot be added to a user-supplied reqwest::Client; add them to that client instead"
    )]
    CertificatesWithOwnClient,
}

impl From<ClientError> for ChannelError {
    /// A channel without a client cannot send at all: [`ErrorKind::ChannelDown`](messaging_core::ErrorKind::ChannelDown).
    fn from(e: ClientError) -> Self {
        ChannelError::channel_down(e.to_string())
    }
}

/// How an adapter's default client is built, and the choice between it and the user's own.
///
/// The default client uses rustls with the built-in and system roots plus any added with
/// [`add_root_certificates_pem`](Self::add_root_certificates_pem), and always verifies
/// certificates: there is no switch to turn that off. A user who needs a proxy, other pools or
/// other TLS settings hands the adapter their own `reqwest::Client`, which is used as it is.
///
/// ```
/// use std::time::Duration;
/// use messaging_http::ClientConfig;
/// let config = ClientConfig::new()
///     .timeout(Duration::from_secs(30))
///     .user_agent("messaging-max/0.1");
/// let client = config.clone().client(None).unwrap(); // the default one
/// let mine = reqwest::Client::new();
/// let used = config.client(Some(mine)).unwrap(); // the user's own
/// # let _ = (client, used);
/// ```
#[derive(Clone)]
pub struct ClientConfig {
    timeout: Option<Duration>,
    connect_timeout: Duration,
    user_agent: Option<String>,
    root_certificates: Vec<reqwest::Certificate>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig::new()
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("user_agent", &self.user_agent)
            .field("extra_root_certificates", &self.root_certificates.len())
            .finish()
    }
}

impl ClientConfig {
    /// No overall timeout (adapters set one per request), [`DEFAULT_CONNECT_TIMEOUT`], no
    /// `User-Agent`, no extra roots.
    pub fn new() -> Self {
        ClientConfig {
            timeout: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            user_agent: None,
            root_certificates: Vec::new(),
        }
    }

    /// The default client's timeout for a whole request (a request's own timeout wins).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The default client's connect timeout (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The default client's `User-Agent`.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = Some(agent.into());
        self
    }

    /// Trusts the root certificates in `pem` (one or more `CERTIFICATE` blocks) in addition to
    /// the built-in and system roots, in the default client (Max's host may be signed by the
    /// Russian Trusted Root CA, which many systems do not ship).
    ///
    /// ```
    /// use messaging_http::{ClientConfig, ClientError};
    /// let e = ClientConfig::new().add_root_certificates_pem(b"not a certificate").unwrap_err();
    /// assert!(matches!(e, ClientError::InvalidCertificate(_)));
    /// ```
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self, ClientError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError::InvalidCertificate(e.without_url().to_string()))?;
        if certs.is_empty() {
            return Err(ClientError::InvalidCertificate(
                "no PEM CERTIFICATE block found".into(),
            ));
        }
        self.root_certificates.extend(certs);
        Ok(self)
    }

    /// How many extra root certificates were added.
    pub fn extra_root_certificates(&self) -> usize {
        self.root_certificates.len()
    }

    /// The default client: rustls, certificates always verified, these timeouts and roots.
    ///
    /// ```
    /// let client = messaging_http::ClientConfig::new().build().unwrap();
    /// # let _ = client;
    /// ```
    pub fn build(&self) -> Result<reqwest::Client, ClientError> {
        let mut b = reqwest::Client::builder()
            .tls_backend_rustls()
            .connect_timeout(self.connect_timeout)
            .tls_certs_merge(self.root_certificates.iter().cloned());
        if let Some(t) = self.timeout {
            b = b.timeout(t);
        }
        if let Some(agent) = &self.user_agent {
            b = b.user_agent(agent.as_str());
        }
        b.build()
            .map_err(|e| ClientError::Build(e.without_url().to_string()))
    }

    /// `own` when the user gave a client, else [`build`](Self::build). Extra root certificates
    /// with a client of the user's are an error rather than silently ignored.
    ///
    /// ```
    /// use messaging_http::ClientConfig;
    /// assert!(ClientConfig::new().client(Some(reqwest::Client::new())).is_ok());
    /// ```
    pub fn client(self, own: Option<reqwest::Client>) -> Result<reqwest::Client, ClientError> {
        match own {
            Some(c) if self.root_certificates.is_empty() => Ok(c),
            Some(_) => Err(ClientError::CertificatesWithOwnClient),
            None => self.build(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed test CA (generated for these tests; not trusted anywhere).
    const TEST_CA_PEM: &str = include_str!("../tests/data/test-ca.pem");

    #[test]
    fn default_client_builds_with_and_without_extra_roots() {
        assert!(ClientConfig::new().build().is_ok());
        let with_ca = ClientConfig::new()
            .timeout(Duration::from_secs(5))
            .user_agent("test/1")
            .add_root_certificates_pem(TEST_CA_PEM.as_bytes())
            .unwrap();
        assert_eq!(with_ca.extra_root_certificates(), 1);
        assert!(with_ca.build().is_ok());
        let shown = format!("{with_ca:?}");
        assert!(shown.contains("extra_root_certificates: 1"), "{shown}");
    }

    #[test]
    fn bad_pem_and_certificates_with_an_own_client_are_refused() {
        assert!(matches!(
            ClientConfig::new().add_root_certificates_pem(b""),
            Err(ClientError::InvalidCertificate(_))
        ));
        let with_ca = ClientConfig::new()
            .add_root_certificates_pem(TEST_CA_PEM.as_bytes())
            .unwrap();
        assert_eq!(
            with_ca.client(Some(reqwest::Client::new())).unwrap_err(),
            ClientError::CertificatesWithOwnClient
        );
    }

    #[test]
    fn a_missing_client_is_a_channel_down_error() {
        let e: ChannelError = ClientError::Build("no TLS".into()).into();
        assert_eq!(e.kind(), messaging_core::ErrorKind::ChannelDown);
        assert!(e.message().contains("no TLS"));
    }
}
