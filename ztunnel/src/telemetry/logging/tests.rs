//! Level control against a local subscriber (no global state).

#![allow(clippy::unwrap_used)]

use tracing_subscriber::layer::SubscriberExt;

use super::*;
use crate::telemetry::access_log::tests::with_local_subscriber;

fn change(query: &str) -> LevelChange {
    LevelChange::from_query(Some(query)).unwrap().unwrap()
}

/// (info on `ztunnel::other`, debug on `ztunnel::other`, debug on `ztunnel::proxy`) under `subscriber`.
fn enabled(subscriber: &tracing::Dispatch) -> (bool, bool, bool) {
    with_local_subscriber(subscriber.clone(), || {
        (
            tracing::enabled!(target: "ztunnel::other", tracing::Level::INFO),
            tracing::enabled!(target: "ztunnel::other", tracing::Level::DEBUG),
            tracing::enabled!(target: "ztunnel::proxy", tracing::Level::DEBUG),
        )
    })
}

/// Applies `query` with `subscriber` as the current default, as the global subscriber is in production:
/// tracing rebuilds its interest cache against the current dispatcher when only one is registered.
fn apply(subscriber: &tracing::Dispatch, control: &LogLevelControl, query: &str) -> String {
    with_local_subscriber(subscriber.clone(), || {
        control.apply(&change(query)).unwrap()
    })
}

#[test]
fn defaults_to_info() {
    let (_layer, control) = LogLevelControl::new(None).unwrap();
    assert_eq!(control.current(), "info");
    let (_layer, control) = LogLevelControl::new(Some("  ")).unwrap();
    assert_eq!(control.current(), "info");
    assert!(matches!(
        LogLevelControl::new(Some("info,[")),
        Err(LoggingError::InvalidFilter { .. })
    ));
}

#[test]
fn global_module_and_reset() {
    let (layer, control) = LogLevelControl::new(Some("warn,hyper=error")).unwrap();
    let subscriber = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    assert_eq!(enabled(&subscriber), (false, false, false));

    assert_eq!(
        apply(&subscriber, &control, "level=ztunnel::proxy:debug"),
        "warn,hyper=error,ztunnel::proxy=debug"
    );
    assert_eq!(enabled(&subscriber), (false, false, true));

    assert_eq!(apply(&subscriber, &control, "level=debug"), "debug");
    assert_eq!(enabled(&subscriber), (true, true, true));
    assert_eq!(control.current(), "debug");

    assert_eq!(apply(&subscriber, &control, "reset"), "warn,hyper=error");
    assert_eq!(enabled(&subscriber), (false, false, false));

    assert_eq!(
        apply(&subscriber, &control, "reset&level=info,hyper:trace"),
        "info,hyper=trace"
    );
    assert_eq!(enabled(&subscriber), (true, false, false));
}

#[test]
fn module_levels_replace_earlier_ones() {
    let (layer, control) = LogLevelControl::new(Some("info")).unwrap();
    let subscriber = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    apply(&subscriber, &control, "level=a:debug,b:warn");
    apply(&subscriber, &control, "level=a:off");
    assert_eq!(control.current(), "info,a=off,b=warn");
}

#[test]
fn reload_failure_leaves_state() {
    let (layer, control) = LogLevelControl::new(Some("info")).unwrap();
    drop(layer);
    assert!(matches!(
        control.apply(&change("level=debug")),
        Err(LoggingError::Reload { .. })
    ));
    assert_eq!(control.current(), "info");
}

#[test]
fn parses_log_format() {
    assert_eq!(LogFormat::from_env_value(None).unwrap(), LogFormat::Plain);
    assert_eq!(
        LogFormat::from_env_value(Some("")).unwrap(),
        LogFormat::Plain
    );
    assert_eq!(
        LogFormat::from_env_value(Some("JSON")).unwrap(),
        LogFormat::Json
    );
    assert!(matches!(
        LogFormat::from_env_value(Some("xml")),
        Err(LoggingError::UnknownFormat { .. })
    ));
}
