//! Clusters and cluster load assignments.

use std::collections::HashMap;
use std::time::Duration;

use xds::pb::envoy::config::cluster::v3::{
    CircuitBreakers as PbBreakers, Cluster as PbCluster, OutlierDetection as PbOutlier,
    circuit_breakers::Thresholds,
    cluster::{
        ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbConfig, LbPolicy as PbLb,
        LeastRequestLbConfig, MaglevLbConfig, RingHashLbConfig,
    },
};
use xds::pb::envoy::config::core::v3::{Http2ProtocolOptions, Metadata};
use xds::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as PbEndpoint, LbEndpoint, LocalityLbEndpoints,
    lb_endpoint::HostIdentifier,
};
use xds::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
    },
};
use xds::pb::google::protobuf::{Struct, Value, value::Kind};

use super::{any, secs, socket, u32v, where_};
use crate::model::from_proto::{ModelError, cluster, endpoints};
use crate::model::{CircuitBreakers, LbPolicy, OutlierDetection};

fn eds(name: &str) -> PbCluster {
    PbCluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            service_name: name.into(),
            ..EdsClusterConfig::default()
        }),
        connect_timeout: Some(secs(10)),
        ..PbCluster::default()
    }
}

/// Outlier detection as the control plane writes it: success-rate ejection off.
fn pb_outlier() -> PbOutlier {
    PbOutlier {
        enforcing_success_rate: Some(u32v(0)),
        ..PbOutlier::default()
    }
}

#[test]
fn control_plane_cluster_converts() {
    let c = cluster(&eds("outbound|8080||reviews.default.svc.cluster.local")).unwrap();
    assert_eq!(c.name, "outbound|8080||reviews.default.svc.cluster.local");
    assert_eq!(c.lb, LbPolicy::RoundRobin);
    assert_eq!(c.connect_timeout, Duration::from_secs(10));
    assert_eq!(c.circuit_breakers, CircuitBreakers::default());
    assert_eq!(c.outlier, None);
    assert!(!c.http2);

    let mut unset = eds("c");
    unset.connect_timeout = None;
    assert_eq!(
        cluster(&unset).unwrap().connect_timeout,
        Duration::from_secs(5)
    );
}

#[test]
fn lb_policies() {
    let with = |policy: PbLb, config: Option<LbConfig>| PbCluster {
        lb_policy: policy as i32,
        lb_config: config,
        ..eds("c")
    };
    let cases: Vec<(PbCluster, Result<LbPolicy, &str>)> = vec![
        (with(PbLb::Random, None), Ok(LbPolicy::Random)),
        (
            with(PbLb::LeastRequest, None),
            Ok(LbPolicy::LeastRequest { choice_count: 2 }),
        ),
        (
            with(
                PbLb::LeastRequest,
                Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                    choice_count: Some(u32v(5)),
                    ..LeastRequestLbConfig::default()
                })),
            ),
            Ok(LbPolicy::LeastRequest { choice_count: 5 }),
        ),
        (
            with(PbLb::RingHash, None),
            Ok(LbPolicy::RingHash {
                minimum_ring_size: 1024,
            }),
        ),
        (
            with(
                PbLb::RingHash,
                Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                    minimum_ring_size: Some(xds::pb::google::protobuf::UInt64Value { value: 64 }),
                    ..RingHashLbConfig::default()
                })),
            ),
            Ok(LbPolicy::RingHash {
                minimum_ring_size: 64,
            }),
        ),
        (
            with(PbLb::Maglev, None),
            Ok(LbPolicy::Maglev { table_size: 65537 }),
        ),
        (
            with(
                PbLb::Maglev,
                Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
                    table_size: Some(xds::pb::google::protobuf::UInt64Value { value: 1000 }),
                })),
            ),
            Err("invalid"),
        ),
        (
            with(
                PbLb::LeastRequest,
                Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                    choice_count: Some(u32v(1)),
                    ..LeastRequestLbConfig::default()
                })),
            ),
            Err("invalid"),
        ),
        (with(PbLb::ClusterProvided, None), Err("unsupported")),
        (
            PbCluster {
                lb_policy: 42,
                ..eds("c")
            },
            Err("invalid"),
        ),
    ];
    for (c, want) in cases {
        let got = cluster(&c).map(|c| c.lb).map_err(|e| where_(&e).1);
        assert_eq!(got, want, "{:?}", c.lb_policy);
    }
}

