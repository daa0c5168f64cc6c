//! L4 policy domain types (`ztunnel::model::Authorization`) → `istio.security.Authorization`
//! protos: the inverse of `ztunnel::model::from_proto`, so what the tunnel decodes equals what
//! [`crate::authz`] produced.

use proto::istio::security as xsec;
use ztunnel::model::{
    Authorization, Match, PolicyAction, PolicyScope, ServiceAccountMatch, StringMatch,
};

/// Encodes one policy; the resource name is [`Authorization::key`] (`namespace/name`).
pub fn to_proto(a: &Authorization) -> xsec::Authorization {
    xsec::Authorization {
        name: a.name.clone(),
        namespace: a.namespace.clone(),
        scope: match a.scope {
            PolicyScope::Global => xsec::Scope::Global,
            PolicyScope::Namespace => xsec::Scope::Namespace,
            PolicyScope::WorkloadSelector => xsec::Scope::WorkloadSelector,
        } as i32,
        action: match a.action {
            PolicyAction::Allow => xsec::Action::Allow,
            PolicyAction::Deny => xsec::Action::Deny,
        } as i32,
        rules: a
            .rules
            .iter()
            .map(|rule| xsec::Rule {
                clauses: rule
                    .iter()
                    .map(|clause| xsec::Clause {
                        matches: clause.iter().map(policy_match).collect(),
                    })
                    .collect(),
            })
            .collect(),
        dry_run: a.dry_run,
        extensions: Vec::new(),
    }
}

fn policy_match(m: &Match) -> xsec::Match {
    xsec::Match {
        namespaces: strings(&m.namespaces),
        not_namespaces: strings(&m.not_namespaces),
        principals: strings(&m.principals),
        not_principals: strings(&m.not_principals),
        source_ips: nets(&m.source_ips),
        not_source_ips: nets(&m.not_source_ips),
        destination_ips: nets(&m.destination_ips),
        not_destination_ips: nets(&m.not_destination_ips),
        destination_ports: m.destination_ports.iter().map(|p| u32::from(*p)).collect(),
        not_destination_ports: m
            .not_destination_ports
            .iter()
            .map(|p| u32::from(*p))
            .collect(),
        service_accounts: accounts(&m.service_accounts),
        not_service_accounts: accounts(&m.not_service_accounts),
    }
}

fn strings(v: &[StringMatch]) -> Vec<xsec::StringMatch> {
    use xsec::string_match::MatchType;
    v.iter()
        .map(|s| xsec::StringMatch {
            match_type: Some(match s {
                StringMatch::Exact(s) => MatchType::Exact(s.clone()),
                StringMatch::Prefix(s) => MatchType::Prefix(s.clone()),
                StringMatch::Suffix(s) => MatchType::Suffix(s.clone()),
                StringMatch::Presence() => MatchType::Presence(()),
            }),
        })
        .collect()
}

fn nets(v: &[ipnet::IpNet]) -> Vec<xsec::Address> {
    v.iter()
        .map(|n| xsec::Address {
            address: match n.addr() {
                std::net::IpAddr::V4(a) => a.octets().to_vec(),
                std::net::IpAddr::V6(a) => a.octets().to_vec(),
            },
            length: u32::from(n.prefix_len()),
        })
        .collect()
}

fn accounts(v: &[ServiceAccountMatch]) -> Vec<xsec::ServiceAccountMatch> {
    v.iter()
        .map(|s| xsec::ServiceAccountMatch {
            namespace: s.namespace.clone(),
            service_account: s.service_account.clone(),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use prost::Message;

    fn every_field() -> Authorization {
        let full = Match {
            namespaces: vec![StringMatch::Exact("a".into())],
            not_namespaces: vec![StringMatch::Prefix("b".into())],
            principals: vec![StringMatch::Suffix("/sa/c".into())],
            not_principals: vec![StringMatch::Presence()],
            service_accounts: vec![ServiceAccountMatch {
                namespace: "ns".into(),
                service_account: "sa".into(),
            }],
            not_service_accounts: vec![ServiceAccountMatch {
                namespace: "x".into(),
                service_account: "y".into(),
            }],
            source_ips: vec!["10.0.0.0/8".parse().unwrap()],
            not_source_ips: vec!["10.1.2.3/32".parse().unwrap()],
            destination_ips: vec!["fd00::/64".parse().unwrap()],
            not_destination_ips: vec!["192.168.0.0/16".parse().unwrap()],
            destination_ports: vec![8080],
            not_destination_ports: vec![9090, 15000],
        };
        Authorization {
            name: "p".into(),
            namespace: "shop".into(),
            scope: PolicyScope::WorkloadSelector,
            action: PolicyAction::Deny,
            dry_run: true,
            rules: vec![vec![vec![full.clone(), Match::default()], vec![]], vec![]],
        }
    }

    #[test]
    fn round_trips_through_the_tunnels_decoder() {
        let cases = [
            every_field(),
            Authorization {
                name: "allow-nothing".into(),
                namespace: "istio-system".into(),
                ..Authorization::default()
            },
            Authorization {
                name: "ns".into(),
                namespace: "shop".into(),
                scope: PolicyScope::Namespace,
                rules: vec![vec![]],
                ..Authorization::default()
            },
        ];
        for want in cases {
            let bytes = to_proto(&want).encode_to_vec();
            let decoded = xsec::Authorization::decode(bytes.as_slice()).unwrap();
            let got = Authorization::try_from(decoded).unwrap();
            assert_eq!(got, want);
        }
    }
}
