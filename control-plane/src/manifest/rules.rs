//! Per-object rules Kubernetes would enforce at admission: names, required lists, field values.
//! Gateway API kinds are checked in `rules/gateway.rs`, DestinationRules in `rules/networking.rs`,
//! FaultInjection and LocalRateLimit in `rules/extensions.rs`.

mod extensions;
mod gateway;
mod networking;

use super::{
    Container, DeploymentExt, IntOrString, MAX_NODES, ManifestError, ManifestObject, MetaExt,
    Object, PodSpec, PortExt, Protocol, RestartPolicy, Service, ServiceExt,
};

/// The most replicas one Deployment may ask for: a bound against typos, far above what one machine runs.
const MAX_REPLICAS: u32 = 256;

pub(super) fn check(obj: &ManifestObject) -> Result<(), ManifestError> {
    let meta = obj.object.meta();
    if meta.name.is_none() {
        return Err(ManifestError::at(obj, "metadata.name", "required"));
    }
    // A Node's name is any DNS subdomain (`ip-10-0-1-2.ec2.internal`) and only its labels are read.
    if obj.object.kind() != "Node" {
        check_dns_label(
            obj,
            "metadata.name",
            meta.name(),
            obj.object.kind() != "Pod",
        )?;
    }
    if let Some(ns) = &meta.namespace {
        check_dns_label(obj, "metadata.namespace", ns, true)?;
    }
    match &obj.object {
        Object::Pod(pod) => {
            let spec = required(obj, "spec", pod.spec.as_ref())?;
            check_pod_spec(obj, "spec", spec)?;
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
            match ip.map(str::parse::<std::net::Ipv4Addr>) {
                Some(Err(_)) => Err(ManifestError::at(
                    obj,
                    "status.podIP",
                    format!("{:?} is not an IPv4 address", ip.unwrap_or_default()),
                )),
                _ => Ok(()),
            }
        }
        Object::Deployment(d) => {
            let spec = required(obj, "spec", d.spec.as_ref())?;
            match spec.replicas {
                Some(n) if !(0..=i64::from(MAX_REPLICAS)).contains(&i64::from(n)) => {
                    return Err(ManifestError::at(
                        obj,
                        "spec.replicas",
                        format!("{n} is not 0-{MAX_REPLICAS}"),
                    ));
                }
                _ => {}
            }
            if d.match_labels().is_empty() {
                return Err(ManifestError::at(
                    obj,
                    "spec.selector.matchLabels",
                    "must not be empty",
                ));
            }
            for (k, v) in d.match_labels() {
                if d.template_meta().labels().get(k) != Some(v) {
                    return Err(ManifestError::at(
                        obj,
                        "spec.template.metadata.labels",
                        format!("does not match spec.selector ({k}={v} missing)"),
                    ));
                }
            }
            let template = required(obj, "spec.template.spec", spec.template.spec.as_ref())?;
            check_pod_spec(obj, "spec.template.spec", template)
        }
        Object::Service(svc) => check_service(obj, svc),
        Object::Cluster(c) => check_cluster(obj, &c.spec),
        Object::AuthorizationPolicy(p) => check_authorization_policy(obj, &p.spec),
        Object::Gateway(g) => gateway::check_gateway(obj, g),
        Object::HttpRoute(r) => gateway::check_http_route(obj, r),
        Object::GrpcRoute(r) => gateway::check_grpc_route(obj, r),
        Object::DestinationRule(d) => networking::check_destination_rule(obj, d),
        Object::FaultInjection(f) => extensions::check_fault_injection(obj, f),
        Object::LocalRateLimit(l) => extensions::check_local_rate_limit(obj, l),
        Object::PeerAuthentication(_)
        | Object::Namespace(_)
        | Object::Node(_)
        | Object::ServiceAccount(_) => Ok(()),
    }
}

/// `value`, or an error naming `field` as missing.
fn required<'v, T>(
    obj: &ManifestObject,
    field: &str,
    value: Option<&'v T>,
) -> Result<&'v T, ManifestError> {
    value.ok_or_else(|| ManifestError::at(obj, field, "required"))
}

/// A port number: 1-65535.
fn check_port(obj: &ManifestObject, field: &str, port: i32) -> Result<(), ManifestError> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(ManifestError::at(
            obj,
            field,
            format!("must be 1-65535, not {port}"),
        ))
    }
}

/// A `protocol` field: TCP (the default) or UDP.
fn check_protocol(obj: &ManifestObject, field: &str, p: Option<&str>) -> Result<(), ManifestError> {
    Protocol::parse(p)
        .map(drop)
        .map_err(|e| ManifestError::at(obj, field, e))
}

