//! Where webhooks may go: the address rule that keeps a subscription from turning the
//! service into a request forger inside the operator's network.
//!
//! A target is refused when its address is loopback, private (RFC 1918, fc00::/7),
//! link-local (169.254.0.0/16, fe80::/10), shared (CGNAT, 100.64.0.0/10), unspecified,
//! broadcast or multicast, or an IPv4-mapped or -compatible IPv6 form of one of these.
//! The rule is applied when a subscription is made (to an address literal and to
//! `localhost` names, without resolving anything) and at every delivery, where the
//! webhook client's resolver hands the connector only the addresses the rule allows,
//! so a name that resolves (or is rebound) to an inner address is refused as well.
//!
//! `--webhook-allowed-hosts` keeps its meaning: when set, only the hosts it names may
//! be targets; the hosts it names are exempt from the address rule (tests name
//! loopback there).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an address may not be a webhook target, or `None` when it may.
pub fn refused_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => refused_v4(a),
        IpAddr::V6(a) => refused_v6(a),
    }
}

fn refused_v4(a: Ipv4Addr) -> Option<&'static str> {
    let [first, second, ..] = a.octets();
    if a.is_loopback() {
        Some("loopback")
    } else if a.is_private() {
        Some("private")
    } else if a.is_link_local() {
        Some("link-local")
    } else if first == 100 && (second & 0xc0) == 64 {
        Some("shared address space (CGNAT)")
    } else if first == 0 {
        // 0.0.0.0/8: "this network"; connecting to it reaches the host itself.
        Some("unspecified")
    } else if a.is_broadcast() {
        Some("broadcast")
    } else if a.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

fn refused_v6(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    if a.is_loopback() {
        Some("loopback")
    } else if a.is_unspecified() {
        Some("unspecified")
    } else if let Some(v4) = a.to_ipv4_mapped() {
        refused_v4(v4)
    } else if s[..6] == [0; 6] {
        // IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks).
        refused_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ))
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("private")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        Some("site-local")
    } else if a.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// The operator's webhook target rule: the allow-list (empty: any host, subject to the
/// address rule) and the address rule for every host it does not name.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    allowed: Arc<Vec<String>>,
}

