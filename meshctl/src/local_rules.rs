//! The local mesh's own rules for pods: it runs containers as processes, not images, so each container needs a
//! `command`, and `env[].valueFrom` may only use the downward API fields it fills in. These are meshctl's rules,
//! not Kubernetes': the control plane accepts Pods exactly as the API server returns them (image-only, any
//! `valueFrom`), so they are checked here, before planning.

use crate::manifest::{
    Container, DeploymentExt, ManifestError, ManifestObject, Object, PodExt, PodSpec,
};

/// Field paths of the downward API the local mesh fills in.
pub const FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.podIP",
    "status.hostIP",
];

/// Checks every Pod and Deployment template of `objects`.
pub fn check(objects: &[ManifestObject]) -> Result<(), ManifestError> {
    for obj in objects {
        match &obj.object {
            Object::Pod(p) => check_spec(obj, "spec", p.pod_spec())?,
            Object::Deployment(d) => check_spec(obj, "spec.template.spec", d.template_spec())?,
            _ => {}
        }
    }
    Ok(())
}

fn check_spec(obj: &ManifestObject, at: &str, spec: &PodSpec) -> Result<(), ManifestError> {
    for (i, c) in spec.containers.iter().enumerate() {
        check_container(obj, &format!("{at}.containers[{i}]"), c)?;
    }
    Ok(())
}

fn check_container(obj: &ManifestObject, here: &str, c: &Container) -> Result<(), ManifestError> {
    let command = c.command.as_deref().unwrap_or_default();
    if command.first().is_none_or(String::is_empty) {
        return Err(ManifestError::at(
            obj,
            &format!("{here}.command"),
            "must name a program (the local mesh runs processes, not images)",
        ));
    }
    for (j, e) in c.env.iter().flatten().enumerate() {
        let field = format!("{here}.env[{j}]");
        match (&e.value, &e.value_from) {
            (Some(_), Some(_)) => {
                return Err(ManifestError::at(
                    obj,
                    &field,
                    "has both `value` and `valueFrom`",
                ));
            }
            (None, Some(from)) => {
                let path = from.field_ref.as_ref().map(|f| f.field_path.as_str());
                if !path.is_some_and(|p| FIELD_PATHS.contains(&p)) {
                    return Err(ManifestError::at(
                        obj,
                        &format!("{field}.valueFrom.fieldRef.fieldPath"),
                        format!(
                            "{} is not supported; the local mesh fills in {}",
                            path.map_or("a valueFrom without fieldRef".to_string(), |p| format!(
                                "{p:?}"
                            )),
                            FIELD_PATHS.join(", ")
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::manifest::{ManifestFile, parse_files};

    fn objects(yaml: &str) -> Vec<ManifestObject> {
        parse_files(&[ManifestFile {
            name: "t.yaml".into(),
            text: yaml.into(),
        }])
        .unwrap()
    }

    #[test]
    fn image_only_pods_parse_but_the_local_mesh_needs_a_command() {
        let objs = objects(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: nginx}]\n",
        );
        let err = check(&objs).unwrap_err().to_string();
        assert!(err.contains("spec.containers[0].command"), "{err}");
        assert!(err.contains("processes, not images"), "{err}");
    }

    #[test]
    fn env_sources_are_limited_to_the_downward_api_fields_it_fills() {
        let ok = objects(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    command: [sleep]\n    env: [{name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]\n",
        );
        check(&ok).unwrap();
        let secret = objects(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers:\n      - name: c\n        command: [sleep]\n        env: [{name: S, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n",
        );
        let err = check(&secret).unwrap_err().to_string();
        assert!(
            err.contains("spec.template.spec.containers[0].env[0].valueFrom.fieldRef.fieldPath"),
            "{err}"
        );
        let both = objects(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    command: [sleep]\n    env: [{name: X, value: v, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]\n",
        );
        assert!(check(&both).unwrap_err().to_string().contains("both"));
    }
}
