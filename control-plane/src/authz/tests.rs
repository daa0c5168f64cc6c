use super::*;
use crate::manifest::{ManifestFile, parse_files};

fn translate_yaml(text: &str) -> Translated {
    let objects = parse_files(&[ManifestFile {
        name: "p.yaml".into(),
        text: text.into(),
    }])
    .unwrap();
    translate(&objects)
}

fn ap(ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: {ns}}}\nspec:\n{spec}"
    )
}

#[test]
fn scopes_and_selectors() {
    let t = translate_yaml(&ap(
        "shop",
        "  selector: {matchLabels: {app: cart}}\n  action: DENY\n  rules: [{}]\n",
    ));
    assert_eq!(t.policies[0].scope, PolicyScope::WorkloadSelector);
    assert_eq!(t.policies[0].action, PolicyAction::Deny);
    assert_eq!(
        t.policies[0].rules,
        vec![Vec::<Vec<Match>>::new()],
        "rules: [{{}}] is one rule with no clauses"
    );
    assert_eq!(t.selectors[0].2, "shop/p");
    let t = translate_yaml(&ap("shop", "  {}\n"));
    assert_eq!(t.policies[0].scope, PolicyScope::Namespace);
    assert!(
        t.policies[0].rules.is_empty(),
        "ALLOW without rules = deny all"
    );
    let t = translate_yaml(&ap(ROOT_NAMESPACE, "  rules: [{}]\n"));
    assert_eq!(t.policies[0].scope, PolicyScope::Global);
    let t = translate_yaml(&ap(
        "shop",
        "  targetRefs: [{kind: Service, name: x}]\n  rules: [{}]\n",
    ));
    assert!(
        t.policies.is_empty(),
        "waypoint policies are not for the tunnel"
    );
}

#[test]
fn rule_translation() {
    let t = translate_yaml(&ap(
        "shop",
        "  rules:\n  - from:\n    - source: {principals: [\"cluster.local/ns/shop/sa/*\"], namespaces: [\"*\"]}\n    - source: {ipBlocks: [10.0.0.0/8], serviceAccounts: [web, other/api]}\n    to:\n    - operation: {ports: [\"8080\"], notPorts: [\"9090\"]}\n    when:\n    - {key: destination.port, values: [\"8080\"]}\n",
    ));
    let rule = &t.policies[0].rules[0];
    assert_eq!(rule.len(), 3, "to, from, one when: {rule:?}");
    assert_eq!(rule[0][0].destination_ports, vec![8080]);
    assert_eq!(rule[0][0].not_destination_ports, vec![9090]);
    assert_eq!(rule[1].len(), 2, "one match per from entry");
    assert_eq!(
        rule[1][0].principals,
        vec![StringMatch::Prefix("cluster.local/ns/shop/sa/".into())]
    );
    assert_eq!(rule[1][0].namespaces, vec![StringMatch::Presence()]);
    assert_eq!(
        rule[1][1].source_ips,
        vec!["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!(
        rule[1][1].service_accounts,
        vec![
            ServiceAccountMatch {
                namespace: "shop".into(),
                service_account: "web".into()
            },
            ServiceAccountMatch {
                namespace: "other".into(),
                service_account: "api".into()
            },
        ]
    );
    assert_eq!(rule[2][0].destination_ports, vec![8080]);
}

#[test]
fn http_fields_drop_allow_rules_and_widen_deny_rules() {
    let http = "  rules:\n  - to: [{operation: {methods: [GET], ports: [\"80\"]}}]\n  - from: [{source: {namespaces: [a]}}]\n";
    let allow = translate_yaml(&ap("shop", http));
    assert_eq!(
        allow.policies[0].rules.len(),
        1,
        "the HTTP rule is dropped from ALLOW"
    );
    let deny = translate_yaml(&ap("shop", &format!("  action: DENY\n{http}")));
    assert_eq!(deny.policies[0].rules.len(), 2);
    assert_eq!(
        deny.policies[0].rules[0][0][0].destination_ports,
        vec![80],
        "only the L4 part is kept"
    );
    let only_http = translate_yaml(&ap(
        "shop",
        "  action: DENY\n  rules:\n  - to: [{operation: {paths: [/admin]}}]\n",
    ));
    assert_eq!(
        only_http.policies[0].rules,
        vec![Vec::<Vec<Match>>::new()],
        "an all-HTTP DENY rule denies everything"
    );
}

#[test]
fn strict_peer_authentication() {
    let t = translate_yaml(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}, portLevelMtls: {8081: {mode: PERMISSIVE}}}\n",
    );
    let p = &t.policies[0];
    assert_eq!(p.key(), "istio-system/istio_converted_static_strict");
    assert_eq!(p.scope, PolicyScope::Global);
    assert_eq!(p.action, PolicyAction::Deny);
    assert_eq!(
        p.rules[0][0][0].not_principals,
        vec![StringMatch::Presence()]
    );
    assert_eq!(p.rules[0][0][0].not_destination_ports, vec![8081]);
    let permissive = translate_yaml(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec: {mtls: {mode: PERMISSIVE}}\n",
    );
    assert!(permissive.policies.is_empty());
}

#[test]
fn dry_run_annotation() {
    let t = translate_yaml(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop, annotations: {istio.io/dry-run: \"true\"}}\nspec: {action: DENY, rules: [{}]}\n",
    );
    assert!(t.policies[0].dry_run);
}
