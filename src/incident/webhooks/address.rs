//! Where a webhook may connect: the address classifier and the URL check made at registration.
//! The delivery client checks every resolved address again when it connects.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::future::BoxFuture;
use ipnet::IpNet;
use url::Url;

/// Whether `ip` is an ordinary public address: not loopback, private, link-local, CGNAT,
/// multicast, unspecified, reserved or documentation, in any of its IPv6 spellings.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4
    // (2002::/16) carry an IPv4 address that decides.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return !ip.is_unspecified() && !ip.is_loopback() && public_v4(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return public_v4(v4);
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return public_v4(v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard 100::/64
        || (s[0] == 0x2001 && s[1] < 0x0200)) // IETF protocol assignments 2001::/23
}

/// The exceptions `--webhook-allow-hosts` opens, and the check every destination passes.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    pub allow: Vec<IpNet>,
}

impl Destinations {
    /// Inside an allowed network (in either spelling of an IPv4-mapped address).
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    /// Whether a webhook may connect to `ip` over `https` (or over `http` when `plain`).
    pub fn may_connect(&self, ip: IpAddr, plain: bool) -> bool {
        self.is_allowed(ip) || (!plain && is_public(ip))
    }
}

/// Name resolution, injectable so tests map names without asking a real resolver.
pub trait Resolver: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>>;
}

/// The system's resolver.
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host, port))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// Why a URL is refused, in words for the admin who typed it.
pub async fn check_url(
    raw: &str,
    destinations: &Destinations,
    resolver: &dyn Resolver,
) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("not a URL: {e}"))?;
    let plain = match url.scheme() {
        "https" => false,
        "http" => true,
        other => return Err(format!("the scheme must be https, not {other}")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not carry credentials".into());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses = match url.host() {
        Some(url::Host::Ipv4(v4)) => vec![IpAddr::V4(v4)],
        Some(url::Host::Ipv6(v6)) => vec![IpAddr::V6(v6)],
        Some(url::Host::Domain(name)) => resolver
            .resolve(name, port)
            .await
            .map_err(|e| format!("the host {name} does not resolve: {e}"))?,
        None => return Err("the URL has no host".into()),
    };
    if addresses.is_empty() {
        return Err("the host has no address".into());
    }
    for ip in addresses {
        if !destinations.may_connect(ip, plain) {
            return Err(if plain && is_public(ip) {
                "http is allowed only to hosts in --webhook-allow-hosts; use https".into()
            } else {
                format!(
                    "the host resolves to {ip}, a loopback, private, link-local or otherwise reserved address"
                )
            });
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reserved_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "::10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    fn in_net(ip: IpAddr, net: &str) -> bool {
        net.parse::<IpNet>().unwrap().contains(&ip)
    }

    const FORBIDDEN_V4: [&str; 8] = [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "224.0.0.0/4",
        "0.0.0.0/8",
    ];

    proptest! {
        #[test]
        fn forbidden_v4_networks_are_refused_in_every_spelling(raw in any::<u32>()) {
            let v4 = Ipv4Addr::from(raw);
            let forbidden = FORBIDDEN_V4.iter().any(|n| in_net(IpAddr::V4(v4), n));
            if forbidden {
                prop_assert!(!is_public(IpAddr::V4(v4)));
                prop_assert!(!is_public(IpAddr::V6(v4.to_ipv6_mapped())));
                prop_assert!(!Destinations::default().may_connect(IpAddr::V6(v4.to_ipv6_mapped()), false));
            }
            // Both spellings always agree.
            prop_assert_eq!(is_public(IpAddr::V4(v4)), is_public(IpAddr::V6(v4.to_ipv6_mapped())));
        }

        #[test]
        fn forbidden_v6_networks_are_refused(raw in any::<u128>()) {
            let ip = IpAddr::V6(Ipv6Addr::from(raw));
            for net in ["fc00::/7", "fe80::/10", "ff00::/8", "::1/128", "::/128"] {
                if in_net(ip, net) {
                    prop_assert!(!is_public(ip), "{} in {}", ip, net);
                }
            }
        }

        #[test]
        fn an_allowed_network_opens_only_itself(raw in any::<u32>()) {
            let ip = IpAddr::V4(Ipv4Addr::from(raw));
            let d = Destinations { allow: vec!["127.0.0.0/8".parse().unwrap()] };
            prop_assert_eq!(d.may_connect(ip, true), in_net(ip, "127.0.0.0/8"));
        }
    }

    struct Fixed(Vec<IpAddr>);
    impl Resolver for Fixed {
        fn resolve<'a>(
            &'a self,
            _: &'a str,
            _: u16,
        ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }

    #[tokio::test]
    async fn urls_are_checked_at_registration() {
        let none = Destinations::default();
        let local = Destinations {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
        };
        let public = Fixed(vec!["93.184.216.34".parse().unwrap()]);
        let internal = Fixed(vec![
            "93.184.216.34".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
        ]);
        assert!(
            check_url("https://hooks.example/x", &none, &public)
                .await
                .is_ok()
        );
        assert!(
            check_url("http://hooks.example/x", &none, &public)
                .await
                .is_err()
        );
        assert!(
            check_url("https://hooks.example/x", &none, &internal)
                .await
                .is_err()
        );
        assert!(
            check_url("https://169.254.169.254/", &none, &public)
                .await
                .is_err()
        );
        assert!(
            check_url("https://[::ffff:7f00:1]/", &none, &public)
                .await
                .is_err()
        );
        assert!(
            check_url("http://127.0.0.1:9/", &none, &public)
                .await
                .is_err()
        );
        assert!(
            check_url("http://127.0.0.1:9/", &local, &public)
                .await
                .is_ok()
        );
        assert!(
            check_url("ftp://hooks.example/", &none, &public)
                .await
                .is_err()
        );
        assert!(
            check_url("https://u:p@hooks.example/", &none, &public)
                .await
                .is_err()
        );
    }
}