#[test]
fn breakers_outlier_and_http2() {
    let mut c = eds("c");
    c.circuit_breakers = Some(PbBreakers {
        thresholds: vec![
            Thresholds {
                priority: 1,
                max_connections: Some(u32v(1)),
                ..Thresholds::default()
            },
            Thresholds {
                max_connections: Some(u32v(100)),
                max_retries: Some(u32v(7)),
                ..Thresholds::default()
            },
        ],
        ..PbBreakers::default()
    });
    c.outlier_detection = Some(PbOutlier {
        consecutive_5xx: Some(u32v(3)),
        interval: Some(secs(5)),
        ..pb_outlier()
    });
    c.typed_extension_protocol_options = HashMap::from([(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
        any(&HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                        Http2ProtocolOptions::default(),
                    )),
                },
            )),
            ..HttpProtocolOptions::default()
        }),
    )]);
    let got = cluster(&c).unwrap();
    assert_eq!(
        got.circuit_breakers,
        CircuitBreakers {
            max_connections: 100,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 7,
        }
    );
    assert_eq!(
        got.outlier,
        Some(OutlierDetection {
            consecutive_5xx: 3,
            consecutive_gateway_failure: None,
            interval: Duration::from_secs(5),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            always_eject_one_host: false,
        })
    );
    assert!(got.http2);

    // Enforcement 0 % disables consecutive 5xx; enforced gateway failures default to 5.
    c.outlier_detection = Some(PbOutlier {
        consecutive_5xx: Some(u32v(0)),
        enforcing_consecutive_5xx: Some(u32v(0)),
        enforcing_consecutive_gateway_failure: Some(u32v(100)),
        ..pb_outlier()
    });
    let o = cluster(&c).unwrap().outlier.unwrap();
    assert_eq!(
        (o.consecutive_5xx, o.consecutive_gateway_failure),
        (0, Some(5))
    );

    #[allow(deprecated)]
    let legacy = PbCluster {
        http2_protocol_options: Some(Http2ProtocolOptions::default()),
        ..eds("c")
    };
    assert!(cluster(&legacy).unwrap().http2);
}

#[test]
fn max_ejection_time_defaults_and_bounds() {
    let with = |base: Option<i64>, max: Option<i64>| {
        let mut c = eds("c");
        c.outlier_detection = Some(PbOutlier {
            base_ejection_time: base.map(secs),
            max_ejection_time: max.map(secs),
            ..pb_outlier()
        });
        cluster(&c).map(|c| c.outlier.unwrap().max_ejection_time)
    };
    // Unset: 300 s, or the base when that is larger.
    assert_eq!(with(None, None), Ok(Duration::from_secs(300)));
    assert_eq!(with(Some(600), None), Ok(Duration::from_secs(600)));
    assert_eq!(with(Some(10), Some(60)), Ok(Duration::from_secs(60)));
    assert_eq!(with(Some(60), Some(60)), Ok(Duration::from_secs(60)));
    // Protobuf's largest duration is accepted (the detector saturates instead of panicking).
    assert_eq!(
        with(Some(315_576_000_000), None),
        Ok(Duration::from_secs(315_576_000_000))
    );
    for (base, max) in [
        (Some(60), Some(30)),
        (None, Some(0)),
        (None, Some(-1)),
        (None, Some(315_576_000_001)),
    ] {
        let e = with(base, max).unwrap_err();
        assert_eq!(
            where_(&e),
            ("outlier_detection.max_ejection_time".into(), "invalid"),
            "{e}"
        );
    }
}

#[test]
fn panic_threshold_and_requests_per_connection() {
    use xds::pb::envoy::config::cluster::v3::cluster::CommonLbConfig;
    use xds::pb::envoy::config::core::v3::HttpProtocolOptions as CommonHttp;
    use xds::pb::envoy::r#type::v3::Percent;
    let c = cluster(&eds("c")).unwrap();
    assert_eq!(
        (c.panic_threshold, c.max_requests_per_connection),
        (50, None)
    );

    let mut pb = eds("c");
    pb.common_lb_config = Some(CommonLbConfig {
        healthy_panic_threshold: Some(Percent { value: 0.0 }),
        ..CommonLbConfig::default()
    });
    let opts = HttpProtocolOptions {
        common_http_protocol_options: Some(CommonHttp {
            max_requests_per_connection: Some(u32v(1)),
            ..CommonHttp::default()
        }),
        ..HttpProtocolOptions::default()
    };
    pb.typed_extension_protocol_options = HashMap::from([(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
        any(&opts),
    )]);
    let c = cluster(&pb).unwrap();
    assert_eq!(
        (c.panic_threshold, c.max_requests_per_connection),
        (0, Some(1))
    );

    pb.common_lb_config = Some(CommonLbConfig {
        healthy_panic_threshold: Some(Percent { value: 120.0 }),
        ..CommonLbConfig::default()
    });
    let e = cluster(&pb).unwrap_err();
    assert!(
        e.to_string()
            .contains("common_lb_config.healthy_panic_threshold"),
        "{e}"
    );
}