fn check_authorization_policy(
    obj: &ManifestObject,
    spec: &super::security::AuthorizationPolicySpec,
) -> Result<(), ManifestError> {
    use super::security::AuthzAction;
    if matches!(spec.action, AuthzAction::Audit | AuthzAction::Custom) {
        return Err(ManifestError::at(
            obj,
            "spec.action",
            "AUDIT and CUSTOM are not supported by the node tunnel; use ALLOW or DENY",
        ));
    }
    let refs = spec
        .target_ref
        .iter()
        .map(|r| ("spec.targetRef".to_string(), r))
        .chain(
            spec.target_refs
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("spec.targetRefs[{i}]"), r)),
        );
    for (at, r) in refs {
        if !matches!(r.kind.as_str(), "Gateway" | "Service") {
            return Err(ManifestError::at(
                obj,
                &format!("{at}.kind"),
                format!("{:?} is not supported; use Gateway or Service", r.kind),
            ));
        }
        if spec.selector.is_some() {
            return Err(ManifestError::at(
                obj,
                "spec.selector",
                "cannot be combined with targetRefs",
            ));
        }
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        for (j, to) in rule.to.iter().enumerate() {
            for (field, ports) in [
                ("ports", &to.operation.ports),
                ("notPorts", &to.operation.not_ports),
            ] {
                for p in ports {
                    if !p.parse::<u16>().is_ok_and(|p| p > 0) {
                        return Err(ManifestError::at(
                            obj,
                            &format!("spec.rules[{i}].to[{j}].operation.{field}"),
                            format!("{p:?} is not a port number (1-65535)"),
                        ));
                    }
                }
            }
        }
        for (j, from) in rule.from.iter().enumerate() {
            let s = &from.source;
            for (field, domains) in [
                ("trustDomains", &s.trust_domains),
                ("notTrustDomains", &s.not_trust_domains),
            ] {
                if !domains.is_empty() {
                    return Err(ManifestError::at(
                        obj,
                        &format!("spec.rules[{i}].from[{j}].source.{field}"),
                        "is not supported (the workload API has no trust domain match); use principals",
                    ));
                }
            }
            for (field, blocks) in [
                ("ipBlocks", &s.ip_blocks),
                ("notIpBlocks", &s.not_ip_blocks),
            ] {
                for b in blocks {
                    let ok =
                        b.parse::<ipnet::IpNet>().is_ok() || b.parse::<std::net::IpAddr>().is_ok();
                    if !ok {
                        return Err(ManifestError::at(
                            obj,
                            &format!("spec.rules[{i}].from[{j}].source.{field}"),
                            format!("{b:?} is not an IP address or CIDR"),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// RFC 1123 label (or subdomain, for pods): lower-case alphanumerics and '-', (and '.'), at most 63 characters.
fn check_dns_label(
    obj: &ManifestObject,
    field: &str,
    value: &str,
    label_only: bool,
) -> Result<(), ManifestError> {
    let ok_char = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label_only && c == '.')
    };
    let valid = !value.is_empty()
        && value.len() <= 63
        && value.chars().all(ok_char)
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(ManifestError::at(
            obj,
            field,
            format!(
                "{value:?} is not a valid name (lower-case letters, digits and '-', at most 63 characters)"
            ),
        ))
    }
}

fn check_pod_spec(obj: &ManifestObject, at: &str, spec: &PodSpec) -> Result<(), ManifestError> {
    if spec.containers.is_empty() {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.containers"),
            "must list at least one container",
        ));
    }
    if let Some(sa) = &spec.service_account_name {
        check_dns_label(obj, &format!("{at}.serviceAccountName"), sa, false)?;
    }
    RestartPolicy::parse(spec.restart_policy.as_deref())
        .map_err(|e| ManifestError::at(obj, &format!("{at}.restartPolicy"), e))?;
    if let Some(s) = spec.termination_grace_period_seconds
        && s < 0
    {
        return Err(ManifestError::at(
            obj,
            &format!("{at}.terminationGracePeriodSeconds"),
            "must not be negative",
        ));
    }
    for (i, c) in spec.containers.iter().enumerate() {
        let here = format!("{at}.containers[{i}]");
        if spec.containers[..i].iter().any(|o| o.name == c.name) {
            return Err(ManifestError::at(
                obj,
                &format!("{here}.name"),
                format!("duplicate container name {:?}", c.name),
            ));
        }
        check_container(obj, &here, c)?;
    }
    Ok(())
}

fn check_container(obj: &ManifestObject, here: &str, c: &Container) -> Result<(), ManifestError> {
    check_dns_label(obj, &format!("{here}.name"), &c.name, true)?;
    for (j, p) in c.ports.iter().flatten().enumerate() {
        check_port(
            obj,
            &format!("{here}.ports[{j}].containerPort"),
            p.container_port,
        )?;
        check_protocol(
            obj,
            &format!("{here}.ports[{j}].protocol"),
            p.protocol.as_deref(),
        )?;
    }
    Ok(())
}

fn check_service(obj: &ManifestObject, svc: &Service) -> Result<(), ManifestError> {
    let spec = required(obj, "spec", svc.spec.as_ref())?;
    let ports = svc.ports();
    if ports.is_empty() {
        return Err(ManifestError::at(
            obj,
            "spec.ports",
            "must list at least one port",
        ));
    }
    for (i, p) in ports.iter().enumerate() {
        check_port(obj, &format!("spec.ports[{i}].port"), p.port)?;
        check_protocol(
            obj,
            &format!("spec.ports[{i}].protocol"),
            p.protocol.as_deref(),
        )?;
        if ports[..i]
            .iter()
            .any(|o| o.port == p.port && o.proto() == p.proto())
        {
            return Err(ManifestError::at(
                obj,
                &format!("spec.ports[{i}].port"),
                format!("duplicate port {}", p.port),
            ));
        }
        if ports.len() > 1 && p.name.is_none() {
            return Err(ManifestError::at(
                obj,
                &format!("spec.ports[{i}].name"),
                "required when there are several ports",
            ));
        }
        if let Some(IntOrString::Int(t)) = p.target_port {
            check_port(obj, &format!("spec.ports[{i}].targetPort"), t)?;
        }
    }
    if let Some(sel) = &spec.selector
        && sel.is_empty()
    {
        return Err(ManifestError::at(
            obj,
            "spec.selector",
            "must not be empty (omit it for a Service without a selector)",
        ));
    }
    Ok(())
}

fn check_cluster(obj: &ManifestObject, spec: &super::ClusterSpec) -> Result<(), ManifestError> {
    if let Some(n) = spec.nodes
        && !(1..=MAX_NODES).contains(&n)
    {
        return Err(ManifestError::at(
            obj,
            "spec.nodes",
            format!("must be 1-{}", MAX_NODES),
        ));
    }
    Ok(())
}