impl Targets {
    pub fn new(allowed_hosts: &[String]) -> Self {
        Self {
            allowed: Arc::new(
                allowed_hosts
                    .iter()
                    .map(|h| h.trim().trim_matches(['[', ']']).to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect(),
            ),
        }
    }

    /// Whether the allow-list names `host` (then it is exempt from the address rule).
    fn names(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']);
        self.allowed.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Check a target URL's host without resolving it: the allow-list, then the address
    /// rule for an address literal or a `localhost` name. The reason it is refused.
    pub fn check(&self, url: &url::Url) -> Result<(), String> {
        let Some(host) = url.host() else {
            return Err("has no host".into());
        };
        let text = host.to_string().to_ascii_lowercase();
        if self.names(&text) {
            return Ok(());
        }
        if !self.allowed.is_empty() {
            return Err(format!("{text} is not among the hosts the operator allows"));
        }
        let refused = match host {
            url::Host::Ipv4(a) => refused_v4(a),
            url::Host::Ipv6(a) => refused_v6(a),
            url::Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                (d == "localhost" || d.ends_with(".localhost")).then_some("loopback")
            }
        };
        match refused {
            Some(why) => Err(refusal(&text, why)),
            None => Ok(()),
        }
    }

    /// Of the addresses `name` resolved to, those a webhook may connect to (all of them
    /// when the allow-list names it); an error when none is left.
    pub fn allowed_addresses(
        &self,
        name: &str,
        resolved: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, RefusedTarget> {
        let exempt = self.names(name);
        let mut first_refusal = None;
        let kept: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|a| match refused_address(a.ip()) {
                Some(why) if !exempt => {
                    first_refusal.get_or_insert_with(|| refusal(name, why));
                    false
                }
                _ => true,
            })
            .collect();
        if kept.is_empty() {
            return Err(RefusedTarget(
                first_refusal.unwrap_or_else(|| format!("{name} resolved to no address")),
            ));
        }
        Ok(kept)
    }

    /// A resolver for the webhook client that applies [`Self::allowed_addresses`] to
    /// what the system resolver answers.
    pub fn resolver(&self) -> Arc<RuleResolver> {
        Arc::new(RuleResolver(self.clone()))
    }
}

fn refusal(host: &str, why: &str) -> String {
    format!("{host} is a {why} address: webhooks go only to public addresses unless --webhook-allowed-hosts names the host")
}

/// A delivery refused by the address rule (kept in the attempt's `error`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RefusedTarget(pub String);

/// The webhook client's resolver: the system's, filtered by the address rule.
pub struct RuleResolver(Targets);

impl reqwest::dns::Resolve for RuleResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let targets = self.0.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let kept = targets.allowed_addresses(&name, resolved)?;
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> Option<&'static str> {
        refused_address(s.parse().unwrap())
    }

    #[test]
    fn every_listed_range_is_refused_as_a_pure_function() {
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("::1", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("fc00::1", "private"),
            ("fdff:ffff::1", "private"),
            ("169.254.169.254", "link-local"),
            ("169.254.0.1", "link-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("100.127.255.255", "shared address space (CGNAT)"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:100.64.0.1", "shared address space (CGNAT)"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::10.1.2.3", "private"),
            ("::127.0.0.1", "loopback"),
        ] {
            assert_eq!(refused(ip), Some(why), "{ip}");
        }
    }

    #[test]
    fn public_addresses_and_range_edges_outside_are_allowed() {
        for ip in [
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "192.169.0.1",
            "2001:db8::1",
            "2606:4700::1111",
            "fbff::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(refused(ip), None, "{ip}");
        }
    }

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn literal_and_localhost_targets_are_refused_without_an_allow_list() {
        let t = Targets::new(&[]);
        for u in [
            "http://127.0.0.1:9/x",
            "http://[::1]:22/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:8080/",
            "http://api.localhost/",
            "http://LOCALHOST./",
            "http://2130706433/",
            "http://[::ffff:7f00:1]/",
            "http://0/",
        ] {
            assert!(t.check(&url(u)).is_err(), "{u}");
        }
        assert!(t.check(&url("https://hooks.example.com/in")).is_ok());
        assert!(t.check(&url("http://93.184.216.34/")).is_ok());
    }

    #[test]
    fn hosts_the_allow_list_names_are_exempt_and_others_refused() {
        let t = Targets::new(&["127.0.0.1".into(), "[::1]".into(), "localhost".into()]);
        assert!(t.check(&url("http://127.0.0.1:9/x")).is_ok());
        assert!(t.check(&url("http://[::1]:9/x")).is_ok());
        assert!(t.check(&url("http://localhost:9/x")).is_ok());
        let e = t.check(&url("https://hooks.example.com/")).unwrap_err();
        assert!(e.contains("not among the hosts"), "{e}");
        assert!(t.check(&url("http://10.0.0.1/")).is_err());
    }

    #[test]
    fn a_name_resolving_to_an_inner_address_is_refused_at_delivery() {
        let t = Targets::new(&[]);
        let inner: Vec<SocketAddr> = vec!["10.0.0.7:0".parse().unwrap()];
        let e = t.allowed_addresses("rebound.example", inner).unwrap_err();
        assert!(e.0.contains("private"), "{}", e.0);
        let mixed: Vec<SocketAddr> = vec![
            "169.254.169.254:0".parse().unwrap(),
            "93.184.216.34:0".parse().unwrap(),
        ];
        assert_eq!(
            t.allowed_addresses("mixed.example", mixed).unwrap(),
            vec!["93.184.216.34:0".parse::<SocketAddr>().unwrap()]
        );
        let allowed = Targets::new(&["localhost".into()]);
        let lo: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().unwrap()];
        assert_eq!(
            allowed.allowed_addresses("localhost", lo.clone()).unwrap(),
            lo
        );
    }
}