#[test]
fn rejected_clusters() {
    let cases: Vec<(PbCluster, &str)> = vec![
        (
            PbCluster {
                cluster_discovery_type: None,
                ..eds("c")
            },
            "type",
        ),
        (
            PbCluster {
                connect_timeout: Some(secs(0)),
                ..eds("c")
            },
            "connect_timeout",
        ),
        (
            PbCluster {
                connect_timeout: Some(secs(-1)),
                ..eds("c")
            },
            "connect_timeout",
        ),
        (
            PbCluster {
                lb_subset_config: Some(Default::default()),
                ..eds("c")
            },
            "lb_subset_config",
        ),
    ];
    for (c, field) in cases {
        let e = cluster(&c).unwrap_err();
        assert_eq!(where_(&e).0, field, "{e}");
    }
}

/// What the control plane's DestinationRule translation emits (Istio's mapping): counters with
/// enforcement 0 or 100, success-rate ejection off, interval, base ejection time, percent.
#[test]
fn control_plane_outlier_detection_converts() {
    let emitted = [
        PbOutlier {
            consecutive_5xx: Some(u32v(3)),
            enforcing_consecutive_5xx: Some(u32v(100)),
            interval: Some(secs(1)),
            base_ejection_time: Some(secs(4)),
            max_ejection_percent: Some(u32v(100)),
            ..pb_outlier()
        },
        PbOutlier {
            consecutive_5xx: Some(u32v(0)),
            enforcing_consecutive_5xx: Some(u32v(0)),
            consecutive_gateway_failure: Some(u32v(2)),
            enforcing_consecutive_gateway_failure: Some(u32v(100)),
            ..pb_outlier()
        },
        PbOutlier {
            consecutive_gateway_failure: Some(u32v(0)),
            enforcing_consecutive_gateway_failure: Some(u32v(0)),
            ..pb_outlier()
        },
    ];
    let got: Vec<_> = emitted
        .into_iter()
        .map(|o| {
            let o = cluster(&PbCluster {
                outlier_detection: Some(o),
                ..eds("c")
            })
            .unwrap()
            .outlier
            .unwrap();
            (
                o.consecutive_5xx,
                o.consecutive_gateway_failure,
                o.max_ejection_percent,
                o.always_eject_one_host,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (3, None, 100, false),
            (0, Some(2), 10, false),
            (5, None, 10, false)
        ]
    );
}

#[test]
fn always_eject_one_host() {
    use xds::pb::google::protobuf::BoolValue;
    let with = |v: Option<bool>| {
        cluster(&PbCluster {
            outlier_detection: Some(PbOutlier {
                always_eject_one_host: v.map(|value| BoolValue { value }),
                ..pb_outlier()
            }),
            ..eds("c")
        })
        .unwrap()
        .outlier
        .unwrap()
        .always_eject_one_host
    };
    assert!(!with(None));
    assert!(!with(Some(false)));
    assert!(with(Some(true)));
}

/// Settings that change who gets ejected and that the waypoint does not implement are refused
/// with their field; their explicit defaults are accepted.
#[test]
fn unimplemented_outlier_detection_is_refused() {
    use xds::pb::envoy::config::core::v3::TypedExtensionConfig;
    use xds::pb::google::protobuf::{BoolValue, Duration as PbDuration};
    let convert = |o: PbOutlier| {
        cluster(&PbCluster {
            outlier_detection: Some(o),
            ..eds("c")
        })
    };
    let refused: Vec<(PbOutlier, &str, &str)> = vec![
        (
            PbOutlier::default(),
            "enforcing_success_rate",
            "unsupported",
        ),
        (
            PbOutlier {
                enforcing_success_rate: Some(u32v(50)),
                ..pb_outlier()
            },
            "enforcing_success_rate",
            "unsupported",
        ),
        (
            PbOutlier {
                split_external_local_origin_errors: true,
                ..pb_outlier()
            },
            "split_external_local_origin_errors",
            "unsupported",
        ),
        (
            PbOutlier {
                consecutive_local_origin_failure: Some(u32v(3)),
                ..pb_outlier()
            },
            "consecutive_local_origin_failure",
            "unsupported",
        ),
        (
            PbOutlier {
                enforcing_consecutive_local_origin_failure: Some(u32v(0)),
                ..pb_outlier()
            },
            "enforcing_consecutive_local_origin_failure",
            "unsupported",
        ),
        (
            PbOutlier {
                enforcing_consecutive_5xx: Some(u32v(50)),
                ..pb_outlier()
            },
            "enforcing_consecutive_5xx",
            "unsupported",
        ),
        (
            PbOutlier {
                enforcing_consecutive_gateway_failure: Some(u32v(1)),
                ..pb_outlier()
            },
            "enforcing_consecutive_gateway_failure",
            "unsupported",
        ),
        (
            PbOutlier {
                enforcing_consecutive_5xx: Some(u32v(101)),
                ..pb_outlier()
            },
            "enforcing_consecutive_5xx",
            "invalid",
        ),
        (
            PbOutlier {
                enforcing_failure_percentage: Some(u32v(100)),
                ..pb_outlier()
            },
            "enforcing_failure_percentage",
            "unsupported",
        ),
        (
            PbOutlier {
                enforcing_failure_percentage_local_origin: Some(u32v(100)),
                ..pb_outlier()
            },
            "enforcing_failure_percentage_local_origin",
            "unsupported",
        ),
        (
            PbOutlier {
                max_ejection_time_jitter: Some(PbDuration {
                    seconds: 0,
                    nanos: 1_000_000,
                }),
                ..pb_outlier()
            },
            "max_ejection_time_jitter",
            "unsupported",
        ),
        (
            PbOutlier {
                detect_degraded_hosts: Some(BoolValue { value: true }),
                ..pb_outlier()
            },
            "detect_degraded_hosts",
            "unsupported",
        ),
        (
            PbOutlier {
                monitors: vec![TypedExtensionConfig::default()],
                ..pb_outlier()
            },
            "monitors",
            "unsupported",
        ),
    ];
    for (o, field, kind) in refused {
        let e = convert(o).unwrap_err();
        assert_eq!(
            where_(&e),
            (format!("outlier_detection.{field}"), kind),
            "{e}"
        );
    }

    // Explicit defaults, and success-rate / failure-percentage tuning without enforcement,
    // change nothing and are accepted.
    let accepted = PbOutlier {
        enforcing_consecutive_5xx: Some(u32v(100)),
        enforcing_consecutive_gateway_failure: Some(u32v(0)),
        consecutive_local_origin_failure: Some(u32v(5)),
        enforcing_consecutive_local_origin_failure: Some(u32v(100)),
        enforcing_local_origin_success_rate: Some(u32v(100)),
        enforcing_failure_percentage: Some(u32v(0)),
        enforcing_failure_percentage_local_origin: Some(u32v(0)),
        success_rate_minimum_hosts: Some(u32v(3)),
        success_rate_request_volume: Some(u32v(10)),
        success_rate_stdev_factor: Some(u32v(1000)),
        failure_percentage_threshold: Some(u32v(50)),
        max_ejection_time_jitter: Some(secs(0)),
        detect_degraded_hosts: Some(BoolValue { value: false }),
        successful_active_health_check_uneject_host: Some(BoolValue { value: false }),
        ..pb_outlier()
    };
    let o = convert(accepted).unwrap().outlier.unwrap();
    assert_eq!(
        (o.consecutive_5xx, o.consecutive_gateway_failure),
        (5, None)
    );
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn lb_endpoint(ip: &str, port: u32, istio: Option<Vec<(&str, Value)>>) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(PbEndpoint {
            address: Some(socket(ip, port)),
            ..PbEndpoint::default()
        })),
        metadata: istio.map(|fields| Metadata {
            filter_metadata: HashMap::from([(
                "istio".to_owned(),
                Struct {
                    fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                },
            )]),
            ..Metadata::default()
        }),
        load_balancing_weight: Some(u32v(1)),
        ..LbEndpoint::default()
    }
}

