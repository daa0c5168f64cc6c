//! RBAC filter configs: every rule kind converts or is an error.

use std::collections::HashMap;

use xds::pb::envoy::config::core::v3::CidrRange;
use xds::pb::envoy::config::rbac::v3::{
    Permission as PbPerm, Policy, Principal as PbPrinc, Rbac as PbRules, permission, principal,
};
use xds::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher::HeaderMatchSpecifier};
use xds::pb::envoy::extensions::filters::http::rbac::v3::Rbac;
use xds::pb::envoy::r#type::matcher::v3::{
    MetadataMatcher, PathMatcher, path_matcher, string_matcher::MatchPattern,
};

use super::{exact, re, sm, u32v, where_};
use crate::model::StringMatch;
use crate::model::from_proto::{At, ResourceKind, rbac_rules};
use crate::model::rbac::{Permission, Principal, RbacAction, RbacFilter};

fn perm(r: permission::Rule) -> PbPerm {
    PbPerm { rule: Some(r) }
}

fn princ(i: principal::Identifier) -> PbPrinc {
    PbPrinc {
        identifier: Some(i),
    }
}

fn filter(action: i32, policies: Vec<(&str, Policy)>) -> Rbac {
    Rbac {
        rules: Some(PbRules {
            action,
            policies: policies
                .into_iter()
                .map(|(n, p)| (n.to_owned(), p))
                .collect::<HashMap<_, _>>(),
            ..PbRules::default()
        }),
        ..Rbac::default()
    }
}

fn convert(r: &Rbac) -> Result<RbacFilter, crate::model::from_proto::ModelError> {
    rbac_rules::filter(&At::root(ResourceKind::Listener, "l"), r)
}

fn any_policy(p: PbPerm, q: PbPrinc) -> Policy {
    Policy {
        permissions: vec![p],
        principals: vec![q],
        ..Policy::default()
    }
}

/// The shape `control-plane/src/translate/waypoint/rbac_rules.rs` emits.
#[test]
fn istio_shaped_policy_converts() {
    let method = perm(permission::Rule::Header(HeaderMatcher {
        name: ":method".into(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(exact("GET"))),
        ..HeaderMatcher::default()
    }));
    let path = perm(permission::Rule::UrlPath(PathMatcher {
        rule: Some(path_matcher::Rule::Path(sm(MatchPattern::Prefix(
            "/api/".into(),
        )))),
    }));
    let port = perm(permission::Rule::DestinationPort(8080));
    let ns = princ(principal::Identifier::Authenticated(
        principal::Authenticated {
            principal_name: Some(sm(MatchPattern::SafeRegex(re(".*/ns/foo/.*")))),
        },
    ));
    let ip = princ(principal::Identifier::DirectRemoteIp(CidrRange {
        address_prefix: "10.1.0.0".into(),
        prefix_len: Some(u32v(16)),
    }));
    let p = Policy {
        permissions: vec![perm(permission::Rule::AndRules(permission::Set {
            rules: vec![method, path, port],
        }))],
        principals: vec![princ(principal::Identifier::AndIds(principal::Set {
            ids: vec![ns, ip],
        }))],
        ..Policy::default()
    };
    let any = any_policy(
        perm(permission::Rule::Any(true)),
        princ(principal::Identifier::Any(true)),
    );
    let mut r = filter(
        1,
        vec![
            ("ns[default]-policy[p]-rule[1]", any),
            ("ns[default]-policy[p]-rule[0]", p),
        ],
    );
    r.shadow_rules = r.rules.clone();
    r.shadow_rules_stat_prefix = "istio_dry_run_deny_".into();
    let got = convert(&r).unwrap();
    let rules = got.rules.as_ref().unwrap();
    assert_eq!(rules.action, RbacAction::Deny);
    let names: Vec<&str> = rules.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ns[default]-policy[p]-rule[0]",
            "ns[default]-policy[p]-rule[1]"
        ],
        "name order"
    );
    let Permission::And(all) = &rules.policies[0].permissions[0] else {
        panic!()
    };
    assert_eq!(all.len(), 3);
    assert_eq!(all[2], Permission::DestinationPort(8080));
    assert_eq!(
        all[1],
        Permission::UrlPath(StringMatch::Prefix {
            value: "/api/".into(),
            ignore_case: false
        })
    );
    let Principal::And(ids) = &rules.policies[0].principals[0] else {
        panic!()
    };
    assert_eq!(ids[1], Principal::RemoteIp("10.1.0.0/16".parse().unwrap()));
    assert_eq!(got.shadow_rules, got.rules);
    assert_eq!(got.shadow_rules_stat_prefix, "istio_dry_run_deny_");
}

