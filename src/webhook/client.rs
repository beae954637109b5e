//! The HTTP client deliveries go through: no redirects, no proxy, a time limit, and a resolver
//! that refuses every address a webhook may not reach, so a name that resolves (or starts to
//! resolve) to a private or metadata address is refused when connecting, before any packet.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::incident::webhooks::{Destinations, Resolver};

/// Resolves through `inner`, and fails unless every address may be reached.
struct Guarded {
    inner: Arc<dyn Resolver>,
    destinations: Destinations,
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let inner = self.inner.clone();
        let destinations = self.destinations.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addresses = inner.resolve(&host, 0).await?;
            if addresses.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            if let Some(ip) = addresses
                .iter()
                .find(|ip| !destinations.may_connect(**ip, false))
            {
                return Err(
                    format!("{host} resolves to {ip}, which webhooks may not reach").into(),
                );
            }
            let addrs: Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

pub fn build(
    resolver: Arc<dyn Resolver>,
    destinations: Destinations,
    timeout: Duration,
) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("incidentd-webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(Guarded {
            inner: resolver,
            destinations,
        }))
        .build()
        .expect("the webhook client builds")
}

/// The URL's host when it is an address (the resolver is not asked for those).
pub fn literal_host(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::BoxFuture;

    /// Maps every name to 10.0.0.1 and counts the questions.
    struct Internal(std::sync::atomic::AtomicUsize);
    impl Resolver for Internal {
        fn resolve<'a>(
            &'a self,
            _: &'a str,
            _: u16,
        ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async { Ok(vec!["10.0.0.1".parse().unwrap()]) })
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_a_private_address_is_refused_before_connecting() {
        let resolver = Arc::new(Internal(Default::default()));
        let client = build(
            resolver.clone(),
            Destinations::default(),
            Duration::from_secs(2),
        );
        let err = client
            .post("https://hooks.internal.test/x")
            .body("{}")
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        let chain = format!("{:?}", err);
        assert!(chain.contains("10.0.0.1"), "{chain}");
        assert_eq!(resolver.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