fn cla(lb_endpoints: Vec<LbEndpoint>) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: "outbound|8080||reviews".into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            locality: Some(Default::default()),
            load_balancing_weight: Some(u32v(1)),
            ..LocalityLbEndpoints::default()
        }],
        ..ClusterLoadAssignment::default()
    }
}

#[test]
fn control_plane_endpoints_convert() {
    let got = endpoints(&cla(vec![
        lb_endpoint(
            "10.0.0.5",
            9080,
            Some(vec![
                ("workload", string("Kubernetes//Pod/default/reviews-1")),
                ("tunnel", string("hbone")),
                (
                    "identity",
                    string("spiffe://cluster.local/ns/default/sa/reviews"),
                ),
            ]),
        ),
        lb_endpoint(
            "fd00::6",
            9080,
            Some(vec![
                ("workload", string("uid-2")),
                ("tunnel", string("")),
                ("identity", string("")),
            ]),
        ),
        LbEndpoint {
            health_status: 2,
            load_balancing_weight: None,
            ..lb_endpoint("10.0.0.7", 9080, None)
        },
    ]))
    .unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].address, "10.0.0.5:9080".parse().unwrap());
    assert_eq!(
        got[0].workload.as_deref(),
        Some("Kubernetes//Pod/default/reviews-1")
    );
    assert!(got[0].hbone && got[0].healthy);
    assert_eq!(
        got[0].identity.as_ref().map(|i| i.to_uri()).as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/reviews")
    );
    assert_eq!(got[1].address, "[fd00::6]:9080".parse().unwrap());
    assert!(!got[1].hbone);
    assert_eq!(got[1].identity, None);
    assert!(!got[2].healthy);
    assert_eq!((got[2].weight, got[2].workload.as_deref()), (1, None));
}