#[test]
fn rule_kinds() {
    let ok_perm = |r: permission::Rule| {
        let f = convert(&filter(
            0,
            vec![(
                "p",
                any_policy(perm(r), princ(principal::Identifier::Any(true))),
            )],
        ))
        .map(|f| f.rules.unwrap().policies[0].permissions[0].clone());
        f.map_err(|e| where_(&e))
    };
    #[allow(deprecated)]
    let metadata = permission::Rule::Metadata(MetadataMatcher::default());
    assert_eq!(ok_perm(metadata), Ok(Permission::Metadata));
    assert_eq!(
        ok_perm(permission::Rule::DestinationIp(CidrRange {
            address_prefix: "10.0.0.9".into(),
            prefix_len: Some(u32v(24)),
        })),
        Ok(Permission::DestinationIp("10.0.0.0/24".parse().unwrap())),
        "host bits masked"
    );
    assert_eq!(
        ok_perm(permission::Rule::DestinationPortRange(
            xds::pb::envoy::r#type::v3::Int32Range { start: 80, end: 90 }
        )),
        Ok(Permission::DestinationPortRange { start: 80, end: 90 })
    );
    assert!(matches!(
        ok_perm(permission::Rule::RequestedServerName(exact("a"))),
        Ok(Permission::RequestedServerName(_))
    ));
    let errors: Vec<(permission::Rule, &str, &str)> = vec![
        (
            permission::Rule::Any(false),
            "rules.policies[\"p\"].permissions[0].any",
            "invalid",
        ),
        (
            permission::Rule::AndRules(permission::Set { rules: vec![] }),
            "rules.policies[\"p\"].permissions[0].and_rules.rules",
            "invalid",
        ),
        (
            permission::Rule::DestinationPort(70_000),
            "rules.policies[\"p\"].permissions[0].destination_port",
            "invalid",
        ),
        (
            permission::Rule::Matcher(Default::default()),
            "rules.policies[\"p\"].permissions[0].matcher",
            "unsupported",
        ),
        (
            permission::Rule::NotRule(Box::new(PbPerm { rule: None })),
            "rules.policies[\"p\"].permissions[0].not_rule.rule",
            "missing",
        ),
        (
            permission::Rule::DestinationIp(CidrRange {
                address_prefix: "10.0.0.0".into(),
                prefix_len: Some(u32v(33)),
            }),
            "rules.policies[\"p\"].permissions[0].destination_ip.prefix_len",
            "invalid",
        ),
    ];
    for (r, field, kind) in errors {
        assert_eq!(ok_perm(r.clone()), Err((field.to_owned(), kind)), "{r:?}");
    }

    let ok_princ = |i: principal::Identifier| {
        convert(&filter(
            0,
            vec![("p", any_policy(perm(permission::Rule::Any(true)), princ(i)))],
        ))
        .map(|f| f.rules.unwrap().policies[0].principals[0].clone())
        .map_err(|e| where_(&e).1)
    };
    assert_eq!(
        ok_princ(principal::Identifier::Authenticated(Default::default())),
        Ok(Principal::Authenticated(None))
    );
    #[allow(deprecated)]
    let source_ip = principal::Identifier::SourceIp(CidrRange {
        address_prefix: "::1".into(),
        prefix_len: Some(u32v(128)),
    });
    assert_eq!(
        ok_princ(source_ip),
        Ok(Principal::RemoteIp("::1/128".parse().unwrap()))
    );
    assert_eq!(
        ok_princ(principal::Identifier::FilterState(Default::default())),
        Err("unsupported")
    );
    assert_eq!(
        ok_princ(principal::Identifier::Custom(Default::default())),
        Err("unsupported")
    );
}

#[test]
fn policies_need_permissions_principals_and_no_conditions() {
    let cases = [
        (
            Policy {
                principals: vec![princ(principal::Identifier::Any(true))],
                ..Policy::default()
            },
            "permissions",
        ),
        (
            Policy {
                permissions: vec![perm(permission::Rule::Any(true))],
                ..Policy::default()
            },
            "principals",
        ),
        (
            Policy {
                condition: Some(Default::default()),
                ..any_policy(
                    perm(permission::Rule::Any(true)),
                    princ(principal::Identifier::Any(true)),
                )
            },
            "condition",
        ),
    ];
    for (p, field) in cases {
        let e = convert(&filter(0, vec![("p", p)])).unwrap_err();
        assert_eq!(
            where_(&e).0,
            format!("rules.policies[\"p\"].{field}"),
            "{e}"
        );
    }
    let e = convert(&filter(7, vec![])).unwrap_err();
    assert_eq!(where_(&e).0, "rules.action");
}

#[test]
fn no_rules_is_disabled_and_log_converts() {
    assert!(convert(&Rbac::default()).unwrap().is_disabled());
    let f = convert(&filter(2, vec![])).unwrap();
    assert_eq!(f.rules.unwrap().action, RbacAction::Log);
}
