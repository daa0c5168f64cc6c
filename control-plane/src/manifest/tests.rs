#![allow(clippy::unwrap_used)]

use super::*;

fn parse(text: &str) -> Result<Vec<ManifestObject>, ManifestError> {
    parse_files(&[ManifestFile {
        name: "m.yaml".into(),
        text: text.into(),
    }])
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec:\n  containers: [{name: c, command: [sleep, '1']}]\n";

#[test]
fn parses_every_document_and_skips_empty_ones() {
    let text = format!(
        "---\n{POD}---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: shop, namespace: x}}\n"
    );
    let objs = parse(&text).unwrap();
    assert_eq!(objs.len(), 2);
    assert_eq!(objs[0].object.display(), "Pod shop/p");
    assert_eq!(objs[0].source.document, 1);
    assert_eq!(objs[1].source.document, 3);
    // A cluster-scoped object has no namespace even if one was written.
    assert_eq!(objs[1].object.key().namespace, "");
    let Object::Pod(p) = &objs[0].object else {
        panic!("not a pod")
    };
    assert_eq!(p.spec.restart_policy, RestartPolicy::Always);
    assert_eq!(p.spec.service_account(), "default");
}

#[test]
fn errors_name_the_object_and_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n",
            "kind",
            "unknown kind",
        ),
        (
            "apiVersion: v2\nkind: Pod\nmetadata: {name: p}\n",
            "apiVersion",
            "is not \"v1\"",
        ),
        ("kind: Pod\nmetadata: {name: p}\n", "apiVersion", "missing"),
        ("apiVersion: v1\nmetadata: {name: p}\n", "kind", "missing"),
        ("- 1\n- 2\n", "(document)", "mapping"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, command: yes}]}\n",
            "spec.containers[0].command",
            "invalid type",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n",
            "spec.containers[0]",
            "missing field `command`",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n",
            "spec.containers",
            "at least one",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: P_1}\nspec: {containers: [{name: c, command: [x]}]}\n",
            "metadata.name",
            "not a valid name",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, command: [x], ports: [{containerPort: 70000}]}]}\n",
            "spec.containers[0].ports[0].containerPort",
            "invalid value",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, command: [x]}, {name: c, command: [y]}]}\n",
            "spec.containers[1].name",
            "duplicate",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, command: [x], env: [{name: A, valueFrom: {fieldRef: {fieldPath: status.phase}}}]}]}\n",
            "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
            "not supported",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}, {port: 81}]}\n",
            "spec.ports[0].name",
            "required",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: []}\n",
            "spec.ports",
            "at least one",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: '80'}]}\n",
            "spec.ports[0].port",
            "invalid type",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {selector: {matchLabels: {app: a}}, template: {metadata: {labels: {app: b}}, spec: {containers: [{name: c, command: [x]}]}}}\n",
            "spec.template.metadata.labels",
            "does not match",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: -1, selector: {matchLabels: {app: a}}, template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, command: [x]}]}}}\n",
            "spec.replicas",
            "invalid value",
        ),
        (
            "apiVersion: meshctl.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec: {nodez: 2}\n",
            "spec.nodez",
            "unknown field `nodez`",
        ),
        (
            "apiVersion: meshctl.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec: {nodes: 0}\n",
            "spec.nodes",
            "must be",
        ),
    ];
    for (text, field, msg) in cases {
        let err = parse(text).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(*field), "{text}: {err}");
        assert!(err.to_string().contains(msg), "{text}: {err}");
        assert!(
            err.to_string().starts_with("m.yaml (document 1): "),
            "{err}"
        );
    }
}

#[test]
fn invalid_yaml_is_an_error_not_a_panic() {
    for text in [
        "a: [1, 2",
        "\t- x: y",
        "apiVersion: v1\nkind: [Pod\n",
        "{{{{",
        "- - - - [",
    ] {
        assert!(parse(text).is_err(), "{text}");
    }
}