#[test]
fn priorities_and_named_endpoints() {
    let mut a = cla(vec![lb_endpoint("10.0.0.1", 80, None)]);
    a.endpoints.push(LocalityLbEndpoints {
        priority: 1,
        lb_endpoints: vec![LbEndpoint {
            host_identifier: Some(HostIdentifier::EndpointName("backup".into())),
            ..LbEndpoint::default()
        }],
        ..LocalityLbEndpoints::default()
    });
    a.named_endpoints = HashMap::from([(
        "backup".to_owned(),
        PbEndpoint {
            address: Some(socket("10.0.0.2", 80)),
            ..PbEndpoint::default()
        },
    )]);
    let got = endpoints(&a).unwrap();
    assert_eq!(
        got.iter()
            .map(|e| (e.address.to_string(), e.priority))
            .collect::<Vec<_>>(),
        vec![("10.0.0.1:80".into(), 0), ("10.0.0.2:80".into(), 1)]
    );
}

#[test]
fn rejected_endpoints() {
    let bad_identity = lb_endpoint(
        "10.0.0.5",
        9080,
        Some(vec![(
            "identity",
            string("spiffe://cluster.local/ns/default"),
        )]),
    );
    let e = endpoints(&cla(vec![bad_identity])).unwrap_err();
    assert!(
        matches!(&e, ModelError::Identity { endpoint, .. } if endpoint.to_string() == "10.0.0.5:9080"),
        "{e}"
    );
    assert!(e.to_string().contains("endpoint 10.0.0.5:9080"), "{e}");

    let cases: Vec<(LbEndpoint, &str)> = vec![
        (
            LbEndpoint {
                load_balancing_weight: Some(u32v(0)),
                ..lb_endpoint("10.0.0.1", 80, None)
            },
            "endpoints[0].lb_endpoints[0].load_balancing_weight",
        ),
        (
            lb_endpoint("10.0.0.1", 0, None),
            "endpoints[0].lb_endpoints[0].endpoint.address.port_value",
        ),
        (
            lb_endpoint("pod.example", 80, None),
            "endpoints[0].lb_endpoints[0].endpoint.address.address",
        ),
        (
            lb_endpoint(
                "10.0.0.1",
                80,
                Some(vec![(
                    "tunnel",
                    Value {
                        kind: Some(Kind::BoolValue(true)),
                    },
                )]),
            ),
            "endpoints[0].lb_endpoints[0].metadata.filter_metadata[\"istio\"].tunnel",
        ),
        (
            LbEndpoint {
                health_status: 99,
                ..lb_endpoint("10.0.0.1", 80, None)
            },
            "endpoints[0].lb_endpoints[0].health_status",
        ),
        (
            LbEndpoint {
                host_identifier: Some(HostIdentifier::EndpointName("nope".into())),
                ..LbEndpoint::default()
            },
            "endpoints[0].lb_endpoints[0].endpoint_name",
        ),
    ];
    for (ep, field) in cases {
        let e = endpoints(&cla(vec![ep])).unwrap_err();
        assert_eq!(where_(&e).0, field, "{e}");
        assert!(
            e.to_string()
                .starts_with("ClusterLoadAssignment \"outbound|8080||reviews\"")
        );
    }
}
